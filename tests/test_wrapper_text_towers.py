"""Multimodal wrappers and configs as transformers 5 saves them.

- Qwen3-MoE saved by transformers 5 names its expert count ``num_local_experts``
  (no ``num_experts``): still read exactly.
- Image-text-to-text wrappers: the text tower is read through ``text_config``, and
  the *wrapper* decides whether the head is tied (its ``tie_word_embeddings``, or its
  config class's default when the file omits it). The oracle is the wrapper built by
  transformers on the meta device: parameters of its language model and head.
"""

from __future__ import annotations

import functools
import warnings

import pytest

from conftest import catalog_config
from vramplan.errors import ConfigError
from vramplan.model import count_params
from vramplan.model.hf_config import WRAPPER_TIED_DEFAULT, spec_from_config

pytestmark = pytest.mark.exact


def test_qwen3_moe_as_transformers_5_saves_it():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    cfg = catalog_config("qwen3-30b-a3b")
    cfg = {**cfg, "num_hidden_layers": 2}
    saved = transformers.AutoConfig.for_model(**cfg).to_dict()
    if "num_experts" in saved:
        pytest.skip("this transformers saves num_experts")
    assert saved["num_local_experts"] == 128
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**cfg))
    ours = count_params(spec_from_config(saved, complete=False)).total_params
    assert ours == sum(p.numel() for p in model.parameters())


@functools.cache
def _wrappers() -> dict[str, tuple[dict, int]]:
    """wrapper type -> (default config dict, language-model + head parameters)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    transformers.logging.set_verbosity_error()
    out = {}
    for model_type in sorted(MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                config = transformers.AutoConfig.for_model(model_type)
                with torch.device("meta"):
                    model = transformers.AutoModelForImageTextToText.from_config(config)
        except Exception:  # noqa: BLE001 - wrappers whose default config does not build
            continue
        language = getattr(getattr(model, "model", model), "language_model", None)
        head = model.get_output_embeddings()
        if language is None or head is None:
            continue
        params = {id(p): p.numel() for p in language.parameters()}
        params.update({id(p): p.numel() for p in head.parameters()})
        out[model_type] = (config.to_dict(), sum(params.values()))
    return out


def _read(cfg: dict) -> int | None:
    """The text tower and head as read (the vision tower and projector, counted where
    vramplan reads them, are checked in tests/test_towers.py)."""
    try:
        counted = count_params(spec_from_config(cfg, complete=False))
    except ConfigError:
        return None
    return counted.total_params - sum(counted.get(c) for c in ("vision_tower", "audio_tower", "projector"))


def test_wrapper_text_towers_count_the_head_as_the_wrapper_ties_it():
    results = {t: _read(cfg) == total for t, (cfg, total) in _wrappers().items()}
    read = [t for t, ok in results.items() if ok]
    print(f"\nimage-text-to-text wrappers that build: {len(results)}; text tower exact: {len(read)}")
    wrong = [t for t, (cfg, total) in _wrappers().items() if (n := _read(cfg)) is not None and n != total]
    # every wrapper whose text tower is read at all is read exactly, head tying included
    assert wrong == []
    assert len(read) >= 49


def test_wrapper_tie_default_table_matches_the_config_classes():
    """Without transformers the outer default comes from WRAPPER_TIED_DEFAULT: drop the
    key from the saved outer config and the count must not change."""
    mismatched = []
    for model_type, (cfg, total) in _wrappers().items():
        if _read(cfg) != total:
            continue
        bare = {k: v for k, v in cfg.items() if k != "tie_word_embeddings"}
        if cfg.get("tie_word_embeddings") is not None and _read(bare) != total:
            mismatched.append((model_type, cfg.get("tie_word_embeddings"), model_type in WRAPPER_TIED_DEFAULT))
    assert mismatched == []
