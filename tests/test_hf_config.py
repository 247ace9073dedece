"""Reading config.json: family quirks and every kind of bad input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import catalog_config
from vramplan.errors import ConfigError, UnknownNameError
from vramplan.model import ParamOnlyModel, custom_spec, resolve_model
from vramplan.model.hf_config import SUPPORTED_MODEL_TYPES, spec_from_config, spec_from_config_file

LLAMA = {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
         "intermediate_size": 128, "vocab_size": 100, "num_key_value_heads": 2}


def test_reads_a_file_and_a_directory(write_config):
    d = write_config(LLAMA)
    assert spec_from_config_file(d).num_kv_heads == 2
    assert spec_from_config_file(d / "config.json").head_dim == 16
    assert resolve_model(str(d)).hidden_size == 64


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c.pop("hidden_size"), "hidden_size: missing"),
    (lambda c: c.update(hidden_size="big"), "hidden_size: expected an integer, got 'big'"),
    (lambda c: c.update(num_hidden_layers=0), "num_hidden_layers: expected a positive integer, got 0"),
    (lambda c: c.update(vocab_size=-5), "vocab_size: expected a positive integer, got -5"),
    (lambda c: c.update(num_attention_heads=5), "num_attention_heads: 5 does not divide hidden_size=64"),
    (lambda c: c.update(num_key_value_heads=3), "num_key_value_heads: expected a divisor of num_attention_heads=4"),
    (lambda c: c.update(tie_word_embeddings="yes"), "tie_word_embeddings: expected true or false"),
    (lambda c: c.update(model_type="vit"), "model_type: 'vit' is not supported"),
    (lambda c: c.update(num_hidden_layers=float("nan")), "num_hidden_layers: expected a finite integer, got nan"),
    (lambda c: c.update(num_hidden_layers=float("inf")), "num_hidden_layers: expected a finite integer, got inf"),
    (lambda c: c.update(num_hidden_layers=2.5), "num_hidden_layers: expected an integer, got 2.5"),
    (lambda c: c.update(num_hidden_layers=[2]), "num_hidden_layers: expected an integer, got [2]"),
    (lambda c: c.update(hidden_size={"a": 1}), "hidden_size: expected an integer, got {'a': 1}"),
    (lambda c: c.update(num_hidden_layers=100_000), "num_hidden_layers: expected at most 10,000, got 100000"),
    (lambda c: c.update(hidden_size=2_000_000), "hidden_size: expected at most 1,000,000, got 2000000"),
    (lambda c: c.update(vocab_size=True), "vocab_size: expected an integer, got True"),
    (lambda c: c.update(num_local_experts=200_000, num_experts_per_tok=2),
     "num_local_experts: expected at most 100,000, got 200000"),
    (lambda c: c.update(model_type="qwen3_moe", num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32,
                        mlp_only_layers="0,1"), "mlp_only_layers: expected a list of integers, got str"),
    (lambda c: c.update(model_type="qwen3_moe", num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32,
                        mlp_only_layers=[0.5]), "mlp_only_layers: expected an integer, got 0.5"),
    (lambda c: c.update(model_type="qwen3_moe", num_experts=8, num_experts_per_tok=9, moe_intermediate_size=32),
     "experts_per_token: expected at most num_experts=8, got 9"),
    (lambda c: c.update(layer_types=["full_attention"]), "layer_types: expected a list of 2 entries"),
    (lambda c: c.update(num_key_value_heads=8), "num_key_value_heads: expected a divisor of num_attention_heads=4"),
    (lambda c: c.pop("model_type"), "model_type: missing"),
    (lambda c: c.update(torch_dtype="float17"), "torch_dtype: unknown dtype 'float17'"),
])
@pytest.mark.parametrize("complete", [False, True], ids=["json-only", "through-transformers"])
def test_bad_fields_name_the_field(mutate, message, complete):
    cfg = dict(LLAMA)
    mutate(cfg)
    if complete and message.startswith("hidden_size: missing"):
        pytest.skip("transformers fills hidden_size from LlamaConfig (tested below)")
    with pytest.raises(ConfigError) as info:
        spec_from_config(cfg, complete=complete)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_omitted_fields_are_filled_by_the_config_class():
    """transformers' LlamaConfig defaults hidden_size to 4096 and intermediate_size to
    11008 (configuration_llama.py); a file that omits them reads as transformers reads it."""
    pytest.importorskip("transformers")
    cfg = {k: v for k, v in LLAMA.items() if k not in ("hidden_size", "intermediate_size")}
    cfg["num_attention_heads"] = 32
    cfg["num_key_value_heads"] = 8
    spec = spec_from_config(cfg)
    assert (spec.hidden_size, spec.intermediate_size) == (4096, 11008)
    with pytest.raises(ConfigError, match="hidden_size: missing"):
        spec_from_config(cfg, complete=False)


def test_remote_code_configs_are_read_from_their_keys_without_executing_code():
    """An ``auto_map`` config names Python files on the Hub; they are never imported.
    ChatGLM2-6B's published config.json keys (THUDM/chatglm2-6b; ChatGLM3-6B has the
    same): 28 layers, hidden 4096, 32 heads, multi-query with 2 groups, kv_channels 128,
    ffn 13696, padded vocab 65024. Its pytorch_model.bin.index.json says total_size
    12,487,168,064 bytes in fp16: 2 x 6,243,584,000 parameters plus the 64-byte rotary
    ``inv_freq`` buffer (32 fp16 values)."""
    cfg = {"model_type": "chatglm", "auto_map": {"AutoConfig": "configuration_chatglm.ChatGLMConfig"},
           "num_layers": 28, "hidden_size": 4096, "num_attention_heads": 32, "multi_query_attention": True,
           "multi_query_group_num": 2, "kv_channels": 128, "ffn_hidden_size": 13696, "padded_vocab_size": 65024,
           "seq_length": 8192, "add_qkv_bias": True, "add_bias_linear": False, "torch_dtype": "float16",
           "tie_word_embeddings": False}
    spec = spec_from_config(cfg)
    assert (spec.num_layers, spec.num_kv_heads, spec.head_dim, spec.vocab_size) == (28, 2, 128, 65024)
    from vramplan.model import count_params

    assert count_params(spec).total_params == 6_243_584_000


def test_unknown_model_type_names_the_type_and_the_ways_out():
    with pytest.raises(ConfigError) as info:
        spec_from_config({**LLAMA, "model_type": "no_such_family"})
    msg = str(info.value)
    assert "'no_such_family'" in msg and "\n" not in msg
    assert "vramplan trace" in msg and "vramplan[exact]" in msg and "layers hidden heads" in msg and "7B" in msg
    assert "llama" in SUPPORTED_MODEL_TYPES


def test_explicit_head_dim_allows_non_dividing_heads():
    spec = spec_from_config({**LLAMA, "num_attention_heads": 6, "num_key_value_heads": 2, "head_dim": 16})
    assert spec.q_dim == 96


def test_malformed_json(write_config):
    d = write_config('{"model_type": "llama", ')
    with pytest.raises(ConfigError, match="malformed JSON at line 1"):
        spec_from_config_file(d)


def test_not_an_object(write_config):
    with pytest.raises(ConfigError, match="expected a JSON object, got list"):
        spec_from_config_file(write_config("[1, 2]"))


def test_directory_without_config(tmp_path):
    with pytest.raises(ConfigError, match="directory holds no config.json"):
        resolve_model(str(tmp_path))


def test_missing_path():
    with pytest.raises(ConfigError, match="no such file"):
        resolve_model("./nope/config.json")


def test_unknown_model_did_you_mean():
    with pytest.raises(UnknownNameError, match="did you mean 'llama-3.1-8b'"):
        resolve_model("llama-3.1-8")


@pytest.mark.parametrize("name", ["llama-3.1-8b", "LLAMA-3.1-8B", "meta-llama/Llama-3.1-8B", "Llama-3.1-8B",
                                  "meta-llama/llama-3.1-8b"])
def test_catalog_lookup_spellings(name):
    assert resolve_model(name).hub_id == "meta-llama/Llama-3.1-8B"


def test_param_count_model():
    m = resolve_model("7B")
    assert isinstance(m, ParamOnlyModel) and m.total_params == 7_000_000_000


def test_family_quirks_from_real_configs():
    # Values from each family's transformers modeling file.
    qwen2 = spec_from_config(catalog_config("qwen2.5-7b"))
    assert qwen2.attention_qkv_bias and not qwen2.attention_out_bias and qwen2.sliding_window is None
    gemma2 = spec_from_config(catalog_config("gemma-2-9b"))
    assert gemma2.norms_per_layer == 4 and gemma2.attention_kinds()[:2] == ("sliding_attention", "full_attention")
    gemma3 = spec_from_config(catalog_config("gemma-3-27b"))  # multimodal: read through text_config
    assert gemma3.model_type == "gemma3_text" and gemma3.vocab_size == 262_208 and gemma3.head_dim == 128
    assert gemma3.attention_kinds()[5] == "full_attention" and gemma3.attention_kinds()[4] == "sliding_attention"
    ds = spec_from_config(catalog_config("deepseek-v3"))
    assert ds.attention_kind == "MLA" and ds.num_moe_layers == 58 and ds.moe.num_shared_experts == 1
    mistral = spec_from_config(catalog_config("mistral-7b-v0.1"))
    assert mistral.sliding_window == 4096 and set(mistral.attention_kinds()) == {"sliding_attention"}
    assert spec_from_config(catalog_config("qwen3-8b")).head_dim == 128


def test_custom_spec_matches_llama2_7b():
    # Llama-2-7B: 32 layers, 4096 hidden, 32 heads, 11008 MLP, 32000 vocab = 6,738,415,616 (HF model card)
    from vramplan.model import count_params

    spec = custom_spec(layers=32, hidden=4096, heads=32, intermediate=11008, vocab=32000)
    assert count_params(spec).total_params == 6_738_415_616


@pytest.mark.parametrize("cfg, message", [
    ({"model_type": "falcon", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 100,
      "bias": "false"}, "bias: expected true or false, got 'false'"),
    ({"model_type": "falcon", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 100,
      "new_decoder_architecture": True, "num_kv_heads": 2.5}, "num_kv_heads: expected an integer, got 2.5"),
    ({"model_type": "jamba", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 100,
      "intermediate_size": 96, "attn_layer_period": float("nan")}, "attn_layer_period: expected a positive integer"),
    ({"model_type": "bamba", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 100,
      "intermediate_size": 96, "attn_layer_indices": "1", "mamba_n_heads": 8},
     "attn_layer_indices: expected a list of layer indices"),
    ({"model_type": "nemotron_h", "hidden_size": 64, "num_attention_heads": 4, "vocab_size": 100,
      "intermediate_size": 96, "hybrid_override_pattern": "M?", "mamba_num_heads": 8},
     "hybrid_override_pattern: unknown block '?'"),
    ({"model_type": "mixtral", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 100,
      "intermediate_size": 96, "num_local_experts": 4, "num_experts_per_tok": 8},
     "experts_per_token: expected at most num_experts=4, got 8"),
    ({"model_type": "qwen3_moe", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
      "vocab_size": 100, "intermediate_size": 96, "num_experts": 4, "num_experts_per_tok": 2,
      "moe_intermediate_size": 32, "mlp_layer_types": ["dense"]}, "mlp_layer_types: expected a list of 2 entries"),
])
def test_family_switches_are_checked(cfg, message):
    with pytest.raises(ConfigError) as info:
        spec_from_config(cfg, complete=False)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("name, slug", [("meta-llama/Llama-3.1-8B-Instruct", "llama-3.1-8b"),
                                        ("Qwen/Qwen2.5-7B-Instruct", "qwen2.5-7b"),
                                        ("google/gemma-2-9b-it", "gemma-2-9b"), ("deepseek-r1", "deepseek-v3"),
                                        ("tiiuae/falcon-7b-instruct", "falcon-7b")])
def test_instruct_variants_resolve_offline_to_their_base_architecture(name, slug):
    assert resolve_model(name).name == slug


_JUNK = [None, True, False, 0, -1, 1.5, float("nan"), float("inf"), 10**12, "x", "8", [], [1], [True], {},
         {"a": 1}, [None], ["full_attention"]]


def _fuzz_bases():
    from conftest import catalog_slugs
    from test_recurrent_state import TINY

    return [catalog_config(s) for s in catalog_slugs()] + [{"model_type": t, **c} for t, c in TINY.items()]


_BASES = _fuzz_bases()


@settings(max_examples=300, deadline=None)
@given(base=st.integers(0, len(_BASES) - 1), pick=st.integers(0, 10_000), junk=st.sampled_from(_JUNK),
       inner=st.booleans())
def test_any_one_bad_value_reads_or_fails_in_one_line(base, pick, junk, inner):
    """Whatever one key holds, the reader returns a spec or a one-line ConfigError."""
    import copy

    from vramplan.model import count_params

    cfg = copy.deepcopy(_BASES[base])
    target = cfg["text_config"] if inner and isinstance(cfg.get("text_config"), dict) else cfg
    key = sorted(target)[pick % len(target)]
    target[key] = junk
    try:
        count_params(spec_from_config(cfg, complete=False))
    except ConfigError as exc:
        assert "\n" not in str(exc)
