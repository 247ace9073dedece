"""Hyper-connection, compressed-attention and MLA/indexer families: ``vramplan train`` /
``infer`` against ``vramplan trace`` (one step of transformers on fake tensors under
CUDA's allocation and autocast rules) on small configs of each family.

Run: ``PYTHONPATH=src python tests/hyperconn_measure.py [NAME ...] [--lora] [--infer]
[--dynamic] [--recompute] [--fp32] [--bf16] [--eager] [--groups]``. Prints per case the trace's tensor peak, the estimate's
(the ``overhead`` category left out, as the trace cannot see it) and the error;
``--groups`` adds each group's difference at the peak.
"""

from __future__ import annotations

import sys
import warnings

_IDS = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)
_MLA = dict(hidden_size=256, vocab_size=2000, num_attention_heads=4, num_key_value_heads=4, intermediate_size=512,
            moe_intermediate_size=128, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1,
            kv_lora_rank=64, q_lora_rank=96, qk_rope_head_dim=16, qk_nope_head_dim=48, v_head_dim=64,
            index_n_heads=16, index_head_dim=32, index_topk=64, n_group=1, topk_group=1, **_IDS)
CONFIGS = {
    # Hunyuan v4: layer 0 dense, 1-3 MoE; indexer in layers 0 and 1 (full), shared in 2-3
    "hy_v4": dict(_MLA, model_type="hy_v4", num_hidden_layers=4, hc_mult=4),
    "hy_v4-dense": dict(_MLA, model_type="hy_v4", num_hidden_layers=4, hc_mult=4, mlp_layer_types=["dense"] * 4),
    "axk2": dict(_MLA, model_type="axk2", num_hidden_layers=3, gated_norm_rank=16, first_k_dense_replace=1),
    "axk2-dense": dict(_MLA, model_type="axk2", num_hidden_layers=3, gated_norm_rank=16, first_k_dense_replace=3),
    "dots3": dict(_MLA, model_type="dots3_note_text", num_hidden_layers=6, sliding_window=128,
                  swa_num_attention_heads=2, swa_num_key_value_heads=2, swa_q_lora_rank=96, swa_kv_lora_rank=128,
                  swa_head_dim=64, swa_qk_nope_head_dim=48, swa_v_head_dim=32, first_k_dense_replace=1),
    "deepseek_v4": dict(model_type="deepseek_v4", hidden_size=256, vocab_size=2000, num_hidden_layers=4,
                        num_attention_heads=4, num_key_value_heads=1, head_dim=64, q_lora_rank=96,
                        moe_intermediate_size=128, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1,
                        o_groups=2, o_lora_rank=64, index_n_heads=16, index_head_dim=32, index_topk=64,
                        sliding_window=64, hc_mult=4,
                        compress_rates={"compressed_sparse_attention": 4, "heavily_compressed_attention": 16},
                        layer_types=["sliding_attention", "compressed_sparse_attention",
                                     "heavily_compressed_attention", "compressed_sparse_attention"],
                        mlp_layer_types=["hash_moe", "moe", "moe", "moe"], **_IDS),
    "dots3-dense": dict(_MLA, model_type="dots3_note_text", num_hidden_layers=6, sliding_window=128,
                        swa_num_attention_heads=2, swa_num_key_value_heads=2, swa_q_lora_rank=96, swa_kv_lora_rank=128,
                        swa_head_dim=64, swa_qk_nope_head_dim=48, swa_v_head_dim=32, first_k_dense_replace=6),
    "deepseek_v32": dict(_MLA, model_type="deepseek_v32", num_hidden_layers=3, first_k_dense_replace=1),
    "deepseek_v32-dense": dict(_MLA, model_type="deepseek_v32", num_hidden_layers=3, first_k_dense_replace=3),
    "glm_moe_dsa": dict(_MLA, model_type="glm_moe_dsa", num_hidden_layers=3, first_k_dense_replace=1),
    "deepseek_v3": dict(_MLA, model_type="deepseek_v3", num_hidden_layers=3, first_k_dense_replace=1),
    "deepseek_v3-dense": dict(_MLA, model_type="deepseek_v3", num_hidden_layers=3, first_k_dense_replace=3),
    "glm4_moe_lite-dense": dict(_MLA, model_type="glm4_moe_lite", num_hidden_layers=3, mlp_layer_types=["dense"] * 3),
    "glm4_moe_lite": dict(_MLA, model_type="glm4_moe_lite", num_hidden_layers=3, first_k_dense_replace=1),
    "minicpm3": {**{k: v for k, v in _MLA.items() if "expert" not in k and not k.startswith(("index", "n_group",
                                                                                                "topk"))},
                 "model_type": "minicpm3", "num_hidden_layers": 3},
}
BATCH, SEQ = 2, 256


def setup_of(argv: list[str]):
    from vramplan.trace.setup import TraceSetup

    precision = "fp32" if "--fp32" in argv else "bf16" if "--bf16" in argv else "bf16-mixed"
    attention = "eager" if "--eager" in argv else "sdpa"
    if "--infer" in argv:
        # transformers has no static cache for compressed attention layers
        cache = "dynamic" if "--dynamic" in argv else "static"
        return TraceSetup(mode="infer", batch_size=BATCH, seq=SEQ, decode_tokens=0, precision=precision,
                          attention=attention, logits="all", cache=cache)
    return TraceSetup(mode="train", batch_size=BATCH, seq=SEQ, precision=precision, attention=attention,
                      recompute="--recompute" in argv,
                      method="lora" if "--lora" in argv else "full", lora_targets=("all-linear",),
                      lora_rank=4)


def compare(name: str, setup, groups: bool) -> float:
    from vramplan.trace.compare import analytical_estimate, group_diffs, tensor_bytes
    from vramplan.trace.run import run_trace
    from vramplan.units import format_bytes

    config = dict(CONFIGS[name])
    traced = run_trace(config, setup)
    est = analytical_estimate(config, setup)
    estimated = tensor_bytes(est)
    error = estimated / traced.peak_bytes - 1
    print(f"{name:14} {setup.mode:5} {setup.method:5} {setup.precision:10} {traced.peak_phase:>9} "
          f"{traced.peak_bytes:>14,} {est.phase:>9} {estimated:>14,} {error:+8.2%}", flush=True)
    if groups:
        print("    trace phases:    " + ", ".join(f"{p} {b:,}" for p, b in traced.to_estimate().phases))
        print("    estimate phases: " + ", ".join(f"{p} {b:,}" for p, b in est.phases))
        for d in group_diffs(traced.to_estimate(), est):
            if d.diff_bytes:
                print(f"    {d.group:22} trace {format_bytes(d.traced_bytes):>12}  estimate "
                      f"{format_bytes(d.analytical_bytes):>12}  diff {format_bytes(d.diff_bytes):>12}")
        for c in est.components:
            if c.category == "activations":
                print(f"      est {c.name:40} {c.bytes:>14,}")
    return error


def main(argv: list[str]) -> None:
    import transformers

    warnings.simplefilter("ignore")
    transformers.logging.set_verbosity_error()
    names = [a for a in argv if not a.startswith("--")] or list(CONFIGS)
    setup = setup_of(argv)
    for name in names:
        compare(name, setup, "--groups" in argv)


if __name__ == "__main__":
    main(sys.argv[1:])
