"""GGUF block layouts and llama.cpp recipes, against the gguf package and published files.

Oracles:
- ``gguf.GGML_QUANT_SIZES`` (the gguf-py package maintained in the llama.cpp repo):
  (block elements, block bytes) of every type we describe.
- A GGUF file written here with ``gguf.GGUFWriter`` and read back with
  ``gguf.GGUFReader``: the bytes the package stores for each tensor equal ours,
  for types the package quantizes itself (Q8_0, Q4_0, Q5_0, ...) and for k-quants
  passed as raw blocks (the writer checks the byte shape against its own table).
- Published file sizes of TheBloke/Llama-2-7B-GGUF (README "Provided files",
  https://huggingface.co/TheBloke/Llama-2-7B-GGUF), made by llama-quantize from the
  same config: the recipe's per-tensor choices must land on them.
"""

from __future__ import annotations

import numpy as np
import pytest

from vramplan.errors import InputError, UnknownNameError
from vramplan.gguf_types import GGML_TYPES, GGUF_RECIPES, TensorContext, get_recipe, tensor_type
from vramplan.memory.weights import gguf_group_bytes, layer_weights, resolve_weights
from vramplan.model import resolve_model
from vramplan.model.hf_config import spec_from_config

gguf = pytest.importorskip("gguf")
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType  # noqa: E402


@pytest.mark.parametrize("name", sorted(GGML_TYPES))
def test_block_layout_matches_gguf_package(name):
    t = GGML_TYPES[name]
    assert (t.block_elements, t.block_bytes) == GGML_QUANT_SIZES[GGMLQuantizationType[name]]


def test_bits_per_weight_of_common_types():
    # 8 x block bytes / block elements: Q4_K 4.5, Q6_K 6.5625, Q8_0 8.5, IQ4_XS 4.25.
    assert {n: GGML_TYPES[n].bits_per_weight for n in ("Q4_K", "Q6_K", "Q8_0", "IQ4_XS", "Q2_K")} == \
        {"Q4_K": 4.5, "Q6_K": 6.5625, "Q8_0": 8.5, "IQ4_XS": 4.25, "Q2_K": 2.625}


# TheBloke/Llama-2-7B-GGUF "Provided files", size column (GB = 1e9 bytes, 2 decimals).
# Q2_K is left out: its recipe has changed since those files were made (2023: Q4_K for
# attn_v and ffn_down; now Q3_K/Q4_K by GQA ratio).
LLAMA2_7B_PUBLISHED_GB = {"Q3_K_S": 2.95, "Q3_K_M": 3.30, "Q3_K_L": 3.60, "Q4_0": 3.83, "Q4_K_S": 3.86,
                          "Q4_K_M": 4.08, "Q5_0": 4.65, "Q5_K_S": 4.65, "Q5_K_M": 4.78, "Q6_K": 5.53,
                          "Q8_0": 7.16}


@pytest.mark.parametrize("recipe", sorted(LLAMA2_7B_PUBLISHED_GB))
def test_recipe_sizes_match_published_llama2_7b_files(recipe):
    spec = resolve_model("llama-2-7b")
    total = layer_weights(spec, gguf_group_bytes(spec, recipe)).total_bytes
    # The files also hold ~1 MB of metadata (vocabulary); rounding is +-0.005 GB.
    assert total / 1e9 == pytest.approx(LLAMA2_7B_PUBLISHED_GB[recipe], abs=0.012)


def _ctx(kind, layer=0, n=32, row=4096, gqa=1, experts=0):
    return TensorContext(kind=kind, layer=layer, num_layers=n, row_elements=row, gqa_ratio=gqa, num_experts=experts)


def test_recipe_rules():
    # llama-quant.cpp: output -> Q6_K; Q4_K_M gives attn_v Q6_K in use_more_bits layers
    # (first/last eighth and every third between) and Q4_K elsewhere.
    assert tensor_type("Q4_K_M", _ctx("output")).name == "Q6_K"
    assert tensor_type("Q8_0", _ctx("output")).name == "Q8_0"
    more = [tensor_type("Q4_K_M", _ctx("attn_v", i)).name for i in range(32)]
    assert more[:4] == ["Q6_K"] * 4 and more[28:] == ["Q6_K"] * 4
    assert more.count("Q6_K") == 4 + 4 + 8 and set(more) == {"Q6_K", "Q4_K"}
    assert tensor_type("Q4_K_M", _ctx("vector")).name == "F32"
    assert tensor_type("Q4_K_M", _ctx("ffn_gate_inp")).name == "F32"
    # Rows not a multiple of 256 fall back to a 32-block type.
    assert tensor_type("Q4_K_M", _ctx("ffn_up", row=2880)).name == "Q5_0"
    assert tensor_type("Q6_K", _ctx("ffn_up", row=2880)).name == "Q8_0"
    assert tensor_type("MXFP4_MOE", TensorContext(kind="ffn_up", layer=0, num_layers=2, row_elements=2880,
                                                  gqa_ratio=8, num_experts=32, is_expert=True)).name == "MXFP4"


def _llama_cpp_name(module: str, layer: int) -> str:
    names = {"embed_tokens": "token_embd", "lm_head": "output", "norm": "output_norm", "q_proj": "attn_q",
             "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output", "gate_proj": "ffn_gate",
             "up_proj": "ffn_up", "down_proj": "ffn_down"}
    return names[module] if layer < 0 else f"blk.{layer}.{names[module]}"


@pytest.mark.parametrize("recipe", ["Q4_K_M", "Q8_0", "Q4_0", "Q5_K_S", "Q3_K_M"])
def test_written_gguf_file_holds_the_bytes_we_count(tmp_path, recipe):
    """Write a tiny Llama as GGUF with the types the recipe picks; the gguf package's
    reader must report the same tensor bytes as our count."""
    cfg = dict(model_type="llama", hidden_size=256, intermediate_size=512, num_hidden_layers=4,
               num_attention_heads=4, num_key_value_heads=2, vocab_size=512, max_position_embeddings=256)
    spec = spec_from_config(cfg)
    from vramplan.gguf_types import tensor_kind
    from vramplan.memory.weights import layers_holding, tensors_in_layer
    from vramplan.model.tensors import model_tensors

    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    rng = np.random.default_rng(0)
    for group in model_tensors(spec):
        if group.role == "norm":
            continue  # norms: F32 vectors; counted below through the same path
        layers = layers_holding(spec, group) or (-1,)
        for layer in layers:
            kind = tensor_kind(group.module, group.role, tied_embeddings=False)
            t = tensor_type(recipe, TensorContext(kind=kind, layer=max(layer, 0), num_layers=spec.num_layers,
                                                  row_elements=group.shape[-1], gqa_ratio=2, num_experts=0))
            qtype = GGMLQuantizationType[t.name]
            data = rng.standard_normal(group.shape).astype(np.float32)
            try:
                packed = gguf.quants.quantize(data, qtype)
            except NotImplementedError:  # k-quants: pass raw blocks of the right size
                packed = np.zeros(gguf.quant_shape_to_byte_shape(group.shape, qtype), dtype=np.uint8)
            writer.add_tensor(_llama_cpp_name(group.module, layer), packed, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    stored = sum(int(t.n_bytes) for t in gguf.GGUFReader(str(path)).tensors)
    price = gguf_group_bytes(spec, recipe)
    from dataclasses import replace

    ours = sum(price(replace(g, count=tensors_in_layer(spec, g)), i) for g in model_tensors(spec)
               if g.role != "norm" for i in (layers_holding(spec, g) or (-1,)))
    assert ours == stored


def test_recipe_lookup_and_errors():
    assert get_recipe("q4_k_m").name == "Q4_K_M"
    assert get_recipe("gguf-Q5_K_M").name == "Q5_K_M"
    assert resolve_weights(resolve_model("llama-3.1-8b"), "Q4_K_M") is GGUF_RECIPES["Q4_K_M"]
    with pytest.raises(UnknownNameError, match="Q4_K_M"):
        resolve_weights(resolve_model("llama-3.1-8b"), "q4km")
    with pytest.raises(InputError, match="MXFP4_MOE"):
        resolve_weights(resolve_model("llama-3.1-8b"), "MXFP4_MOE")
    with pytest.raises(InputError, match="multiple"):
        GGML_TYPES["Q4_K"].row_bytes(100)
