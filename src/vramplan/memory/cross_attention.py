"""Cross-attention KV cache and encoder output of an encoder-decoder model.

At generation an encoder-decoder (T5, BART) runs its encoder once over the
``input_tokens`` of each sequence; every decoder layer then projects the encoder output
to keys and values once and keeps them for the whole generation
(transformers ``EncoderDecoderCache.cross_attention_cache``): per sequence

    cross KV = decoder layers x 2 (K, V) x heads x head_dim x input_tokens x bytes

fixed by the input length, beside the self-attention cache that grows with the decoded
tokens (:mod:`vramplan.memory.kv_cache`). ``generate`` also keeps the encoder's last
hidden state (``encoder_outputs``) bound for the whole loop: ``input_tokens x hidden``
per sequence. Checked byte for byte against a real ``EncoderDecoderCache`` after a CPU
forward in tests/test_encoder_decoder.py.
"""

from __future__ import annotations

from vramplan import validate as v
from vramplan.memory.kv_cache import K_AND_V, KVDType, get_kv_dtype
from vramplan.model.spec import ModelSpec


def _positive(name: str, value: object) -> int:
    return v.integer(name, value, 1, v.LENGTH_MAX)


def cross_kv_bytes(spec: ModelSpec, *, input_tokens: int, batch: int, dtype: str | KVDType = "fp16",
                   tp: int = 1) -> int:
    """Bytes of the cross-attention K/V of every decoder layer for ``batch`` sequences of
    ``input_tokens`` encoder tokens, on one of ``tp`` ranks (heads split across ranks)."""
    _positive("input_len", input_tokens)
    _positive("batch", batch)
    if spec.architecture != "encoder_decoder":
        return 0
    d = get_kv_dtype(dtype)
    heads = max(1, spec.num_attention_heads // tp)
    row = d.row_bytes(heads * spec.head_dim)
    return batch * spec.num_layers * K_AND_V * input_tokens * row


def encoder_output_bytes(spec: ModelSpec, *, input_tokens: int, batch: int, act_bytes: int) -> int:
    """The encoder's last hidden state ``generate`` keeps for the whole loop."""
    return batch * input_tokens * spec.hidden_size * act_bytes
