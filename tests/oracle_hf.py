"""Shared helpers: transformers as the oracle. Build a model from a config dict on the
meta device (no weights, no memory) for parameter counts; build a small model of a
``model_type`` on the meta device or the CPU, run one bf16 forward and sum the bytes of
the cache it returns, for cache sizes."""

from __future__ import annotations

import warnings

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


def hf_config(model_type: str, *, skip_unknown: bool = False, **overrides):
    """``AutoConfig.for_model(model_type, **overrides)`` with transformers' warnings
    silenced; with ``skip_unknown``, skips (saying why) when transformers refuses it."""
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not skip_unknown:
            return transformers.AutoConfig.for_model(model_type, **overrides)
        try:
            return transformers.AutoConfig.for_model(model_type, **overrides)
        except Exception as exc:  # noqa: BLE001 - a transformers without the family
            pytest.skip(f"transformers {transformers.__version__}: {exc}")


def build_model(model_type: str, device: str, **overrides):
    """``(config, model)``: the causal LM of ``model_type`` built from ``overrides`` on
    ``device`` ("meta": no weights; "cpu": weights seeded with 0), warnings silenced."""
    config = hf_config(model_type, **overrides)
    return config, model_from_config(config, device)


def model_from_config(config, device: str = "cpu"):
    """``AutoModelForCausalLM.from_config(config)`` on ``device``, seeded with 0, warnings silenced."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        with torch.device(device):
            return transformers.AutoModelForCausalLM.from_config(config)


def forward_cache(model, batch: int, tokens: int, **inputs):
    """The cache transformers returns (``past_key_values``) after one bf16 forward of
    ``batch`` x ``tokens`` random tokens (ids below 100) through ``model``."""
    import torch

    model = model.to(torch.bfloat16).eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        out = model(input_ids=torch.randint(0, 100, (batch, tokens)), use_cache=True, **inputs)
    return out.past_key_values


def cache_tensors(cache) -> list:
    """Every distinct tensor reachable from ``cache`` (its attributes, lists and dicts,
    five levels deep)."""
    import torch

    seen: dict[int, torch.Tensor] = {}

    def walk(obj, depth=0):
        if depth > 5:
            return
        if isinstance(obj, torch.Tensor):
            seen.setdefault(id(obj), obj)
        elif isinstance(obj, dict):
            for v in obj.values():
                walk(v, depth + 1)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                walk(v, depth + 1)
        elif hasattr(obj, "__dict__"):
            for v in vars(obj).values():
                walk(v, depth + 1)

    walk(cache)
    return list(seen.values())


def cache_bytes(cache, min_dim: int = 0, max_dim: int | None = None) -> int:
    """Bytes of the tensors of ``cache`` with ``min_dim`` to ``max_dim`` dimensions."""
    return sum(t.numel() * t.element_size() for t in cache_tensors(cache)
               if t.dim() >= min_dim and (max_dim is None or t.dim() <= max_dim))


def kv_bytes_after_forward(config, tokens: int, batch: int = 2) -> int:
    """Bytes of the 4-D (key/value) tensors transformers' cache holds after one bf16
    forward of ``batch`` x ``tokens`` random tokens through the model ``config`` builds."""
    return cache_bytes(forward_cache(model_from_config(config), batch, tokens), min_dim=4, max_dim=4)


def estimate_vs_trace(config: dict, setup):
    """``(error, traced, estimate)``: the analytical estimate of ``config`` under the
    :class:`~vramplan.trace.setup.TraceSetup` ``setup`` against one traced step (error =
    estimate / trace tensor peak - 1)."""
    pytest.importorskip("torch")
    from vramplan.trace.compare import analytical_estimate, tensor_bytes
    from vramplan.trace.run import run_trace

    traced = run_trace(config, setup)
    estimate = analytical_estimate(config, setup)
    return tensor_bytes(estimate) / traced.peak_bytes - 1, traced, estimate
