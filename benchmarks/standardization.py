"""How close caption standardisations come to the COCO evaluation's words: prints JSON.

    python benchmarks/standardization.py [--repeat 100000]

The COCO caption metrics (`captioner.evaluation.coco_eval`) tokenise references and
generated captions with pycocoevalcap's PTB tokenizer (Stanford CoreNLP, Java)
and drop its punctuation tokens. A model can only match those reference words
if its vocabulary was built from the same words. For each candidate
standardisation ("caption -> standardise -> split on white space"), over the
COCO-style captions below (written for this benchmark: capitals, final periods,
commas, hyphenated words, possessives, contractions, stray white space, digits,
slashes, quotes, ampersands, brackets), against the PTB tokens of the same
captions:

- `ptb_tokens_reproduced`: share of PTB tokens the candidate also produces
  (multiset match per caption, micro-averaged over all tokens);
- `candidate_tokens_in_ptb`: the same share of the candidate's tokens;
- `identical_captions`: share of captions whose token list equals PTB's;
- `coco_bleu_4`, `coco_cider_d`: the COCO evaluation (`captioner.evaluation.coco_eval.score`,
  which PTB-tokenises both sides) of the standardised caption, joined with
  spaces, as the hypothesis and the original caption as its only reference:
  what a model that had learnt the caption perfectly in that vocabulary would
  score (1 and 10 when identical);
- `seconds_per_100k_captions`: time of the standardisation on CPU (best of 3).

Needs Java on PATH (the PTB tokenizer is Java); its progress lines go to stderr.
"""

import argparse
import collections
import json
import sys
import time

import tensorflow as tf
import tensorflow_text as tf_text

from captioner.evaluation import coco_eval
from captioner.data import tokenizer

CAPTIONS = [
    "A man in a red T-shirt riding a skateboard down the street.",
    "A close-up of a hot-dog with mustard and ketchup on a bun.",
    "Two dogs playing with a frisbee in the park.",
    "A woman's hand holding a cell phone.",
    "The dog's nose is pressed against the car window.",
    "People's luggage sitting on a conveyor belt at the airport.",
    "A two-story house with a white picket fence.",
    "There's a cat sleeping on top of a laptop keyboard.",
    "It's a sunny day at the beach with many umbrellas.",
    "This isn't a real giraffe, it's a statue.",
    "A kitchen with stainless steel appliances, granite counters and a sink.",
    "  A group of people standing around a table  .",
    'A bus that says "Out of Service" on its sign.',
    "A stop sign at the corner of 5th Ave. and Main St.",
    "A plate with broccoli, rice & chicken.",
    "A black & white photo of a train station.",
    "A man holding a sign that reads 'Free Hugs'.",
    "A giraffe (or two) standing next to a tree.",
    "A clock tower showing 12:30 in the afternoon.",
    "A pizza cut into 8 slices on a wooden board.",
    "The kids' toys are scattered on the living room floor.",
    "Several boys' bikes parked outside a school.",
    "A baseball player swinging a bat at a ball",
    "A double-decker bus driving down a city street.",
    "An old-fashioned street lamp next to a brick building.",
    "A little girl can't reach the top shelf.",
    "Two zebras grazing in a field; one is looking up.",
    "A bathroom with a toilet, sink, and shower/tub combo.",
    "A sign that says 'Don't feed the animals'.",
    "A man's reflection in a store window.",
    "A cat and a dog sleeping together on a couch!",
    "Is that a bird on the roof?",
    "A plane flying over a city at sunset...",
    "a red fire hydrant on the side of the road",
    "A young boy wearing a baseball cap and a blue t-shirt.",
    "A laptop, a mouse, and a cup of coffee on a desk.",
    "A surfer riding a wave in the ocean ",
    "A woman wearing a black-and-white striped shirt.",
    "A train traveling on tracks next to a 3-story building.",
    "A table set with plates, forks, knives, etc.",
    "The elephant's trunk is curled up.",
    "An elephant and its baby walking through the tall grass.",
    "They're riding horses on a dirt trail.",
    "We've got a bowl of fruit: apples, bananas and oranges.",
    "A teddy bear that's sitting on a bed.",
    "A bench in a park with trees in the background.",
    'A sign reads "No Parking 8AM-6PM".',
    "A cow standing in a field next to a barbed-wire fence.",
    "A skier going down a snow-covered slope.",
    "A man with a cellphone/camera taking a picture.",
    "A tennis player in a white shirt hits the ball.",
    "A kite flying high in the blue sky above the U.S. Capitol.",
    "A refrigerator with pictures and magnets on it's door.",
    "A man and woman's hands cutting a wedding cake.",
    "A stuffed animal sits in the driver's seat of a car.",
    "A parking meter that says $1.50 per hour.",
    "A donut shop's display case full of doughnuts.",
    "A 10-year-old boy flying a kite.",
    "A motorcycle parked in front of a store (closed).",
    "Dogs' leashes tied to a post outside a cafe.",
    "A little league game, with kids running to 1st base.",
    "A box of assorted donuts \u2014 glazed, chocolate and sprinkled.",
    "Several people walking in the rain with umbrellas , on a sidewalk .",
    "A large jet sitting on top of an airport tarmac",
    "Horses grazing in a field with mountains in the background",
    "There are 3 cats sitting on a window sill.",
    "A sandwich cut in half with lettuce, tomato, etc. on a plate.",
    "A man wearing a hat and sunglasses,smiling at the camera",
    "You'll see a bear in the woods.",
    "I'm looking at a red/white striped umbrella.",
    "An AT&T store on a busy street corner.",
    "A child's birthday cake with 5 candles on it.",
    "A room with a TV, a couch and a coffee table.",
    "A toilet that's been placed in the middle of a field??",
    "A man is sitting on a bench reading a newspaper .",
    "A girl with her mom\u2019s purse walking down the sidewalk.",
]

_SPLITTER = tf_text.WhitespaceTokenizer()


def old_rule(strings):
    """The rule until this benchmark: lower case, every ASCII punctuation character deleted."""
    return tf.strings.regex_replace(tf.strings.lower(strings, encoding="utf-8"), r"[[:punct:]]", "")


def spaces_rule(strings):
    """The naive fix: lower case, every ASCII punctuation character turned into a space."""
    return tf.strings.regex_replace(tf.strings.lower(strings, encoding="utf-8"), r"[[:punct:]]", " ")


CANDIDATES = {
    "old: punctuation deleted": old_rule,
    "punctuation to spaces": spaces_rule,
    "new: captioner.data.tokenizer.standardize (PTB rules)": tokenizer.standardize,
}


def tokens(rule, captions):
    return [[w.decode("utf-8") for w in words] for words in _SPLITTER.tokenize(rule(tf.constant(captions))).to_list()]


def ptb_tokens(captions):
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenized = PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(captions)})
    return [tokenized[i][0].split() for i in range(len(captions))]


def seconds_per_100k(rule, captions, repeat):
    batch = tf.constant((captions * (repeat // len(captions) + 1))[:repeat])
    rule(batch[:10])
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        rule(batch)
        best = min(best, time.perf_counter() - started)
    return best * 100000 / repeat


def evaluate(rule, captions, reference_tokens, repeat):
    candidate = tokens(rule, captions)
    matched = sum(sum((collections.Counter(c) & collections.Counter(r)).values())
                  for c, r in zip(candidate, reference_tokens))
    identical = [c == r for c, r in zip(candidate, reference_tokens)]
    scores, _ = coco_eval.score({i: [c] for i, c in enumerate(captions)},
                                {i: " ".join(words) for i, words in enumerate(candidate)}, use_java=True)
    differences = [{"caption": caption, "candidate": c, "ptb": r}
                   for caption, c, r, same in zip(captions, candidate, reference_tokens, identical) if not same]
    return {
        "ptb_tokens_reproduced": round(matched / sum(map(len, reference_tokens)), 4),
        "candidate_tokens_in_ptb": round(matched / sum(map(len, candidate)), 4),
        "identical_captions": round(sum(identical) / len(captions), 4),
        "identical_captions_count": f"{sum(identical)} of {len(captions)}",
        "coco_bleu_4": round(scores["coco_bleu_4"], 4),
        "coco_cider_d": round(scores["coco_cider_d"], 4),
        "seconds_per_100k_captions": round(seconds_per_100k(rule, captions, repeat), 3),
        "differences": differences,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=100000, help="captions in the timing batch")
    args = parser.parse_args()
    if not coco_eval.java_available():
        sys.exit("The PTB tokenizer needs Java: install a JRE (java on PATH).")
    reference_tokens = ptb_tokens(CAPTIONS)
    results = {name: evaluate(rule, CAPTIONS, reference_tokens, args.repeat) for name, rule in CANDIDATES.items()}
    print(json.dumps({"captions": len(CAPTIONS), "ptb_tokens": sum(map(len, reference_tokens)),
                      "reference": "pycocoevalcap PTBTokenizer, punctuation tokens dropped",
                      "candidates": results}, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
