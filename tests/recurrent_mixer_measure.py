"""Recurrent token mixers (MiniMax's lightning attention, RecurrentGemma's RG-LRU, RWKV-4,
xLSTM's mLSTM): ``vramplan train``/``infer`` against ``vramplan trace`` (one real step of
transformers on fake tensors under CUDA's allocation rules) on small configs of each
family that keep its layer pattern.

Run: ``PYTHONPATH=src python tests/recurrent_mixer_measure.py [FAMILY ...] [--fp32] [--bf16] [--lora]
[--recompute] [--infer] [--groups]``. Prints per case the trace's tensor peak, the estimate's
(the ``overhead`` category left out, as the trace cannot see it) and the error; for a
family with a ``reference`` pattern (its recurrent layers turned into its attention
layers) also the error of the difference between the two, which isolates the mixer
from the terms the layers share (MiniMax's MoE experts). ``--groups`` adds the
per-group difference at each one's peak.
"""

from __future__ import annotations

import sys
import warnings

_IDS = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)

FAMILIES = {
    # MiniMax-01's pattern: lightning-attention layers, then a softmax-attention layer; every MLP an MoE
    "minimax": dict(model_type="minimax", num_hidden_layers=4, hidden_size=512, num_attention_heads=8,
                    num_key_value_heads=2, head_dim=64, intermediate_size=512, num_local_experts=4,
                    num_experts_per_tok=2, vocab_size=32000, block_size=256,
                    layer_types=["linear_attention"] * 3 + ["full_attention"], **_IDS),
    # Griffin's pattern: two recurrent blocks, then local attention (block_types repeats)
    "recurrent_gemma": dict(model_type="recurrent_gemma", num_hidden_layers=4, hidden_size=512, lru_width=512,
                            num_attention_heads=8, num_key_value_heads=1, head_dim=64, intermediate_size=1536,
                            attention_window_size=2048, vocab_size=32000, **_IDS),
    "rwkv": dict(model_type="rwkv", num_hidden_layers=4, hidden_size=512, attention_hidden_size=512,
                 intermediate_size=2048, vocab_size=32000, context_length=2048, **_IDS),
}
"""Small configs of each family, 4 layers of hidden 512."""

REFERENCE = {
    "minimax": dict(layer_types=["full_attention"] * 4),
    "recurrent_gemma": dict(block_types=["attention"]),
}
"""The same model with every recurrent layer an attention layer."""

BATCH, SEQ = 2, 1024


def setup_of(flags: set[str]):
    from vramplan.trace.setup import TraceSetup

    precision = "fp32" if "--fp32" in flags else "bf16" if "--bf16" in flags else "bf16-mixed"
    if "--infer" in flags:
        return TraceSetup(mode="infer", batch_size=BATCH, seq=SEQ, decode_tokens=0, precision=precision, cache="dynamic",
                          logits="last")
    return TraceSetup(mode="train", batch_size=BATCH, seq=SEQ, precision=precision,
                      method="lora" if "--lora" in flags else "full", lora_targets=("all-linear",),
                      recompute="--recompute" in flags)


def measure(config: dict, setup):
    """(traced peak, estimated tensor bytes, trace, estimate)."""
    from vramplan.trace.compare import analytical_estimate, tensor_bytes
    from vramplan.trace.run import run_trace

    traced = run_trace(config, setup)
    estimate = analytical_estimate(config, setup)
    return traced.peak_bytes, tensor_bytes(estimate), traced, estimate


def main(argv: list[str]) -> None:
    warnings.simplefilter("ignore")
    flags = {a for a in argv if a.startswith("--")}
    names = [a for a in argv if not a.startswith("--")] or list(FAMILIES)
    setup = setup_of(flags)
    print(f"{'family':10s} {'trace MiB':>10s} {'estimate':>10s} {'error':>8s} {'mixer Δ error':>14s}")
    for name in names:
        config = FAMILIES[name]
        traced, estimated, trace, estimate = measure(config, setup)
        delta = ""
        if name in REFERENCE:
            ref_traced, ref_estimated, _, _ = measure({**config, **REFERENCE[name]}, setup)
            delta = f"{((estimated - ref_estimated) - (traced - ref_traced)) / traced:+.2%}"
        print(f"{name:10s} {traced / 2**20:10.1f} {estimated / 2**20:10.1f} {estimated / traced - 1:+8.2%} {delta:>14s}")
        if "--groups" in flags:
            print("    trace at its peak:", ", ".join(f"{k} {v / 2**20:.2f}" for k, v in trace.at_peak))
            print("    estimate:", ", ".join(f"{c.name} {c.bytes / 2**20:.2f}" for c in estimate.components if c.bytes))

if __name__ == "__main__":
    main(sys.argv[1:])
