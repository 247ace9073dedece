"""DeepSpeed ZeRO's buffer settings (the part of a layout only DeepSpeed reads)."""

from __future__ import annotations

from dataclasses import dataclass

from vramplan.errors import LayoutError


@dataclass(frozen=True, kw_only=True)
class ZeroConfig:
    """DeepSpeed ZeRO buffer settings. Defaults are DeepSpeed's own
    (``deepspeed/runtime/zero/config.py``, ``DeepSpeedZeroConfig``, v0.19)."""

    reduce_bucket_elements: int = 500_000_000
    """``reduce_bucket_size`` (5e8): elements of the gradient bucket that stages 1-3
    allocate in full (``torch.empty(reduce_bucket_size)`` in ``stage_1_and_2.py`` /
    ``stage3.py``)."""
    allgather_bucket_elements: int = 500_000_000
    """``allgather_bucket_size`` (5e8): elements all-gathered at once after the step
    (stages 1-2). It slices existing flat buffers, so it adds no allocation."""
    prefetch_bucket_elements: int = 50_000_000
    """``stage3_prefetch_bucket_size`` (5e7): parameter elements ZeRO-3 fetches ahead."""
    param_persistence_threshold: int = 100_000
    """``stage3_param_persistence_threshold`` (1e5): ZeRO-3 never partitions a tensor with
    at most this many elements (norms, biases)."""
    max_live_parameters: int = 1_000_000_000
    """``stage3_max_live_parameters`` (1e9): cap on gathered parameter elements ZeRO-3
    keeps resident at once."""
    sub_group_elements: int = 1_000_000_000
    """``sub_group_size`` (1e9): ZeRO-3 runs the optimizer step one sub-group of the
    partition at a time, converting that sub-group's gradients to fp32
    (``_prepare_fp32_grad_for_sub_group`` in ``stage3.py``)."""
    overlap_comm: bool | None = None
    """``overlap_comm``: doubles the stage-1/2 reduce bucket. ``None`` means DeepSpeed's
    default, which is on for stage 3 only (``overlap_comm_valid`` in the config)."""

    def __post_init__(self) -> None:
        for name in ("reduce_bucket_elements", "allgather_bucket_elements", "prefetch_bucket_elements",
                     "param_persistence_threshold", "max_live_parameters", "sub_group_elements"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise LayoutError(f"{name}: expected a non-negative integer, got {value!r}")


DEEPSPEED_DEFAULTS = ZeroConfig()
"""DeepSpeed's defaults."""

