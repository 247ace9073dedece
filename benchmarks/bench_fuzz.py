"""Longer fuzz run and a bounded loopback load test of the web server.

Usage: python benchmarks/bench_fuzz.py [--cli N] [--requests N] [--clients N] [--seed S]

Fuzz (in-process, the harness of tests/fuzzing.py): every generated hostile
config.json (tests/hostile_configs.py) through ``params``, a seeded sample of them
through ``infer``/``train``/``plan``, N random hostile flag lines and hostile Python
arguments. Each invocation is an ``ok``, a ``clean error`` (the one-line error), a
``traceback``, a ``hang`` (over the time limit) or ``silent-suspicious`` (exit 0 with
a negative, fractional or non-finite figure).

Load: the web server on a loopback port, C client threads sending N requests in all
(catalog estimates, static files and hostile requests: NUL paths, file paths in
``model=``, foreign ``Host`` headers, HTTP/0.9 lines). ``errors`` counts requests
without a complete HTTP answer carrying JSON (for the API) or a 5xx; p50/p99 are the
latencies of all requests; RSS growth is this process's resident memory after the
load minus before it (server and clients share the process).
"""

from __future__ import annotations

import argparse
import collections
import random
import resource
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from fuzzing import run_cli  # noqa: E402
from hostile_configs import field_corpus, whole_file_corpus  # noqa: E402

HOSTILE = ("0", "-1", "1", "2", "8", "4096", "1e3", "2.5", "nan", "inf", "", "abc", "0x10", "1_000", str(2**31),
           str(2**40), str(2**62), str(2**63), str(2**64), "9" * 400, "1000000", "0.0001", "200GiB", "1e-9", ",,,")
MODELS = ("gpt2", "llama-3.2-1b", "llama-3.1-8b", "mixtral-8x7b", "deepseek-v2-lite", "qwen3-30b-a3b", "7B",
          "1e30B", "a" * 300, "/proc/self/mem", "/dev/zero")
FLAGS = {
    "infer": ("--batch", "--context", "--prompt", "--tp", "--gpu-memory-utilization", "--max-num-seqs",
              "--block-size", "--n-gpu-layers", "--cuda-context", "--reserve", "--layers", "--hidden", "--heads",
              "--experts", "--experts-per-token", "--engine"),
    "train": ("--batch", "--seq", "--grad-accum", "--lora-rank", "--gpus", "--nodes", "--tp", "--pp", "--cp",
              "--ep", "--zero", "--micro-batches", "--lora-targets", "--method", "--layers", "--hidden", "--heads"),
    "plan": ("--gpus", "--max-gpus", "--nodes", "--gpus-per-node", "--seq", "--batch", "--global-batch",
             "--headroom", "--tp", "--pp", "--cp", "--virtual-stages", "--layers", "--hidden", "--heads", "--vocab"),
}


def fuzz(cli_runs: int, rng: random.Random) -> collections.Counter:
    counts: collections.Counter = collections.Counter()
    examples: dict[str, str] = {}

    def record(outcome):
        counts[outcome.kind] += 1
        if outcome.kind not in ("ok", "clean_error"):
            examples.setdefault(outcome.kind, outcome.detail)

    folder = Path(tempfile.mkdtemp())
    path = folder / "config.json"
    fields = list(field_corpus())
    cases = list(whole_file_corpus()) + fields
    for _, text in cases:
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        record(run_cli(["params", str(path), "--json"]))
    for _, text in list(whole_file_corpus()) + rng.sample(fields, 400):
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        record(run_cli(["infer", str(path), "--gpu", "h100", "--json"]))
        record(run_cli(["train", str(path), "--gpu", "h100", "--json"]))
    for _, text in rng.sample(fields, 60):
        path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
        record(run_cli(["plan", str(path), "--gpu", "h100", "--gpus", "8", "--json"], timeout_s=60))
    for _ in range(cli_runs):
        command = rng.choice(("infer", "train", "plan", "params"))
        argv = [command, rng.choice(MODELS)]
        if command != "params":
            argv += ["--gpu", "h100"]
        for _ in range(rng.randint(1, 3)):
            argv += [rng.choice(FLAGS.get(command, FLAGS["infer"])), rng.choice(HOSTILE)]
        record(run_cli(argv + ["--json"], timeout_s=60))
    api_counts = python_api(rng)
    counts.update(api_counts)
    counts["invocations"] = sum(v for k, v in counts.items() if k != "invocations")
    for kind, detail in examples.items():
        print(f"first {kind}: {detail}", file=sys.stderr)
    return counts


def python_api(rng: random.Random, runs: int = 2000) -> collections.Counter:
    """Hostile keyword arguments to the setup dataclasses: only the project's errors."""
    from vramplan.errors import VramplanError
    from vramplan.inference import InferenceSetup
    from vramplan.parallel import ParallelLayout
    from vramplan.training import TrainingSetup

    values = (None, True, False, 0, -1, 2**63, 2.5, float("nan"), float("inf"), "x", "", (), (0,), (-1,), [1],
              {"a": 1}, object())
    factories = (TrainingSetup, InferenceSetup, ParallelLayout)
    counts: collections.Counter = collections.Counter()
    for _ in range(runs):
        factory = rng.choice(factories)
        field = rng.choice(list(factory.__dataclass_fields__))
        try:
            factory(**{field: rng.choice(values)})
            counts["ok"] += 1
        except VramplanError:
            counts["clean_error"] += 1
        except Exception:  # noqa: BLE001 - counted
            counts["traceback"] += 1
    return counts


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


REQUESTS = (
    (b"GET /api/params?model=llama-3.1-8b HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", True),
    (b"GET /api/infer?model=llama-3.1-8b&gpu=h100 HTTP/1.0\r\nHost: localhost\r\n\r\n", True),
    (b"GET /api/train?model=llama-3.2-1b&method=qlora&gpu=rtx-4090 HTTP/1.0\r\nHost: localhost\r\n\r\n", True),
    (b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n", False),
    (b"GET /app.js HTTP/1.0\r\nHost: localhost\r\n\r\n", False),
    (b"GET /app.js%00.html HTTP/1.0\r\nHost: localhost\r\n\r\n", True),
    (b"GET /api/params?model=/etc/passwd HTTP/1.0\r\nHost: localhost\r\n\r\n", True),
    (b"GET /api/params?model=gpt2 HTTP/1.0\r\nHost: evil.example\r\n\r\n", True),
    (b"GET /api/train?model=gpt2&batch=99999999999999999999 HTTP/1.0\r\nHost: localhost\r\n\r\n", True),
    (b"GET /\r\n", True),
)


def _one(address, data: bytes, wants_json: bool) -> tuple[float, bool]:
    start = time.perf_counter()
    try:
        with socket.create_connection(address, timeout=60) as sock:
            sock.sendall(data)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        response = b"".join(chunks)
        head, _, body = response.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        ok = status < 500 and (not wants_json or body.startswith(b"{"))
    except (OSError, ValueError, IndexError):
        ok = False
    return time.perf_counter() - start, ok


def load(total: int, clients: int, rng: random.Random) -> dict:
    from vramplan.web.server import make_server

    server = make_server(port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    address = server.server_address[:2]
    for data, wants_json in REQUESTS:  # warm the imports before measuring memory
        _one(address, data, wants_json)
    rss_before = _rss_bytes()
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    plan = [rng.choice(REQUESTS) for _ in range(total)]

    def client(part):
        for data, wants_json in part:
            seconds, ok = _one(address, data, wants_json)
            with lock:
                latencies.append(seconds)
                errors[0] += not ok

    threads = [threading.Thread(target=client, args=(plan[i::clients],)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    rss_after = _rss_bytes()
    server.shutdown()
    server.server_close()
    latencies.sort()
    return {"requests": len(latencies), "errors": errors[0], "p50_ms": 1000 * latencies[len(latencies) // 2],
            "p99_ms": 1000 * latencies[int(len(latencies) * 0.99) - 1], "req_per_s": len(latencies) / wall,
            "rss_growth_mib": (rss_after - rss_before) / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cli", type=int, default=2000, help="random hostile command lines")
    parser.add_argument("--requests", type=int, default=3000, help="web requests in the load test")
    parser.add_argument("--clients", type=int, default=16, help="concurrent web clients")
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    start = time.perf_counter()
    counts = fuzz(args.cli, rng)
    fuzz_s = time.perf_counter() - start
    web = load(args.requests, args.clients, rng)

    print(f"{'fuzz':<22}{'count':>10}")
    for label, key in (("invocations", "invocations"), ("ok", "ok"), ("clean errors", "clean_error"),
                       ("tracebacks", "traceback"), ("hangs", "hang"), ("silent-suspicious", "suspicious")):
        print(f"{label:<22}{counts.get(key, 0):>10,}")
    print(f"{'fuzz wall time (s)':<22}{fuzz_s:>10.1f}")
    print()
    print(f"{'web load':<22}{'value':>10}")
    print(f"{'requests':<22}{web['requests']:>10,}")
    print(f"{'errors':<22}{web['errors']:>10,}")
    print(f"{'p50 (ms)':<22}{web['p50_ms']:>10.1f}")
    print(f"{'p99 (ms)':<22}{web['p99_ms']:>10.1f}")
    print(f"{'requests/s':<22}{web['req_per_s']:>10.1f}")
    print(f"{'RSS growth (MiB)':<22}{web['rss_growth_mib']:>10.1f}")


if __name__ == "__main__":
    main()
