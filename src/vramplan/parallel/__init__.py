"""Parallel layouts: how data, tensor, pipeline, context and expert parallelism,
ZeRO / FSDP sharding and offload divide each memory term across GPUs.

One idea per module:

* :mod:`~vramplan.parallel.layout` — :class:`ParallelLayout` (validated degrees and
  engine settings), :func:`layout_from_gpus`, :class:`LayoutRequest`;
* :mod:`~vramplan.parallel.admissible` — the one tensor-parallel rule
  (:func:`tensor_parallel_problem`) and the one sequence-split rule
  (:func:`sequence_splits_evenly`);
* :mod:`~vramplan.parallel.slicing` — the parameters of one tensor/pipeline/expert
  rank (:func:`slice_coefficients`, :func:`rank_params`, FSDP units);
* :mod:`~vramplan.parallel.pipeline` — micro-batches in flight per stage (1F1B,
  interleaved) and the bubble;
* :mod:`~vramplan.parallel.states` — per-parameter recipes and :class:`ShardedStates`;
* :mod:`~vramplan.parallel.sharding` — :func:`shard_model_states` by engine, with
  DeepSpeed ZeRO in :mod:`~vramplan.parallel.deepspeed` (settings in
  :mod:`~vramplan.parallel.zero_config`) and FSDP in :mod:`~vramplan.parallel.fsdp`;
* :mod:`~vramplan.parallel.arrays` — arithmetic on ints or numpy arrays alike.

The closed-form functions take plain ``int`` degrees *or* numpy integer arrays of
degrees, so the planner (:mod:`vramplan.planner`) evaluates millions of layouts
with the very same arithmetic the per-layout estimate uses. Every public name of
the submodules is importable from ``vramplan.parallel``.
"""

from vramplan.parallel.admissible import max_tensor_parallel, sequence_splits_evenly, tensor_parallel_problem
from vramplan.parallel.arrays import cdiv, maximum, minimum, where
from vramplan.parallel.layout import (
    ENGINES,
    FSDP_MODES,
    OFFLOADS,
    SINGLE_GPU,
    Engine,
    FSDPMode,
    LayoutRequest,
    Offload,
    ParallelLayout,
    layout_from_gpus,
)
from vramplan.parallel.pipeline import bubble_fraction, in_flight_microbatches
from vramplan.parallel.sharding import shard_model_states
from vramplan.parallel.slicing import (
    RankParams,
    SliceCoefficients,
    Stage,
    layer_params,
    rank_params,
    root_params,
    slice_coefficients,
    stage_layers,
)
from vramplan.parallel.states import FP32_BYTES, MIXED_ADAM, RECIPES, ShardedStates, StateBytesPerParam
from vramplan.parallel.zero_config import DEEPSPEED_DEFAULTS, ZeroConfig

__all__ = [
    "DEEPSPEED_DEFAULTS", "ENGINES", "FP32_BYTES", "FSDP_MODES", "MIXED_ADAM", "OFFLOADS", "RECIPES", "SINGLE_GPU",
    "Engine", "FSDPMode", "LayoutRequest", "Offload", "ParallelLayout", "RankParams", "ShardedStates",
    "SliceCoefficients", "Stage", "StateBytesPerParam", "ZeroConfig", "bubble_fraction", "cdiv",
    "in_flight_microbatches", "layer_params", "layout_from_gpus", "maximum", "minimum", "rank_params",
    "root_params", "sequence_splits_evenly", "shard_model_states", "slice_coefficients", "stage_layers",
    "max_tensor_parallel", "tensor_parallel_problem", "where",
]
