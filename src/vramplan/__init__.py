"""vramplan: how much GPU memory a large language model needs to train, fine-tune or
serve, and which GPUs, how many, and which settings make it fit.

The core is plain Python: importing it does not import torch or transformers (those
belong to the optional exact mode, ``pip install "vramplan[exact]"``).
"""

__version__ = "0.1.0"

from vramplan.errors import (  # noqa: E402
    ConfigError,
    InputError,
    LayoutError,
    MissingExtraError,
    UnknownNameError,
    VramplanError,
)
from vramplan.estimate import Component, Estimate, Verdict  # noqa: E402
from vramplan.model import (  # noqa: E402
    ModelSpec,
    ParamCount,
    ParamOnlyModel,
    count_params,
    custom_spec,
    resolve_model,
)

_LAZY = {
    # name: module — imported on first use so `import vramplan` stays fast
    "InferenceSetup": "vramplan.inference", "estimate_inference": "vramplan.inference",
    "max_context": "vramplan.inference", "max_batch": "vramplan.inference",
    "TrainingSetup": "vramplan.training", "estimate_training": "vramplan.training",
    "ParallelLayout": "vramplan.parallel", "TrainingJob": "vramplan.distributed",
    "PlanRequest": "vramplan.planner", "plan": "vramplan.planner",
    "plan_training": "vramplan.plans", "plan_inference": "vramplan.plans", "PlanReport": "vramplan.plans",
    "LayoutRequest": "vramplan.parallel", "TrainingEstimate": "vramplan.training",
    "InferenceEstimate": "vramplan.inference",
    "GpuSpec": "vramplan.gpus", "find_gpu": "vramplan.gpus", "read_gpu": "vramplan.gpus", "list_gpus": "vramplan.gpus",
    "get_format": "vramplan.quant", "get_dtype": "vramplan.dtypes",
    "RLJob": "vramplan.jobs", "estimate_rl": "vramplan.jobs", "report_rl": "vramplan.jobs.solvers",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vramplan' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [*_LAZY, 
    "Component", "ConfigError", "Estimate", "InputError", "LayoutError", "MissingExtraError", "ModelSpec",
    "ParamCount", "ParamOnlyModel", "UnknownNameError", "Verdict", "VramplanError", "__version__",
    "count_params", "custom_spec", "resolve_model",
]
