"""Training and prefill activations of recurrent mixers modelled tensor by tensor
(MiniMax-01's lightning attention, RecurrentGemma's RG-LRU), estimate against trace.

Oracle: the trace (transformers' own modeling code run on PyTorch fake tensors under
CUDA's allocation and autocast rules; tests/test_trace_step.py checks it against a real
CPU run). Configs: :mod:`recurrent_mixer_measure` (4 layers of hidden 512, MiniMax's
pattern of lightning layers and a softmax-attention layer, an MoE in every layer).

Before the lightning layers were modelled (priced as softmax attention of the same
widths) the bf16-mixed full fine-tune below was off by -9.8 % and the lightning layers'
share of it (the difference to the same model with softmax attention in every layer)
by -5.7 % of the peak; leaving out one ``H x l x l`` term per block (the scores' cast)
moves that share by 1.3 %, the decay buffers by 0.3 %. RecurrentGemma (two RG-LRU
blocks, then local attention) was at -16.1 % in training (its soft-capped logits' ``tanh``
output uncounted as well) and -18.8 % at prefill.
"""

from __future__ import annotations

import pytest

from recurrent_mixer_measure import FAMILIES, REFERENCE
from vramplan.trace.setup import TraceSetup

TOLERANCE = 0.01
"""|estimate / trace - 1| at the peak."""

_SMALL_MOE = dict(intermediate_size=64, num_experts_per_tok=1)
"""Prefill: the MoE's work tensors smaller than the lightning layer's, so the peak falls
inside a lightning layer."""

CASES = [
    # pure bf16: decay buffers in bf16, no casts; a sequence that is no multiple of the block
    ("bf16", {}, dict(batch_size=2, seq=1000, precision="bf16")),
    # LoRA on a bf16 base under autocast: out_proj's input kept by its adapter, norm weight frozen
    ("lora", {}, dict(batch_size=2, seq=1024, method="lora", lora_targets=("all-linear",))),
    ("recompute", {}, dict(batch_size=2, seq=1000, recompute=True)),
    # fp32 (MHA: the softmax layer's SDPA then keeps no score matrix)
    ("fp32", dict(num_key_value_heads=8), dict(batch_size=1, seq=1024, precision="fp32")),
    # prefill: the high point at the lightning layer's output norm
    ("prefill", dict(_SMALL_MOE, layer_types=["full_attention"] + ["linear_attention"] * 3),
     dict(mode="infer", batch_size=2, seq=1024, decode_tokens=0, cache="dynamic")),
    # prefill in one 1024-position block: the high point inside the block loop
    ("prefill-one-block", dict(_SMALL_MOE, block_size=1024),
     dict(mode="infer", batch_size=2, seq=1024, decode_tokens=0, cache="dynamic")),
]


def _measure(config: dict, setup: TraceSetup) -> tuple[int, int]:
    from vramplan.trace.compare import analytical_estimate, tensor_bytes
    from vramplan.trace.run import run_trace

    traced = run_trace(config, setup)
    estimate = analytical_estimate(config, setup)
    if setup.training:
        assert traced.peak_phase == estimate.phase == "backward"
    return traced.peak_bytes, tensor_bytes(estimate)


@pytest.mark.exact
@pytest.mark.parametrize("name,config,kw", CASES, ids=[c[0] for c in CASES])
def test_lightning_attention_follows_the_trace(name, config, kw):
    pytest.importorskip("torch")
    traced, estimated = _measure({**FAMILIES["minimax"], **config}, TraceSetup(**kw))
    assert abs(estimated / traced - 1) <= TOLERANCE, (estimated, traced)


@pytest.mark.exact
def test_lightning_layers_cost_what_the_trace_says():
    """bf16-mixed full fine-tune: the lightning layers' cost, the difference to the same
    model with softmax attention in every layer, as the trace measures it. (The whole
    estimate is 4 % under the trace there: MiniMax's fused experts run in fp32 under
    autocast, which the shared MoE formula counts in bf16; the difference cancels it.)"""
    pytest.importorskip("torch")
    setup = TraceSetup(batch_size=2, seq=1024)
    traced, estimated = _measure(FAMILIES["minimax"], setup)
    ref_traced, ref_estimated = _measure({**FAMILIES["minimax"], **REFERENCE["minimax"]}, setup)
    error = ((estimated - ref_estimated) - (traced - ref_traced)) / traced
    assert abs(error) <= 0.002, error


def test_lightning_layers_carry_no_transformer_note():
    from vramplan.model.hf_config import spec_from_config

    spec = spec_from_config(dict(FAMILIES["minimax"]))
    assert spec.lightning_block_size == 256
    assert not any("approximated with a transformer layer" in n for n in spec.notes), spec.notes


def test_block_size_is_read_and_checked():
    from vramplan.errors import ConfigError
    from vramplan.model.hf_config import spec_from_config

    assert spec_from_config(dict(FAMILIES["minimax"], block_size=64)).lightning_block_size == 64
    with pytest.raises(ConfigError, match="block_size"):
        spec_from_config(dict(FAMILIES["minimax"], block_size=0))


def test_decay_buffers_match_the_module():
    """The decay tables' elements equal the buffers transformers registers."""
    torch = pytest.importorskip("torch")
    from transformers import MiniMaxConfig
    from transformers.models.minimax.modeling_minimax import MiniMaxLightningAttention

    from vramplan.memory.weights import lightning_buffer_elements
    from vramplan.model.hf_config import spec_from_config

    config = dict(FAMILIES["minimax"], block_size=64)
    spec = spec_from_config(dict(config))
    hf = MiniMaxConfig(**{k: v for k, v in config.items() if k != "model_type"})
    with torch.device("meta"):
        layer = MiniMaxLightningAttention(hf, 0)
    per_layer = sum(b.numel() for b in layer.buffers())
    assert lightning_buffer_elements(spec) == 3 * per_layer


def _never_less(family: str, mixer: str, phase: str, seq: int, batch: int) -> None:
    """The mixer's training bytes and its prefill high point never fall with more
    context or batch."""
    from vramplan.memory import inference_buffers, mixer_activations
    from vramplan.memory.activations import ActivationContext
    from vramplan.memory.inference_buffers import ForwardShape
    from vramplan.memory.precision import get_precision
    from vramplan.model.hf_config import spec_from_config

    spec = spec_from_config(dict(FAMILIES[family]))
    recipe = get_precision("bf16-mixed")

    def train(s, b):
        return getattr(mixer_activations, mixer)(spec, ActivationContext(recipe=recipe, batch=b, seq=s))[0]

    def prefill(s, b):
        return getattr(inference_buffers, phase)(spec, ForwardShape(sequences=b, query_tokens=s, kv_tokens=s))

    for f in (train, prefill):
        assert f(seq + 1, batch) >= f(seq, batch) and f(seq, batch + 1) >= f(seq, batch), f.__name__


@pytest.mark.parametrize("seq,batch", [(1, 1), (255, 1), (256, 3), (257, 2), (4096, 2)])
def test_more_context_never_less(seq, batch):
    """Monotone in sequence and batch, across block boundaries."""
    _never_less("minimax", "lightning_attention_mixer_bytes", "lightning_attention_phase_bytes", seq, batch)


RG_LRU_CASES = [
    ("bf16-mixed", dict(batch_size=2, seq=256)),
    # no autocast: the gate arithmetic in bf16, each position's fp32 cast of a kept by the scan
    ("bf16", dict(batch_size=2, seq=250, precision="bf16")),
    ("fp32", dict(batch_size=1, seq=256, precision="fp32")),
    # frozen convolution and gate weights keep no inputs; linear_out's adapter keeps its own
    ("lora", dict(batch_size=2, seq=256, method="lora", lora_targets=("all-linear",))),
    ("recompute", dict(batch_size=2, seq=250, recompute=True)),
    ("prefill", dict(mode="infer", batch_size=2, seq=1024, decode_tokens=0, cache="dynamic")),
    # one sequence: the permuted input is a view, not a copy
    ("prefill-one-sequence", dict(mode="infer", batch_size=1, seq=1000, decode_tokens=0, cache="dynamic")),
]


@pytest.mark.exact
@pytest.mark.parametrize("name,kw", RG_LRU_CASES, ids=[c[0] for c in RG_LRU_CASES])
def test_rg_lru_follows_the_trace(name, kw):
    pytest.importorskip("torch")
    traced, estimated = _measure(dict(FAMILIES["recurrent_gemma"]), TraceSetup(**kw))
    assert abs(estimated / traced - 1) <= TOLERANCE, (estimated, traced)


def test_recurrent_gemma_carries_no_transformer_note_and_soft_caps():
    from vramplan.model.hf_config import spec_from_config

    spec = spec_from_config(dict(FAMILIES["recurrent_gemma"]))
    assert spec.final_logit_softcapping  # RecurrentGemmaForCausalLM: tanh(logits / logits_soft_cap) * cap
    assert not any("approximated with a transformer layer" in n for n in spec.notes), spec.notes


@pytest.mark.parametrize("seq,batch", [(1, 1), (2, 1), (100, 2), (4096, 3)])
def test_rg_lru_more_context_never_less(seq, batch):
    _never_less("recurrent_gemma", "rg_lru_mixer_bytes", "rg_lru_phase_bytes", seq, batch)


XLSTM = dict(model_type="xlstm", hidden_size=64, embedding_dim=64, num_hidden_layers=2, num_blocks=2, vocab_size=100,
             num_heads=4, chunk_size=4, qk_dim_factor=1.0, pad_token_id=1, bos_token_id=0, eos_token_id=2)
"""xLSTM: its input and forget gates are ``hidden -> heads`` linears, 4 rows here."""


@pytest.mark.exact
def test_lora_rank_above_a_gate_side_is_what_peft_builds():
    """Rank 16 on xLSTM's 4-row gate projections: peft builds the adapters (16 x in and
    4 x 16); the estimate counts the same parameters, with a warning."""
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    import transformers

    from vramplan.model.hf_config import spec_from_config
    from vramplan.training import TrainingSetup, estimate_training, model_states

    spec = spec_from_config(dict(XLSTM))
    setup = TrainingSetup(method="lora", lora_rank=16, lora_targets=("all-linear",), batch=1, seq=64)
    estimate = estimate_training(spec, setup)
    assert any("exceeds the smaller side" in w for w in estimate.warnings), estimate.warnings

    config = transformers.AutoConfig.for_model(**XLSTM)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    model = peft.get_peft_model(model, peft.LoraConfig(r=16, target_modules="all-linear"))
    built = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    assert sum(g.params for g in model_states(spec, setup).trainable) == built
