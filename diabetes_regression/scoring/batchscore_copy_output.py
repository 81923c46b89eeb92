"""Batch scoring, second step: turn ParallelRunStep's output into the scoring output CSV.

    python diabetes_regression/scoring/batchscore_copy_output.py --scored_rows DIR \\
        --scoring_input INPUT --output_dir OUT [--output_file_name scores.csv]

ParallelRunStep's ``append_row`` action writes every row ``run()`` returns to one file
(``parallel_run_step.txt``), space-separated (pandas' ``to_csv``, quoting fields that
contain a space) and without a header. This step writes it as a comma-separated file
with a header: the scoring input's columns, then ``prediction`` and ``error``; it reads
the header from the first line of the scoring input (a file, or the first CSV file
under a folder). The output folder is the step's OutputFileDatasetConfig, uploaded by
Azure ML to the scoring output location on the datastore.

ParallelRunStep appends mini-batches as they finish, so rows are not in input order;
carry an id column in the input to match them up. A row with a different number of
fields than the header announces is an error that names it; the output is written to
a temporary file and renamed, so a failed step leaves no partial file.
"""
import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

import pandas as pd

from diabetes_regression.scoring.parallel_batchscore import OUTPUT_COLUMNS
from ml_service.util.cli import run_cli

LOGGER = logging.getLogger(__name__)
APPEND_ROW_FILE_NAME = "parallel_run_step.txt"
APPEND_ROW_SEPARATOR = " "
DEFAULT_OUTPUT_FILE_NAME = "diabetes_scoring_output.csv"
CHUNK_ROWS = 100_000


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Parse the step's arguments."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--scored_rows", type=Path, required=True,
                        help="ParallelRunStep's output folder (or its append_row file)")
    parser.add_argument("--scoring_input", type=Path, required=True,
                        help="the scoring input CSV file, or a folder holding it")
    parser.add_argument("--output_dir", type=Path, required=True,
                        help="folder to write the output file to")
    parser.add_argument("--output_file_name", default=DEFAULT_OUTPUT_FILE_NAME,
                        help=f"output file name (default {DEFAULT_OUTPUT_FILE_NAME})")
    parser.add_argument("--append_row_file_name", default=APPEND_ROW_FILE_NAME,
                        help=f"ParallelRunStep's output file (default {APPEND_ROW_FILE_NAME})")
    return parser.parse_args(argv)


def find_file(path: Path, pattern: str, what: str) -> Path:
    """``path`` if it is a file, else the first file matching ``pattern`` under it."""
    path = Path(path)
    if path.is_file():
        return path
    found = sorted(p for p in path.rglob(pattern) if p.is_file()) if path.is_dir() else []
    if not found:
        raise FileNotFoundError(f"no {what} at {path}")
    return found[0]


def output_columns(scoring_input: Path) -> List[str]:
    """The scoring input's column names (from its header line), then prediction and error."""
    path = find_file(scoring_input, "*.csv", "scoring input CSV file")
    try:
        columns = pd.read_csv(path, nrows=0).columns.tolist()
    except pd.errors.EmptyDataError as err:
        raise ValueError(f"{path} is empty: it needs a header row") from err
    return columns + list(OUTPUT_COLUMNS)


def copy_scored_rows(source: Path, target: Path, columns: List[str],
                     chunk_rows: int = CHUNK_ROWS) -> int:
    """Write the append_row file ``source`` as a CSV file with a header; return the rows.

    Values are copied as text, unchanged; ``target`` appears only when complete.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    rows = 0
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            pd.DataFrame(columns=columns).to_csv(stream, index=False)
            if source.stat().st_size:
                chunks = pd.read_csv(source, sep=APPEND_ROW_SEPARATOR, header=None, dtype=str,
                                     keep_default_na=False, chunksize=chunk_rows)
                for chunk in chunks:
                    if chunk.shape[1] != len(columns):
                        raise ValueError(
                            f"{source}: rows {rows} to {rows + len(chunk) - 1} have "
                            f"{chunk.shape[1]} fields; expected {len(columns)}: the input's "
                            f"columns, then {' and '.join(OUTPUT_COLUMNS)}")
                    chunk.to_csv(stream, header=False, index=False)
                    rows += len(chunk)
        os.replace(tmp, target)
    except pd.errors.ParserError as err:
        raise ValueError(f"{source}: a row does not have the fields of the others: "
                         f"{err}") from err
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return rows


def copy_output(args: argparse.Namespace) -> int:
    """The step: find the append_row file, write it with a header to the output folder."""
    source = find_file(args.scored_rows, args.append_row_file_name,
                       "ParallelRunStep output file " + args.append_row_file_name)
    target = args.output_dir / args.output_file_name
    rows = copy_scored_rows(source, target, output_columns(args.scoring_input))
    LOGGER.info("Wrote %d scored rows to %s", rows, target)
    return 0


def main(argv: Optional[list] = None) -> int:
    """Entry point of the copy step."""
    args = parse_args(argv)
    return run_cli(lambda: copy_output(args))


if __name__ == "__main__":
    sys.exit(main())
