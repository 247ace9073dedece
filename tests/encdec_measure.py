"""Encoder-decoder and encoder-only training and inference: ``vramplan train``/``infer``
against ``vramplan trace`` (one real step of transformers on fake tensors under CUDA's
allocation rules) on small real configs of each family.

Run: ``PYTHONPATH=src python tests/encdec_measure.py [NAME ...] [--eager] [--fp32] [--groups]``.
Prints per case the trace's tensor peak, the estimate's (the ``overhead`` category
left out, as the trace cannot see it) and the error; ``--groups`` adds the per-group
difference at each one's peak.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

DATA = Path(__file__).parent / "data" / "encdec"
MODELS = {
    "t5": str(DATA / "t5-small.json"),
    "flan-t5": str(DATA / "flan-t5-small.json"),
    "mt5": str(DATA / "mt5-small.json"),
    "bart": str(DATA / "bart-base.json"),
    "bert": "bert-base-uncased",
    "roberta": str(DATA / "roberta-base.json"),
    "modernbert": "modernbert-base",
}
"""Small real configs (their Hub ids in ``_name_or_path``; BERT and ModernBERT from the catalog)."""
TIED = ("flan-t5", "mt5")
"""transformers 5 builds every T5-family head tied to the embedding (configuration_t5.py
forces ``tie_word_embeddings=True``), where these checkpoints store an untied
``lm_head`` (which vramplan counts). ``NAME-tied`` runs the same config with the head
tied on both sides, so the comparison isolates the activations."""


def model_of(name: str):
    """A catalog name, a config path, or for ``NAME-tied`` the config dict with a tied head."""
    if name.endswith("-tied"):
        import json

        config = json.loads(Path(MODELS[name.removesuffix("-tied")]).read_text())
        return {**config, "tie_word_embeddings": True}
    return MODELS[name]
ENCODER_DECODER = ("t5", "flan-t5", "mt5", "bart")
BATCH, TARGET_TOKENS, INPUT_TOKENS = 8, 128, 512
"""Training: 8 sequences of 512 input tokens and 128 targets (encoder-only: 512 tokens)."""


def setups(name: str, *, attention: str, precision: str, mode: str, recompute: bool = False, method: str = "full"):
    from vramplan.trace.setup import TraceSetup

    encdec = name.removesuffix("-tied") in ENCODER_DECODER
    if mode == "train":
        return TraceSetup(mode="train", batch_size=BATCH, seq=TARGET_TOKENS if encdec else INPUT_TOKENS,
                          input_len=INPUT_TOKENS if encdec else None, attention=attention, precision=precision,
                          recompute=recompute, method=method, lora_targets=("all-linear",))
    return TraceSetup(mode="infer", batch_size=BATCH, seq=1 if encdec else INPUT_TOKENS, decode_tokens=8 if encdec else 0,
                      input_len=INPUT_TOKENS if encdec else None, attention=attention, precision=precision,
                      logits="last" if encdec else "all")


def compare(name: str, setup, groups: bool) -> float:
    from vramplan.trace.compare import analytical_estimate, group_diffs, tensor_bytes
    from vramplan.trace.run import run_trace
    from vramplan.units import format_bytes

    model = model_of(name)
    traced = run_trace(model, setup)
    est = analytical_estimate(model, setup)
    estimated = tensor_bytes(est)
    error = estimated / traced.peak_bytes - 1
    print(f"{name:14} {setup.mode:5} {setup.precision:10} {setup.attention:5} {traced.peak_phase:>9} "
          f"{traced.peak_bytes:>14,} {est.phase:>9} {estimated:>14,} {error:+8.2%}")
    if groups:
        print("    trace phases:    " + ", ".join(f"{p} {b:,}" for p, b in traced.to_estimate().phases))
        print("    estimate phases: " + ", ".join(f"{p} {b:,}" for p, b in est.phases))
        for c in est.components:
            print(f"      est {c.name:34} {c.bytes:>14,}")
        for c in traced.to_estimate().components:
            print(f"      trc {c.name:34} {c.bytes:>14,}")
        for d in group_diffs(traced.to_estimate(), est):
            if d.diff_bytes:
                print(f"    {d.group:22} trace {format_bytes(d.traced_bytes):>12}  estimate "
                      f"{format_bytes(d.analytical_bytes):>12}  diff {format_bytes(d.diff_bytes):>12}")
    return error


def main(argv: list[str]) -> None:
    import transformers

    warnings.simplefilter("ignore")
    transformers.logging.set_verbosity_error()
    names = [a for a in argv if not a.startswith("--")] or [*MODELS, *(f"{n}-tied" for n in TIED)]
    attention = "eager" if "--eager" in argv else "sdpa"
    precision = "fp32" if "--fp32" in argv else "bf16" if "--bf16" in argv else "bf16-mixed"
    modes = ["infer"] if "--infer" in argv else ["train"]
    print(f"{'model':14} {'mode':5} {'precision':10} {'attn':5} {'phase':>9} {'trace peak':>14} "
          f"{'phase':>9} {'estimate':>14} {'error':>8}")
    for name in names:
        for mode in modes:
            setup = setups(name, attention=attention, precision=precision, mode=mode, recompute="--recompute" in argv,
                           method="lora" if "--lora" in argv else "full")
            compare(name, setup, "--groups" in argv)


if __name__ == "__main__":
    main(sys.argv[1:])
