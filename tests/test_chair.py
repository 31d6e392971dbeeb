"""CHAIR (Rohrbach et al. 2018): hand-counted rates on COCO and Shapes captions, the instances loader, evaluate."""

import json
import os

import pytest
from PIL import Image

from captioner import evaluate
from captioner.evaluation import chair
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


def test_the_vocabulary_names_the_80_coco_categories():
    assert len(set(COCO_CATEGORIES)) == 80 and set(chair.COCO_SYNONYMS) == set(COCO_CATEGORIES)
    vocabulary = chair.coco_vocabulary()
    assert set(filter(None, vocabulary.values())) == set(COCO_CATEGORIES)
    assert vocabulary[("hot", "dogs")] == "hot dog" and vocabulary[("women",)] == "person"
    assert vocabulary[("baby", "elephants")] == "elephant" and vocabulary[("train", "tracks")] is None
    assert [chair.plural(w) for w in ("bus", "lady", "guy", "knife", "policeman", "wine glass", "skis")] == \
        ["buses", "ladies", "guys", "knives", "policemen", "wine glasses", "skis"]


def test_mentions_take_the_longest_phrase_synonyms_and_plurals():
    captions = ["Two Hot-Dogs next to a teddy bear on a dining table.",
                "A man riding a motor bike past a stop sign and three kittens",
                "a baby elephant and an adult giraffe near a passenger train on the train tracks",
                "a man in an orange shirt holding an orange and oranges",
                "an orange and white cat on a microwave oven",
                "a catcher's mitt, a baseball bat and a cell phone"]
    assert chair.coco_mentions(captions) == [
        ["hot dog", "teddy bear", "dining table"],
        ["person", "motorcycle", "stop sign", "cat"],
        ["elephant", "giraffe", "train"],  # no person: "baby", "adult", "passenger" qualify the animal, the train
        ["person", "orange", "orange"],  # the shirt's orange is a colour
        ["cat", "microwave"],
        ["baseball glove", "baseball bat", "cell phone"]]


def test_chair_rates_on_hand_made_captions():
    captions = ["Two women eating hot dogs at a dining table.",
                "A teddy bear sitting on a bed next to two kittens.",
                "A guy riding a motor bike with a puppy, another dog and bikes",
                "a plate of food on a wooden surface"]
    truths = [{"person", "hot dog", "dining table"},  # "hot dogs" would be a hallucinated dog if read as "dog"
              {"teddy bear", "bed"},  # no cat: "kittens" is one hallucinated mention
              {"person", "motorcycle"},  # puppy and dog: two mentions of a dog; "bikes": a bicycle
              {"dining table"}]  # no object named: no mention, no hallucination
    figures, hallucinated = chair.chair(captions, truths)
    assert hallucinated == [[], ["cat"], ["dog", "dog", "bicycle"], []]
    # Mentions: 3 + 3 + 5 + 0 = 11, of which 0 + 1 + 3 = 4 hallucinated; 2 of 4 captions hallucinate.
    assert figures == {"chair_i": 4 / 11, "chair_s": 2 / 4, "chair_mentions": 11, "chair_hallucinated_mentions": 4,
                       "chair_captions": 4, "chair_hallucinated_captions": 2}
    # The references' objects are ground truth too: "a cat" in a reference clears caption 2's kittens.
    references = [["two women at a table"], ["a teddy bear and a cat on a bed"], ["a man on a motorcycle"], []]
    truths = chair.ground_truth(truths, references, chair.coco_mentions)
    assert truths[1] == {"teddy bear", "bed", "cat"} and truths[3] == {"dining table"}
    figures, _ = chair.chair(captions, truths)
    assert (figures["chair_i"], figures["chair_s"]) == (3 / 11, 1 / 4)
    with pytest.raises(ValueError, match="2 captions but 1"):
        chair.chair(["a", "b"], [set()])


def test_chair_on_shapes_captions():
    captions = ["there are two red circles and a blue square",
                "a green cross above a red circle",
                "a small orange diamond in the center",
                "a blue square and a blue square"]
    objects = [[("red", "circle"), ("red", "circle"), ("blue", "square")], [("green", "cross")],
               [("orange", "triangle")], [("blue", "square")]]
    truths = [{chair.shapes_key(*o) for o in image} for image in objects]
    assert chair.shapes_mentions(captions[:1]) == [["red circle", "blue square"]]  # a plural phrase: one mention
    figures, hallucinated = chair.chair(captions, truths, chair.shapes_mentions)
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
    assert saved["chair_vocabulary"].startswith("Shapes")
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


def test_evaluate_on_an_ms_coco_tree_through_the_karpathy_split(quick_run, tmp_path, capsys):
    # A run evaluated on another root shaped like MS COCO 2014 (the rehearsal tree: greyscale and portrait
    # JPEGs, 5-7 captions, instances, Karpathy's file): CHAIR reads instances_val2014.json for the test split.
    from captioner.data.synthetic import rehearsal

    tree = rehearsal.build(str(tmp_path / "coco"), scale=0.002, pool=8, progress=False).root
    out = tmp_path / "eval"
    assert evaluate.main([quick_run, "--data-root", tree, "--karpathy-json", os.path.join(tree, "dataset_coco.json"),
                          "--split", "test", "--beam-size", "3", "--no-java", "--output-dir", str(out)]) == 0
    saved = json.load(open(out / "metrics.json"))
    test = coco.read_split(tree, "test", os.path.join(tree, "dataset_coco.json"))
    assert saved["images"] == len(test.examples) == 10 and saved["chair_vocabulary"].startswith("MS COCO")
    # The Shapes model names no COCO object; the references' objects count as present (as in the authors' code).
    assert saved["chair_mentions"] == 0 and saved["chair_i"] == 0.0 and saved["chair_s"] == 0.0
    assert "object_f1" not in saved  # not Shapes data
    # A damaged instances file leaves CHAIR out, with the reason, and the evaluation still succeeds.
    with open(os.path.join(tree, "annotations", "instances_val2014.json"), "w") as handle:
        handle.write("{")
    assert evaluate.main([quick_run, "--data-root", tree, "--karpathy-json", os.path.join(tree, "dataset_coco.json"),
                          "--split", "test", "--no-java", "--output-dir", str(tmp_path / "again")]) == 0
    assert "chair_i" not in json.load(open(tmp_path / "again" / "metrics.json"))
    assert "CHAIR left out: Malformed JSON in instances file" in capsys.readouterr().err
