"""Model architectures: the spec, its tensors, parameter counts, and readers."""

from vramplan.model.custom import ParamOnlyModel, custom_spec
from vramplan.model.params import ParamCount, count_params
from vramplan.model.resolve import Model, resolve_model
from vramplan.model.spec import MLASpec, ModelSpec, MoESpec
from vramplan.model.tensors import TensorGroup, model_tensors

__all__ = ["MLASpec", "Model", "ModelSpec", "MoESpec", "ParamCount", "ParamOnlyModel", "TensorGroup",
           "count_params", "custom_spec", "model_tensors", "resolve_model"]
