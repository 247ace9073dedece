"""Build the transformers model of a config on fake tensors: every parameter has
its real shape and dtype and no storage, so an 8B model costs little host memory."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Literal

from vramplan.errors import ConfigError, InputError
from vramplan.trace.setup import TraceSetup

ModelKind = Literal["causal", "seq2seq", "masked", "image_text"]

LAYER_LIST_KEYS = ("layer_types", "mlp_only_layers", "layers_block_type", "mlp_layer_types", "hybrid_layer_ids")
"""Per-layer lists in configs that must shrink with the layer count."""

DROPOUT_KEY_SUFFIXES = ("dropout", "pdrop", "dropout_prob", "dropout_rate")
"""Config keys ending so are dropout probabilities (``attention_dropout``, ``resid_pdrop``,
BERT's ``hidden_dropout_prob``, T5's ``dropout_rate``)."""


def is_dropout_probability(key: str, value) -> bool:
    """A config entry that is a dropout probability (see :data:`DROPOUT_KEY_SUFFIXES`)."""
    return key.endswith(DROPOUT_KEY_SUFFIXES) and isinstance(value, (int, float)) and not isinstance(value, bool)

TOWER_MODULES = r".*\b(visual|vision_tower|vision_model|multi_modal_projector)\b.*"
"""Modules of a multimodal wrapper's tower and projector (peft ``exclude_modules``)."""

LORA_ALPHA_PER_RANK = 2
"""LoRA alpha = 2 x rank, a common default (alpha does not change memory)."""


def truncated_config(config: dict, layers: int) -> dict:
    """``config`` with only its first ``layers`` decoder layers (per-layer lists cut)."""
    from vramplan.model.encoder_decoder import ENCODER_DECODER_TYPES

    if config.get("is_encoder_decoder") or config.get("model_type") in ENCODER_DECODER_TYPES:
        raise InputError(f"layers: {config.get('model_type')!r} is an encoder-decoder, traced whole (layers all); "
                         "its two stacks are not extended per layer")
    cfg = copy.deepcopy(config)
    key = "n_layer" if "n_layer" in cfg and "num_hidden_layers" not in cfg else "num_hidden_layers"
    cfg[key] = layers
    for list_key in LAYER_LIST_KEYS:
        value = cfg.get(list_key)
        if isinstance(value, list):
            indices = list_key in ("mlp_only_layers", "hybrid_layer_ids")  # layer indices, not one entry per layer
            cfg[list_key] = [i for i in value if i < layers] if indices else value[:layers]
    return cfg


def num_layers(config: dict) -> int:
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if isinstance(config.get(key), int):
            return config[key]
    raise ConfigError("num_hidden_layers: missing from the config")


def prepared_config(config: dict, setup: TraceSetup) -> dict:
    """The text config to build (the whole wrapper's when ``setup.images``: see
    :func:`wrapper_config`): quantization dropped (shapes are the same), layers truncated
    when ``setup.layers`` says so, dropout overridden."""
    from vramplan.model.hf_config import text_config

    if setup.images:
        return wrapper_config(config, setup)
    cfg = dict(text_config(config))
    cfg.pop("quantization_config", None)  # traced at the precision the setup names; shapes are the same
    if setup.layers is not None:
        total = num_layers(cfg)
        if setup.layers > total:
            raise InputError(f"layers: expected at most the model's {total} layers, got {setup.layers}")
        cfg = truncated_config(cfg, setup.layers)
    if setup.dropout is not None:
        for key in list(cfg):
            if is_dropout_probability(key, cfg[key]):
                cfg[key] = setup.dropout
    cfg["use_cache"] = setup.mode == "infer"
    return cfg


def wrapper_config(config: dict, setup: TraceSetup) -> dict:
    """A multimodal wrapper's config to build whole: its text config prepared as a text
    model's (nested under ``text_config``, or at the top level of a flat Qwen2-VL
    config), dropout overridden in the vision config too."""
    from vramplan.trace.images import check_traceable

    check_traceable(str(config.get("model_type")), setup.images)
    cfg = copy.deepcopy(config)
    cfg.pop("quantization_config", None)
    text_setup = replace(setup, images=0)
    if isinstance(cfg.get("text_config"), dict):
        inner = {**cfg["text_config"]}
        inner.setdefault("model_type", f"{cfg['model_type']}_text")
        cfg["text_config"] = prepared_config(inner, text_setup)
    else:
        cfg = {**prepared_config(cfg, text_setup), "model_type": cfg["model_type"]}
    vision = cfg.get("vision_config")
    if setup.dropout is not None and isinstance(vision, dict):
        cfg["vision_config"] = {k: (setup.dropout if is_dropout_probability(k, x) else x) for k, x in vision.items()}
    cfg["use_cache"] = setup.mode == "infer"
    return cfg


def param_dtype(setup: TraceSetup):
    """dtype the (base) parameters are loaded in: ``setup.load_dtype`` when given,
    else the precision's default."""
    import torch

    if setup.load_dtype is not None:
        return {"fp32": torch.float32, "bf16": torch.bfloat16}[setup.load_dtype]
    if setup.precision == "fp32":
        return torch.float32
    if setup.precision == "bf16":
        return torch.bfloat16
    # bf16-mixed: trainable parameters stay fp32 under autocast; a frozen LoRA base
    # and inference weights are loaded in bf16.
    if setup.mode == "infer" or setup.method in ("lora", "qlora"):
        return torch.bfloat16
    return torch.float32


def hf_config(cfg: dict):
    """transformers' config object, or :class:`ConfigError` when it lacks the type."""
    import transformers

    model_type = cfg.get("model_type")
    try:
        return transformers.AutoConfig.for_model(**cfg)
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"model_type: transformers {transformers.__version__} cannot build {model_type!r} "
                          f"({str(exc).splitlines()[0][:120]})") from None


def build_model(config: dict, setup: TraceSetup, fake_mode=None):
    """The model of ``config`` (its :func:`model_kind`) ready for ``setup``: built on the meta device (no
    memory, no initialisation), then every parameter and buffer replaced by a fake
    CPU tensor of ``fake_mode`` (tied weights stay tied). ``fake_mode=None`` builds
    real CPU tensors instead."""
    import torch
    import transformers

    hf = hf_config(prepared_config(config, setup))
    with torch.device("meta" if fake_mode is not None else "cpu"):
        model = _from_config(transformers, hf, setup)
        if setup.mode == "infer":
            model.eval()
            model.requires_grad_(False)
        else:
            model.train()
            if setup.recompute:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            if setup.method in ("lora", "qlora"):
                model = _with_lora(model, setup)
            if setup.method == "qlora":
                from vramplan.trace.qlora import quantize_base

                quantize_base(model, torch.bfloat16)
                # prepare_model_for_kbit_training(use_gradient_checkpointing=True) with
                # its default kwargs makes the embedding output require grad
                if setup.recompute:
                    model.enable_input_require_grads()
    if fake_mode is not None:
        materialize_fake(model, fake_mode)
    return model


def attention_used(model) -> str:
    """The attention implementation the built model runs."""
    return getattr(model.config, "_attn_implementation", "") or ""


def model_kind(hf) -> ModelKind:
    """The head a model of this config trains and serves with: ``seq2seq`` for an
    encoder-decoder with a conditional-generation class (T5, BART:
    ``AutoModelForSeq2SeqLM``), ``masked`` for an encoder with a masked-LM class
    (BERT, RoBERTa, ModernBERT: ``AutoModelForMaskedLM``; BERT's causal
    ``BertLMHeadModel`` wants ``is_decoder=True``), else ``causal``."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_MASKED_LM_MAPPING_NAMES,
                                                        MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES)

    if getattr(hf, "is_encoder_decoder", False) and hf.model_type in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES:
        return "seq2seq"
    if hf.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(hf, "is_decoder", False):
        return "masked"
    return "causal"


KIND_NAMES = {"causal": "a causal LM", "seq2seq": "a sequence-to-sequence LM", "masked": "a masked LM",
              "image_text": "an image-text-to-text model"}


def _auto_class(transformers, kind: ModelKind):
    return {"causal": transformers.AutoModelForCausalLM, "seq2seq": transformers.AutoModelForSeq2SeqLM,
            "masked": transformers.AutoModelForMaskedLM, "image_text": transformers.AutoModelForImageTextToText}[kind]


def _from_config(transformers, hf, setup: TraceSetup):
    """``from_config`` of the config's :func:`model_kind` (the image-text-to-text class
    when ``setup.images``) with the setup's attention; a model class without SDPA
    support (Gemma 2's soft-capping) is built with eager attention, as transformers
    itself requires."""
    kind = "image_text" if setup.images else model_kind(hf)
    auto = _auto_class(transformers, kind)
    try:
        return auto.from_config(hf, dtype=param_dtype(setup), attn_implementation=setup.attention)
    except ValueError as exc:
        message = str(exc).splitlines()[0]
        if setup.attention == "sdpa" and "does not support" in message:
            return auto.from_config(hf, dtype=param_dtype(setup), attn_implementation="eager")
        raise ConfigError(f"model_type: transformers cannot build {hf.model_type!r} as {KIND_NAMES[kind]} "
                          f"({message[:120]})") from None


def materialize_fake(model, fake_mode, device: str = "cpu") -> None:
    """Swap meta parameters and buffers for fake tensors on ``device`` of the same
    shape, dtype and ``requires_grad``; a tensor shared by two modules stays shared."""
    import torch

    made: dict[int, torch.Tensor] = {}
    with fake_mode:
        for module in model.modules():
            for name, p in list(module._parameters.items()):
                if p is None:
                    continue
                if id(p) not in made:
                    made[id(p)] = torch.nn.Parameter(torch.empty(p.shape, dtype=p.dtype, device=device), requires_grad=p.requires_grad)
                module._parameters[name] = made[id(p)]
            for name, b in list(module._buffers.items()):
                if b is None:
                    continue
                if id(b) not in made:
                    made[id(b)] = torch.empty(b.shape, dtype=b.dtype, device=device)
                module._buffers[name] = made[id(b)]


def _all_linear_peft_accepts(model) -> str | list[str]:
    """``all-linear``, or on the Mamba-based types where peft refuses ``out_proj`` (and so
    ``all-linear``), the names of every other linear of the blocks (the analytical
    default, :func:`vramplan.memory.lora.mamba_safe_targets`)."""
    import torch

    from vramplan.memory.lora import PEFT_MAMBA_INCOMPATIBLE, PEFT_MAMBA_TYPES
    from vramplan.trace.setup import ALL_LINEAR

    if getattr(model.config, "model_type", None) not in PEFT_MAMBA_TYPES:
        return ALL_LINEAR
    head = model.get_output_embeddings()
    names = {name.rsplit(".", 1)[-1] for name, m in model.named_modules()
             if isinstance(m, torch.nn.Linear) and m is not head}
    return sorted(names - PEFT_MAMBA_INCOMPATIBLE)


def _with_lora(model, setup: TraceSetup):
    import peft

    from vramplan.trace.setup import ALL_LINEAR

    if setup.lora_targets == (ALL_LINEAR,):
        targets: str | list[str] = _all_linear_peft_accepts(model)
    else:
        # passed as given: peft itself resolves them (on transformers 5 it turns expert
        # names into target_parameters on fused MoE experts) and ignores names it finds nowhere
        present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        present |= {name.rsplit(".", 1)[-1] for name, _ in model.named_parameters()}
        if not present & set(setup.lora_targets):
            raise InputError(f"lora_targets: none of {', '.join(setup.lora_targets)} is a module of this model")
        targets = list(setup.lora_targets)
    # a wrapper's tower and projector stay frozen, without adapters (vramplan train's model of
    # LoRA on a multimodal checkpoint): Qwen2.5-VL's tower MLP is also named gate/up/down_proj
    exclude = TOWER_MODULES if setup.images else None
    lora = peft.LoraConfig(r=setup.lora_rank, lora_alpha=LORA_ALPHA_PER_RANK * setup.lora_rank,
                           target_modules=targets, lora_dropout=0.0, bias="none", exclude_modules=exclude)
    return peft.get_peft_model(model, lora)
