"""Vision towers of multimodal checkpoints: parameters, image tokens, memory.

Oracles: transformers 5 building the whole wrapper on the meta device
(``AutoModelForImageTextToText``: every parameter, tower and projector included), and
transformers' own image-processor arithmetic (``smart_resize`` of
``image_processing_qwen2_vl.py``; ``get_resize_output_image_size`` of
``image_processing_pixtral.py``), run from their source text (the modules import
torchvision, which the exact extra does not install).
"""

from __future__ import annotations

import ast
import functools
import math
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vramplan.errors import InputError
from vramplan.inference import InferenceSetup, estimate_inference
from vramplan.memory.lora import all_linear_targets, target_groups
from vramplan.model import count_params
from vramplan.model.hf_config import spec_from_config
from vramplan.model.tensors import model_tensors
from vramplan.model.towers import READERS, _smart_resize, image_patches, image_tokens
from vramplan.training import TrainingSetup, estimate_training

WRAPPERS = tuple(sorted(READERS))


@functools.cache
def _built(model_type: str) -> tuple[dict, int, int]:
    """(default config, all parameters, parameters outside the language model and head)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = transformers.AutoConfig.for_model(model_type)
        if model_type == "qwen3_vl_moe":  # default text tower of 48 x 128 experts: shrink, the tower is untouched
            config.text_config.num_hidden_layers = 2
        with torch.device("meta"):
            model = transformers.AutoModelForImageTextToText.from_config(config)
    total = sum(p.numel() for p in model.parameters())
    language = {id(p) for p in getattr(model, "model", model).language_model.parameters()}
    language |= {id(p) for p in model.get_output_embeddings().parameters()}
    towers = sum(p.numel() for p in model.parameters() if id(p) not in language)
    return config.to_dict(), total, towers


@pytest.mark.exact
@pytest.mark.parametrize("model_type", WRAPPERS)
def test_whole_wrapper_equals_the_meta_build(model_type):
    cfg, total, towers = _built(model_type)
    counted = count_params(spec_from_config(cfg, complete=False))
    assert counted.total_params == total
    assert counted.get("vision_tower") + counted.get("projector") == towers


@pytest.mark.exact
def test_qwen2_audio_tower_equals_the_meta_build():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = transformers.AutoConfig.for_model("qwen2_audio")
    with torch.device("meta"):
        model = transformers.Qwen2AudioForConditionalGeneration(config)
    counted = count_params(spec_from_config(config.to_dict(), complete=False))
    assert counted.total_params == sum(p.numel() for p in model.parameters())
    assert counted.get("audio_tower") + counted.get("projector") == \
        sum(p.numel() for n, p in model.named_parameters() if "audio_tower" in n or "multi_modal_projector" in n)


@pytest.mark.exact
def test_qwen2_5_omni_thinker_towers_equal_the_meta_build():
    """Vision and audio towers together (the thinker: what serves text out)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = transformers.AutoConfig.for_model("qwen2_5_omni_thinker")
    with torch.device("meta"):
        model = transformers.Qwen2_5OmniThinkerForConditionalGeneration(config)
    spec = spec_from_config(config.to_dict(), name="omni", complete=False)
    counted = count_params(spec)
    assert counted.total_params == sum(p.numel() for p in model.parameters())
    assert counted.get("audio_tower") == sum(p.numel() for n, p in model.named_parameters() if "audio_tower" in n)
    assert image_tokens(spec.vision_tower, 1024) == 1227  # the Qwen2.5-VL rule


@pytest.mark.parametrize("model_type", ["llava_next", "internvl", "llama4"])
def test_tiled_image_rules_are_refused_in_one_line(model_type):
    spec = spec_from_config(_built(model_type)[0], name=model_type, complete=False)
    with pytest.raises(InputError, match=r"images: the image-token rule of \w+ \((anyres|tiles)"):
        estimate_inference(spec, InferenceSetup(context=64, images=1))


@pytest.mark.exact
@pytest.mark.parametrize("model_type", ["llava", "gemma3", "qwen2_5_vl", "mistral3", "internvl", "llama4"])
def test_tower_counts_follow_the_vision_config(model_type):
    """Change the tower's depth and width: still exact (the count is not a table)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    cfg = _built(model_type)[0]
    vision = dict(cfg["vision_config"])
    depth_key = "depth" if "depth" in vision else "num_hidden_layers"
    vision[depth_key] = 3
    if "intermediate_size" in vision:
        vision["intermediate_size"] = 200
    small = {**cfg, "vision_config": vision}
    text = {**cfg["text_config"], "num_hidden_layers": 1}
    if text.get("layer_types"):
        text["layer_types"] = text["layer_types"][:1]
    small["text_config"] = text
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = transformers.AutoConfig.for_model(**small)
        with torch.device("meta"):
            model = transformers.AutoModelForImageTextToText.from_config(config)
    assert count_params(spec_from_config(config.to_dict(), complete=False)).total_params == \
        sum(p.numel() for p in model.parameters())


def _transformers_function(relative: str, name: str, namespace: dict):
    """A function of transformers' source, run as written (its module imports torchvision)."""
    transformers = pytest.importorskip("transformers")
    path = Path(transformers.__file__).parent / relative
    tree = ast.parse(path.read_text())
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    code = compile(ast.Module(body=[node], type_ignores=[]), str(path), "exec")
    exec(code, namespace)  # noqa: S102 - transformers' own code is the oracle
    return namespace[name]


@pytest.mark.exact
@settings(max_examples=200, deadline=None)
@given(side=st.integers(8, 8000))
def test_qwen_resize_is_transformers_smart_resize(side):
    smart_resize = _transformers_function("models/qwen2_vl/image_processing_qwen2_vl.py", "smart_resize",
                                          {"math": math})
    assert _smart_resize(side, side, 28, 56 * 56, 28 * 28 * 1280) == smart_resize(side, side)
    assert _smart_resize(side, side, 32, 65_536, 16_777_216) == smart_resize(side, side, 32, 65_536, 16_777_216)


@pytest.mark.exact
@settings(max_examples=100, deadline=None)
@given(side=st.integers(8, 6000))
def test_pixtral_tokens_follow_transformers_resize(side):
    """``PixtralProcessor._get_num_multimodal_tokens``: rows x (cols + 1) units of
    ``patch x spatial_merge`` after ``get_resize_output_image_size``."""
    ns: dict = {"math": math, "get_image_size": lambda image, fmt: image, "ChannelDimension": None,
                "ImageInput": object}
    _transformers_function("models/pixtral/image_processing_pixtral.py", "_num_image_tokens", ns)
    resize = _transformers_function("models/pixtral/image_processing_pixtral.py", "get_resize_output_image_size", ns)
    tower = spec_from_config(_built("mistral3")[0], complete=False).vision_tower
    unit = tower.patch_size * tower.merge
    height, width = resize((side, side), size=(tower.image_size, tower.image_size), patch_size=(unit, unit))
    assert image_tokens(tower, side) == (height // unit) * (width // unit + 1)


@pytest.mark.exact
def test_fixed_resolution_tokens_are_the_processor_counts():
    """LLaVA-1.5: (336 // 14)^2 + 1 CLS - 1 (``vision_feature_select_strategy="default"``)
    = 576 = the config's ``image_seq_length``; Gemma 3: ``mm_tokens_per_image`` (256)
    plus its four markers (processing_gemma3.py ``full_image_sequence``)."""
    llava = _built("llava")[0]
    assert image_tokens(spec_from_config(llava, complete=False).vision_tower) == llava["image_seq_length"] == 576
    gemma = _built("gemma3")[0]
    assert image_tokens(spec_from_config(gemma, complete=False).vision_tower, 4000) == gemma["mm_tokens_per_image"] + 4


def test_qwen2_5_vl_image_of_1024_pixels():
    """1024 px: smart_resize gives 980 x 980 (the cap 28*28*1280 px), 70 x 70 patches of
    14 px, merged 2 x 2: 1,225 tokens + vision_start/vision_end."""
    tower = spec_from_config(_catalog_or_default("qwen2_5_vl"), complete=False).vision_tower
    assert image_patches(tower, 1024) == (4900, 1227)


def _catalog_or_default(model_type: str) -> dict:
    return _built(model_type)[0]


def test_image_tokens_join_the_context_and_the_tower_runs_at_prefill():
    spec = spec_from_config(_built("llava")[0], name="llava", complete=False)
    plain = estimate_inference(spec, InferenceSetup(context=1000, prompt=1000))
    with_images = estimate_inference(spec, InferenceSetup(context=1000, prompt=1000, images=2))
    assert with_images.details["context_tokens"] == 1000 + 2 * 576
    assert with_images.details["image_tokens"] == 1152
    assert with_images.details["vision_tower_bytes"] > 0
    assert with_images.total_bytes > plain.total_bytes


@settings(max_examples=30, deadline=None)
@given(images=st.integers(0, 8), more=st.integers(1, 8), side=st.integers(28, 3000))
def test_more_images_never_need_less_memory(images, more, side):
    spec = spec_from_config(_built("qwen2_5_vl")[0], name="qwen2.5-vl", complete=False)
    a = estimate_inference(spec, InferenceSetup(context=256, images=images, image_size=side))
    b = estimate_inference(spec, InferenceSetup(context=256, images=images + more, image_size=side))
    assert b.total_bytes >= a.total_bytes


def test_lora_leaves_the_tower_frozen():
    """Tower tensors lie outside the blocks: "all-linear" adapters never reach them, and
    the images' tokens make the text model's sequence longer; the frozen tower saves
    nothing, the processor's fp32 pixels stay through the step."""
    spec = spec_from_config(_built("qwen2_5_vl")[0], name="qwen2.5-vl", complete=False)
    adapted = target_groups(spec, all_linear_targets(spec))
    assert adapted and not [g for g in adapted if g.component in ("vision_tower", "projector")]
    with_image = estimate_training(spec, TrainingSetup(method="lora", seq=256, images=1))
    longer_text = estimate_training(spec, TrainingSetup(method="lora", seq=256 + 1227))
    pixels = with_image.get("activations/pixel_values")
    assert pixels > 0 and with_image.total_bytes == longer_text.total_bytes + pixels


def test_images_without_a_tower_fail_in_one_line():
    with pytest.raises(InputError, match=r"images: .* has no vision tower vramplan reads"):
        estimate_inference("qwen2.5-0.5b", InferenceSetup(context=64, images=1))
    with pytest.raises(InputError, match="image_size: expected"):
        InferenceSetup(image_size=0)
