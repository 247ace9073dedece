"""Multimodal wrappers with images: ``vramplan train``/``infer --images`` against
``vramplan trace --images`` (one real step of the whole wrapper on fake tensors, under
CUDA's allocation rules) on small configs of each wrapper (transformers' defaults with
4 text layers of width 512 and a 4-block tower of width 256, in tests/data/vision).

Run: ``PYTHONPATH=src python tests/vision_measure.py [NAME ...] [--groups]``.
Prints per case the trace's tensor peak, the estimate's (the ``overhead`` category left
out: the trace cannot see it) and the error.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

DATA = Path(__file__).parent / "data" / "vision"
MODELS = {name: str(DATA / f"{name}-small.json") for name in ("qwen2_5_vl", "qwen3_vl", "gemma3", "llava", "mllama")}
BATCH, TEXT_TOKENS, IMAGES, IMAGE_SIDE = 2, 256, 2, 448
"""2 sequences of 2 images of 448 x 448 px and 256 text tokens."""

CASES = {
    "train-full": dict(mode="train", method="full"),
    "train-lora": dict(mode="train", method="lora"),
    "infer": dict(mode="infer", decode_tokens=2),
}


def setup_of(case: str, **more):
    from vramplan.trace.setup import TraceSetup

    return TraceSetup(**{"batch_size": BATCH, "seq": TEXT_TOKENS, "images": IMAGES, "image_size": IMAGE_SIDE,
                         **CASES[case], **more})


def load(name: str) -> dict:
    import json

    return json.loads(Path(MODELS[name]).read_text())


def compare(name: str, case: str, *, groups: bool = False, **more) -> tuple[int, int]:
    """(traced peak, estimated tensor bytes)."""
    from vramplan.trace.compare import analytical_estimate, group_diffs, tensor_bytes
    from vramplan.trace.run import run_trace

    config, setup = load(name), setup_of(case, **more)
    traced = run_trace(config, setup)
    est = analytical_estimate(config, setup)
    estimated = tensor_bytes(est)
    print(f"{name:12} {case:11} {traced.peak_phase:>14} {traced.peak_bytes:>14,} {est.phase:>14} {estimated:>14,} "
          f"{estimated / traced.peak_bytes - 1:+8.2%}", flush=True)
    if groups:
        print("    trace phases:    " + ", ".join(f"{p} {b:,}" for p, b in traced.to_estimate().phases))
        print("    estimate phases: " + ", ".join(f"{p} {b:,}" for p, b in est.phases))
        for c in est.components:
            print(f"      est {c.name:40} {c.bytes:>14,}")
        for c in traced.to_estimate().components:
            print(f"      trc {c.name:40} {c.bytes:>14,}")
        for d in group_diffs(traced.to_estimate(), est):
            print(f"    {d.group:24} trace {d.traced_bytes:>14,} estimate {d.analytical_bytes:>14,} "
                  f"diff {d.diff_bytes:>+14,}")
    return traced.peak_bytes, estimated


def main(argv: list[str]) -> None:
    warnings.simplefilter("ignore")
    groups = "--groups" in argv
    names = [a for a in argv if not a.startswith("--")] or list(MODELS)
    print(f"{'wrapper':12} {'case':11} {'trace phase':>14} {'trace peak':>14} {'est. phase':>14} {'estimate':>14} "
          f"{'error':>8}")
    for name in names:
        for case in CASES:
            compare(name, case, groups=groups)


if __name__ == "__main__":
    main(sys.argv[1:])
