"""Datasets in the local store: a registered version keeps the user's bytes and a columnar
copy that reads back exactly as pandas reads the file, and a missing, damaged or outdated
copy, or a kill at any moment, leaves every version usable."""
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Callable, Dict, Union

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_service.backends.local import (CACHE_FILE, DATA_FILE, DataFileChangedError,
                                       LocalBackend, read_columnar_copy, read_csv)
from ml_service.paths import PROJECT_ROOT

Content = Union[str, bytes]

# Values the columnar copy must give back to the bit, as pandas reads them from the CSV file:
# 17 and more significant digits, exponents near both ends of float64, subnormals, negative
# zero, integers at the ends of int64 and beyond (read as uint64), '+' in exponents, quoted
# numbers, booleans.
AWKWARD = {
    "decimals and exponents": (
        "many_decimals,exponents,tiny,signed_zero,count,extreme_int,Y\n"
        "0.12345678901234567890123456789,1e+300,4.9e-324,-0.0,0,9223372036854775807,1.5\n"
        "-3.14159265358979323846264338327,-2.5E-300,2.2250738585072014e-308,0.0,-17,"
        "-9223372036854775808,2\n"
        "0.1000000000000000055511151231257827,1.7976931348623157e308,1e-320,-0,42,1,-0.25\n"
        "2.675,1.7976931348623157e-308,5e-324,-0.000,7,-1,1e-5\n"),
    "beyond int64, quoted, booleans": (
        "huge,unsigned,quoted,flag,Y\n"
        '-1.7976931348623157e308,18446744073709551615,"1.25",True,1\n'
        '1e+20,9223372036854775808,"-0.0",False,2\n'
        '7.5,0,"3",TRUE,3\n'),
}

# Files pandas cannot read: the messages the step scripts show.
BAD = {
    "empty file": (b"", "is empty: it needs a header row and data rows"),
    "a long row": (b"a,Y\n1,2\n3,4,5\n",
                   "is not a readable CSV file: Error tokenizing data. C error: "
                   "Expected 2 fields in line 3, saw 3"),
    "not UTF-8": (b"a,Y\n1\xff,2\n", "is not a readable CSV file: 'utf-8' codec can't decode"),
    "not UTF-8 in the header": (b"a\xff,Y\n1,2\n", "is not a readable CSV file: 'utf-8'"),
}


def write(folder: Path, content: Content, name: str = "data.csv") -> Path:
    path = folder / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def assert_same_bits(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Equal frames, dtypes and column names included, floats to the bit (-0.0, subnormals)."""
    pd.testing.assert_frame_equal(actual, expected, check_exact=True)
    for column in expected.columns:
        if expected[column].dtype.kind == "f":
            assert np.array_equal(actual[column].to_numpy().view(np.uint64),
                                  expected[column].to_numpy().view(np.uint64)), column


# -- read_csv -----------------------------------------------------------------------------
@pytest.mark.parametrize("content, message", BAD.values(), ids=BAD)
def test_a_file_pandas_cannot_read_is_named_with_pandas_reason(tmp_path, content, message):
    path = write(tmp_path, content)
    with pytest.raises(ValueError, match="^" + str(path)) as raised:
        read_csv(path)
    assert message in str(raised.value)


# -- a registered version: the user's bytes, and a columnar copy that reads back exactly ----
def register(backend: LocalBackend, path: Path, name: str = "ds"):
    return backend.register_dataset(name, path, frame=read_csv(path))


def version_folder(backend: LocalBackend, dataset) -> Path:
    return backend.dataset_path(dataset).parent


@pytest.mark.parametrize("content", AWKWARD.values(), ids=AWKWARD)
def test_a_registered_version_round_trips_exactly_the_users_data(backend, tmp_path, content):
    path = write(tmp_path, content, "mine.csv")
    dataset = register(backend, path)
    folder = version_folder(backend, dataset)
    assert sorted(p.name for p in folder.iterdir()) == sorted([CACHE_FILE, DATA_FILE,
                                                               "dataset.json"])
    assert (folder / DATA_FILE).read_bytes() == path.read_bytes()
    assert (folder / CACHE_FILE).stat().st_mode == (folder / DATA_FILE).stat().st_mode
    expected = pd.read_csv(path, engine="c")
    copy = read_columnar_copy(folder)
    assert copy is not None and copy.attrs == {}
    assert_same_bits(copy, expected)
    assert_same_bits(backend.load_dataset(dataset), expected)


FLOATS = st.floats(allow_nan=False, allow_infinity=False)
INTEGERS = st.integers(min_value=-2 ** 63, max_value=2 ** 63 - 1)


@settings(max_examples=100, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(FLOATS, INTEGERS, FLOATS), min_size=1, max_size=30),
       st.sampled_from([None, "%.3e", "%.25g", "%.17g", "%g"]))
def test_generated_numbers_come_back_from_the_copy_to_the_bit(backend, tmp_path_factory, rows,
                                                              float_format):
    path = tmp_path_factory.mktemp("csv") / "data.csv"
    pd.DataFrame(rows, columns=["a", "n", "Y"]).to_csv(path, index=False,
                                                       float_format=float_format)
    dataset = register(backend, path, "generated")
    assert_same_bits(read_columnar_copy(version_folder(backend, dataset)),
                     pd.read_csv(path, engine="c"))


def test_text_columns_are_registered_without_a_copy_and_read_from_the_csv(backend, tmp_path):
    path = write(tmp_path, "a,Y\nlow,1\nhigh,2\n")
    dataset = register(backend, path)
    assert not (version_folder(backend, dataset) / CACHE_FILE).exists()
    pd.testing.assert_frame_equal(backend.load_dataset(dataset), pd.read_csv(path))
    assert not (version_folder(backend, dataset) / CACHE_FILE).exists()


def flip_a_byte_in_the_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def garble_the_pandas_metadata(path: Path) -> None:
    """A sound Parquet file whose description of the frame is not JSON."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    metadata = {**table.schema.metadata, b"pandas": b"{not json"}
    pq.write_table(table.replace_schema_metadata(metadata), path)


DAMAGE: Dict[str, Callable[[Path], None]] = {
    "missing": lambda path: path.unlink(),
    "empty": lambda path: path.write_bytes(b""),
    "cut short": lambda path: path.write_bytes(path.read_bytes()[:path.stat().st_size // 2]),
    "not Parquet": lambda path: path.write_bytes(b"not a parquet file\n" * 100),
    "a byte changed": flip_a_byte_in_the_middle,
    "frame description garbled": garble_the_pandas_metadata,
    "a folder": lambda path: (path.unlink(), path.mkdir()),
}


@pytest.fixture
def numbers_csv(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(5000, 3)), columns=["a", "b", "Y"])
    frame["n"] = rng.integers(-1000, 1000, size=len(frame))
    path = tmp_path / "numbers.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE)
def test_a_damaged_or_missing_copy_falls_back_to_the_csv_and_is_written_again(
        backend, numbers_csv, damage, caplog):
    dataset = register(backend, numbers_csv)
    copy = version_folder(backend, dataset) / CACHE_FILE
    damage(copy)
    expected = pd.read_csv(numbers_csv, engine="c")
    assert_same_bits(backend.load_dataset(dataset), expected)
    if copy.is_dir():  # cannot be replaced: said, and the CSV file is read each time
        assert "Could not write the columnar copy" in caplog.text
        assert_same_bits(backend.load_dataset(dataset), expected)
    else:
        assert_same_bits(read_columnar_copy(copy.parent), expected)


def test_a_copy_not_made_from_the_versions_csv_is_not_used(backend, numbers_csv, tmp_path):
    first = register(backend, numbers_csv)
    other = write(tmp_path, "a,b,Y,n\n1,2,3,4\n", "other.csv")
    second = register(backend, other)
    shutil.copyfile(version_folder(backend, first) / CACHE_FILE,
                    version_folder(backend, second) / CACHE_FILE)
    pd.testing.assert_frame_equal(backend.load_dataset(second), pd.read_csv(other))


def test_a_csv_edited_in_place_is_read_again(backend, numbers_csv):
    dataset = register(backend, numbers_csv)
    csv = backend.dataset_path(dataset)
    with open(csv, "a", encoding="utf-8") as handle:
        handle.write("1.5,2.5,3.5,4\n")
    edited = pd.read_csv(csv)
    assert len(edited) == 5001
    assert_same_bits(backend.load_dataset(dataset), edited)
    assert_same_bits(read_columnar_copy(csv.parent), edited)


def test_a_version_registered_without_a_frame_gets_its_copy_on_first_load(backend, numbers_csv):
    dataset = backend.register_dataset("ds", numbers_csv)
    folder = version_folder(backend, dataset)
    assert not (folder / CACHE_FILE).exists()
    expected = pd.read_csv(numbers_csv)
    assert_same_bits(backend.load_dataset(dataset), expected)
    assert_same_bits(read_columnar_copy(folder), expected)


def test_a_frame_pandas_read_registers_the_csv_alone(backend, numbers_csv):
    dataset = backend.register_dataset("ds", numbers_csv, frame=pd.read_csv(numbers_csv))
    assert not (version_folder(backend, dataset) / CACHE_FILE).exists()
    assert (backend.dataset_path(dataset).read_bytes() == numbers_csv.read_bytes())


# -- the frame must be the file as it is ---------------------------------------------------
def test_a_file_changed_after_it_was_read_is_not_registered(backend, numbers_csv):
    frame = read_csv(numbers_csv)
    with open(numbers_csv, "a", encoding="utf-8") as handle:
        handle.write("9,9,9,9\n")
    with pytest.raises(DataFileChangedError, match="changed after it was read .* run the step "
                                                   "again"):
        backend.register_dataset("ds", numbers_csv, frame=frame)
    assert backend.find_dataset("ds") is None
    assert list((backend.root / "datasets" / "ds").iterdir()) == []


@pytest.mark.parametrize("change", [lambda frame: frame.iloc[:10],
                                    lambda frame: frame.drop(columns=["n"])],
                         ids=["rows cut", "a column dropped"])
def test_a_frame_that_is_not_the_file_is_refused(backend, numbers_csv, change):
    with pytest.raises(ValueError, match="is not that file as read_csv read it"):
        backend.register_dataset("ds", numbers_csv, frame=change(read_csv(numbers_csv)))
    assert backend.find_dataset("ds") is None


def test_the_frame_of_another_file_is_refused(backend, numbers_csv, tmp_path):
    other = tmp_path / "copy.csv"
    shutil.copyfile(numbers_csv, other)
    with pytest.raises(ValueError, match="it was read from .*numbers.csv"):
        backend.register_dataset("ds", other, frame=read_csv(numbers_csv))


# -- kills and concurrent use --------------------------------------------------------------
def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)


KILLED_WHILE_REGISTERING = """
    import os, signal, sys
    from pathlib import Path
    from ml_service.backends import local

    def killed(*args):  # the moment between the CSV copy and its columnar copy
        os.kill(os.getpid(), signal.SIGKILL)

    local.write_columnar_copy = killed
    path = Path(sys.argv[2])
    local.LocalBackend(Path(sys.argv[1])).register_dataset("ds", path, frame=local.read_csv(path))
"""


def test_a_kill_between_the_csv_and_its_copy_leaves_no_half_version(backend, numbers_csv):
    done = run_python(KILLED_WHILE_REGISTERING, str(backend.root), str(numbers_csv))
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert backend.find_dataset("ds") is None
    dataset = register(backend, numbers_csv)
    assert dataset.version == 1
    assert_same_bits(backend.load_dataset(dataset), pd.read_csv(numbers_csv))


KILLED_WHILE_WRITING_THE_COPY = """
    import os, signal, sys
    from pathlib import Path
    from ml_service.backends import local
    from ml_service.backends.base import DatasetVersion

    def killed(*args):  # the copy written in full, not yet renamed into place
        os.kill(os.getpid(), signal.SIGKILL)

    local.os.replace = killed
    local.LocalBackend(Path(sys.argv[1])).load_dataset(DatasetVersion("ds", 1))
"""


def test_a_kill_while_the_copy_is_written_leaves_the_version_usable(backend, numbers_csv):
    dataset = backend.register_dataset("ds", numbers_csv)
    done = run_python(KILLED_WHILE_WRITING_THE_COPY, str(backend.root))
    assert done.returncode == -signal.SIGKILL, done.stderr
    folder = version_folder(backend, dataset)
    assert not (folder / CACHE_FILE).exists()
    assert backend.find_dataset("ds") == dataset
    expected = pd.read_csv(numbers_csv)
    assert_same_bits(backend.load_dataset(dataset), expected)
    assert_same_bits(read_columnar_copy(folder), expected)


REGISTER_AND_LOAD_FOREVER = """
    import sys
    from pathlib import Path
    from ml_service.backends import local

    backend, path = local.LocalBackend(Path(sys.argv[1])), Path(sys.argv[2])
    print("ready", flush=True)
    while True:
        dataset = backend.register_dataset("ds", path, frame=local.read_csv(path))
        (backend.dataset_path(dataset).parent / local.CACHE_FILE).unlink()
        backend.load_dataset(dataset)
"""


@pytest.mark.integration
@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2, 0.5, 1.0])
def test_a_kill_at_any_moment_leaves_every_version_usable(backend, numbers_csv, delay):
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(REGISTER_AND_LOAD_FOREVER),
                                str(backend.root), str(numbers_csv)], cwd=PROJECT_ROOT,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline() == "ready\n"
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            pass
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
    expected = pd.read_csv(numbers_csv)
    latest = backend.find_dataset("ds")
    for version in range(1, (latest.version if latest else 0) + 1):
        dataset = backend.find_dataset("ds", str(version))
        assert backend.dataset_path(dataset).read_bytes() == numbers_csv.read_bytes()
        assert_same_bits(backend.load_dataset(dataset), expected)
    dataset = register(backend, numbers_csv)
    assert dataset.version == (latest.version if latest else 0) + 1


CONCURRENT_REGISTRATION = """
    import sys
    from pathlib import Path
    from ml_service.backends import local

    path = Path(sys.argv[2])
    local.LocalBackend(Path(sys.argv[1])).register_dataset("ds", path, frame=local.read_csv(path))
"""


@pytest.mark.integration
def test_concurrent_registrations_each_get_a_whole_version(backend, numbers_csv):
    processes = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(CONCURRENT_REGISTRATION),
                                   str(backend.root), str(numbers_csv)], cwd=PROJECT_ROOT)
                 for _ in range(4)]
    assert [process.wait(timeout=300) for process in processes] == [0] * 4
    expected = pd.read_csv(numbers_csv)
    assert backend.find_dataset("ds").version == 4
    for version in range(1, 5):
        folder = version_folder(backend, backend.find_dataset("ds", str(version)))
        assert (folder / DATA_FILE).read_bytes() == numbers_csv.read_bytes()
        assert_same_bits(read_columnar_copy(folder), expected)
    assert sorted(os.listdir(backend.root / "datasets" / "ds")) == ["1", "2", "3", "4"]
