"""What a model and a sequence admit: the one tensor-parallel rule and the one
sequence-split rule. Training (:meth:`ParallelLayout.check_model`,
:meth:`ParallelLayout.check_sequence`), serving (:func:`vramplan.memory.weights.check_tensor_parallel`),
both planners and the engines all ask these two functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vramplan.parallel.arrays import where

if TYPE_CHECKING:
    from vramplan.model.spec import ModelSpec
    from vramplan.parallel.arrays import Flags, Ints


def tensor_parallel_problem(spec: ModelSpec, tp: int) -> tuple[str, int] | None:
    """The one tensor-parallel admissibility rule (training, serving and the planner):
    ``None`` when ``spec`` splits over ``tp`` ranks, else the (field, value) that ``tp``
    fails. tp must divide the query heads and the MLP widths (Megatron's
    ``ColumnParallelLinear``/``RowParallelLinear``, vLLM's ``divide()`` asserts), and
    divide the KV heads or be a multiple of them (vLLM ``QKVParallelLinear`` then
    replicates KV heads; MLA's latent cache is not split by head, so it is exempt).
    Attention heads matter only where softmax attention runs; each token mixer without
    one splits by its own unit (:func:`mixer_tensor_parallel_problem`)."""
    if tp == 1:
        return None
    heads, kv = spec.num_attention_heads, spec.num_kv_heads
    if has_attention(spec):
        if heads % tp:
            return ("num_attention_heads", heads)
        if getattr(spec, "mla", None) is None and kv % tp and tp % kv:
            return ("num_kv_heads", kv)
    problem = mixer_tensor_parallel_problem(spec, tp)
    if problem is not None:
        return problem
    if spec.num_dense_layers and spec.intermediate_size % tp:
        return ("intermediate_size", spec.intermediate_size)
    if spec.moe is not None and spec.moe.expert_intermediate_size % tp:
        return ("moe intermediate size", spec.moe.expert_intermediate_size)
    return None


def has_attention(spec: ModelSpec) -> bool:
    """Whether some layer runs attention over heads (softmax self-, cross- or compressed
    attention, or lightning attention), so that tensor parallelism splits heads."""
    if not spec.layer_mixers:
        return True
    return any(m in ("attention", "cross_attention", "compressed_attention", "lightning_attention")
               for m in spec.layer_mixers)


def mixer_tensor_parallel_problem(spec: ModelSpec, tp: int) -> tuple[str, int] | None:
    """The unit each token mixer without softmax attention splits by over ``tp`` ranks,
    as vLLM shards it: Mamba's inner channels (``MambaMixer``: column-parallel
    ``in_proj``), Mamba-2's heads (``MambaMixer2`` asserts ``num_heads % tp == 0``; its
    B/C groups are replicated when tp does not divide them), the gated delta-net's key
    and value heads (``Qwen3NextGatedDeltaNet``), Kimi delta attention's heads, the short
    convolution's channels (``ShortConv``: column-parallel over ``hidden``). RG-LRU, RWKV
    and mLSTM split as Megatron would split their column-parallel projections: the
    recurrence's width and heads, RWKV's hidden width, the mLSTM heads."""
    kinds = set(spec.layer_mixers)
    ssm, dn, kda, lru, mlstm = spec.ssm, spec.deltanet, spec.kda, spec.rg_lru, spec.mlstm
    checks: list[tuple[str, int]] = []
    if ssm is not None and ("mamba" in kinds or "mamba2" in kinds or spec.ssm_in_attention_layers):
        checks += [("mamba_num_heads", ssm.num_heads)] if ssm.version == 2 else [("mamba d_inner", ssm.d_inner)]
    if dn is not None and "gated_deltanet" in kinds:
        checks += [("linear_num_key_heads", dn.num_k_heads), ("linear_num_value_heads", dn.num_v_heads)]
    if kda is not None and "kda" in kinds:
        checks.append(("linear num_heads", kda.num_heads))
    if lru is not None and "rg_lru" in kinds:
        checks += [("lru_width", lru.width), ("num_attention_heads", lru.num_heads)]
    if mlstm is not None and "mlstm" in kinds:
        checks.append(("num_heads", mlstm.num_heads))
    if kinds & {"short_conv", "rwkv"}:
        checks.append(("hidden_size", spec.hidden_size))
    for name, value in checks:
        if value % tp:
            return (name, value)
    return None


def max_tensor_parallel(spec: ModelSpec, gpus_per_node: int) -> int:
    """The largest tp a search need try: the query heads where attention runs, else
    the GPUs of a node (each candidate is then checked by :func:`tensor_parallel_problem`)."""
    return min(spec.num_attention_heads, gpus_per_node) if has_attention(spec) else gpus_per_node


def sequence_splits_evenly(seq: Ints, *, tp: Ints, cp: Ints, sp: Flags) -> Flags:
    """Whether every sequence splits evenly over the layout: context parallelism gives
    each of ``cp`` ranks ``seq / cp`` tokens, and sequence parallelism splits those
    over ``tp`` (Korthikanti et al. 2022, section 4.2.2). Arrays broadcast."""
    return seq % (cp * where(sp, tp, 1)) == 0

