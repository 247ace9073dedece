"""Shared helpers: build a model with transformers on the meta device (no weights,
no memory) from a config dict. Used as the oracle for parameter counts."""

from __future__ import annotations

import pytest


def build_meta_model(config: dict):
    """``AutoModelForCausalLM.from_config`` on the meta device, for the text model of
    ``config``. Skips (saying why) when transformers lacks the model type."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from vramplan.model.hf_config import text_config
    from vramplan.model.towers import READERS

    from vramplan.model import encoder_decoder

    if encoder_decoder.reads(config):  # the seq2seq or masked-LM model, as vramplan counts it
        auto = transformers.AutoModelForMaskedLM if config["model_type"] in encoder_decoder.ENCODER_TYPES \
            else transformers.AutoModelForSeq2SeqLM
        with torch.device("meta"):
            return auto.from_config(transformers.AutoConfig.for_model(**config))
    if config.get("model_type") in READERS and isinstance(config.get("vision_config"), dict):
        # vramplan counts the vision tower of these wrappers: build the whole wrapper
        whole = {k: v for k, v in config.items() if k != "quantization_config"}
        with torch.device("meta"):
            return transformers.AutoModelForImageTextToText.from_config(transformers.AutoConfig.for_model(**whole))
    cfg = dict(text_config(config))
    cfg.pop("quantization_config", None)  # quantizers need GPUs/kernels; shapes are the same
    model_type = cfg.get("model_type")
    try:
        hf_config = transformers.AutoConfig.for_model(**cfg)
    except ValueError as exc:
        pytest.skip(f"installed transformers {transformers.__version__} lacks model_type {model_type!r}: {exc}")
    with torch.device("meta"):
        return transformers.AutoModelForCausalLM.from_config(hf_config)


def hf_param_count(config: dict) -> int:
    model = build_meta_model(config)
    return sum(p.numel() for p in model.parameters())
