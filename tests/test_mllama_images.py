"""Mllama (Llama 3.2 Vision) with images: the vision tower counted (transformers' meta
build of the whole ``MllamaForConditionalGeneration``), one ``<|image|>`` token per image,
and the cache after a real CPU forward with ``pixel_values``: the self-attention layers
hold the text, the cross-attention layers the projected vision states of every tile
(to the byte)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oracle_hf import cache_bytes
from vramplan.inference import InferenceSetup, estimate_inference
from vramplan.memory.cross_attention import cross_kv_bytes, mllama_vision_tokens
from vramplan.memory.kv_cache import kv_cache_bytes
from vramplan.model import count_params
from vramplan.model.hf_config import spec_from_config
from vramplan.model.towers import image_patches

SMALL_DIR = Path(__file__).parent / "data" / "vision"
SMALL = json.loads((SMALL_DIR / "mllama-small.json").read_text())
"""transformers' Mllama defaults with a 5-layer text model (cross-attention at 1 and 3) and a
4 + 2-layer tower of width 256 on 224 px tiles (tests/data/vision)."""


def _config(**vision):
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not vision:
            return transformers.AutoConfig.for_model(**SMALL)
        return transformers.AutoConfig.for_model("mllama", vision_config=vision)


@pytest.mark.exact
@pytest.mark.parametrize("vision", [
    {},  # the small config
    {"image_size": 560},  # Llama-3.2-11B-Vision's tower on the default text model
    {"image_size": 448, "max_num_tiles": 2, "supported_aspect_ratios": [[1, 1], [1, 2], [2, 1]],
     "num_global_layers": 3, "intermediate_layers_indices": [1, 5, 9], "vision_output_dim": 5120},
])
def test_whole_wrapper_equals_the_meta_build(vision):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = _config(**vision)
    with torch.device("meta"):
        model = transformers.AutoModelForImageTextToText.from_config(config)
    counted = count_params(spec_from_config(config.to_dict(), complete=False))
    assert counted.total_params == sum(p.numel() for p in model.parameters())
    assert counted.get("vision_tower") + counted.get("projector") == sum(
        p.numel() for n, p in model.named_parameters() if "vision_model" in n or "multi_modal_projector" in n)


def test_one_image_token_and_the_tiles_vision_states():
    tower = spec_from_config(SMALL).vision_tower
    patches, tokens = image_patches(tower, 1024)  # any image is resized into the tiles
    assert tokens == 1
    assert patches == mllama_vision_tokens(images=1, image_size=224, patch_size=14, max_num_tiles=4)


@pytest.mark.exact
@pytest.mark.parametrize("images", [1, 2])
def test_cache_after_a_forward_with_pixel_values_equals_the_estimate(images):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from vramplan.trace.images import image_inputs

    config = _config()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.AutoModelForImageTextToText.from_config(config).to(torch.bfloat16).eval()
    batch, text = 2, 5
    made = image_inputs(SMALL, config, batch=batch, seq=text, images=images, image_size=None)
    with torch.no_grad():
        out = model(input_ids=made.input_ids, pixel_values=torch.zeros(made.pixel_shape, dtype=torch.bfloat16),
                    use_cache=True, **made.forward_kwargs)
    measured = cache_bytes(out.past_key_values, min_dim=4, max_dim=4)
    spec = spec_from_config(SMALL)
    tokens = made.input_ids.shape[1]  # the text and one <|image|> per image
    vision_states = images * made.patches_per_image
    assert measured == kv_cache_bytes(spec, context_tokens=tokens, batch=batch, dtype="bf16") + cross_kv_bytes(
        spec, input_tokens=vision_states, batch=batch, dtype="bf16")
    est = estimate_inference(spec, InferenceSetup(engine="hf", weights="bf16", batch=batch, context=text, prompt=text,
                                                  images=images))
    assert est.details["image_tokens"] == images
    cross = cross_kv_bytes(spec, input_tokens=vision_states, batch=batch, dtype="bf16")
    assert est.details["cross_attention_kv_bytes"] == cross
    text_only = estimate_inference(spec, InferenceSetup(engine="hf", weights="bf16", batch=batch, context=text + images,
                                                        prompt=text + images))
    assert dict(est.phases)["decode"] >= dict(text_only.phases)["decode"] + cross


@settings(max_examples=25, deadline=None)
@given(images=st.integers(0, 4), more=st.integers(1, 3), batch=st.integers(1, 3), text=st.integers(1, 3000))
def test_more_images_never_need_less_memory(images, more, batch, text):
    """Inference (Mllama's cache and tower) and training (pixels, trained Qwen-VL tower)."""
    from vramplan.training import TrainingSetup, estimate_training

    spec = spec_from_config(SMALL)
    a = estimate_inference(spec, InferenceSetup(engine="hf", batch=batch, context=text, images=images))
    b = estimate_inference(spec, InferenceSetup(engine="hf", batch=batch, context=text, images=images + more))
    assert b.total_bytes >= a.total_bytes
    qwen = spec_from_config(json.loads((SMALL_DIR / "qwen2_5_vl-small.json").read_text()))
    ta = estimate_training(qwen, TrainingSetup(method="full", batch=batch, seq=min(text, 512), images=images))
    tb = estimate_training(qwen, TrainingSetup(method="full", batch=batch, seq=min(text, 512), images=images + more))
    assert tb.total_bytes >= ta.total_bytes
