"""Precision recipes and the bytes they keep per trainable parameter: weights, master
weights, gradients.

A recipe says in which dtype each model-state tensor lives. Names follow the
ecosystem (PyTorch Lightning ``precision=``, the Hugging Face Trainer ``bf16=True``):

- ``fp32``: weights, gradients and optimizer states in fp32; compute in fp32 (TF32
  matmuls change speed, not storage).
- ``bf16-mixed`` / ``fp16-mixed``: fp32 weights under ``torch.autocast``: matmuls run
  in 16-bit on 16-bit *copies* of the weights (held by autograd until each layer's
  backward, see :mod:`vramplan.memory.activations`), gradients and optimizer states
  stay fp32 because they follow the parameter dtype. fp16 adds a loss scaler
  (a few scalars). This is what Lightning and the HF Trainer do on one GPU.
- ``bf16`` / ``fp16`` (Lightning's ``bf16-true``): the weights themselves are 16-bit;
  gradients and ``torch.optim`` states follow the parameter dtype (16-bit too).

Other conventions that circulate, as data (:data:`CONVENTIONS`) so the CLI can print
them beside ours: Megatron-LM / DeepSpeed keep 16-bit weights + an fp32 master copy
in the optimizer + fp32 gradient accumulation (2 + 4 + 4 + 8 = 18 B/param,
Megatron ``theoretical_memory_usage.py``); the ZeRO paper (Rajbhandari et al. 2020,
sec. 3.1) counts 2 (fp16 weights) + 2 (fp16 grads) + 12 (fp32 master, momentum,
variance) = 16 B/param.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vramplan.dtypes import get_dtype
from vramplan.naming import lookup, normalize_name

PrecisionName = Literal["fp32", "bf16-mixed", "fp16-mixed", "bf16", "fp16"]


@dataclass(frozen=True, kw_only=True)
class PrecisionRecipe:
    """Where each training tensor lives, by dtype."""

    name: PrecisionName
    """Canonical name."""
    weight_dtype: str
    """Dtype of the parameters the optimizer updates (fp32 under autocast)."""
    compute_dtype: str
    """Dtype matmuls run in and most activations are saved in."""
    autocast: bool
    """True when ``torch.autocast`` casts weights and inputs per op (the *-mixed recipes)."""
    description: str
    """One line for tables."""

    @property
    def weight_bytes_per_param(self) -> int:
        return get_dtype(self.weight_dtype).bytes_for(1)

    @property
    def gradient_bytes_per_param(self) -> int:
        """Autograd accumulates ``.grad`` in the parameter's dtype (``AccumulateGrad``)."""
        return self.weight_bytes_per_param

    @property
    def compute_bytes(self) -> int:
        """Bytes of one activation element in the compute dtype."""
        return get_dtype(self.compute_dtype).bytes_for(1)

    @property
    def residual_bytes(self) -> int:
        """Bytes of one element of the residual stream. Under autocast the embedding
        lookup is not on autocast's lower-precision list, so it returns the fp32
        weight's dtype, and adding 16-bit block outputs to it promotes back to fp32:
        the stream stays in the weight dtype."""
        return self.weight_bytes_per_param


_RECIPES: dict[str, PrecisionRecipe] = {
    "fp32": PrecisionRecipe(name="fp32", weight_dtype="fp32", compute_dtype="fp32", autocast=False,
                            description="fp32 weights, gradients, states and compute"),
    "bf16-mixed": PrecisionRecipe(name="bf16-mixed", weight_dtype="fp32", compute_dtype="bf16", autocast=True,
                                  description="fp32 weights/grads/states, bf16 autocast compute (Lightning, HF Trainer)"),
    "fp16-mixed": PrecisionRecipe(name="fp16-mixed", weight_dtype="fp32", compute_dtype="fp16", autocast=True,
                                  description="fp32 weights/grads/states, fp16 autocast compute + loss scaling"),
    "bf16": PrecisionRecipe(name="bf16", weight_dtype="bf16", compute_dtype="bf16", autocast=False,
                            description="bf16 weights, gradients and states (Lightning bf16-true)"),
    "fp16": PrecisionRecipe(name="fp16", weight_dtype="fp16", compute_dtype="fp16", autocast=False,
                            description="fp16 weights, gradients and states (Lightning 16-true)"),
}
PRECISIONS: tuple[str, ...] = tuple(_RECIPES)
"""The recipe names, in table order (the choices of every ``precision``)."""
_ALIASES = {"float32": "fp32", "32": "fp32", "32-true": "fp32", "bf16-true": "bf16", "16-true": "fp16",
            "16-mixed": "fp16-mixed", "amp-bf16": "bf16-mixed", "amp": "fp16-mixed", "bfloat16": "bf16",
            "float16": "fp16", "mixed": "bf16-mixed"}


def get_precision(name: str | PrecisionRecipe) -> PrecisionRecipe:
    """A recipe by name or alias; unknown names raise ``UnknownNameError`` with
    the closest names."""
    if isinstance(name, PrecisionRecipe):
        return name
    key = normalize_name(str(name))
    table = {**_RECIPES, **{k: _RECIPES[v] for k, v in _ALIASES.items()}}
    return lookup("precision", key, table, hint=f"precision: expected one of {', '.join(_RECIPES)}")


def precision_names() -> tuple[str, ...]:
    return tuple(_RECIPES)


@dataclass(frozen=True, kw_only=True)
class StateConvention:
    """A published way of counting mixed-precision Adam model states, per parameter."""

    name: str
    """Who counts this way."""
    weights: int
    """Bytes/param of the weights used in compute."""
    master_weights: int
    """Bytes/param of an fp32 master copy (0 when the weights are the master)."""
    gradients: int
    """Bytes/param of gradients as accumulated."""
    optimizer_states: int
    """Bytes/param of Adam's two moments."""
    source: str
    """Where the convention is written down."""

    @property
    def total(self) -> int:
        return self.weights + self.master_weights + self.gradients + self.optimizer_states


CONVENTIONS: tuple[StateConvention, ...] = (
    StateConvention(name="PyTorch autocast (bf16-mixed)", weights=4, master_weights=0, gradients=4,
                    optimizer_states=8, source="torch.autocast: fp32 params; grads and AdamW states follow them"),
    StateConvention(name="Megatron-LM / DeepSpeed bf16", weights=2, master_weights=4, gradients=4,
                    optimizer_states=8, source="Megatron theoretical_memory_usage.py (18 B/param with fp32 grads)"),
    StateConvention(name="ZeRO paper fp16", weights=2, master_weights=4, gradients=2, optimizer_states=8,
                    source="Rajbhandari et al. 2020, sec. 3.1: 2 + 2 + K=12 = 16 B/param"),
)
"""Conventions for mixed-precision Adam, shown beside the estimate (the ZeRO paper's
K = 12 is master 4 + momentum 4 + variance 4)."""
