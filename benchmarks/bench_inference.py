"""Speed of the inference estimator from Python, and of the max-context solver.

Run: ``python benchmarks/bench_inference.py`` (from the repository root).

Prints one table: estimates per second for each engine on a few catalog models, and
the wall time of ``max_context`` next to the time of one estimate of the same setup
(the ratio says how many estimates the bisection costs).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vramplan.inference import InferenceSetup, estimate_inference, max_context  # noqa: E402
from vramplan.model import resolve_model  # noqa: E402

MODELS = ("llama-3.1-8b", "qwen3-30b-a3b", "deepseek-v3", "gemma-3-27b")
ENGINES = (("hf", None), ("vllm", None), ("llamacpp", "Q4_K_M"))
MIN_SECONDS = 0.5
"""Each timing repeats its call until this much time has passed."""


def per_call_seconds(fn) -> float:
    """Mean seconds per call of ``fn`` over at least :data:`MIN_SECONDS`."""
    fn()  # warm caches (catalog parsing, imports)
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < MIN_SECONDS:
        fn()
        calls += 1
    return elapsed / calls


def main() -> None:
    rows = []
    for name in MODELS:
        spec = resolve_model(name)
        for engine, weights in ENGINES:
            setup = InferenceSetup(engine=engine, weights=weights, context=8192, batch=4, gpu="h100")
            one = per_call_seconds(lambda: estimate_inference(spec, setup))
            solve = per_call_seconds(lambda: max_context(spec, setup))
            rows.append((name, engine, 1 / one, solve * 1e3, solve / one))
    header = f"{'model':<16} {'engine':<9} {'estimates/s':>12} {'max_context ms':>15} {'solver/estimate':>16}"
    print(header)
    print("-" * len(header))
    for name, engine, rate, solve_ms, ratio in rows:
        print(f"{name:<16} {engine:<9} {rate:>12,.0f} {solve_ms:>15.1f} {ratio:>15.1f}x")


if __name__ == "__main__":
    main()
