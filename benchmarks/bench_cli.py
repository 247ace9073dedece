"""Cold start of the command line, against a peer measured in the same run.

Usage: python benchmarks/bench_cli.py [--runs N]

Each row runs a fresh interpreter N times and reports the median wall time.
The peer is what `accelerate estimate-memory` does to size a model once it has the
config: transformers' AutoConfig on a local config directory, an empty model under
accelerate's init_empty_weights, and a parameter count. (`accelerate estimate-memory`
itself only takes Hub repo ids and needs the network, which this benchmark must not.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEER = """
import sys
from accelerate import init_empty_weights
from transformers import AutoConfig, AutoModelForCausalLM
cfg = AutoConfig.from_pretrained(sys.argv[1])
with init_empty_weights():
    model = AutoModelForCausalLM.from_config(cfg)
print(sum(p.numel() for p in model.parameters()))
"""


def median_seconds(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def console_script() -> list[str]:
    script = Path(sys.executable).with_name("vramplan")
    return [str(script)] if script.exists() else [sys.executable, "-m", "vramplan"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    config = json.loads((ROOT / "src/vramplan/catalog/models/llama-3.1-8b.json").read_text())["config"]
    tmp = Path(tempfile.mkdtemp())
    (tmp / "config.json").write_text(json.dumps(config))
    rows = [
        ("python -c pass (interpreter floor)", [sys.executable, "-c", "pass"], args.runs),
        ("import vramplan", [sys.executable, "-c", "import vramplan"], args.runs),
        ("vramplan params llama-3.1-8b --json", console_script() + ["params", "llama-3.1-8b", "--json"], args.runs),
        ("vramplan params <config dir> --json", console_script() + ["params", str(tmp), "--json"], args.runs),
    ]
    peer_runs = max(3, args.runs // 3)
    try:
        import accelerate  # noqa: F401
        import transformers  # noqa: F401
        rows.append(("peer: transformers+accelerate empty model, same config", [sys.executable, "-c", PEER, str(tmp)],
                     peer_runs))
    except ImportError:
        print("peer skipped: accelerate/transformers not installed (pip install 'vramplan[exact]')")
    results = [(label, median_seconds(cmd, n), n) for label, cmd, n in rows]
    shutil.rmtree(tmp)
    ours = results[2][1]
    print(f"{'command':58} {'median ms':>10} {'runs':>5} {'vs vramplan params':>19}")
    for label, seconds, n in results:
        print(f"{label:58} {seconds * 1000:10.1f} {n:5d} {seconds / ours:18.2f}x")


if __name__ == "__main__":
    main()
