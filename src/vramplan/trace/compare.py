"""The analytical estimate of the setup a trace runs, and where the two differ.

Used by ``benchmarks/bench_accuracy.py`` and ``vramplan validate``. The trace sees
tensor memory only, so the analytical ``overhead`` category (CUDA context,
library workspaces, allocator slack) is left out of the comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

from vramplan.trace.setup import TraceSetup

UNTRACEABLE_CATEGORIES = ("overhead",)
"""Analytical categories the trace cannot see (CUDA context, cuBLAS/flash workspaces)."""

GROUPS: dict[str, str] = {
    # estimate category -> comparison group
    "weights": "weights", "master_weights": "weights",
    "gradients": "gradients", "optimizer": "optimizer", "adapters": "adapters",
    "activations": "activations", "kv_cache": "kv_cache",
    "logits": "logits+temporaries", "buffers": "logits+temporaries",
}
"""Coarse groups in which the trace and the estimate are compared (their finer
component names differ). Logits and temporaries form one group: at a backward
peak the trace's temporaries are mostly the logits' gradient, which an estimate
may book under ``logits``."""

OPTIMIZER_NAMES: dict[tuple[str, str], str] = {
    # (trace optimizer, implementation) -> analytical optimizer name
    ("adamw", "foreach"): "adamw", ("adam", "foreach"): "adamw",
    ("adamw", "fused"): "adamw-fused", ("adam", "fused"): "adamw-fused",
    ("adamw", "forloop"): "adamw-forloop", ("adam", "forloop"): "adamw-forloop",
    ("sgd", "foreach"): "sgd-momentum", ("sgd", "fused"): "sgd-momentum", ("sgd", "forloop"): "sgd-momentum",
}


def analytical_optimizer(setup: TraceSetup) -> str:
    """The analytical optimizer of the traced one; a pair without a twin is an error,
    never a silent stand-in."""
    from vramplan.errors import InputError

    key = (setup.optimizer, setup.optimizer_impl)
    if key not in OPTIMIZER_NAMES:
        raise InputError(f"optimizer {setup.optimizer!r} with optimizer_impl {setup.optimizer_impl!r}: the analytical "
                         "model has no twin to compare with; trace with optimizer_impl 'foreach' or 'fused'",
                         fields=("optimizer", "optimizer_impl"))
    return OPTIMIZER_NAMES[key]


def training_setup(setup: TraceSetup, *, config_dropout: bool = False):
    """The :class:`~vramplan.training.TrainingSetup` of a traced training step.
    ``config_dropout``: the model's config has dropout on (GPT-2's ``attn_pdrop``...),
    which the trace keeps unless the setup overrides it."""
    from vramplan.trace.setup import ALL_LINEAR
    from vramplan.training import TrainingSetup

    dropout = bool(setup.dropout) if setup.dropout is not None else config_dropout
    optimizer = analytical_optimizer(setup)
    return TrainingSetup(method=setup.method, precision=setup.precision, optimizer=optimizer,
                         load_dtype=setup.load_dtype if setup.method != "qlora" else None,
                         batch=setup.batch_size, seq=setup.seq, recompute="full" if setup.recompute else "none",
                         attention=setup.attention, lora_rank=setup.lora_rank,
                         lora_targets=None if setup.lora_targets == (ALL_LINEAR,) else setup.lora_targets,
                         dropout=dropout, input_len=setup.input_len, images=setup.images,
                         image_size=setup.image_size)


def inference_setup(setup: TraceSetup):
    """The :class:`~vramplan.inference.InferenceSetup` of a traced prefill + decode
    (transformers ``generate``: engine ``hf``, with the trace's cache class)."""
    from vramplan.inference import InferenceSetup

    weights = setup.load_dtype or ("fp32" if setup.precision == "fp32" else "bf16")
    return InferenceSetup(engine="hf", weights=weights, batch=setup.batch_size,
                          context=setup.seq + setup.decode_tokens, prompt=setup.seq,
                          attention=setup.attention, logits=setup.logits, cache=setup.cache,
                          input_len=setup.input_len, images=setup.images, image_size=setup.image_size)


def _spec(model, images: int = 0):
    """The model a trace builds: a config's text model, or the whole wrapper when images
    are traced."""
    from vramplan.model.hf_config import spec_from_config, text_config
    from vramplan.model.resolve import resolve_model

    if isinstance(model, dict):
        config = model if images else dict(text_config(model))
        return spec_from_config(config, name=str(model.get("model_type", "model")))
    return resolve_model(model)


def analytical_estimate(model, setup: TraceSetup):
    """The analytical :class:`~vramplan.estimate.Estimate` of ``setup`` on ``model``
    (name, path or config dict), or ``None`` when this installation lacks the
    estimator for the setup's mode."""
    spec = _spec(model, setup.images)
    try:
        if setup.training:
            from vramplan.training import estimate_training

            return estimate_training(spec, training_setup(setup, config_dropout=_config_dropout(model)))
        from vramplan.inference import estimate_inference

        return estimate_inference(spec, inference_setup(setup))
    except ImportError:
        return None


def _config_dropout(model) -> bool:
    """Does the model's own config turn dropout on (a probability above 0 under a key
    the trace overrides: ``attention_dropout``, ``resid_pdrop``...)?"""
    from vramplan.model.hf_config import text_config
    from vramplan.trace.build import is_dropout_probability
    from vramplan.trace.run import resolve_config

    config = dict(text_config(resolve_config(model)[1]))
    return any(is_dropout_probability(key, value) and value > 0 for key, value in config.items())


def tensor_bytes(est) -> int:
    """The estimate's total without the categories a trace cannot see."""
    return est.total_bytes - sum(est.get(c) for c in UNTRACEABLE_CATEGORIES)


def analytical_total(model, setup: TraceSetup) -> int | None:
    est = analytical_estimate(model, setup)
    return None if est is None else tensor_bytes(est)


@dataclass(frozen=True, kw_only=True)
class GroupDiff:
    """One comparison group at the peak."""

    group: str
    """Comparison group (see :data:`GROUPS`)."""
    traced_bytes: int
    """Bytes in the trace's peak."""
    analytical_bytes: int
    """Bytes in the estimate's peak."""

    @property
    def diff_bytes(self) -> int:
        return self.analytical_bytes - self.traced_bytes


def group_bytes(est) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in est.components:
        if c.category in UNTRACEABLE_CATEGORIES:
            continue
        group = GROUPS.get(c.category, c.category)
        out[group] = out.get(group, 0) + c.bytes
    return out


def group_diffs(traced, analytical) -> list[GroupDiff]:
    """Per group, traced vs analytical bytes at each one's peak, largest |difference| first."""
    t, a = group_bytes(traced), group_bytes(analytical)
    diffs = [GroupDiff(group=g, traced_bytes=t.get(g, 0), analytical_bytes=a.get(g, 0)) for g in {*t, *a}]
    return sorted(diffs, key=lambda d: -abs(d.diff_bytes))
