"""Invariants of placing a checkpoint's tensors against its architecture."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vramplan.catalog import find_model
from vramplan.model.stored import ModelSource
from vramplan.sources.inventory import build_checkpoint
from vramplan.sources.safetensors_header import StoredTensor

SPEC = find_model("llama-3.2-1b").spec()  # 16 layers

_names = st.one_of(
    st.builds(lambda i, m: f"model.layers.{i}.{m}", st.integers(0, 40),
              st.sampled_from(["self_attn.q_proj.weight", "mlp.up_proj.qweight", "input_layernorm.weight"])),
    st.sampled_from(["model.embed_tokens.weight", "lm_head.weight", "model.norm.weight",
                     "model.vision_tower.blocks.0.attn.qkv.weight", "multi_modal_projector.linear_1.weight", "x"]),
)
_tensors = st.lists(st.builds(lambda n, b: StoredTensor(name=n, dtype="U8", shape=(b,), nbytes=b), _names,
                              st.integers(0, 10**12)), max_size=60, unique_by=lambda t: t.name)


@settings(max_examples=200, deadline=None)
@given(_tensors)
def test_every_stored_byte_is_placed_once(tensors):
    stored = build_checkpoint(SPEC, tensors, ModelSource(kind="local", path="x"), "safetensors")
    assert stored.total_bytes == sum(t.nbytes for t in tensors)
    assert stored.num_tensors == len(tensors)
    assert sum(p.num_tensors for p in stored.extra_parts) <= len(tensors)
    assert len(stored.per_layer_bytes) == SPEC.num_layers
    assert sum(b for _, b in stored.bytes_by_dtype) == stored.total_bytes


@settings(max_examples=50, deadline=None)
@given(_tensors, st.lists(st.builds(lambda b: StoredTensor(name="mm.w", dtype="F16", shape=(b,), nbytes=2 * b),
                                    st.integers(0, 10**6)), max_size=3))
def test_a_projector_file_is_its_own_part(tensors, projector):
    stored = build_checkpoint(SPEC, tensors, ModelSource(kind="gguf", path="x"), "gguf",
                              parts=(("mmproj", tuple(projector)),) if projector else ())
    assert stored.total_bytes == sum(t.nbytes for t in tensors) + sum(t.nbytes for t in projector)
    if projector:
        assert [p.bytes for p in stored.extra_parts if p.name == "mmproj"] == [sum(t.nbytes for t in projector)]
