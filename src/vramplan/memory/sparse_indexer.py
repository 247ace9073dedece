"""The lightning indexer's score tensors, alive for a moment inside each indexer layer's
forward (DeepSeek sparse attention: DeepSeek-V3.2, GLM-5, A.X K2, dots3, Hunyuan v4).

Source: transformers 5.24 ``DeepseekV32Indexer.forward`` (and ``GlmMoeDsaIndexer``,
``HYV4Indexer``, which follow it), run under ``torch.no_grad()``: it keeps nothing for
backward, but scores every query against every key in fp32 before picking the top-k::

    scores = torch.matmul(q.float(), k.transpose(-1, -2).float().unsqueeze(1))  # [B, S, H, T]
    scores = F.relu(scores * softmax_scale)

``torch.matmul`` broadcasts the single key head ``[B, 1, D, T]`` over the ``S`` query
positions and flattens the batch dimensions with ``expand(...).reshape(...)``, which
copies the keys once per query: ``S x T x D`` fp32 elements per sequence beside the
``S x T x H`` fp32 product. The next moments (the scaled scores, ``relu``) hold two
products at once, ``2 x S x T x H``. Alive throughout: the fp32 query and key copies
(``S x H x D``, ``T x D``), and in the compute dtype the ``wq_b`` output (bound by its
``q_pass`` split), the rotated slice ``q_rot`` and the query ``torch.cat`` makes.
Under autocast (a training forward) ``matmul``, on autocast's lower-precision list,
casts the fp32 copies back to the compute dtype first: the broadcast keys and the
products are then in that dtype, beside the casts.
"""

from __future__ import annotations

from vramplan.model.spec import ModelSpec

FP32 = 4
"""Bytes of an fp32 element: the indexer scores in fp32 (``q.float()``, ``k.float()``)."""


QUERY_COPIES = 2
"""Compute-dtype copies of the indexer query alive while it scores: the ``wq_b`` output
and the rotated, concatenated query."""


def scores_transient_bytes(spec: ModelSpec, *, sequences: int, query_tokens: int, kv_tokens: int,
                           act_bytes: int, autocast: bool = False) -> int:
    """Peak bytes of one indexer's scoring for ``sequences`` sequences of
    ``query_tokens`` new tokens over ``kv_tokens`` keys (0 without an indexer): the
    larger of the matmul moment (broadcast key copy + product) and the ``relu`` moment
    (two products), plus the query and key copies alive throughout."""
    idx = spec.indexer
    if idx is None or not spec.num_indexer_layers:
        return 0
    h, d = idx.num_heads, idx.head_dim
    # under autocast the matmul (on its lower-precision list) casts both fp32 copies back
    # down: the broadcast keys, the product and what follows are in the compute dtype
    score_bytes = act_bytes if autocast else FP32
    scores = query_tokens * kv_tokens * max(d + h, 2 * h) * score_bytes
    rotated = spec.mla.qk_rope_head_dim if spec.mla is not None else 0  # the rotated slice, bound as q_rot
    copies = (query_tokens * h * d + kv_tokens * d) * (FP32 + (act_bytes if autocast else 0)) \
        + (QUERY_COPIES * d + rotated) * query_tokens * h * act_bytes
    return sequences * (scores + copies)


SCORER_PRODUCTS = 3
"""Score-sized fp32 tensors DeepSeek-V4's scorer holds at once
(``DeepseekV4IndexerScorer``: ``F.relu(scores) * scale`` with ``scores`` still bound,
then the product with the head weights)."""


def compressed_scores_transient_bytes(spec: ModelSpec, *, sequences: int, query_tokens: int, kv_tokens: int) -> int:
    """DeepSeek-V4's indexer in its compressed-sparse layers scores every query against
    the compressed keys (``kv_tokens / rate``) the same way, in fp32
    (``DeepseekV4IndexerScorer.forward``); its query is also copied contiguous. 0 without
    compressed-sparse layers."""
    ca = spec.compressed_attention
    if ca is None or not any(ca.is_indexed(i) for i in range(spec.num_layers)):
        return 0
    h, d = ca.index_heads, ca.index_head_dim
    entries = kv_tokens // ca.indexed_rate
    scores = query_tokens * entries * max(d + h, SCORER_PRODUCTS * h)
    copies = 2 * query_tokens * h * d + entries * d
    return sequences * (scores + copies) * FP32

