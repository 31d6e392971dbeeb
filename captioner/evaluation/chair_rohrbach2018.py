"""CHAIR's MS COCO vocabulary as Rohrbach et al. 2018 count it: their synonym list and rules, their quirks kept.

The vocabulary "rohrbach2018" of `captioner.evaluation.chair` (the default);
see that module's docstring for what is counted and why.
"""

import functools
import re
import types

# The authors' data/synonyms.txt, line for line: a category's name, then the words that name it. Read as they
# read it (each line stripped and split on ", "), so their typos stay theirs: the double spaces before
# "motor bike" and "cheesecake" make entries " motor bike" and " cheesecake" that no word matches, and the
# repeated entries (bike, scooter, jetliner, lamb, cattle, fridge, toilet, ...) change nothing. Only the two
# trailing spaces of the file, which their strip() removes, are left out here.
ROHRBACH2018_SYNONYMS = """\
person, girl, boy, man, woman, kid, child, chef, baker, people, adult, rider, children, baby, worker, passenger, sister, biker, policeman, cop, officer, lady, cowboy, bride, groom, male, female, guy, traveler, mother, father, gentleman, pitcher, player, skier, snowboarder, skater, skateboarder, person, woman, guy, foreigner, child, gentleman, caller, offender, coworker, trespasser, patient, politician, soldier, grandchild, serviceman, walker, drinker, doctor, bicyclist, thief, buyer, teenager, student, camper, driver, solider, hunter, shopper, villager
bicycle, bike, bicycle, bike, unicycle, minibike, trike
car, automobile, van, minivan, sedan, suv, hatchback, cab, jeep, coupe, taxicab, limo, taxi
motorcycle, scooter,  motor bike, motor cycle, motorbike, scooter, moped
airplane, jetliner, plane, air plane, monoplane, aircraft, jet, jetliner, airbus, biplane, seaplane
bus, minibus, trolley
train, locomotive, tramway, caboose
truck, pickup, lorry, hauler, firetruck
boat, ship, liner, sailboat, motorboat, dinghy, powerboat, speedboat, canoe, skiff, yacht, kayak, catamaran, pontoon, houseboat, vessel, rowboat, trawler, ferryboat, watercraft, tugboat, schooner, barge, ferry, sailboard, paddleboat, lifeboat, freighter, steamboat, riverboat, battleship, steamship
traffic light, street light, traffic signal, stop light, streetlight, stoplight
fire hydrant, hydrant
stop sign
parking meter
bench, pew
bird, ostrich, owl, seagull, goose, duck, parakeet, falcon, robin, pelican, waterfowl, heron, hummingbird, mallard, finch, pigeon, sparrow, seabird, osprey, blackbird, fowl, shorebird, woodpecker, egret, chickadee, quail, bluebird, kingfisher, buzzard, willet, gull, swan, bluejay, flamingo, cormorant, parrot, loon, gosling, waterbird, pheasant, rooster, sandpiper, crow, raven, turkey, oriole, cowbird, warbler, magpie, peacock, cockatiel, lorikeet, puffin, vulture, condor, macaw, peafowl, cockatoo, songbird
cat, kitten, feline, tabby
dog, puppy, beagle, pup, chihuahua, schnauzer, dachshund, rottweiler, canine, pitbull, collie, pug, terrier, poodle, labrador, doggie, doberman, mutt, doggy, spaniel, bulldog, sheepdog, weimaraner, corgi, cocker, greyhound, retriever, brindle, hound, whippet, husky
horse, colt, pony, racehorse, stallion, equine, mare, foal, palomino, mustang, clydesdale, bronc, bronco
sheep, lamb, ram, lamb, goat, ewe
cow, cattle, oxen, ox, calf, cattle, holstein, heifer, buffalo, bull, zebu, bison
elephant
bear, panda
zebra
giraffe
backpack, knapsack
umbrella
handbag, wallet, purse, briefcase
tie, bow, bow tie
suitcase, suit case, luggage
frisbee
skis, ski
snowboard
sports ball, ball
kite
baseball bat
baseball glove
skateboard
surfboard, longboard, skimboard, shortboard, wakeboard
tennis racket, racket
bottle
wine glass
cup
fork
knife, pocketknife, knive
spoon
bowl, container
banana
apple
sandwich, burger, sub, cheeseburger, hamburger
orange
broccoli
carrot
hot dog
pizza
donut, doughnut, bagel
cake,  cheesecake, cupcake, shortcake, coffeecake, pancake
chair, seat, stool
couch, sofa, recliner, futon, loveseat, settee, chesterfield
potted plant, houseplant
bed
dining table, table, desk
toilet, urinal, commode, toilet, lavatory, potty
tv, monitor, televison, television
laptop, computer, notebook, netbook, lenovo, macbook, laptop computer
mouse
remote
keyboard
cell phone, mobile phone, phone, cellphone, telephone, phon, smartphone, iPhone
microwave
oven, stovetop, stove, stove top oven
toaster
sink
refrigerator, fridge, fridge, freezer
book
clock
vase
scissors
teddy bear, teddybear
hair drier, hairdryer
toothbrush"""

# Their "double words": two (singularised) words that are read as one. Listed as they list them, the repeats
# and "stove top oven" (three words, so it never matches two) included; "home plate" and "train track" name
# no object and only keep "plate" and "train" from being read alone.
ROHRBACH2018_DOUBLE_WORDS = (
    "motor bike", "motor cycle", "air plane", "traffic light", "street light", "traffic signal", "stop light",
    "fire hydrant", "stop sign", "parking meter", "suit case", "sports ball", "baseball bat", "baseball glove",
    "tennis racket", "wine glass", "hot dog", "cell phone", "mobile phone", "teddy bear", "hair drier",
    "potted plant", "bow tie", "laptop computer", "stove top oven", "hot dog", "teddy bear", "home plate",
    "train track")
# "baby WORD" and "adult WORD" are WORD ("baby", "adult" would be a person); "passenger WORD" is WORD.
ROHRBACH2018_ANIMALS = ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe",
                        "animal", "cub")
ROHRBACH2018_VEHICLES = ("jet", "train")
# Set last, over the pairs above: pattern makes "glass" "glas", so "wine glass" reaches the rules as "wine glas".
ROHRBACH2018_PAIRS = (("bow tie", "tie"), ("toilet seat", "toilet"), ("wine glas", "wine glass"))


@functools.cache
def rohrbach2018_vocabulary():
    """The authors' tables: `(objects, pairs)`, read-only.

    objects maps every entry of `ROHRBACH2018_SYNONYMS` to its line's category
    (their `inverse_synonym_dict`); pairs maps two words joined by a space to the
    word they are read as (their `double_word_dict`).
    """
    objects = {}
    for line in ROHRBACH2018_SYNONYMS.split("\n"):
        entries = line.strip().split(", ")
        for entry in entries:
            objects[entry] = entries[0]
    pairs = {phrase: phrase for phrase in ROHRBACH2018_DOUBLE_WORDS}
    for animal in ROHRBACH2018_ANIMALS:
        pairs[f"baby {animal}"] = animal
        pairs[f"adult {animal}"] = animal
    for vehicle in ROHRBACH2018_VEHICLES:
        pairs[f"passenger {vehicle}"] = vehicle
    pairs.update(ROHRBACH2018_PAIRS)
    return types.MappingProxyType(objects), types.MappingProxyType(pairs)


@functools.cache
def _nltk_tokenizers():
    from nltk.tokenize.destructive import NLTKWordTokenizer
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    return PunktSentenceTokenizer(), NLTKWordTokenizer()


def word_tokenize(text):
    """`nltk.word_tokenize` without its data: Punkt sentences, then nltk's Treebank-style words in each.

    `nltk.word_tokenize` splits sentences with the English Punkt model (data that
    has to be downloaded); Punkt's rules without a model make the same splits
    except after an abbreviation that the model knows ("dr.", "st."), which
    keeps its period there and loses it here: a mention differs only where such
    an abbreviation is also a word of the synonym list. Splitting sentences
    first matters: the word tokenizer takes a period off the end of a sentence
    only, so "a man. a dog" reads "man".
    """
    sentences, words = _nltk_tokenizers()
    return [token for sentence in sentences.tokenize(text) for token in words.tokenize(sentence)]


# pattern.en.singularize (Pattern 2.6, CLiPS, BSD; its rules adapted from Bermi Ferrer's Inflector, MIT), as the
# authors' code calls it on every word: the same tables and the same order of checks, their quirks kept (the
# missing commas that join "wildebeest" "carp", "water" "cheese" and "zombie" "bogie"; "^pie" and "^tie",
# which never match; the suffix tests below, which run the wrong way round or return the plural).
_PLURAL_PREPOSITIONS = frozenset((
    "about", "before", "during", "of", "till", "above", "behind", "except", "off", "to", "across", "below", "for",
    "on", "under", "after", "beneath", "from", "onto", "until", "among", "beside", "in", "out", "unto", "around",
    "besides", "into", "over", "upon", "at", "between", "near", "since", "with", "athwart", "betwixt", "beyond",
    "but", "by"))
_SINGULAR_UNINFLECTED = frozenset((
    "bison", "debris", "headquarters", "pincers", "trout", "bream", "diabetes", "herpes", "pliers", "tuna",
    "breeches", "djinn", "high-jinks", "proceedings", "whiting", "britches", "eland", "homework", "rabies",
    "wildebeestcarp", "elk", "innings", "salmon", "chassis", "flounder", "jackanapes", "scissors", "christmas",
    "gallows", "mackerel", "series", "clippers", "georgia", "measles", "shears", "cod", "graffiti", "mews",
    "species", "contretemps", "mumps", "swine", "corps", "news", "swiss"))
_SINGULAR_UNCOUNTABLE = frozenset((
    "advice", "equipment", "happiness", "luggage", "news", "software", "bread", "fruit", "information",
    "mathematics", "progress", "understanding", "butter", "furniture", "ketchup", "mayonnaise", "research",
    "watercheese", "garbage", "knowledge", "meat", "rice", "electricity", "gravel", "love", "mustard", "sand"))
_SINGULAR_IE = frozenset((
    "alergie", "cutie", "hoagie", "newbie", "softie", "veggie", "auntie", "doggie", "hottie", "nightie", "sortie",
    "weenie", "beanie", "eyrie", "indie", "oldie", "stoolie", "yuppie", "birdie", "freebie", "junkie", "^pie",
    "sweetie", "zombiebogie", "goonie", "laddie", "pixie", "techie", "bombie", "groupie", "laramie", "quickie",
    "^tie", "collie", "hankie", "lingerie", "reverie", "toughie", "cookie", "hippie", "meanie", "rookie",
    "valkyrie"))
_SINGULAR_IRREGULAR = types.MappingProxyType({
    "atlantes": "atlas", "atlases": "atlas", "axes": "axe", "beeves": "beef", "brethren": "brother",
    "children": "child", "corpora": "corpus", "corpuses": "corpus", "ephemerides": "ephemeris", "feet": "foot",
    "ganglia": "ganglion", "geese": "goose", "genera": "genus", "genii": "genie", "graffiti": "graffito",
    "helves": "helve", "kine": "cow", "leaves": "leaf", "loaves": "loaf", "men": "man", "mongooses": "mongoose",
    "monies": "money", "moves": "move", "mythoi": "mythos", "numena": "numen", "occipita": "occiput",
    "octopodes": "octopus", "opera": "opus", "opuses": "opus", "our": "my", "oxen": "ox", "penes": "penis",
    "penises": "penis", "people": "person", "sexes": "sex", "soliloquies": "soliloquy", "teeth": "tooth",
    "testes": "testis", "trilbys": "trilby", "turves": "turf", "zoa": "zoon"})
_SINGULAR_RULES = tuple((re.compile(pattern), replacement) for pattern, replacement in (
    (r"(?i)(.)ae$", r"\1a"), (r"(?i)(.)itis$", r"\1itis"), (r"(?i)(.)eaux$", r"\1eau"),
    (r"(?i)(quiz)zes$", r"\1"), (r"(?i)(matr)ices$", r"\1ix"), (r"(?i)(ap|vert|ind)ices$", r"\1ex"),
    (r"(?i)^(ox)en", r"\1"), (r"(?i)(alias|status)es$", r"\1"), (r"(?i)([octop|vir])i$", r"\1us"),
    (r"(?i)(cris|ax|test)es$", r"\1is"), (r"(?i)(shoe)s$", r"\1"), (r"(?i)(o)es$", r"\1"),
    (r"(?i)(bus)es$", r"\1"), (r"(?i)([m|l])ice$", r"\1ouse"), (r"(?i)(x|ch|ss|sh)es$", r"\1"),
    (r"(?i)(m)ovies$", r"\1ovie"), (r"(?i)(.)ombies$", r"\1ombie"), (r"(?i)(s)eries$", r"\1eries"),
    (r"(?i)([^aeiouy]|qu)ies$", r"\1y"),
    # -f, -fe sometimes take -ves in the plural (lives, wolves).
    (r"([aeo]l)ves$", r"\1f"), (r"([^d]ea)ves$", r"\1f"), (r"arves$", "arf"), (r"erves$", "erve"),
    (r"([nlw]i)ves$", r"\1fe"), (r"(?i)([lr])ves$", r"\1f"), (r"([aeo])ves$", r"\1ve"), (r"(?i)(sive)s$", r"\1"),
    (r"(?i)(tive)s$", r"\1"), (r"(?i)(hive)s$", r"\1"), (r"(?i)([^f])ves$", r"\1fe"),
    # -ses suffixes.
    (r"(?i)(^analy)ses$", r"\1sis"),
    (r"(?i)((a)naly|(b)a|(d)iagno|(p)arenthe|(p)rogno|(s)ynop|(t)he)ses$", r"\1\2sis"),
    (r"(?i)(.)opses$", r"\1opsis"), (r"(?i)(.)yses$", r"\1ysis"), (r"(?i)(h|d|r|o|n|b|cl|p)oses$", r"\1ose"),
    (r"(?i)(fruct|gluc|galact|lact|ket|malt|rib|sacchar|cellul)ose$", r"\1ose"), (r"(?i)(.)oses$", r"\1osis"),
    # -a
    (r"(?i)([ti])a$", r"\1um"), (r"(?i)(n)ews$", r"\1ews"), (r"(?i)s$", ""),
))


@functools.lru_cache(maxsize=65536)
def singularize(word):
    """The singular of a word as `pattern.en.singularize` makes it ("dogs" -> "dog", "people" -> "person").

    Pattern's rules, not English: "bus" -> "bu", "glass" -> "glas", "ties" -> "ty", and any word is changed,
    noun or not ("is" stays, "this" -> "thi"). An unmatched group of a rule is replaced by nothing, as pattern
    arranges by hand.
    """
    if "-" in word:  # compound words: mothers-in-law
        parts = word.split("-")
        if len(parts) > 1 and parts[1] in _PLURAL_PREPOSITIONS:
            return singularize(parts[0]) + "-" + "-".join(parts[1:])
    if word.endswith("'"):  # dogs' -> dog's
        return singularize(word[:-1]) + "'s"
    lower = word.lower()
    # A word that ends one of these (not: that one of these ends) is returned as it is.
    if any(entry.endswith(lower) for entry in _SINGULAR_UNINFLECTED | _SINGULAR_UNCOUNTABLE):
        return word
    if any(lower.endswith(entry + "s") for entry in _SINGULAR_IE):
        return lower  # the plural, lower cased
    for plural_form, singular in _SINGULAR_IRREGULAR.items():
        if lower.endswith(plural_form):
            return re.sub(f"(?i){plural_form}$", singular, word)
    for suffix, replacement in _SINGULAR_RULES:
        if suffix.search(word):
            return suffix.sub(replacement, word)
    return word


def rohrbach2018_object_words(caption):
    """The object mentions of one caption as the authors' code finds them, in caption order.

    Args:
        caption: str.

    Returns:
        list of `(word, category)`: the (singularised, merged) word of the synonym list and its COCO category.
    """
    objects, pairs = rohrbach2018_vocabulary()
    words = [singularize(word) for word in word_tokenize(caption.lower())]
    merged, index = [], 0
    while index < len(words):  # two words that are one, left to right
        pair = " ".join(words[index:index + 2])
        if pair in pairs:
            merged.append(pairs[pair])
            index += 2
        else:
            merged.append(words[index])
            index += 1
    if "toilet" in merged and "seat" in merged:  # "the seat of the toilet" is no chair
        merged = [word for word in merged if word != "seat"]
    return [(word, objects[word]) for word in merged if word in objects]


def rohrbach2018_mentions(captions):
    """COCO categories that each caption mentions as the authors count them, one per mention.

    Args:
        captions: list of str.

    Returns:
        list (one per caption) of lists of category names.
    """
    return [[category for _, category in rohrbach2018_object_words(caption)] for caption in captions]
