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

A decoder with cross-attention layers to a vision tower (Mllama, Llama 3.2 Vision)
caches, in each of those layers, keys and values of the vision states instead of the
text: ``kv_heads x head_dim`` per vision token and layer, fixed by the images
(``MllamaTextCrossAttention``; per image ``max_num_tiles x (patches + 1)`` states,
:func:`mllama_vision_tokens`). Checked against the cache transformers keeps after a CPU
forward in tests/test_architecture_mllama.py.
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
    ``input_tokens`` encoder tokens, on one of ``tp`` ranks (heads split across ranks);
    for a decoder with vision cross-attention layers, of those layers over
    ``input_tokens`` vision states (their KV heads)."""
    _positive("input_len", input_tokens)
    _positive("batch", batch)
    d = get_kv_dtype(dtype)
    if spec.architecture == "decoder" and spec.num_cross_attention_layers:
        row = d.row_bytes(max(1, spec.num_kv_heads // tp) * spec.head_dim)
        return batch * spec.num_cross_attention_layers * K_AND_V * input_tokens * row
    if spec.architecture != "encoder_decoder":
        return 0
    heads = max(1, spec.num_attention_heads // tp)
    row = d.row_bytes(heads * spec.head_dim)
    return batch * spec.num_layers * K_AND_V * input_tokens * row


def mllama_vision_tokens(*, images: int, image_size: int = 560, patch_size: int = 14, max_num_tiles: int = 4) -> int:
    """Vision states the cross-attention layers attend to for ``images`` images: each
    image is up to ``max_num_tiles`` tiles of ``(image_size / patch_size)^2`` patches plus
    a class token (``MllamaForConditionalGeneration._prepare_static_cache``)."""
    _positive("images", images)
    return images * max_num_tiles * ((image_size // patch_size) ** 2 + 1)


def encoder_output_bytes(spec: ModelSpec, *, input_tokens: int, batch: int, act_bytes: int) -> int:
    """The encoder's last hidden state ``generate`` keeps for the whole loop."""
    return batch * input_tokens * spec.hidden_size * act_bytes
