"""Recurrent state: what state-space and linear-attention layers keep per sequence
instead of a KV cache.

A Mamba, Mamba-2 or gated delta-net layer carries two tensors from token to token,
whatever the context length:

- the **conv state**: the last ``d_conv`` inputs of its causal depthwise convolution,
  ``conv_channels x d_conv`` elements, in the compute dtype;
- the **SSM / recurrent state**, in fp32 (transformers runs the scan in fp32 and
  keeps the state so; Nemotron-H's ``mamba_ssm_cache_dtype`` says the same):

  - Mamba (Gu & Dao 2023, transformers ``MambaMixer``): ``d_inner x d_state``;
  - Mamba-2 (Dao & Gu 2024, ``Mamba2Mixer``): ``heads x head_dim x d_state``, conv
    over ``d_inner + 2 n_groups d_state`` channels;
  - gated delta-net (Yang et al. 2024, ``Qwen3NextGatedDeltaNet``): one
    ``head_k_dim x head_v_dim`` matrix per value head, conv over q, k and v
    (``2 key_dim + value_dim`` channels);
  - Kimi delta attention (Kimi Linear, ``KimiDeltaAttention``): one ``head_dim x
    head_dim`` matrix per head, conv over q, k and v (``3 heads head_dim`` channels);
  - RecurrentGemma's RG-LRU (Griffin, ``RecurrentGemmaRglru``): one ``lru_width``
    vector, conv over ``lru_width`` channels with ``conv1d_width - 1`` steps kept
    (``RecurrentGemmaRecurrentBlock.conv1d_state``);
- RWKV-4 (``RwkvModel``'s ``state``): per layer the previous token's input to time
  mixing and to channel mixing (compute dtype), and the WKV numerator, denominator and
  running maximum (fp32), each ``hidden`` wide;
- xLSTM's mLSTM (``xLSTMCache.rnn_state``): per head the ``qk_head x v_head`` memory
  C, the ``qk_head`` normaliser n and the stabiliser m, in the model's dtype (the
  cache is created in it);
- Falcon-H1 and Zamba keep a Mamba state in their attention layers as well (the mixer
  runs beside or after attention there): both a KV cache and a Mamba state;
- LFM2's gated short convolution: only a conv state, ``hidden x conv_L_cache``;
- MiniMax's lightning attention (MiniMax-01 report, transformers
  ``MiniMaxLightningAttention``): one ``head_dim x head_dim`` KV state per head, kept
  in the compute dtype, no convolution.

These are the shapes of transformers' ``LinearAttentionLayer`` cache entries
(cache_utils.py), checked byte for byte against a real cache after a CPU forward
(tests/test_recurrent_state.py). Under tensor parallelism the heads (channels) are
split across ranks, as vLLM's Mamba layers split them.
"""

from __future__ import annotations

from dataclasses import dataclass

from vramplan.dtypes import FP32_BYTES
from vramplan.model.spec import ModelSpec, SSMSpec

STATE_BYTES = FP32_BYTES
"""The SSM / recurrent state is kept in fp32."""


@dataclass(frozen=True, kw_only=True)
class LayerState:
    """Elements one sequence keeps in one non-attention layer."""

    conv_elements: int
    """Causal-convolution window: channels x kernel."""
    state_elements: int
    """The recurrent (SSM) state, kept in fp32."""
    compute_state_elements: int = 0
    """A recurrent state kept in the compute dtype (MiniMax lightning attention's
    ``[heads, head_dim, head_dim]`` KV state, ``MiniMaxCache.linear_cache``; xLSTM's
    C, n, m)."""


def _ssm_conv_channels_per_rank(ssm: SSMSpec, tp: int) -> int:
    """Conv channels of a Mamba mixer on one of ``tp`` ranks. Mamba-2's B and C groups
    follow the head shards: when tp does not divide ``n_groups`` vLLM extends them to
    ``tp`` groups, one per rank (``extra_groups_for_head_shards`` in
    ``vllm/model_executor/layers/mamba/mamba_utils.py``)."""
    if ssm.version == 1 or tp == 1:
        return ssm.conv_channels // tp
    groups = ssm.n_groups if ssm.n_groups % tp == 0 else tp
    return ssm.d_inner // tp + 2 * groups * ssm.d_state // tp


def layer_state(spec: ModelSpec, layer: int, *, tp: int = 1) -> LayerState:
    """The state layer ``layer`` keeps per sequence on one of ``tp`` ranks (zero for an
    attention layer or a layer without a mixer)."""
    mixer = spec.mixer(layer)
    if mixer == "attention" and spec.ssm_in_attention_layers:
        mixer = "mamba2" if spec.ssm is not None and spec.ssm.version == 2 else "mamba"
    if mixer in ("mamba", "mamba2") and spec.ssm is not None:
        ssm = spec.ssm
        state = ssm.d_inner * ssm.d_state  # Mamba-1: d_inner x d_state; Mamba-2: heads x head_dim x d_state
        return LayerState(conv_elements=_ssm_conv_channels_per_rank(ssm, tp) * ssm.d_conv,
                          state_elements=state // tp)
    if mixer == "gated_deltanet" and spec.deltanet is not None:
        net = spec.deltanet
        return LayerState(conv_elements=net.conv_channels * net.conv_kernel // tp,
                          state_elements=net.num_v_heads * net.head_k_dim * net.head_v_dim // tp)
    if mixer == "kda" and spec.kda is not None:
        kda = spec.kda
        return LayerState(conv_elements=kda.conv_channels * kda.conv_kernel // tp,
                          state_elements=kda.num_heads * kda.head_dim ** 2 // tp)
    if mixer == "rg_lru" and spec.rg_lru is not None:
        lru = spec.rg_lru
        return LayerState(conv_elements=lru.width * (lru.conv_kernel - 1) // tp, state_elements=lru.width // tp)
    if mixer == "mlstm" and spec.mlstm is not None:  # C (qk_head x v_head), n (qk_head), m (1) per head
        m = spec.mlstm
        qk_head, v_head = m.qk_dim // m.num_heads, m.v_dim // m.num_heads
        return LayerState(conv_elements=0, state_elements=0,
                          compute_state_elements=m.num_heads * (qk_head * v_head + qk_head + 1) // tp)
    if mixer == "rwkv":  # RwkvModel's state: two token-shift rows (compute dtype), numerator, denominator, max (fp32)
        return LayerState(conv_elements=2 * spec.hidden_size // tp, state_elements=3 * spec.hidden_size // tp)
    if mixer == "lightning_attention":
        return LayerState(conv_elements=0, state_elements=0,
                          compute_state_elements=spec.num_attention_heads * spec.head_dim ** 2 // tp)
    if mixer == "short_conv":  # LFM2: the last L_cache inputs of the hidden-wide conv, no SSM state
        return LayerState(conv_elements=spec.hidden_size * spec.short_conv_kernel // tp, state_elements=0)
    return LayerState(conv_elements=0, state_elements=0)


def recurrent_state_bytes_per_sequence(spec: ModelSpec, *, conv_bytes: int = 2, tp: int = 1) -> int:
    """Bytes of all layers' recurrent state for one sequence on one rank: conv states
    in ``conv_bytes`` per element (the compute dtype), SSM states in fp32. Zero for a
    model whose every layer is attention."""
    if not spec.is_hybrid:
        return 0
    total = 0
    for layer in range(spec.num_layers):
        s = layer_state(spec, layer, tp=tp)
        total += (s.conv_elements + s.compute_state_elements) * conv_bytes + s.state_elements * STATE_BYTES
    return total


def recurrent_state_bytes(spec: ModelSpec, *, batch: int, conv_bytes: int = 2, tp: int = 1) -> int:
    """Bytes of recurrent state for ``batch`` sequences: fixed per sequence, independent
    of the context length."""
    return batch * recurrent_state_bytes_per_sequence(spec, conv_bytes=conv_bytes, tp=tp)
