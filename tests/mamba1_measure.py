"""Estimate against trace for Mamba-1 families and Zamba / Zamba2 hybrids at the shape of
docs/architectures.md's state-space table (4 layers, hidden 512, vocabulary 32,000, full
fine-tuning, bf16-mixed, batch 2 x 1024). Mamba-1's trace runs the scan's per-step loop
op by op: a few minutes per family.

    PYTHONPATH=src python tests/mamba1_measure.py [family ...] [--seq N] [--batch N] [--precision P]
"""

from __future__ import annotations

import argparse

_IDS = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)
_WIDTHS = dict(hidden_size=512, vocab_size=32000, **_IDS)
_MAMBA = dict(num_hidden_layers=4, state_size=16, expand=2, conv_kernel=4, **_WIDTHS)
CONFIGS = {
    "mamba": dict(model_type="mamba", **_MAMBA),
    "falcon_mamba": dict(model_type="falcon_mamba", **_MAMBA),
    # Mamba (dense MLP), Mamba (MoE), attention (dense MLP), Mamba (MoE)
    "jamba": dict(model_type="jamba", num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4,
                  intermediate_size=1024, num_experts=4, num_experts_per_tok=2, expert_layer_period=2,
                  expert_layer_offset=1, attn_layer_period=4, attn_layer_offset=2, mamba_d_state=16, mamba_expand=2,
                  mamba_d_conv=4, **_WIDTHS),
    # 2 Mamba + 2 hybrid layers
    "zamba": dict(model_type="zamba", num_hidden_layers=4, layers_block_type=["mamba", "hybrid", "mamba", "hybrid"],
                  num_attention_heads=8, num_key_value_heads=8, intermediate_size=1024, attention_hidden_size=1024,
                  mamba_d_state=16, mamba_expand=2, mamba_d_conv=4, n_mamba_heads=2, **_WIDTHS),
    # 2 Mamba-2 + 2 hybrid layers
    "zamba2": dict(model_type="zamba2", num_hidden_layers=4, layers_block_type=["mamba", "hybrid", "mamba", "hybrid"],
                   hybrid_layer_ids=[1, 3], num_attention_heads=8, num_key_value_heads=8, intermediate_size=1024,
                   mamba_d_state=32, n_mamba_heads=16, mamba_headdim=64, mamba_ngroups=1, chunk_size=128,
                   num_mem_blocks=1, use_mem_eff_path=False, **_WIDTHS),
}


def main() -> None:
    from vramplan.trace.compare import analytical_estimate, tensor_bytes
    from vramplan.trace.run import run_trace
    from vramplan.trace.setup import TraceSetup

    parser = argparse.ArgumentParser()
    parser.add_argument("families", nargs="*", default=list(CONFIGS))
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--precision", default="bf16-mixed")
    args = parser.parse_args()
    setup = TraceSetup(batch_size=args.batch, seq=args.seq, precision=args.precision)
    print(f"| config | trace MiB | estimate MiB | estimate / trace - 1 |   ({args.precision}, "
          f"batch {args.batch} x {args.seq})")
    for family in args.families:
        traced = run_trace(dict(CONFIGS[family]), setup).peak_bytes
        estimated = tensor_bytes(analytical_estimate(dict(CONFIGS[family]), setup))
        error = 100 * (estimated / traced - 1)
        print(f"| {family} | {traced / 2**20:.1f} | {estimated / 2**20:.1f} | {error:+.1f} % |", flush=True)


if __name__ == "__main__":
    main()
