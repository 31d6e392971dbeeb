"""Flickr8k and Flickr30k caption files in every format they are distributed in, read into captions per image.

    Flickr8k.token.txt, results_20130124.token   `name.jpg#k<TAB>caption` lines
    captions.txt (Kaggle)                        `image,caption` CSV, or `image_name,comment_number,comment`
    results.csv (Flickr30k)                      `image_name| comment_number| comment`

The format is told from the first lines (`sniff`). Unusable lines are skipped
and counted by reason with their line numbers (`Problems`); a byte-order mark
and CRLF or CR line ends are read as what they are (`read_lines`). The layouts
these files sit in, and the splits, are `captioner.data.flickr`'s.
"""

import csv
import dataclasses
import re

from captioner.data.coco import DatasetError

CAPTIONS_PER_IMAGE = 5  # `#k` and `comment_number` run over 0-4


class Problems:
    """Skipped lines of one file: a count and the first line numbers per reason."""

    def __init__(self):
        self.lines = {}

    def add(self, reason, line_number):
        self.lines.setdefault(reason, []).append(line_number)

    def __bool__(self):
        return bool(self.lines)

    def summary(self):
        parts = []
        for reason, numbers in self.lines.items():
            shown = ", ".join(map(str, numbers[:3])) + (", ..." if len(numbers) > 3 else "")
            parts.append(f"{len(numbers)} {reason} (line{'s' if len(numbers) > 1 else ''} {shown})")
        return "; ".join(parts)


@dataclasses.dataclass
class Captions:
    """The captions of one caption file.

    Args:
        path: str, the file.
        form: str, the format it was read as (a key of `FORMS`).
        by_image: dict file name -> list of captions (in `k` order where the file numbers them).
        problems: `Problems`, the lines skipped.
        repaired: int, rows of a `results.csv` with the `|` before the comment missing, read all the same.
    """

    path: str
    form: str
    by_image: dict
    problems: Problems
    repaired: int = 0

    @property
    def count(self):
        return sum(len(c) for c in self.by_image.values())


FORMS = {
    "token": "`name.jpg#k<TAB>caption` lines",
    "csv": "an `image,caption` header and one `name.jpg,caption` row per caption",
    "pipe": "an `image_name| comment_number| comment` header and one `name.jpg| k| caption` row per caption",
    "csv3": "an `image_name,comment_number,comment` header and one `name.jpg,k,caption` row per caption",
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
NUMBERED_HEADER = ["image_name", "comment_number", "comment"]


def read_lines(path):
    """The file's lines: a byte-order mark dropped, CRLF and CR line ends read as line ends."""
    with open(path, "rb") as handle:
        raw = handle.read()
    bom = 3 if raw.startswith(b"\xef\xbb\xbf") else 0
    try:
        text = raw[bom:].decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[:bom + error.start].count(b"\n") + 1
        raise DatasetError(f"{path} is not UTF-8 text: line {line} (byte {bom + error.start}) cannot be decoded "
                           f"({error.reason})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _csv_fields(line):
    """One CSV row (captions quoted where they hold commas), or None if its quotes do not close."""
    try:
        return next(csv.reader([line], strict=True), [])
    except csv.Error:
        return None


def _form_of(line):
    pipes = [f.strip().lower() for f in line.split("|")]
    commas = [f.strip().lower() for f in line.split(",")]
    if pipes[:2] == NUMBERED_HEADER[:2]:
        return "pipe"
    if commas[:2] == NUMBERED_HEADER[:2]:
        return "csv3"
    if "\t" in line:
        return "token"
    if commas[:2] == ["image", "caption"]:
        return "csv"
    if len(pipes) == 3:
        return "pipe"
    if re.match(r"\S+#\d+\s", line):
        return "token"  # with the tab missing: `parse_token` counts the line
    if len(commas) > 1 and commas[0].endswith(IMAGE_SUFFIXES):
        return "csv"  # without its header
    return None


def sniff(path, lines):
    """The format of a caption file, from the first of its first ten non-blank lines that tells."""
    first = [line for line in lines[:1000] if line.strip()][:10]
    if not first:
        raise DatasetError(f"{path} is empty: expected Flickr captions, {FORMS['token']}")
    for line in first:
        form = _form_of(line)
        if form:
            return form
    raise DatasetError(f"{path}: cannot tell its format from its first lines ({first[0][:80]!r}); expected "
                       f"{', or '.join(FORMS.values())}")


def _numbered_caption(captions, seen, problems, number, name, k_text, caption):
    """Files that number captions (token, pipe, csv3): checks `k` and repeats, then keeps the caption."""
    if not name:
        problems.add("lines without an image name", number)
        return
    if not re.fullmatch(r"[0-9]+", k_text) or int(k_text) >= CAPTIONS_PER_IMAGE:
        problems.add(f"lines with a caption number outside 0-{CAPTIONS_PER_IMAGE - 1}", number)
        return
    if not caption:
        problems.add("lines with an empty caption", number)
        return
    key = (name, int(k_text))
    if key in seen:
        if seen[key] == caption:
            problems.add("repeated lines", number)
        else:
            problems.add("second captions under one name#k (the first kept)", number)
        return
    seen[key] = caption
    captions.setdefault(name, {})[int(k_text)] = caption


def _in_k_order(captions):
    return {name: [c for _, c in sorted(numbered.items())] for name, numbered in captions.items()}


def parse_token(path, lines):
    """`name.jpg#k<TAB>caption` lines (Flickr8k.token.txt, results_20130124.token)."""
    problems, seen, captions = Problems(), {}, {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if "\t" not in line:
            problems.add("lines without a tab between name#k and caption", number)
            continue
        key, caption = line.split("\t", 1)
        name, hash_sign, k_text = key.rpartition("#")
        if not hash_sign:
            problems.add("lines without #k after the image name", number)
            continue
        _numbered_caption(captions, seen, problems, number, name.strip(), k_text.strip(), caption.strip())
    return Captions(path, "token", _in_k_order(captions), problems)


def parse_numbered(path, lines, form):
    """`image_name| comment_number| comment` rows (Flickr30k's results.csv) or their comma-separated kind."""
    problems, seen, captions, repaired, first = Problems(), {}, {}, 0, True
    separator = "|" if form == "pipe" else ","
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if form == "pipe":
            fields = line.split("|", 2)
        else:
            fields = _csv_fields(line)
            if fields is None:
                problems.add("rows whose quotes do not close", number)
                continue
            fields = fields[:2] + [",".join(fields[2:])] if len(fields) > 2 else fields
        fields = [f.strip() for f in fields]
        if first:
            first = False
            if [f.lower() for f in fields[:2]] == NUMBERED_HEADER[:2]:
                continue
        if len(fields) == 2 and form == "pipe":
            # One row of the widely shared results.csv lacks the "|" before its comment: "name| 4 A dog ...".
            match = re.fullmatch(r"([0-9]+)\s+(.*)", fields[1])
            if match:
                fields, repaired = [fields[0], match.group(1), match.group(2)], repaired + 1
        if len(fields) < 3:
            problems.add(f"rows without three {separator}-separated fields", number)
            continue
        _numbered_caption(captions, seen, problems, number, *fields)
    return Captions(path, form, _in_k_order(captions), problems, repaired)


def parse_csv(path, lines):
    """An `image,caption` CSV (Flickr8k's captions.txt re-packaging); captions keep their file order.

    Rows carry no caption number: a row equal to an earlier one of its image is kept while the image has
    fewer than five captions (people do write the same sentence twice), and counted as repeated after.
    """
    problems, captions, first = Problems(), {}, True
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        row = _csv_fields(line)
        if row is None:
            problems.add("rows whose quotes do not close", number)
            continue
        if first:
            first = False
            header = [f.strip().lower() for f in row]
            if header[:2] == ["image", "caption"]:
                continue
            if not header[0].endswith(IMAGE_SUFFIXES):
                raise DatasetError(f"{path}: unknown header {line[:80]!r}; expected {FORMS['csv']}, or "
                                   f"{FORMS['csv3']}")
        if len(row) < 2:
            problems.add("rows without a comma between image and caption", number)
            continue
        # An unquoted caption with commas is split by the reader: its fields are one caption.
        name, caption = row[0].strip(), ",".join(row[1:]).strip()
        if not name:
            problems.add("rows without an image name", number)
        elif not caption:
            problems.add("rows with an empty caption", number)
        elif caption in captions.get(name, ()) and len(captions[name]) >= CAPTIONS_PER_IMAGE:
            problems.add("repeated rows", number)
        else:
            captions.setdefault(name, []).append(caption)
    return Captions(path, "csv", captions, problems)


def read_captions(path):
    """Reads a Flickr caption file in any of its formats; returns `Captions`.

    Raises `DatasetError` when no line of it is usable.
    """
    lines = read_lines(path)
    form = sniff(path, lines)
    if form == "token":
        captions = parse_token(path, lines)
    elif form == "csv":
        captions = parse_csv(path, lines)
    else:
        captions = parse_numbered(path, lines, form)
    if not captions.by_image:
        found = f"; skipped: {captions.problems.summary()}" if captions.problems else ""
        raise DatasetError(f"{path}: no usable caption in it; read as {FORMS[form]}{found}")
    return captions


def read_name_list(path):
    """Image names of a split file, one per line (blank lines, BOM, CRLF and repeats tolerated)."""
    return list(dict.fromkeys(line.strip() for line in read_lines(path) if line.strip()))
