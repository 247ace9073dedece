"""Kimi Linear and Bailing-hybrid (Kimi delta attention beside MLA and MoE): ``vramplan
train``/``infer`` against ``vramplan trace`` (one real step of transformers on fake
tensors under CUDA's allocation rules) on small configs of each family: 4 layers,
hidden 512, 8 KDA heads of 64, vocabulary 32,000, batch 2 x 1024 tokens.

Run: ``PYTHONPATH=src python tests/kda_measure.py [FAMILY ...] [--layers LLAL] [--mlps dsss]
[--infer] [--fp32 | --bf16] [--recompute] [--lora | --all-linear]``. ``--layers``: ``L`` a KDA layer, ``A``
an MLA layer; ``--mlps``: ``d`` dense, ``s`` sparse. Prints per family the trace's tensor
peak, the estimate's (the ``overhead`` category left out, as the trace cannot see it)
and the error.
"""

from __future__ import annotations

import sys
import warnings

_IDS = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)
_COMMON = dict(hidden_size=512, vocab_size=32000, num_attention_heads=8, num_key_value_heads=8,
               intermediate_size=1536, moe_intermediate_size=256, num_experts=8, num_experts_per_token=2,
               num_shared_experts=1, kv_lora_rank=128, qk_rope_head_dim=32, qk_nope_head_dim=64, v_head_dim=64,
               linear_head_dim=64, linear_num_heads=8, **_IDS)
CONFIGS = {
    "kimi_linear": dict(model_type="kimi_linear", **_COMMON),
    "bailing_hybrid": dict(model_type="bailing_hybrid", first_k_dense_replace=1, num_expert_group=1, topk_group=1,
                           num_nextn_predict_layers=0, **_COMMON),
}
LORA_RANK = {"bailing_hybrid": 8}
"""Bailing's per-head attention gate (``g_proj``) is 8 rows here: rank 16 exceeds it."""


def config(family: str, layers: str = "LLAL", mlps: str = "dsss") -> dict:
    return dict(CONFIGS[family], num_hidden_layers=len(layers),
                layer_types=["linear_attention" if k == "L" else "full_attention" for k in layers],
                mlp_layer_types=["dense" if m == "d" else "sparse" for m in mlps])


def _option(args: list[str], name: str, default: str) -> str:
    return args[args.index(name) + 1] if name in args else default


def main(args: list[str]) -> None:
    warnings.simplefilter("ignore")
    from vramplan.trace.compare import analytical_estimate, tensor_bytes
    from vramplan.trace.run import run_trace
    from vramplan.trace.setup import TraceSetup

    layers, mlps = _option(args, "--layers", "LLAL"), _option(args, "--mlps", "dsss")
    families = [a for a in args if a in CONFIGS] or list(CONFIGS)
    for family in families:
        kw = dict(batch_size=2, seq=1024)
        if "--infer" in args:
            kw["mode"] = "infer"
        if "--fp32" in args or "--bf16" in args:
            kw["precision"] = "fp32" if "--fp32" in args else "bf16"
        if "--recompute" in args:
            kw["recompute"] = True
        if "--lora" in args:
            kw.update(method="lora", lora_rank=LORA_RANK.get(family, 16))
        if "--all-linear" in args:  # every linear, the gates' 8-row b_proj included: rank 8
            kw.update(method="lora", lora_rank=8, lora_targets=("all-linear",))
        setup = TraceSetup(**kw)
        cfg = config(family, layers, mlps)
        traced = run_trace(cfg, setup).peak_bytes
        estimate = tensor_bytes(analytical_estimate(cfg, setup))
        print(f"{family:16s} {layers} {mlps} {setup.mode:5s} trace {traced / 2**20:9.2f} MiB  "
              f"estimate {estimate / 2**20:9.2f} MiB  {estimate / traced - 1:+.2%}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
