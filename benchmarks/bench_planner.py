"""Planner throughput: layouts evaluated per second, and the time to plan a 405B model.

Usage: python benchmarks/bench_planner.py [--runs N] [--cold-only] [--compare-src DIR]

Cold plans at the user's end (the first table): ``vramplan plan ... --json`` run as a
fresh process, the whole answer (search, largest micro-batch, longest context), the
median of ``--runs`` processes in wall-clock and in CPU seconds, each as a ratio to
``vramplan params llama-3.1-8b --json`` (a process that imports vramplan and answers a
trivial question) timed in the same run, with its peak RSS. ``--compare-src DIR`` times the same commands with another
checkout's ``src/`` too (before/after figures on one machine in one run).

Rows:
* "405B on 1,024 H100" — ``plan()`` over every layout of exactly 1,024 GPUs (cold: the
  first call, which also builds the activation coefficients; warm: the best of N).
* "405B sweep 1..1,024 H100" — every GPU count ``--max-gpus 1024`` tries.
* "70B sweep 1..512 A100-80GB" — the same for a smaller model.

The peer, measured in the same run, is the same per-GPU arithmetic called once per
layout with plain ints (:func:`vramplan.distributed.training_terms`, what a Python loop
over layouts would do), timed on a sample of the same layouts; the ratio column is
vectorised layouts/s over the loop's.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vramplan.catalog import find_model  # noqa: E402
from vramplan.distributed import TrainingJob, job_states, training_terms  # noqa: E402
from vramplan.gpus import find_gpu  # noqa: E402
from vramplan.parallel import ParallelLayout  # noqa: E402
from vramplan.planner import (  # noqa: E402
    ENGINE_SETTINGS,
    PlanRequest,
    default_global_batch,
    enumerate_degrees,
    gpu_counts_up_to,
    plan,
)
from vramplan.training import TrainingSetup  # noqa: E402

LOOP_SAMPLE = 2000
"""Layouts the per-layout loop evaluates to measure its rate."""


def best_of(runs: int, fn) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(runs):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def loop_rate(req: PlanRequest) -> float:
    """Layouts/s of a Python loop calling the scalar arithmetic once per layout."""
    job = req.job
    n = max(req.gpu_counts)
    d = enumerate_degrees(job.model, n, req.gpus_per_node, req.global_batch or default_global_batch(job.seq, n),
                          req.micro_batch_sizes)
    rows = [(int(d["dp"][i]), int(d["tp"][i]), int(d["pp"][i]), int(d["cp"][i]), int(d["ep"][i]), bool(d["sp"][i]),
             int(d["mbs"][i]), int(d["m"][i])) for i in range(min(d["dp"].size, LOOP_SAMPLE))]
    settings = ENGINE_SETTINGS
    states = {s.engine: job_states(job, s.engine) for s in settings}
    count = 0
    start = time.perf_counter()
    for i, (dp, tp, pp, cp, ep, sp, mbs, m) in enumerate(rows):
        s = settings[i % len(settings)]
        layout = ParallelLayout(dp=dp, tp=tp, pp=pp, cp=cp, ep=ep, sequence_parallel=sp, micro_batches=m,
                                engine=s.engine, zero_stage=s.zero_stage, fsdp=s.fsdp, offload=s.offload)
        rjob = job.with_setup(batch=mbs)
        for stage in ("first", "last"):
            training_terms(rjob, layout, stage=stage, states=states[s.engine])
        count += 1
    return count / (time.perf_counter() - start)


COLD_PLANS = (
    ("Llama-3.1-405B on <=1,024 H100", ["llama-3.1-405b", "--gpu", "h100", "--max-gpus", "1024"]),
    ("Qwen3-235B-A22B on <=1,024 H200", ["qwen3-235b-a22b", "--gpu", "h200", "--max-gpus", "1024"]),
    ("DeepSeek-V3 on <=4,096 H100", ["deepseek-v3", "--gpu", "h100", "--max-gpus", "4096"]),
    ("Llama-3.1-70B serving on <=8 H100", ["llama-3.1-70b", "--infer", "--gpu", "h100", "--max-gpus", "8"]),
)
BASELINE = ["params", "llama-3.1-8b", "--json"]


def run_process(src: str, argv: list[str]) -> tuple[float, float, int] | None:
    """(wall seconds, CPU seconds, peak RSS in bytes) of ``python -m vramplan ARGV`` on
    ``src``; ``None`` when the command fails (e.g. an older tree refuses the search)."""
    import os
    import subprocess

    env = {**os.environ, "PYTHONPATH": src}
    start = time.perf_counter()
    pid = subprocess.Popen([sys.executable, "-m", "vramplan", *argv], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL).pid
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - start
    if status:
        return None
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def median_process(src: str, argv: list[str], runs: int) -> tuple[float, float, int] | None:
    """Median wall and CPU seconds over ``runs`` processes, and the largest peak RSS;
    ``None`` when the command fails."""
    import statistics

    samples = [run_process(src, argv) for _ in range(runs)]
    if any(s is None for s in samples):
        return None
    return (statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples),
            max(s[2] for s in samples))


def cold_plans(runs: int, compare_src: str | None) -> None:
    """The first table: cold plans as fresh processes, against ``vramplan params``."""
    srcs = [("this", str(Path(__file__).resolve().parents[1] / "src"))]
    if compare_src:
        srcs.append(("compare", str(Path(compare_src).resolve())))
    header = (f"{'cold plan (whole answer)':34} {'src':8} {'wall s':>7} {'x params':>9} {'cpu s':>7} "
              f"{'x params':>9} {'peak MB':>8}")
    print(header)
    print("-" * len(header))
    for label, src in srcs:
        baseline = median_process(src, BASELINE, runs)
        if baseline is None:
            raise SystemExit(f"vramplan {' '.join(BASELINE)} failed on {src}")
        base, base_cpu, base_rss = baseline
        print(f"{'vramplan params llama-3.1-8b':34} {label:8} {base:>7.2f} {1:>8.1f}x {base_cpu:>7.2f} {1:>8.1f}x "
              f"{base_rss / 1e6:>8.0f}")
        for name, argv in COLD_PLANS:
            measured = median_process(src, ["plan", *argv, "--json"], runs)
            if measured is None:
                print(f"{name:34} {label:8} {'refused (the command exits with an error)':>44}")
                continue
            t, cpu, rss = measured
            print(f"{name:34} {label:8} {t:>7.2f} {t / base:>8.1f}x {cpu:>7.2f} {cpu / base_cpu:>8.1f}x "
                  f"{rss / 1e6:>8.0f}")
    print("wall s: elapsed seconds (the user's wait; a busy machine stretches it); cpu s: user + system "
          "seconds of the process (steadier under load). Medians of the runs; peak MB: the largest.")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cold-only", action="store_true", help="Only the cold-plan table.")
    parser.add_argument("--compare-src", default=None, help="Another checkout's src/ to time the cold plans with.")
    args = parser.parse_args()
    cold_plans(max(1, min(args.runs, 3)), args.compare_src)
    if args.cold_only:
        return

    h100, a100 = find_gpu("h100"), find_gpu("a100-80gb")
    big = find_model("llama-3.1-405b").spec()
    mid = find_model("llama-3.1-70b").spec()
    cases = [
        ("405B on 1,024 H100", PlanRequest(job=TrainingJob(model=big, setup=TrainingSetup(seq=8192)), gpu=h100,
                                           gpu_counts=(1024,))),
        ("405B sweep 1..1,024 H100", PlanRequest(job=TrainingJob(model=big, setup=TrainingSetup(seq=8192)),
                                                 gpu=h100, gpu_counts=gpu_counts_up_to(1024))),
        ("70B sweep 1..512 A100-80GB", PlanRequest(job=TrainingJob(model=mid, setup=TrainingSetup(seq=4096)),
                                                   gpu=a100, gpu_counts=gpu_counts_up_to(512))),
    ]
    header = f"{'case':28} {'layouts':>10} {'cold s':>8} {'warm s':>8} {'layouts/s':>12} {'loop layouts/s':>15} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for name, req in cases:
        start = time.perf_counter()
        result = plan(replace(req))
        cold = time.perf_counter() - start
        warm, result = best_of(args.runs, lambda: plan(req))
        rate = result.evaluated / warm
        peer = loop_rate(req)
        print(f"{name:28} {result.evaluated:>10,} {cold:>8.3f} {warm:>8.3f} {rate:>12,.0f} {peer:>15,.0f} "
              f"{rate / peer:>6.0f}x")
    print(f"\nbest layout for 405B on 1,024 H100: {plan(cases[0][1], top=1).candidates[0].layout.describe()}")


if __name__ == "__main__":
    main()
