"""Planner throughput: layouts evaluated per second, and the time to plan a 405B model.

Usage: python benchmarks/bench_planner.py [--runs N] [--cold-only] [--compare-src DIR]

Cold plans at the user's end (the first table): ``vramplan plan ... --json`` run as a
fresh process, the whole answer (search, largest micro-batch, longest context; the
cheapest changes or the serving advice when nothing fits), in wall-clock and CPU
seconds, each as a ratio to ``vramplan params llama-3.1-8b --json`` (a process that
imports vramplan and answers a trivial question) run in the same round, with its peak
RSS. The processes run with compiled bytecode, as an installed vramplan does
(``PYCACHE``). ``--compare-src DIR`` times the same commands with another checkout's
``src/`` too, in the same rounds (before/after figures on one machine in one run). The
goal: every plan under 1 s cold on the 2-core development machine.

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
import os
import sys
import tempfile
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
    d = enumerate_degrees(job.model, n, req.gpus_per_node, req.global_batch or default_global_batch(job.seq_len, n),
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
    ("Kimi-K2 on <=4,096 H100", ["kimi-k2", "--gpu", "h100", "--max-gpus", "4096"]),
    ("gpt-oss-120b on <=1,024 H100", ["gpt-oss-120b", "--gpu", "h100", "--max-gpus", "1024"]),
    ("Llama-3.1-70B LoRA on <=64 H100", ["llama-3.1-70b", "--gpu", "h100", "--max-gpus", "64", "--method", "lora"]),
    ("Llama-3.1-405B on 8 RTX 4090 (changes)", ["llama-3.1-405b", "--gpu", "rtx-4090", "--gpus", "8"]),
    ("Llama-3.1-70B serving on <=8 H100", ["llama-3.1-70b", "--infer", "--gpu", "h100", "--max-gpus", "8"]),
    ("DeepSeek-V3 serving on <=4,096 H100", ["deepseek-v3", "--infer", "--gpu", "h100", "--max-gpus", "4096",
                                             "--batch", "256"]),
    ("Llama-3.1-405B serving on 8 RTX 4090", ["llama-3.1-405b", "--infer", "--gpu", "rtx-4090", "--max-gpus", "8"]),
)
"""Every plan the goal covers (under 1 s cold, solvers included): training plans of
dense and MoE models up to 4,096 GPUs, one that fits nowhere (cheapest changes), and
serving plans (one that fits nowhere: the serving advice)."""
BASELINE = ["params", "llama-3.1-8b", "--json"]


PYCACHE = Path(tempfile.gettempdir()) / f"vramplan-bench-pycache-{os.getuid()}"
"""Where the timed processes keep their bytecode: an installed vramplan has its modules
compiled (pip compiles them), so the processes write and reuse bytecode here even when
the shell sets ``PYTHONDONTWRITEBYTECODE``; one untimed run per command fills it."""


def run_process(src: str, argv: list[str]) -> tuple[float, float, int] | None:
    """(wall seconds, CPU seconds, peak RSS in bytes) of ``python -m vramplan ARGV`` on
    ``src``; ``None`` when the command fails (e.g. an older tree refuses the search)."""
    import subprocess

    env = {**os.environ, "PYTHONPATH": src, "PYTHONPYCACHEPREFIX": str(PYCACHE)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    start = time.perf_counter()
    pid = subprocess.Popen([sys.executable, "-m", "vramplan", *argv], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL).pid
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - start
    if status:
        return None
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def cold_plans(runs: int, compare_src: str | None) -> None:
    """The first table: cold plans as fresh processes, against ``vramplan params``.

    Interleaved: each round runs the baseline and then every plan once, for every
    source tree, so a plan and the baseline it is divided by ran moments apart (the
    machine is shared; its load drifts). A ratio is the median over rounds of that
    round's plan / baseline; seconds are medians, peak RSS the largest."""
    import statistics

    srcs = [("this", str(Path(__file__).resolve().parents[1] / "src"))]
    if compare_src:
        srcs.append(("compare", str(Path(compare_src).resolve())))
    names = ["vramplan params llama-3.1-8b", *(name for name, _ in COLD_PLANS)]
    argvs = [BASELINE, *(["plan", *argv, "--json"] for _, argv in COLD_PLANS)]
    samples: dict[tuple[str, int], list[tuple[float, float, int] | None]] = {}
    for label, src in srcs:  # untimed: bytecode compiled, files in the page cache (as installed)
        for argv in argvs:
            run_process(src, argv)
    for _ in range(runs):
        for label, src in srcs:
            for i, argv in enumerate(argvs):
                samples.setdefault((label, i), []).append(run_process(src, argv))
    header = (f"{'cold (whole answer, fresh process)':40} {'src':8} {'wall s':>7} {'x params':>9} {'cpu s':>7} "
              f"{'x params':>9} {'peak MB':>8}")
    print(header)
    print("-" * len(header))
    for label, src in srcs:
        if any(b is None for b in samples[(label, 0)]):
            raise SystemExit(f"vramplan {' '.join(BASELINE)} failed on {src}")
    for i, name in enumerate(names):
        for label, _ in srcs:
            base, got = samples[(label, 0)], samples[(label, i)]
            if any(g is None for g in got):
                print(f"{name:40} {label:8} {'refused (the command exits with an error)':>44}")
                continue
            wall = statistics.median(g[0] for g in got)
            cpu = statistics.median(g[1] for g in got)
            wall_x = statistics.median(g[0] / b[0] for g, b in zip(got, base))
            cpu_x = statistics.median(g[1] / b[1] for g, b in zip(got, base))
            rss = max(g[2] for g in got)
            print(f"{name:40} {label:8} {wall:>7.2f} {wall_x:>8.1f}x {cpu:>7.2f} {cpu_x:>8.1f}x {rss / 1e6:>8.0f}")
    print(f"wall s: elapsed seconds (the user's wait; a busy machine stretches it); cpu s: user + system seconds "
          f"of the process (steadier under load). Medians of {runs} interleaved rounds; x params: the median of "
          "each round's ratio to the baseline run in that round; peak MB: the largest peak RSS.")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cold-only", action="store_true", help="Only the cold-plan table.")
    parser.add_argument("--compare-src", default=None, help="Another checkout's src/ to time the cold plans with.")
    args = parser.parse_args()
    cold_plans(max(1, args.runs), args.compare_src)
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
