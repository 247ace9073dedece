"""TraceSetup: what one traced step runs. Validated on creation, never touches torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vramplan.errors import InputError

Mode = Literal["train", "infer"]
Precision = Literal["fp32", "bf16-mixed", "bf16"]
Optimizer = Literal["adamw", "adam", "sgd"]
OptimizerImpl = Literal["foreach", "fused", "forloop"]
Method = Literal["full", "lora", "qlora"]
Attention = Literal["sdpa", "eager"]
Cache = Literal["static", "dynamic"]
Logits = Literal["last", "all"]
LoadDtype = Literal["fp32", "bf16"]

MODES = ("train", "infer")
PRECISIONS = ("fp32", "bf16-mixed", "bf16")
OPTIMIZERS = ("adamw", "adam", "sgd")
OPTIMIZER_IMPLS = ("foreach", "fused", "forloop")
METHODS = ("full", "lora", "qlora")
ATTENTIONS = ("sdpa", "eager")
CACHES = ("static", "dynamic")
LOGITS = ("last", "all")
LOAD_DTYPES = ("fp32", "bf16")
ALL_LINEAR = "all-linear"
"""peft's ``target_modules`` keyword: every ``nn.Linear`` (and Conv1D) but the output head."""

SGD_MOMENTUM = 0.9
"""Momentum of the SGD optimizer traced (a common default; it makes SGD keep one
state tensor per parameter, the ``momentum_buffer``)."""


def _choice(field: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InputError(f"{field}: expected one of {', '.join(choices)}, got {value!r}")


def _at_least(field: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InputError(f"{field}: expected an integer >= {low}, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class TraceSetup:
    """One step to trace. Sizes are per GPU (no parallelism: one device)."""

    mode: Mode = "train"
    """``train``: forward, loss, backward, optimizer step. ``infer``: prefill + decode."""
    batch_size: int = 1
    """Sequences per step (micro-batch)."""
    seq: int = 512
    """Tokens per sequence (training) or prompt tokens (inference)."""
    input_len: int | None = None
    """Encoder-decoder models: encoder input tokens per sequence (``seq`` is then the
    decoder's: the training targets, or the decoder prompt at inference); ``None``:
    ``seq``."""
    decode_tokens: int = 4
    """Inference: tokens generated after the prefill, one forward each."""
    precision: Precision = "bf16-mixed"
    """``fp32``; ``bf16-mixed``: fp32 parameters under CUDA autocast to bf16 (frozen
    LoRA bases are stored in bf16); ``bf16``: parameters, gradients and states in bf16.
    Inference runs with bf16 weights unless ``fp32``."""
    optimizer: Optimizer = "adamw"
    """torch.optim optimizer of the training step (SGD with momentum 0.9)."""
    optimizer_impl: OptimizerImpl = "foreach"
    """``foreach`` is PyTorch's default on CUDA; ``fused`` and the per-tensor ``forloop``."""
    method: Method = "full"
    """Full fine-tuning, LoRA adapters on a frozen base (peft), or QLoRA: LoRA on a
    bitsandbytes NF4 base (its 4-bit tensors modelled in :mod:`vramplan.trace.qlora`)."""
    load_dtype: LoadDtype | None = None
    """dtype the model is loaded in (``from_pretrained(dtype=...)``) when it differs from
    the precision's default: ``fp32`` for a LoRA base under ``bf16-mixed`` (the HF
    Trainer with ``bf16=True`` on a model loaded in fp32), ``bf16`` for full training
    under autocast on bf16 parameters. ``None``: fp32 for trained parameters under
    ``bf16-mixed``, bf16 for frozen bases and inference."""
    lora_rank: int = 16
    """LoRA rank r."""
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    """Module names that get adapters (peft ``target_modules``); absent names are skipped;
    ``("all-linear",)`` is peft's keyword for every linear layer but the head."""
    recompute: bool = False
    """Full activation recomputation per decoder layer (gradient checkpointing)."""
    attention: Attention = "sdpa"
    """``sdpa`` (flash / memory-efficient kernels as CUDA picks them) or ``eager``."""
    cache: Cache = "static"
    """Inference KV cache: ``static`` preallocates prompt + decode tokens (as serving
    engines do); ``dynamic`` grows by concatenation (transformers' default)."""
    dropout: float | None = None
    """Override every dropout probability in the config; ``None`` keeps the config's."""
    logits: Logits = "last"
    """Inference: ``last`` computes the last position's logits only (``generate``:
    ``logits_to_keep=1``); ``all`` returns every position's (a plain forward: perplexity,
    scoring, reward models)."""
    layers: int | None = None
    """Trace only this many decoder layers (None: all); see :mod:`vramplan.trace.extrapolate`."""
    images: int = 0
    """Multimodal wrappers: images per sequence. The whole wrapper is built (tower,
    projector, text model) and each sequence gets the images' tokens before its ``seq``
    text tokens, and their pixels (:mod:`vramplan.trace.images`); 0 traces the text model."""
    image_size: int | None = None
    """Side in pixels of the square images (dynamic-resolution towers; fixed-resolution
    towers resize to their own); ``None``: the estimate's default."""

    def __post_init__(self) -> None:
        _choice("mode", self.mode, MODES)
        _choice("precision", self.precision, PRECISIONS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("optimizer_impl", self.optimizer_impl, OPTIMIZER_IMPLS)
        _choice("method", self.method, METHODS)
        _choice("logits", self.logits, LOGITS)
        if self.load_dtype is not None:
            _choice("load_dtype", self.load_dtype, LOAD_DTYPES)
        if self.method == "qlora" and self.precision == "fp32":
            raise InputError("precision: QLoRA computes in bf16; expected bf16-mixed or bf16, got fp32")
        _choice("attention", self.attention, ATTENTIONS)
        _choice("cache", self.cache, CACHES)
        _at_least("batch_size", self.batch_size, 1)
        _at_least("seq", self.seq, 1)
        _at_least("decode_tokens", self.decode_tokens, 0)
        if self.input_len is not None:
            _at_least("input_len", self.input_len, 1)
        _at_least("lora_rank", self.lora_rank, 1)
        if self.layers is not None:
            _at_least("layers", self.layers, 1)
        _at_least("images", self.images, 0)
        if self.image_size is not None:
            _at_least("image_size", self.image_size, 1)
        if self.dropout is not None and not (0.0 <= self.dropout < 1.0):
            raise InputError(f"dropout: expected a probability in [0, 1), got {self.dropout!r}")

    @property
    def encoder_tokens(self) -> int:
        """Encoder input tokens per sequence (encoder-decoder models)."""
        return self.input_len if self.input_len is not None else self.seq

    @property
    def training(self) -> bool:
        return self.mode == "train"

    @property
    def autocast(self) -> bool:
        """Training under CUDA autocast to bf16."""
        return self.training and self.precision == "bf16-mixed"
