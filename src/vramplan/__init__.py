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

__all__ = [
    "Component", "ConfigError", "Estimate", "InputError", "LayoutError", "MissingExtraError", "ModelSpec",
    "ParamCount", "ParamOnlyModel", "UnknownNameError", "Verdict", "VramplanError", "__version__",
    "count_params", "custom_spec", "resolve_model",
]
