"""Tables of captions as people write them: CSV (Excel's too), TSV and JSON Lines, read row by row with line numbers.

    read_table(path, separator=None)          -> `Table`: the header's columns, each row a dict with its line number
    find_column(table, given, candidates, ..) the column holding the images, or the captions
    captions_of(value)                        a cell -> its captions (a JSON list, in JSON Lines or in a CSV cell,
                                              is several)

CSV: a byte-order mark, CRLF line ends, quoted fields holding the separator,
doubled quotes and line breaks (as Excel writes them) are read as what they are.
The separator is `,`, a tab for `.tsv`/`.tab` files, or the one given (`;`,
`tab`, `|`, any single character). A header that holds no `,` but a `;` or a tab
is read with that one (the CSV of an Excel set to a European locale), and
`Table.notes` says so. A row whose opening quote never closes is counted and
reading goes on at its next line. JSON Lines (`.jsonl`, `.ndjson`, or any file
whose first character is `{`): one object per line. Text that is not UTF-8
stops with the line that is not. Whitespace in a caption (line breaks
included) becomes single spaces.
"""

import csv
import dataclasses
import io
import json
import os

from captioner.data.caption_files import Problems, read_lines
from captioner.data.coco import DatasetError

SEPARATORS = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")
TAB_SUFFIXES = (".tsv", ".tab")


@dataclasses.dataclass
class Table:
    """One table of captions.

    Args:
        path: str, the file.
        form: str, "csv" or "jsonl".
        separator: str or None, the CSV separator read with.
        columns: list of str, the header's columns (JSON Lines: every key, in order of first appearance).
        rows: list of `(line number, dict column -> value)`; a CSV row's fields past the header's are a list under
            the key None.
        problems: `captioner.data.caption_files.Problems`, lines that are not rows (quotes that do not close,
            invalid JSON).
        notes: list of str, how the file was read where it was not as asked.
    """

    path: str
    form: str
    separator: str
    columns: list
    rows: list
    problems: Problems
    notes: list

    def describe(self):
        if self.form == "jsonl":
            return "JSON Lines"
        if self.separator == "\t":
            return "TSV"
        return "CSV" + ("" if self.separator == "," else f", {self.separator!r}-separated")


def separator_of(text):
    """The one-character separator a `--separator` value names (`tab`, `;`, `comma`, ...); ValueError otherwise."""
    value = SEPARATORS.get(text.lower(), text) if isinstance(text, str) else text
    if not isinstance(value, str) or len(value) != 1 or value in "\"\r\n":
        raise ValueError(f"separator must be one character (',', ';', '|') or 'tab', got {text!r}")
    return value


def _text_lines(path):
    try:
        return read_lines(path)
    except DatasetError as error:
        raise DatasetError(f"{error}; save it as UTF-8 (Excel: Save As 'CSV UTF-8')") from None


def _csv_records(lines, delimiter, problems):
    """`(line number, fields)` of each CSV record; a record whose quotes do not close is counted, and reading
    starts again at its next line."""
    start = 0
    while start < len(lines):
        reader = csv.reader(io.StringIO("\n".join(lines[start:])), delimiter=delimiter, strict=True)
        previous = 0
        try:
            for fields in reader:
                if any(f.strip() for f in fields):
                    yield start + previous + 1, fields
                previous = reader.line_num
            return
        except csv.Error:
            problems.add("rows whose quotes do not close (or hold text after a closing quote)", start + previous + 1)
            start += previous + 1


def _json_rows(lines, problems):
    rows, columns = [], {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            problems.add("lines that are not valid JSON", number)
            continue
        if not isinstance(record, dict):
            problems.add("lines that are not a JSON object", number)
            continue
        columns.update(dict.fromkeys(record))
        rows.append((number, record))
    return list(columns), rows


def read_table(path, separator=None):
    """Reads a CSV, TSV or JSON Lines file of captions (see the module doc); returns a `Table`.

    Raises `DatasetError` for a file that does not exist, is not UTF-8, or has no header.
    """
    if not os.path.isfile(path):
        raise DatasetError(f"Missing captions file: {path} does not exist")
    lines = _text_lines(path)
    first = next((line for line in lines if line.strip()), None)
    if first is None:
        raise DatasetError(f"{path} is empty: expected a header row (e.g. file_name,text) and one row per caption")
    problems, notes = Problems(), []
    if path.lower().endswith(JSON_LINES_SUFFIXES) or first.lstrip().startswith("{"):
        columns, rows = _json_rows(lines, problems)
        if not rows:
            raise DatasetError(f"{path}: no line of it is a JSON object ({problems.summary()})")
        return Table(path, "jsonl", None, columns, rows, problems, notes)
    if separator is not None:
        delimiter = separator_of(separator)
    elif path.lower().endswith(TAB_SUFFIXES):
        delimiter = "\t"
    else:
        delimiter = ","
        if "," not in first:
            for other in (";", "\t"):
                if other in first:
                    delimiter = other
                    notes.append(f"read with {'a tab' if other == chr(9) else repr(other)} as the separator (the "
                                 f"header holds no ','; --separator sets it)")
                    break
    records = iter(_csv_records(lines, delimiter, problems))
    header = next(records, None)
    if header is None:
        raise DatasetError(f"{path}: no header row ({problems.summary()})")
    columns = [name.strip() or f"column {i + 1}" for i, name in enumerate(header[1])]
    rows = []
    for number, fields in records:
        row = dict(zip(columns, fields))
        if len(fields) > len(columns):
            row[None] = fields[len(columns):]
        rows.append((number, row))
    return Table(path, "csv", delimiter, columns, rows, problems, notes)


def find_column(table, given, candidates, what, flag):
    """The column of `table` named `given` (case and surrounding spaces ignored), else the first of `candidates`
    it has; a `DatasetError` naming the columns it has otherwise."""
    by_name = {}
    for column in table.columns:
        by_name.setdefault(column.strip().lower(), column)
    wanted = [given] if given else candidates
    for name in wanted:
        if name.strip().lower() in by_name:
            return by_name[name.strip().lower()]
    found = ", ".join(repr(c) for c in table.columns) or "none"
    if given:
        message = f"{table.path}: no {what} column {given!r} ({flag}); its columns are {found}"
    else:
        message = (f"{table.path}: no {what} column: expected one of {', '.join(candidates)} (or name it with "
                   f"{flag}); its columns are {found}")
    if table.form == "csv" and len(table.columns) == 1 and any(s in table.columns[0] for s in ";\t|,"):
        message += f" (read with {table.separator!r} as the separator: is it another? pass --separator)"
    raise DatasetError(message)


def captions_of(value):
    """`(captions, problem)`: a cell's captions (whitespace runs made single spaces, empty ones dropped) and None,
    or `([], reason)`. A list, or a string holding a JSON list of strings, is several captions."""
    if value is None:
        return [], "rows with an empty caption"
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                parsed = None
            if isinstance(parsed, list) and all(isinstance(c, str) for c in parsed):
                value = parsed
        if isinstance(value, str):
            value = [value]
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        return [], "rows whose caption is not text (or a list of texts)"
    captions = [" ".join(c.split()) for c in value]
    captions = [c for c in captions if c]
    return (captions, None) if captions else ([], "rows with an empty caption")
