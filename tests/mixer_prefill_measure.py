"""Prefill (inference) peak of Mamba-2 and gated delta-net hybrids: ``vramplan infer``'s
tensor peak against ``vramplan trace --infer`` (one real forward of transformers on fake
tensors under CUDA's allocation rules) on small configs: 4 layers, hidden 512,
vocabulary 32,000.

Run: ``PYTHONPATH=src python tests/mixer_prefill_measure.py [FAMILY ...] [--batch 2]
[--seq 1024] [--fp32 | --bf16]``. Prints per family the trace's tensor peak, the
estimate's (the ``overhead`` category left out, as the trace cannot see it) and the error.
"""

from __future__ import annotations

import sys
import warnings

_IDS = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)
_WIDTHS = dict(hidden_size=512, vocab_size=32000, num_hidden_layers=4, **_IDS)
_GDN = dict(num_attention_heads=8, num_key_value_heads=2, head_dim=64, intermediate_size=1024,
            linear_num_key_heads=4, linear_num_value_heads=8, linear_key_head_dim=64, linear_value_head_dim=64,
            linear_conv_kernel_dim=4)
CONFIGS = {
    "qwen3_5_text": dict(model_type="qwen3_5_text", layer_types=["linear_attention"] * 3 + ["full_attention"],
                         **_GDN, **_WIDTHS),
    "qwen3_next": dict(model_type="qwen3_next", layer_types=["linear_attention"] * 3 + ["full_attention"],
                       moe_intermediate_size=256, shared_expert_intermediate_size=256, num_experts=8,
                       num_experts_per_tok=2, mlp_only_layers=[0, 1, 2, 3], **_GDN, **_WIDTHS),
    # OLMo-hybrid: q/k/v/a/b/g projections of their own, the output gate projected after the rule
    "olmo_hybrid": dict(model_type="olmo_hybrid", layer_types=["linear_attention"] * 3 + ["full_attention"],
                        **_GDN, **_WIDTHS),
    "lara_mini": dict(model_type="lara_mini", layer_types=["linear_attention"] * 3 + ["full_attention"],
                      sliding_window=4096, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=256,
                      shared_expert_intermediate_size=256, **_GDN, **_WIDTHS),
    "mamba2": dict(model_type="mamba2", num_heads=16, head_dim=64, state_size=64, n_groups=1, chunk_size=256,
                   expand=2, **_WIDTHS),
    "bamba": dict(model_type="bamba", num_attention_heads=8, num_key_value_heads=2, intermediate_size=1024,
                  mamba_n_heads=16, mamba_d_head=64, mamba_d_state=64, mamba_n_groups=1, mamba_chunk_size=256,
                  attn_layer_indices=[3], **_WIDTHS),
    "falcon_h1": dict(model_type="falcon_h1", num_attention_heads=8, num_key_value_heads=2, intermediate_size=1024,
                      mamba_d_ssm=1024, mamba_n_heads=16, mamba_d_head=64, mamba_n_groups=1, mamba_d_state=64,
                      mamba_chunk_size=256, mamba_rms_norm=True, **_WIDTHS),
    "nemotron_h": dict(model_type="nemotron_h", layers_block_type=["mamba", "mlp", "mamba", "attention"],
                       num_attention_heads=8, num_key_value_heads=2, head_dim=64, intermediate_size=1024,
                       ssm_state_size=64, mamba_num_heads=16, mamba_head_dim=64, n_groups=1, chunk_size=256,
                       use_mamba_kernels=False, **_WIDTHS),
    # Zamba2: one hybrid layer (the shared attention block, then Mamba-2); transformers' cache
    # cannot run a prefill without an attention layer
    "zamba2": dict(model_type="zamba2", layers_block_type=["mamba", "hybrid", "mamba", "mamba"], hybrid_layer_ids=[1],
                   num_attention_heads=8, num_key_value_heads=8, intermediate_size=1024, mamba_d_state=64,
                   n_mamba_heads=16, mamba_headdim=64, mamba_ngroups=1, chunk_size=256, num_mem_blocks=1,
                   use_mem_eff_path=False, **_WIDTHS),
    "granitemoehybrid": dict(model_type="granitemoehybrid", layer_types=["mamba"] * 3 + ["attention"],
                             num_attention_heads=8, num_key_value_heads=2, intermediate_size=1024,
                             shared_intermediate_size=1024, num_local_experts=0, mamba_n_heads=16, mamba_d_head=64,
                             mamba_d_state=64, mamba_n_groups=1, mamba_chunk_size=256, mamba_expand=2,
                             **_WIDTHS),
}


def _option(args: list[str], name: str, default: str) -> str:
    return args[args.index(name) + 1] if name in args else default


def main(args: list[str]) -> None:
    warnings.simplefilter("ignore")
    from vramplan.trace.compare import analytical_estimate, tensor_bytes
    from vramplan.trace.run import run_trace
    from vramplan.trace.setup import TraceSetup

    families = [a for a in args if a in CONFIGS] or list(CONFIGS)
    batch, seq = int(_option(args, "--batch", "2")), int(_option(args, "--seq", "1024"))
    for family in families:
        kw = dict(mode="infer", batch_size=batch, seq=seq)
        if "--fp32" in args or "--bf16" in args:
            kw["precision"] = "fp32" if "--fp32" in args else "bf16"
        setup = TraceSetup(**kw)
        traced = run_trace(CONFIGS[family], setup)
        estimate = tensor_bytes(analytical_estimate(CONFIGS[family], setup))
        print(f"{family:16s} {batch}x{seq} {setup.precision:12s} trace {traced.peak_bytes / 2**20:9.2f} MiB  "
              f"estimate {estimate / 2**20:9.2f} MiB  {estimate / traced.peak_bytes - 1:+.2%}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
