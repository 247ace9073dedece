"""Accuracy of ``vramplan train`` against PyTorch's own allocations.

Each case (tests/train_cases.py) builds a tiny model with transformers on CPU, runs
two real training steps and records every live tensor storage with a dispatch-mode
tracker (tests/train_measure.py); the estimate is built from the same config by
vramplan. Prints the peak and each phase: estimate, measured, error %. The peer is
PyTorch itself, measured in the same run.

    python benchmarks/bench_training_accuracy.py [--json]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]


def rows():
    from train_cases import CASES, estimate, measure_as_cuda

    for case in CASES:
        start = time.perf_counter()
        m = measure_as_cuda(case)
        e = estimate(case)
        phases = dict(e.phases)
        yield {
            "case": case.name,
            "estimate_bytes": e.total_bytes,
            "measured_bytes": m.peak_bytes,
            "error_pct": round(100 * (e.total_bytes - m.peak_bytes) / m.peak_bytes, 2),
            "phase": e.phase,
            "phases": {p: {"estimate": phases[p], "measured": m.phase_peaks[p]} for p in phases},
            "seconds": round(time.perf_counter() - start, 2),
        }


def main() -> None:
    import warnings

    warnings.filterwarnings("ignore")
    import transformers

    transformers.logging.set_verbosity_error()
    data = list(rows())
    if "--json" in sys.argv:
        print(json.dumps(data, indent=2))
        return
    header = f"{'case':34s} {'estimate MB':>12s} {'measured MB':>12s} {'error %':>8s}  " \
             f"{'fwd err %':>9s} {'bwd err %':>9s} {'step err %':>10s}"
    print(header)
    print("-" * len(header))
    for r in data:
        errs = [100 * (v["estimate"] - v["measured"]) / v["measured"] for v in r["phases"].values()]
        print(f"{r['case']:34s} {r['estimate_bytes'] / 1e6:12.3f} {r['measured_bytes'] / 1e6:12.3f} "
              f"{r['error_pct']:+8.2f}  {errs[0]:+9.2f} {errs[1]:+9.2f} {errs[2]:+10.2f}")
    worst = max(abs(r["error_pct"]) for r in data)
    print(f"\n{len(data)} cases; worst peak error {worst:.2f} %; MB = 10^6 bytes of tensor memory")


if __name__ == "__main__":
    main()
