"""Encoder-decoder (T5, mT5, UMT5, BART, mBART) and encoder-only (BERT, RoBERTa, XLM-R,
ModernBERT) models.

Oracles: transformers 5 building the same config on the meta device
(``AutoModelForSeq2SeqLM`` / ``AutoModelForMaskedLM``: total parameters), and a real
``EncoderDecoderCache`` after a CPU forward (self- and cross-attention bytes).
"""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vramplan.errors import ConfigError, InputError
from vramplan.inference import InferenceSetup, estimate_inference
from vramplan.memory.cross_attention import cross_kv_bytes
from vramplan.memory.kv_cache import kv_cache_bytes
from vramplan.model import count_params
from vramplan.model.hf_config import spec_from_config
from vramplan.training import TrainingSetup, estimate_training

SEQ2SEQ = ("t5", "mt5", "umt5", "bart", "mbart")
MASKED = ("bert", "roberta", "xlm-roberta", "modernbert")

TINY = {
    "t5": dict(d_model=64, d_kv=16, d_ff=96, num_layers=3, num_decoder_layers=2, num_heads=4, vocab_size=120),
    "mt5": dict(d_model=64, d_kv=16, d_ff=96, num_layers=2, num_heads=4, vocab_size=120,
                feed_forward_proj="gated-gelu"),
    "umt5": dict(d_model=64, d_kv=16, d_ff=96, num_layers=2, num_decoder_layers=3, num_heads=4, vocab_size=120),
    "bart": dict(d_model=64, encoder_layers=3, decoder_layers=2, encoder_ffn_dim=96, decoder_ffn_dim=80,
                 encoder_attention_heads=4, decoder_attention_heads=8, vocab_size=120, max_position_embeddings=70),
    "mbart": dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_ffn_dim=96, decoder_ffn_dim=96,
                  encoder_attention_heads=4, decoder_attention_heads=4, vocab_size=120, max_position_embeddings=70),
    "bert": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96, vocab_size=120,
                 max_position_embeddings=70, type_vocab_size=3),
    "roberta": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
                    vocab_size=120, max_position_embeddings=70),
    "xlm-roberta": dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96,
                        vocab_size=120, max_position_embeddings=70),
    "modernbert": dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96, pad_token_id=0,
                       vocab_size=120, max_position_embeddings=70),
}


def _transformers():
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    return transformers


def _meta_total(model_type: str, **kwargs) -> tuple[dict, int]:
    import torch

    transformers = _transformers()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = transformers.AutoConfig.for_model(model_type, **kwargs)
        auto = transformers.AutoModelForMaskedLM if model_type in MASKED else transformers.AutoModelForSeq2SeqLM
        with torch.device("meta"):
            model = auto.from_config(config)
    return config.to_dict(), sum(p.numel() for p in model.parameters())


@pytest.mark.exact
@pytest.mark.parametrize("model_type", SEQ2SEQ + MASKED)
@pytest.mark.parametrize("size", ["default", "tiny"])
def test_parameters_equal_the_meta_build(model_type, size):
    cfg, total = _meta_total(model_type, **(TINY[model_type] if size == "tiny" else {}))
    assert count_params(spec_from_config(cfg, complete=False)).total_params == total


@pytest.mark.exact
@pytest.mark.parametrize("model_type", ["bart", "mbart", "bert", "roberta", "modernbert"])
def test_untied_heads_equal_the_meta_build(model_type):
    cfg, total = _meta_total(model_type, **TINY[model_type], tie_word_embeddings=False)
    assert cfg["tie_word_embeddings"] is False
    assert count_params(spec_from_config(cfg, complete=False)).total_params == total


@pytest.mark.exact
def test_t5_untied_head_counted_as_the_checkpoint_stores_it():
    """transformers 5 forces T5-family heads tied (configuration_t5.py sets
    ``tie_word_embeddings = True`` whatever the file says); Flan-T5 / T5 v1.1 checkpoints
    store ``lm_head.weight`` apart, which vramplan counts: meta build + vocab x d_model."""
    cfg, total = _meta_total("t5", **TINY["t5"])
    untied = {**cfg, "tie_word_embeddings": False}
    spec = spec_from_config(untied, complete=False)
    assert count_params(spec).total_params == total + cfg["vocab_size"] * cfg["d_model"]
    assert any("transformers 5" in note for note in spec.notes)


def _cache_bytes(layers) -> int:
    return sum(t.numel() * t.element_size() for layer in layers for t in (layer.keys, layer.values))


@pytest.mark.exact
@pytest.mark.parametrize("model_type", ["t5", "umt5", "bart"])
def test_self_and_cross_attention_cache_equal_encoder_decoder_cache(model_type):
    """A CPU forward in bf16 (batch 2, 9 input tokens, 5 decoder tokens): the
    ``EncoderDecoderCache`` holds exactly our self-attention KV and cross-attention KV."""
    import torch

    transformers = _transformers()
    config = transformers.AutoConfig.for_model(model_type, **TINY[model_type])
    model = transformers.AutoModelForSeq2SeqLM.from_config(config).to(torch.bfloat16).eval()
    batch, inputs, targets = 2, 9, 5
    with torch.no_grad():
        out = model(input_ids=torch.randint(4, 100, (batch, inputs)),
                    decoder_input_ids=torch.randint(4, 100, (batch, targets)), use_cache=True)
    cache = out.past_key_values
    assert type(cache).__name__ == "EncoderDecoderCache"
    spec = spec_from_config(config.to_dict(), complete=False)
    assert _cache_bytes(cache.cross_attention_cache.layers) == cross_kv_bytes(spec, input_tokens=inputs, batch=batch,
                                                                               dtype="bf16")
    assert _cache_bytes(cache.self_attention_cache.layers) == kv_cache_bytes(spec, context_tokens=targets,
                                                                              batch=batch, dtype="bf16")


def _t5_spec():
    return spec_from_config({"model_type": "t5", **TINY["t5"]}, name="tiny-t5", complete=False)


def test_inference_holds_cross_kv_sized_by_the_input():
    spec = _t5_spec()
    short = estimate_inference(spec, InferenceSetup(context=4096, input_len=64, batch=2))
    # 320, not longer: on this 64-wide model the encoder's relative-position bias (input^2)
    # makes the encode phase the peak from about 600 input tokens on
    long = estimate_inference(spec, InferenceSetup(context=4096, input_len=320, batch=2))
    assert short.phase == long.phase == "decode"
    assert short.get("kv_cache/cross_attention") == cross_kv_bytes(spec, input_tokens=64, batch=2, dtype="fp32")
    assert long.get("kv_cache/cross_attention") == 5 * short.get("kv_cache/cross_attention")
    assert long.details["input_tokens"] == 320


def test_encoder_only_inference_has_no_kv_cache():
    spec = spec_from_config({"model_type": "bert", **TINY["bert"]}, name="tiny-bert", complete=False)
    est = estimate_inference(spec, InferenceSetup(context=64, batch=4))
    assert est.get("kv_cache") == 0
    assert est.phase == "forward"
    assert any("no KV cache" in w for w in est.warnings)


@pytest.mark.parametrize("setup, message", [
    (dict(engine="vllm"), "engine: vllm is not modelled for t5 (encoder-decoder)"),
    (dict(images=1), "images: tiny-t5 has no vision tower"),
])
def test_unsupported_serving_requests_fail_in_one_line(setup, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        estimate_inference(_t5_spec(), InferenceSetup(context=16, **setup))


def test_input_len_on_a_decoder_is_refused():
    with pytest.raises(InputError, match="input_len: .* is decoder-only"):
        estimate_inference("qwen2.5-0.5b", InferenceSetup(context=16, input_len=8))
    with pytest.raises(InputError, match="input_len: .* has no encoder input"):
        estimate_training("qwen2.5-0.5b", TrainingSetup(seq=16, input_len=8))


@settings(max_examples=40, deadline=None)
@given(inputs=st.integers(1, 4096), more=st.integers(1, 4096), context=st.integers(1, 512), batch=st.integers(1, 8))
def test_more_input_never_needs_less_memory(inputs, more, context, batch):
    spec = _t5_spec()
    a = estimate_inference(spec, InferenceSetup(context=context, input_len=inputs, batch=batch))
    b = estimate_inference(spec, InferenceSetup(context=context, input_len=inputs + more, batch=batch))
    assert b.total_bytes >= a.total_bytes
    ta = estimate_training(spec, TrainingSetup(seq=context, input_len=inputs, batch=batch))
    tb = estimate_training(spec, TrainingSetup(seq=context, input_len=inputs + more, batch=batch))
    assert tb.total_bytes >= ta.total_bytes


def test_training_counts_the_encoder_activations_over_the_input():
    spec = _t5_spec()
    est = estimate_training(spec, TrainingSetup(seq=64, input_len=4096, batch=4))
    assert est.phase in ("forward", "backward")
    assert est.get("activations/encoder") > 0
    # full fine-tuning trains every tensor: gradients cover encoder, decoder and cross-attention
    params = count_params(spec).total_params
    assert est.details["trainable_params"] == params if "trainable_params" in est.details else True


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c.update(d_kv="x"), "d_kv: expected a positive integer, got 'x'"),
    (lambda c: c.update(num_heads=0), "num_heads: expected a positive integer, got 0"),
    (lambda c: c.update(feed_forward_proj="gated-swish-relu"), "feed_forward_proj: expected"),
    (lambda c: c.update(tie_word_embeddings="no"), "tie_word_embeddings: expected true or false"),
])
def test_bad_t5_configs_fail_in_one_line_naming_the_field(mutate, message):
    cfg = {"model_type": "t5", **TINY["t5"]}
    mutate(cfg)
    with pytest.raises(ConfigError, match=message) as info:
        spec_from_config(cfg, complete=False)
    assert "\n" not in str(info.value)


def test_bart_heads_must_divide_the_width():
    with pytest.raises(ConfigError, match="decoder_attention_heads: expected a divisor of d_model=64, got 5"):
        spec_from_config({"model_type": "bart", **TINY["bart"], "decoder_attention_heads": 5}, complete=False)


PUBLISHED_PARAMS = {
    # parameters the checkpoints are published with (the Hub's safetensors metadata of each
    # repo: google-t5/t5-base, google/flan-t5-xl, facebook/bart-large, google-bert/bert-base-uncased,
    # answerdotai/ModernBERT-base, Qwen/Qwen2.5-VL-7B-Instruct)
    "t5-base": 222_903_552,
    "flan-t5-xl": 2_849_757_184,
    "bart-large": 406_291_456,
    "bert-base-uncased": 109_514_298,
    "modernbert-base": 149_655_232,
    "qwen2.5-vl-7b": 8_292_166_656,
}


@pytest.mark.parametrize("slug", sorted(PUBLISHED_PARAMS))
def test_catalog_entries_have_their_published_size(slug):
    from vramplan.model.resolve import resolve_model

    assert count_params(resolve_model(slug)).total_params == PUBLISHED_PARAMS[slug]
