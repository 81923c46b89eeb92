"""Benchmark: the project's score.py against an MLOpsPython-style one, in the same server,
and the cost of collecting what it sees.

    python -m benchmarks.benchmark_scoring [--seconds 3] [--passes 3] [--connections 4]

Starts two azmlinfsrv processes (1 worker each, as ``deploy_local`` does) with the same
model, trained on the sample data with the parameters in parameters.json: two serve
``diabetes_regression/scoring/score.py``, collecting every request into a local store as a
local deployment does (``MLOPS_COLLECTOR=local``) or collecting nothing (``off``), the third
``benchmarks/mlopspython_score.py`` (inference-schema ``NumpyParameterType`` input,
``model.predict(data).tolist()``). A load
generator in this process then drives them over loopback, ``--connections`` requests in
flight (a new connection per request, as gunicorn's sync worker closes each one), for
``--seconds`` per measurement. Passes alternate the scripts and the request sizes (1 row
and 100 rows, random rows on the sample's scale), so a slow moment of a shared machine
hits both; each rate is the median over ``--passes``, each ratio the median of the ratios
of the two servers measured one after the other in the same pass. Every answer must be a 200, or
the benchmark fails. It prints requests per second for each server and size, the ratio
project (collecting) / MLOpsPython-style (goals: 1.5 or more at 100 rows, 1.2 or more at 1
row), and collecting / not collecting (goal: 0.9 or more, collection costing at most 10 %).
"""
import argparse
import json
import logging
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import joblib
import numpy as np

from diabetes_regression.parameters import load_parameters
from diabetes_regression.training.train import load_sample_data, split_data, train_model
from ml_service.backends.local_server import start_server, stop_server, write_record
from ml_service.monitoring.variables import (COLLECTOR_VARIABLE, FOLDER_VARIABLE,
                                             SERVICE_VARIABLE)
from ml_service.paths import PROJECT_ROOT
from ml_service.util.cli import configure_logging

LOGGER = logging.getLogger(__name__)
PROJECT_SCRIPT = PROJECT_ROOT / "diabetes_regression" / "scoring" / "score.py"
COLLECTING, NOT_COLLECTING, BASELINE = ("score.py collecting", "score.py not collecting",
                                        "MLOpsPython-style score.py")
# name -> (scoring script, the collector's variables; {folder} is the benchmark's folder)
SERVERS = {
    COLLECTING: (PROJECT_SCRIPT, {COLLECTOR_VARIABLE: "local", SERVICE_VARIABLE: "benchmark",
                                  FOLDER_VARIABLE: "{folder}/collected"}),
    NOT_COLLECTING: (PROJECT_SCRIPT, {COLLECTOR_VARIABLE: "off"}),
    BASELINE: (PROJECT_ROOT / "benchmarks" / "mlopspython_score.py", {COLLECTOR_VARIABLE: "off"}),
}
SIZES = (1, 100)
RECEIVE_BYTES = 65536


class BenchmarkError(RuntimeError):
    """A server answered something other than 200, or did not start."""


def request_bytes(port: int, rows: int, seed: int = 0) -> bytes:
    """A whole HTTP request scoring ``rows`` random rows on the sample data's scale."""
    sample = np.asarray(load_parameters().scoring.sample["data"], dtype=float)
    rng = np.random.default_rng(seed)
    data = rng.normal(0.0, np.abs(sample).mean(), size=(rows, sample.shape[1]))
    body = json.dumps({"data": data.tolist()}).encode()
    head = (f"POST /score HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def _one_request(port: int, payload: bytes) -> bytes:
    """Send one request on a new connection; return the status line's code."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(payload)
        chunks = []
        while True:
            chunk = sock.recv(RECEIVE_BYTES)
            if not chunk:
                break
            chunks.append(chunk)
    answer = b"".join(chunks)
    return answer[9:12]


def drive(port: int, payload: bytes, seconds: float, connections: int) -> float:
    """Requests per second over ``seconds``, ``connections`` requests in flight."""
    counts = [0] * connections
    failures: List[bytes] = []
    deadline = time.perf_counter() + seconds

    def worker(index: int) -> None:
        while time.perf_counter() < deadline:
            status = _one_request(port, payload)
            if status != b"200":
                failures.append(status)
                return
            counts[index] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise BenchmarkError(f"a server answered {failures[0].decode(errors='replace')} "
                             "instead of 200")
    return sum(counts) / elapsed


def start_servers(folder: Path) -> Dict[str, int]:
    """Every server, with the same model, each in a folder under ``folder``: name -> port.
    Stop them with ``stop_servers(folder)``."""
    model = train_model(split_data(load_sample_data()), load_parameters().training)
    ports: Dict[str, int] = {}
    for index, (name, (script, variables)) in enumerate(SERVERS.items()):
        service_dir = folder / f"service{index}"
        (service_dir / "model").mkdir(parents=True)
        joblib.dump(model, service_dir / "model" / "model.pkl")
        environment = {key: value.format(folder=folder) for key, value in variables.items()}
        record = start_server(script, service_dir, environment=environment)
        write_record(service_dir, record)
        ports[name] = record["port"]
    return ports


def stop_servers(folder: Path) -> None:
    """Stop the servers started in ``folder``."""
    for service_dir in sorted(folder.glob("service*")):
        stop_server(service_dir)


def measure(ports: Dict[str, int], seconds: float, passes: int,
            connections: int) -> Dict[Tuple[str, int], List[float]]:
    """Requests per second per (server, rows) in each pass, passes alternating the servers."""
    payloads = {(name, rows): request_bytes(port, rows)
                for name, port in ports.items() for rows in SIZES}
    for (name, rows), payload in payloads.items():  # warm-up, and a check of the answers
        drive(ports[name], payload, min(seconds, 0.5), connections)
    rates: Dict[Tuple[str, int], List[float]] = {key: [] for key in payloads}
    names = list(ports)
    for number in range(passes):
        order = names if number % 2 == 0 else names[::-1]
        for rows in SIZES:
            for name in order:
                rate = drive(ports[name], payloads[name, rows], seconds, connections)
                rates[name, rows].append(rate)
                LOGGER.info("pass %d, %s, %d row(s): %.0f requests/s", number + 1, name, rows,
                            rate)
    return rates


def paired_ratio(rates: Dict[Tuple[str, int], List[float]], numerator: str,
                 denominator: str, rows: int) -> float:
    """The median over passes of the ratio of two servers measured in the same pass (one
    after the other): a slow moment of a shared machine hits both sides of each ratio."""
    return statistics.median(a / b for a, b in zip(rates[numerator, rows],
                                                   rates[denominator, rows]))


def report(rates: Dict[Tuple[str, int], List[float]]) -> str:
    """A Markdown table of median requests per second and the paired ratios."""
    lines = ["| rows per request | " + " | ".join(f"{name} requests/s" for name in SERVERS)
             + f" | {COLLECTING} / {BASELINE} | collecting / not collecting |",
             "|---:|" + "---:|" * (len(SERVERS) + 2)]
    for rows in SIZES:
        medians = " | ".join(f"{statistics.median(rates[name, rows]):,.0f}"
                             for name in SERVERS)
        lines.append(f"| {rows} | {medians} | "
                     f"{paired_ratio(rates, COLLECTING, BASELINE, rows):.2f}x | "
                     f"{paired_ratio(rates, COLLECTING, NOT_COLLECTING, rows):.2f}x |")
    return "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="seconds per measurement (default 3)")
    parser.add_argument("--passes", type=int, default=3, help="alternating passes (default 3)")
    parser.add_argument("--connections", type=int, default=4,
                        help="requests in flight (default 4)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Start both servers, measure, print the table; stop the servers."""
    args = parse_args(argv)
    configure_logging()
    with tempfile.TemporaryDirectory(prefix="benchmark-scoring-") as folder:
        try:
            results = measure(start_servers(Path(folder)), args.seconds, args.passes,
                              args.connections)
        finally:
            stop_servers(Path(folder))
    print(f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, azmlinfsrv 1 worker "
          f"each, {args.passes} passes of {args.seconds:g} s, {args.connections} "
          "connections; median requests/s, median of per-pass ratios")
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
