"""Score a CSV file locally across worker processes, with the same script Azure ML runs.

    python -m ml_service.pipelines.local_batchscore --input data.csv --output scored.csv \\
        [--workers N] [--mini_batch_rows N] [--model_name NAME] [--model_version N|production]
        [--model_path model.pkl]

The model is the production version of MODEL_NAME in the backend's registry unless
told otherwise. Each worker process calls ``parallel_batchscore.init()`` once, then
``parallel_batchscore.run()`` on each of its mini-batches: the functions a
ParallelRunStep calls on Azure ML.

How the work is split: the parent only scans the file's bytes for record ends (a
newline outside double quotes) and cuts it into mini-batches of ``--mini_batch_rows``
rows: (byte range, number of the first row). Each worker reads and parses its own
byte range, scores it, and returns the output lines; so parsing, scoring and
formatting all run in parallel and no data frame is pickled. The output is the input
line, byte for byte, followed by ``,prediction,error`` (a mini-batch with quoted
fields, CR characters, or blank or short lines is written by pandas instead, which
re-formats its values).

Where the workers come from: never a fork of the calling process, which may have loaded or
used a model with native threads (OpenMP in LightGBM or HistGradientBoosting: its thread
pool does not survive a fork, and a forked worker hangs in the model's first parallel
call). On Linux and macOS a fork server, a fresh interpreter that imports what a worker
needs once, forks every worker (so a worker starts with its imports done); elsewhere
workers are spawned. Workers load the model themselves.

Order and atomicity: results are written in mini-batch order (a bounded window of
mini-batches is in flight), to a temporary file beside the output that replaces the
output only once every row is written. An error, a failed worker or an interruption
(Ctrl-C, SIGTERM) removes the temporary file: there is then no output, never a
partial one. Rows that cannot be scored are kept, with an empty prediction and an
``error`` naming the row and the problem (see parallel_batchscore). A file that is
missing, empty, without data rows, without the model's feature columns or with a row
of too many fields is an error: exit code 1, nothing written.
"""
import argparse
import io
import logging
import multiprocessing
import os
import re
import select
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Deque, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from diabetes_regression.scoring import parallel_batchscore
from diabetes_regression.scoring.parallel_batchscore import (ERROR_COLUMN, PREDICTION_COLUMN,
                                                             BatchInputError)
from ml_service.backends import get_backend
from ml_service.backends.base import Backend
from ml_service.util.cli import run_cli
from ml_service.util.env_variables import TrainingSettings, load_dotenv_file

LOGGER = logging.getLogger(__name__)
DEFAULT_MINI_BATCH_ROWS = 10_000
DEFAULT_LOG_EVERY = 20
# Mini-batches in flight per worker: enough to keep every worker busy while the parent
# writes, few enough to bound memory.
WINDOW_PER_WORKER = 3
SCAN_BLOCK_BYTES = 16 * 1024 * 1024
NEWLINE, QUOTE = 10, 34
# What the fork server imports before it forks a worker: the batch scoring script, and with
# it the model package and the scientific stack, nearly all a worker imports. Not this
# module: a worker of ``python -m`` runs it again as __mp_main__, and runpy warns about a
# module it finds imported already; it takes milliseconds once the rest is imported.
WORKER_PRELOAD = [parallel_batchscore.__name__]


@dataclass(frozen=True)
class MiniBatch:
    """Rows ``first_row`` .. ``first_row + rows - 1`` of the file, in bytes [start, end)."""

    start: int
    end: int
    first_row: int
    rows: int


@dataclass(frozen=True)
class BatchScoreSummary:
    """What a run scored."""

    output: Path
    rows: int
    bad_rows: int
    mini_batches: int
    seconds: float


@dataclass(frozen=True)
class CsvLayout:
    """The input file's header: its column names and the header line as written."""

    columns: List[str]
    header_line: bytes
    data_start: int


# -- the input file ------------------------------------------------------------
class BlockRecords:
    """The records ending in one block of the file, taken a number at a time.

    A record ends at a newline outside double quotes. A block with quotes gets an index
    of its record ends (the quote parity is carried from block to block); a block
    without is only counted (bytes.count), from one cut to the next, so each byte is
    counted about once: the cut is guessed from the mean record width, then adjusted.
    """

    def __init__(self, block: bytes, quoted: bool, width: float) -> None:
        self.block, self.width = block, width
        self.ends: Optional[np.ndarray] = None
        self.quoted = False
        self._position = 0  # just past the last record end taken
        self._taken = 0
        if quoted or QUOTE in block:
            buffer = np.frombuffer(block, dtype=np.uint8)
            newlines = np.flatnonzero(buffer == NEWLINE)
            quotes = np.flatnonzero(buffer == QUOTE)
            # Outside quotes after an even number of quote characters ("" escapes too).
            before = np.searchsorted(quotes, newlines) + int(quoted)
            self.ends = newlines[before % 2 == 0] + 1
            self.quoted = bool((len(quotes) + int(quoted)) % 2)

    def take(self, count: int) -> Tuple[int, Optional[int]]:
        """Take up to ``count`` record ends: (how many, the position just past the last
        one taken, or None if none was)."""
        if self.ends is not None:
            taken = min(count, len(self.ends) - self._taken)
            self._taken += taken
            return taken, int(self.ends[self._taken - 1]) if taken else None
        block, start = self.block, self._position
        position = min(len(block), start + max(1, int(count * self.width)))
        found = block.count(b"\n", start, position)
        while found < count and position < len(block):
            step = max(64, int((count - found) * self.width))
            found += block.count(b"\n", position, position + step)
            position = min(len(block), position + step)
        if found == 0:
            return 0, None
        taken = min(found, count)
        # Step back to just past the taken-th newline.
        while True:
            last = block.rindex(b"\n", start, position)
            if found == taken:
                break
            position, found = last, found - 1
        self._position = last + 1
        return taken, self._position


def scan_records(path: Path, start: int = 0, block_bytes: int = SCAN_BLOCK_BYTES,
                 width: float = 100.0) -> Iterator[Tuple[int, BlockRecords]]:
    """The file from ``start`` (a record's start) in blocks: (file offset, its records).

    ``width`` is the first guess of the mean record width in bytes.
    """
    quoted = False
    with open(path, "rb") as handle:
        handle.seek(start)
        offset = start
        while True:
            block = handle.read(block_bytes)
            if not block:
                return
            records = BlockRecords(block, quoted, width)
            yield offset, records
            quoted, width = records.quoted, records.width
            offset += len(block)


def read_layout(path: Path) -> CsvLayout:
    """The header of a CSV file; BatchInputError naming the file if it has none."""
    path = Path(path)
    if not path.is_file():
        raise BatchInputError(f"no input file at {path}")
    size = path.stat().st_size
    if size == 0:
        raise BatchInputError(f"{path} is empty: it needs a header row and data rows")
    header_end = size
    for offset, records in scan_records(path):
        taken, end = records.take(1)
        if taken:
            header_end = offset + end
            break
    with open(path, "rb") as handle:
        header_line = handle.read(header_end)
    try:
        columns = pd.read_csv(io.BytesIO(header_line), nrows=0).columns.tolist()
    except pd.errors.EmptyDataError as err:
        raise BatchInputError(f"{path}: the first line is empty; it must name the "
                              "columns") from err
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise BatchInputError(f"{path}: cannot read the header: {err}") from err
    return CsvLayout(columns, header_line.rstrip(b"\r\n"), header_end)


def plan_mini_batches(path: Path, data_start: int, rows_per_batch: int,
                      block_bytes: int = SCAN_BLOCK_BYTES) -> Iterator[MiniBatch]:
    """Cut the data rows (from ``data_start``) into mini-batches of ``rows_per_batch``."""
    size = Path(path).stat().st_size
    start, first_row, pending, last_end = data_start, 0, 0, data_start
    for offset, records in scan_records(path, data_start, block_bytes):
        while True:
            taken, end = records.take(rows_per_batch - pending)
            if end is not None:
                last_end = offset + end
            pending += taken
            if pending < rows_per_batch:
                break
            yield MiniBatch(start, last_end, first_row, rows_per_batch)
            # Later guesses of where a mini-batch ends use this one's mean row width.
            records.width = (last_end - start) / rows_per_batch
            start, first_row, pending = last_end, first_row + rows_per_batch, 0
    # Bytes after the last newline are a last row without one.
    rows = pending + (1 if size > last_end else 0)
    if rows:
        yield MiniBatch(start, size, first_row, rows)


# -- a worker ----------------------------------------------------------------------
_SOURCE: Optional[Tuple[Path, List[str]]] = None


def start_worker(path: Path, columns: List[str], init_argv: Sequence[str],
                 scorer: Optional[int] = None) -> None:
    """Worker initializer: remember the input, load the model once with the batch
    script's init(); leave Ctrl-C to the parent, which stops the pool; end when the
    scoring process ``scorer`` ends."""
    global _SOURCE
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Whatever the process it was started from did with SIGTERM, a worker just ends.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if scorer is not None:
        end_with(scorer)
    _SOURCE = (Path(path), list(columns))
    _reuse_freed_buffers()
    parallel_batchscore.init(list(init_argv))


def end_with(scorer: int) -> None:
    """End this worker when process ``scorer`` ends, killed or not (Linux 5.3+: elsewhere
    nothing is watched). Its parent is the fork server, which outlives the scorer as long
    as a worker lives, and a worker waits for tasks for ever: without this, a kill -9 of the
    scorer leaves the workers, the fork server and the resource tracker running."""
    try:
        pidfd = os.pidfd_open(scorer)
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):
        return

    def watch() -> None:
        select.select([pidfd], [], [])  # readable once the process has ended
        os._exit(1)

    threading.Thread(target=watch, name="end-with-scorer", daemon=True).start()


def _reuse_freed_buffers() -> None:
    """Have the C allocator keep freed buffers of a mini-batch's size for reuse.

    glibc maps each block above its threshold (128 KiB at first) on its own and unmaps it
    when freed, so that every array of every mini-batch costs fresh page faults, unless a
    larger mapped block has been freed: the threshold then rises to its size. A worker of a
    fresh fork server has freed none (a worker forked from the parent inherited the parent's
    threshold, risen by reading the file): free one, never written to, so it costs nothing.
    Elsewhere a harmless allocation.
    """
    np.empty(SCAN_BLOCK_BYTES, dtype=np.uint8)  # freed at once


def parse_rows(data: bytes, columns: List[str], batch: MiniBatch, path: Path) -> pd.DataFrame:
    """Parse a mini-batch's bytes into a frame indexed by row number in the file."""
    try:
        with warnings.catch_warnings():
            # pandas drops the extra fields of a mini-batch's first row with only a warning.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(io.BytesIO(data), header=None, names=columns, index_col=False,
                                skip_blank_lines=False)
    except pd.errors.ParserWarning as err:
        raise BatchInputError(f"{path}: row {batch.first_row} has more fields than the "
                              f"{len(columns)} columns of the header") from err
    except pd.errors.ParserError as err:
        # pandas counts lines from the start of the mini-batch: name the file's row.
        message = re.sub(r"line (\d+)",
                         lambda m: f"row {batch.first_row + int(m.group(1)) - 1}", str(err))
        raise BatchInputError(f"{path}: {message}") from err
    if len(frame) != batch.rows:
        raise BatchInputError(
            f"{path}: rows {batch.first_row} to {batch.first_row + batch.rows - 1} parse as "
            f"{len(frame)} rows; use newline line endings, and quote fields that contain "
            "line breaks")
    frame.index = pd.RangeIndex(batch.first_row, batch.first_row + len(frame))
    return frame


def csv_field(text: str) -> str:
    """A value as a CSV field: quoted when it holds a comma, a quote or a line break."""
    if any(mark in text for mark in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def format_rows(data: bytes, scored: pd.DataFrame) -> bytes:
    """Output lines: each input line as it was, with the prediction and the error appended."""
    predictions = scored[PREDICTION_COLUMN]
    if b'"' in data or b"\r" in data or predictions.dtype.kind != "f":
        # Quoted fields may span lines, and non-float predictions may need quoting:
        # let pandas write the whole rows.
        return scored.to_csv(header=False, index=False, lineterminator="\n").encode()
    lines = data.decode("utf-8").split("\n")
    if lines[-1] == "":
        lines.pop()
    # Rows with too many fields are refused when parsed; so when the commas add up, every
    # line has all its fields (a short or blank line does not) and appending keeps columns.
    separators = len(scored.columns) - 3
    if len(lines) != len(scored) or data.count(b",") != separators * len(lines):
        return scored.to_csv(header=False, index=False, lineterminator="\n").encode()
    values = predictions.tolist()
    texts = [repr(value) if value == value else "" for value in values]
    errors = [csv_field(message) if message else "" for message in scored[ERROR_COLUMN].tolist()]
    return ("\n".join(map(",".join, zip(lines, texts, errors))) + "\n").encode("utf-8")


def score_mini_batch(batch: MiniBatch) -> Tuple[bytes, int]:
    """Worker task: read, parse and score one mini-batch; return its output lines and its
    number of bad rows."""
    path, columns = _SOURCE
    with open(path, "rb") as handle:
        handle.seek(batch.start)
        data = handle.read(batch.end - batch.start)
    scored = parallel_batchscore.run(parse_rows(data, columns, batch, path))
    bad_rows = int((scored[ERROR_COLUMN] != "").sum())
    return format_rows(data, scored), bad_rows


# -- the parent -------------------------------------------------------------------
def _file_mode() -> int:
    """The mode a new file gets under the current umask (mkstemp makes it 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_output(path: Path) -> Iterator[BinaryIO]:
    """A file to write that appears at ``path`` only if the block ends without error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt meanwhile, so that the cleanup runs for it too."""
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _pool_context() -> multiprocessing.context.BaseContext:
    """Where the workers come from: never a fork of this process, which may have loaded or
    used a model with native threads (OpenMP does not survive a fork: a forked worker hangs
    in the model's first parallel call).

    Where there is one, a fork server: a fresh interpreter that imports what a worker needs
    once and forks each worker from itself. It is started now if it is not running (once
    per process), so that its imports overlap the parent's own work. Elsewhere, spawn.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    from multiprocessing import forkserver, resource_tracker  # POSIX only

    context = multiprocessing.get_context("forkserver")
    # Read when the server starts: no effect on a server that is running already.
    context.set_forkserver_preload(WORKER_PRELOAD)
    # The tracker unblocks SIGINT once it has started: start it before the block.
    resource_tracker.ensure_running()
    with _sigint_blocked():
        forkserver.ensure_running()
    return context


@contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Block SIGINT in this thread meanwhile: a process started meanwhile keeps it blocked for
    good (Ctrl-C is the parent's to handle: the fork server, still importing for seconds,
    and its workers leave it alone), and one that arrives meanwhile is delivered after."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class _Progress:
    """Logs rows done, share of the file and speed every ``every`` mini-batches."""

    def __init__(self, total_bytes: int, every: int) -> None:
        self.total_bytes, self.every = max(total_bytes, 1), max(every, 1)
        self.started = time.monotonic()
        self.rows = self.bad_rows = self.batches = 0

    def done(self, batch: MiniBatch, bad_rows: int) -> None:
        self.rows += batch.rows
        self.bad_rows += bad_rows
        self.batches += 1
        if self.batches % self.every == 0:
            LOGGER.info("%5.1f%%  %d rows in %d mini-batches, %.0f rows/s",
                        100.0 * batch.end / self.total_bytes, self.rows, self.batches,
                        self.rows / self.elapsed())

    def elapsed(self) -> float:
        return max(time.monotonic() - self.started, 1e-9)


def _write_results(pool: ProcessPoolExecutor, batches: Iterator[MiniBatch], window: int,
                   output: BinaryIO, progress: _Progress) -> None:
    """Submit the mini-batches with at most ``window`` in flight; write results in order."""
    in_flight: Deque[Tuple[MiniBatch, "Future[Tuple[bytes, int]]"]] = deque()

    def write_oldest() -> None:
        batch, future = in_flight.popleft()
        lines, bad_rows = future.result()
        output.write(lines)
        progress.done(batch, bad_rows)

    for batch in batches:
        in_flight.append((batch, pool.submit(score_mini_batch, batch)))
        if len(in_flight) >= window:
            write_oldest()
    while in_flight:
        write_oldest()


def score_csv(input_path: Path, output_path: Path, model_path: Path,
              workers: Optional[int] = None, mini_batch_rows: int = DEFAULT_MINI_BATCH_ROWS,
              log_every: int = DEFAULT_LOG_EVERY) -> BatchScoreSummary:
    """Score every row of a CSV file with a model file; write one output file atomically.

    Workers are not forked from the caller: each imports the program's main module again,
    so a program that calls this keeps its own work under ``if __name__ == "__main__":``
    (multiprocessing's "safe importing of main module").
    """
    input_path, output_path = Path(input_path), Path(output_path)
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 1 or mini_batch_rows < 1:
        raise BatchInputError("--workers and --mini_batch_rows must be at least 1")
    if output_path.resolve() == input_path.resolve():
        raise BatchInputError(f"the output {output_path} would replace the input")
    layout = read_layout(input_path)
    context = _pool_context()
    # Refuse a file without the model's features before any worker starts. Loading the model
    # here is safe with any model: no worker is forked from this process.
    parallel_batchscore.feature_columns(layout.columns,
                                        parallel_batchscore.load_model(model_path))
    batches = plan_mini_batches(input_path, layout.data_start, mini_batch_rows)
    first = next(batches, None)
    if first is None:
        raise BatchInputError(f"{input_path} has a header but no data rows")
    appended = f",{csv_field(PREDICTION_COLUMN)},{csv_field(ERROR_COLUMN)}\n"
    header = layout.header_line + appended.encode("utf-8")
    progress = _Progress(input_path.stat().st_size, log_every)
    LOGGER.info("Scoring %s with %d worker(s), %d rows per mini-batch", input_path, workers,
                mini_batch_rows)
    init_argv = ["--model_path", str(model_path)]
    with _terminate_as_interrupt(), atomic_output(output_path) as output:
        output.write(header)
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                   initializer=start_worker,
                                   initargs=(input_path, layout.columns, init_argv,
                                             os.getpid()))
        try:
            _write_results(pool, _chain(first, batches), workers * WINDOW_PER_WORKER, output,
                           progress)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    summary = BatchScoreSummary(output_path, progress.rows, progress.bad_rows, progress.batches,
                                progress.elapsed())
    LOGGER.info("Scored %d rows (%d bad) in %.2f s, %.0f rows/s: %s", summary.rows,
                summary.bad_rows, summary.seconds, summary.rows / summary.seconds, output_path)
    return summary


def _chain(first: MiniBatch, rest: Iterator[MiniBatch]) -> Iterator[MiniBatch]:
    yield first
    yield from rest


def score_csv_with_registry(backend: Backend, model_name: str, model_version: str,
                            input_path: Path, output_path: Path,
                            **options: Any) -> BatchScoreSummary:
    """Score a CSV file with a registered model version (default: the production one)."""
    _pool_context()  # the workers' server starts while the model downloads
    with tempfile.TemporaryDirectory(prefix="batchscore-model-") as folder:
        model_path = parallel_batchscore.fetch_model(backend, model_name, model_version,
                                                     Path(folder))
        return score_csv(input_path, output_path, model_path, **options)


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Parse the options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, required=True, help="CSV file to score")
    parser.add_argument("--output", type=Path, required=True,
                        help="CSV file to write (replaced only when every row is scored)")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (default: the number of cores)")
    parser.add_argument("--mini_batch_rows", type=int, default=DEFAULT_MINI_BATCH_ROWS,
                        help=f"rows per mini-batch (default {DEFAULT_MINI_BATCH_ROWS})")
    parser.add_argument("--model_name", help="registered model (default: MODEL_NAME)")
    parser.add_argument("--model_version", default=parallel_batchscore.PRODUCTION,
                        help="a version number or 'production' (default)")
    parser.add_argument("--model_path", type=Path,
                        help="score with this model file instead of a registered model")
    parser.add_argument("--log_every", type=int, default=DEFAULT_LOG_EVERY,
                        help="log progress every N mini-batches")
    return parser.parse_args(argv)


def score(args: argparse.Namespace) -> int:
    """Score the file with the model the arguments name."""
    options = {"workers": args.workers, "mini_batch_rows": args.mini_batch_rows,
               "log_every": args.log_every}
    if args.model_path is not None:
        score_csv(args.input, args.output, args.model_path, **options)
        return 0
    load_dotenv_file()
    training = TrainingSettings.from_env()
    score_csv_with_registry(get_backend(training=training),
                            args.model_name or training.model_name, args.model_version,
                            args.input, args.output, **options)
    return 0


def main(argv: Optional[list] = None) -> int:
    """Entry point: score a CSV file locally."""
    args = parse_args(argv)
    return run_cli(lambda: score(args))


if __name__ == "__main__":
    sys.exit(main())
