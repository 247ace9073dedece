"""Optimizer states and the temporaries of ``optimizer.step()``, from each
implementation's source.

State bytes are computed tensor by tensor over the *trainable* tensor groups
(:mod:`vramplan.model.tensors`, or LoRA adapters), because two optimizers decide
per tensor: bitsandbytes keeps tensors under 4096 elements in 32-bit states, and
Adafactor factors only tensors with two or more dimensions.

Sources, one per optimizer:

- ``adamw`` (torch ``_multi_tensor_adamw``, the CUDA default ``foreach=True``): states
  ``exp_avg`` and ``exp_avg_sq`` (``zeros_like(param)``: the parameter dtype). The
  step computes ``exp_avg_sq_sqrt = torch._foreach_sqrt(exp_avg_sqs)`` for all
  parameters of a device/dtype group at once, then divides in place: one
  parameter-sized temporary set in the state dtype, alive until the update ends.
- ``adamw-forloop`` (torch ``_single_tensor_adam``, ``foreach=False``: what PyTorch
  runs where foreach is unsupported): the same states; per tensor it computes
  ``denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)``, so the ``sqrt``
  output and the quotient are alive together for one tensor at a time: two
  temporaries the size of the largest trainable tensor, in the state dtype.
- ``adamw-fused`` (torch ``_fused_adamw``): the same two states, updated in one
  kernel without temporaries.
- ``adamw-8bit`` / ``paged-adamw-8bit`` (bitsandbytes ``Optimizer2State.init_state``
  with ``block_wise=True``): ``state1``/``state2`` uint8, one fp32 ``absmax`` per
  256-element block for each; tensors with fewer than ``min_8bit_size = 4096``
  elements keep fp32 states. The blockwise kernel updates in place. Paged states
  live in CUDA unified memory and can spill to host under pressure; they are still
  counted on the GPU here (the worst case), with a note.
- ``sgd`` (torch ``_multi_tensor_sgd``, momentum 0, weight decay 0): no state, no temporary.
- ``sgd-momentum``: one ``momentum_buffer`` per parameter; updated in place.
- ``adafactor`` (transformers ``Adafactor`` defaults: ``beta1=None``): for tensors
  with 2+ dims, ``exp_avg_sq_row`` (shape[:-1]) and ``exp_avg_sq_col``
  (shape[:-2] + shape[-1:]); others a full ``exp_avg_sq``; in the gradient's dtype.
  It loops over tensors, upcasting 16-bit gradients; the largest tensor's
  ``grad**2`` and ``update`` buffers (fp32) are the step temporary.
- ``lion`` (Chen et al. 2023; lion-pytorch): one ``exp_avg``; per tensor, a cloned
  and updated copy of it (two temporaries of the largest tensor).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from math import prod
from typing import Literal

from vramplan.dtypes import FP32_BYTES
from vramplan.intmath import ceil_div
from vramplan.model.tensors import TensorGroup
from vramplan.naming import lookup, normalize_name

OptimizerName = Literal["adamw", "adamw-forloop", "adamw-fused", "adamw-8bit", "paged-adamw-8bit", "sgd", "sgd-momentum",
                        "adafactor", "lion"]
StateLayout = Literal["param", "blockwise-8bit", "factored"]
Temporary = Literal["none", "all_params", "largest_tensor"]

# fp32 elements (FP32_BYTES, from vramplan.dtypes): 8-bit optimizer block scales,
# small-tensor states and Adafactor's step buffers.
BNB_BLOCK = 256
"""bitsandbytes blockwise optimizer block (``blocks = n // 256`` in ``init_state``)."""
BNB_MIN_8BIT_SIZE = 4096
"""bitsandbytes ``min_8bit_size``: smaller tensors keep 32-bit states."""


@dataclass(frozen=True, kw_only=True)
class OptimizerSpec:
    """One optimizer: its states and the temporaries of its step."""

    name: OptimizerName
    """Canonical name."""
    description: str
    """One line for tables."""
    states: tuple[str, ...]
    """Names of the per-parameter states (empty for plain SGD)."""
    layout: StateLayout
    """``param``: one tensor like the parameter per state; ``blockwise-8bit``: uint8 +
    fp32 absmax per 256; ``factored``: Adafactor's row/column second moment."""
    temporary: Temporary
    """What the step allocates: nothing, one parameter-sized set for all tensors
    (foreach), or buffers the size of the largest tensor (per-tensor loops)."""
    temporary_copies: int = 0
    """How many such buffers are alive at once."""
    temporary_fp32: bool = False
    """Per-tensor buffers are fp32 whatever the parameter dtype (Adafactor upcasts the
    gradient); otherwise they follow the state dtype."""
    paged: bool = False
    """States in CUDA unified memory (may spill to host)."""
    source: str = ""
    """Implementation file the layout was read from."""


OPTIMIZERS: dict[str, OptimizerSpec] = {o.name: o for o in (
    OptimizerSpec(name="adamw", description="torch AdamW, foreach (CUDA default)",
                  states=("exp_avg", "exp_avg_sq"), layout="param", temporary="all_params", temporary_copies=1,
                  source="torch/optim/adamw.py _multi_tensor_adamw: exp_avg_sq_sqrt = _foreach_sqrt(...)"),
    OptimizerSpec(name="adamw-forloop", description="torch AdamW, foreach=False (per-tensor loop)",
                  states=("exp_avg", "exp_avg_sq"), layout="param", temporary="largest_tensor", temporary_copies=2,
                  source="torch/optim/adam.py _single_tensor_adam: denom = (exp_avg_sq.sqrt() / bc2).add_(eps)"),
    OptimizerSpec(name="adamw-fused", description="torch AdamW, fused=True",
                  states=("exp_avg", "exp_avg_sq"), layout="param", temporary="none",
                  source="torch/optim/adamw.py _fused_adamw: one kernel, in place"),
    OptimizerSpec(name="adamw-8bit", description="bitsandbytes AdamW8bit, blockwise",
                  states=("state1", "state2"), layout="blockwise-8bit", temporary="none",
                  source="bitsandbytes/optim/optimizer.py Optimizer2State.init_state"),
    OptimizerSpec(name="paged-adamw-8bit", description="bitsandbytes PagedAdamW8bit (unified memory)",
                  states=("state1", "state2"), layout="blockwise-8bit", temporary="none", paged=True,
                  source="bitsandbytes/optim/optimizer.py Optimizer2State.init_state, is_paged=True"),
    OptimizerSpec(name="sgd", description="torch SGD, no momentum", states=(), layout="param",
                  temporary="none", source="torch/optim/sgd.py _multi_tensor_sgd: _foreach_add_(params, grads)"),
    OptimizerSpec(name="sgd-momentum", description="torch SGD with momentum", states=("momentum_buffer",),
                  layout="param", temporary="none",
                  source="torch/optim/sgd.py _multi_tensor_sgd: bufs updated in place"),
    OptimizerSpec(name="adafactor", description="transformers Adafactor (beta1=None)",
                  states=("exp_avg_sq",), layout="factored", temporary="largest_tensor", temporary_copies=2,
                  temporary_fp32=True,
                  source="transformers/optimization.py Adafactor.step"),
    OptimizerSpec(name="lion", description="Lion (one momentum, sign update)", states=("exp_avg",),
                  layout="param", temporary="largest_tensor", temporary_copies=2,
                  source="Chen et al. 2023 alg. 2; lion-pytorch update_fn"),
)}
_ALIASES = {"adam": "adamw", "adamw-torch": "adamw", "adamw-foreach": "adamw", "adamw-for-loop": "adamw-forloop",
            "adamw-single-tensor": "adamw-forloop", "adamw-torch-fused": "adamw-fused",
            "fused-adamw": "adamw-fused", "adamw-bnb-8bit": "adamw-8bit", "adam8bit": "adamw-8bit",
            "adamw8bit": "adamw-8bit", "paged-adamw8bit": "paged-adamw-8bit", "momentum": "sgd-momentum"}


def get_optimizer(name: str | OptimizerSpec) -> OptimizerSpec:
    """An optimizer by name or alias ("adamw", "adamw_torch_fused", "adam8bit");
    unknown names raise ``UnknownNameError`` with the closest names."""
    if isinstance(name, OptimizerSpec):
        return name
    table = {**OPTIMIZERS, **{k: OPTIMIZERS[v] for k, v in _ALIASES.items()}}
    return lookup("optimizer", normalize_name(str(name)), table,
                  hint=f"optimizer: expected one of {', '.join(OPTIMIZERS)}")


def _blockwise_8bit_bytes(numel: int) -> int:
    """One 8-bit state of one tensor: uint8 codes + fp32 absmax per block, or fp32
    when the tensor is under ``min_8bit_size``."""
    if numel < BNB_MIN_8BIT_SIZE:
        return FP32_BYTES * numel
    return numel + FP32_BYTES * ceil_div(numel, BNB_BLOCK)


def _factored_bytes(shape: tuple[int, ...], state_bytes: int) -> int:
    """Adafactor's second moment of one tensor: row + column vectors for 2+ dims."""
    if len(shape) < 2:
        return prod(shape) * state_bytes
    rows = prod(shape[:-1])
    cols = prod(shape[:-2]) * shape[-1]
    return (rows + cols) * state_bytes


def tensor_state_bytes(opt: OptimizerSpec, shape: tuple[int, ...], state_bytes: int) -> int:
    """Bytes of all of ``opt``'s states for one tensor of ``shape`` whose parameter
    dtype takes ``state_bytes`` per element (``torch.optim`` states follow it)."""
    numel = prod(shape)
    if opt.layout == "blockwise-8bit":
        return len(opt.states) * _blockwise_8bit_bytes(numel)
    if opt.layout == "factored":
        return _factored_bytes(shape, state_bytes)
    return len(opt.states) * numel * state_bytes


def optimizer_state_bytes(opt: OptimizerSpec, groups: Iterable[TensorGroup], state_bytes: int) -> int:
    """Bytes of the optimizer states of every trainable tensor in ``groups``."""
    return sum(tensor_state_bytes(opt, g.shape, state_bytes) * g.count for g in groups)


def step_temporary_bytes(opt: OptimizerSpec, groups: Iterable[TensorGroup], state_bytes: int) -> int:
    """Bytes the step allocates on top of the states, at its high point.

    ``all_params``: one temporary per parameter in the state dtype (foreach AdamW's
    ``exp_avg_sq_sqrt``). ``largest_tensor``: ``temporary_copies`` buffers the size of
    the largest trainable tensor (per-tensor loops free them between tensors), in fp32
    for Adafactor and in the state dtype otherwise (Lion's ``exp_avg.clone()`` and
    the ``add`` that follows).
    """
    groups = list(groups)
    if opt.temporary == "none" or not groups:
        return 0
    if opt.temporary == "all_params":
        return opt.temporary_copies * sum(g.params for g in groups) * state_bytes
    largest = max(g.numel for g in groups)
    return opt.temporary_copies * largest * (FP32_BYTES if opt.temporary_fp32 else state_bytes)
