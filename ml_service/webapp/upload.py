"""A CSV file a person uploads: checked against the model's fields, and written back scored.

Every refusal names the column and the row (row 1 is the header, as a spreadsheet counts),
so the file can be fixed where it is wrong.
"""
import csv
import io
import math
from typing import Dict, List, Sequence, Tuple


class UploadError(ValueError):
    """The file cannot be scored; the message names what to fix."""


def read_rows(content: bytes, fields: Sequence[str], max_bytes: int, max_rows: int
              ) -> Tuple[List[str], List[List[str]], List[List[float]]]:
    """The file's header, its rows as written, and the model's columns as numbers."""
    if len(content) > max_bytes:
        raise UploadError(f"The file has {len(content):,} bytes; the limit is {max_bytes:,}. "
                          "Split it into smaller files.")
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UploadError(f"The file is not UTF-8 text (byte {err.start + 1} is not). Save "
                          "it as CSV UTF-8.") from None
    lines = list(csv.reader(io.StringIO(text)))
    if not lines or not any(cell.strip() for cell in lines[0]):
        raise UploadError("The file is empty: it needs a header row with the columns "
                          f"{', '.join(fields)}.")
    header = [cell.strip() for cell in lines[0]]
    missing = [name for name in fields if name not in header]
    if missing:
        raise UploadError(f"Column {missing[0]!r} is missing (the header row has "
                          f"{', '.join(header) or 'nothing'}). The file needs the columns "
                          f"{', '.join(fields)}.")
    rows = [line for line in lines[1:] if any(cell.strip() for cell in line)]
    if not rows:
        raise UploadError("The file has a header but no rows to score.")
    if len(rows) > max_rows:
        raise UploadError(f"The file has {len(rows):,} rows; the limit is {max_rows:,}. "
                          "Split it into smaller files.")
    positions = [header.index(name) for name in fields]
    numbers = [[_number(line, position, name, number)
                for position, name in zip(positions, fields)]
               for number, line in enumerate(rows, start=2)]
    return header, rows, numbers


def _number(line: List[str], position: int, name: str, row: int) -> float:
    value = line[position].strip() if position < len(line) else ""
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        shown = repr(value[:40]) if value else "empty"
        raise UploadError(f"Row {row}, column {name!r}: {shown} is not a number.")
    return number


def scored_csv(header: List[str], rows: List[List[str]], answer: Dict[str, List]) -> bytes:
    """The uploaded rows with the answer's columns added (prediction, and for a classifier
    its label when asked)."""
    extra = [key for key in answer]
    names = ["prediction" if key == "result" else key for key in extra]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header + names)
    for index, line in enumerate(rows):
        writer.writerow(list(line) + [answer[key][index] for key in extra])
    return out.getvalue().encode("utf-8")
