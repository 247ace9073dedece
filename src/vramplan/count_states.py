"""Model states of a model known only by its parameter count, on a data-parallel layout.

A bare count (``7.5B``) has no layers, so no activations, buckets or gathered units;
what it does fix are the model states, and how ZeRO or FSDP shard them across the
data-parallel group. This is the convention of the ZeRO paper's Figure 1 (Rajbhandari
et al. 2020, "ZeRO: Memory Optimizations Toward Training Trillion Parameter Models",
sec. 3.1 and 5): mixed-precision Adam keeps 2Ψ of 16-bit weights, 2Ψ of 16-bit
gradients and KΨ of fp32 master weights, momentum and variance (K = 12), and on N_d
data-parallel GPUs

    ==============  =========================  ==========================
    stage           per-GPU model states       Ψ = 7.5B, N_d = 64
    ==============  =========================  ==========================
    baseline (0)    (2 + 2 + K) Ψ              120 GB
    P_os (1)        2Ψ + 2Ψ + KΨ / N_d         31.4 GB
    P_os+g (2)      2Ψ + (2 + K) Ψ / N_d       16.6 GB
    P_os+g+p (3)    (2 + 2 + K) Ψ / N_d        1.9 GB
    ==============  =========================  ==========================

The bytes per parameter come from the recipe and the optimizer as for a full model
(:func:`vramplan.distributed.job_states`); the sharding is
:func:`vramplan.parallel.shard_model_states`, the same code the layouts of a full
model use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vramplan.errors import InputError
from vramplan.estimate import Component, Estimate

if TYPE_CHECKING:
    from vramplan.model.custom import ParamOnlyModel
    from vramplan.parallel import ParallelLayout, StateBytesPerParam
    from vramplan.training import TrainingSetup

CONVENTION = ("model states only, as the ZeRO paper's Figure 1 counts them (Rajbhandari et al. 2020): "
              "weights, fp32 master weights, gradients and optimizer states per GPU; no activations, buffers, "
              "gathered parameters or CUDA context (a bare parameter count has no layers)")


def state_bytes_per_param(model: ParamOnlyModel, setup: TrainingSetup, engine: str) -> StateBytesPerParam:
    """Bytes per parameter of each state term as ``engine`` holds them: the recipe's, with
    a 16-bit compute copy and an fp32 master under DeepSpeed, FSDP and Megatron-LM (the
    ZeRO paper's 2 + 2 + 12 for mixed-precision Adam), as
    :func:`vramplan.distributed.job_states` does for a full model."""
    from vramplan.memory.optimizer import optimizer_state_bytes
    from vramplan.model.tensors import TensorGroup
    from vramplan.parallel import StateBytesPerParam

    recipe = setup.recipe
    flat = TensorGroup(name="params", component="mlp", role="linear", shape=(model.total_params,), count=1)
    optimizer = optimizer_state_bytes(setup.opt, (flat,), recipe.weight_bytes_per_param) / model.total_params
    weights, grads, master = (float(recipe.weight_bytes_per_param), float(recipe.gradient_bytes_per_param), 0.0)
    if recipe.autocast and engine != "ddp":
        weights = grads = float(recipe.compute_bytes)
        master = float(recipe.weight_bytes_per_param)
    return StateBytesPerParam(weights=weights, gradients=grads, master_weights=master, optimizer=optimizer)


def model_states_on_layout(model: ParamOnlyModel, setup: TrainingSetup, layout: ParallelLayout) -> Estimate:
    """Per-GPU model states of ``model`` trained as ``setup`` on the data-parallel
    ``layout`` (ZeRO stages, FSDP, DDP, with offload); tensor, pipeline, context and
    expert parallelism split layers and need the architecture."""
    from vramplan.parallel import RECIPES, RankParams, shard_model_states

    split_by_layer = {"tp": layout.tp, "pp": layout.pp, "cp": layout.cp, "ep": layout.ep}
    given = [flag for flag, degree in split_by_layer.items() if degree != 1]
    if given:
        raise InputError(f"{given[0]}: {', '.join(given)} split the layers, and the bare parameter count "
                         f"{model.name!r} has none; give a catalog name or config.json, or only gpus/dp with zero "
                         "or fsdp", fields=tuple(given) + ("model",))
    if setup.opt.layout == "factored":
        raise InputError(f"optimizer: {setup.optimizer}'s factored states need each tensor's shape; give a "
                         f"catalog name or config.json instead of the bare count {model.name!r}", fields=("model",))
    if setup.method != "full":
        raise InputError(f"method: {setup.method}: LoRA adapters need the architecture; give a catalog name or "
                         f"config.json instead of the bare count {model.name!r}", fields=("model",))
    engine = layout.resolved_engine
    recipe = state_bytes_per_param(model, setup, engine)
    params = RankParams(dense=model.total_params, experts=0, largest_module=0, small=0)
    sharded = shard_model_states(recipe=recipe, params=params, layout=layout, layer_params=0, root_params=0)
    psi = model.total_params
    held = (("weights", sharded.weights_bytes, "weights"),
            ("master_weights", sharded.master_weights_bytes, "fp32 master weights"),
            ("gradients", sharded.gradients_bytes, "gradients"),
            ("optimizer", sharded.optimizer_bytes, f"{setup.opt.name} optimizer states"))
    components = tuple(Component(name=name, bytes=int(round(float(b))),
                                 note=f"{what}: {float(b) / psi:.4g} B per parameter of the model on this GPU")
                       for name, b, what in held if float(b) > 0 or name != "master_weights")
    host = ()
    if float(sharded.host_per_gpu_bytes) > 0:
        host = (Component(name="optimizer/offloaded", bytes=int(round(float(sharded.host_per_gpu_bytes))),
                          note="host RAM per GPU: offloaded states"),)
    r = recipe
    per_param = r.weights + r.gradients + r.master_weights + r.optimizer
    return Estimate(model=model.name, kind="training", components=components, phase="optimizer_step",
                    phases=(("optimizer_step", sum(c.bytes for c in components)),), host_components=host,
                    num_gpus=layout.num_gpus,
                    details={"total_params": psi, "layout": layout.describe(), "engine": engine,
                             "convention": f"{r.weights:g} + {r.gradients:g} + {r.master_weights:g} + "
                                           f"{r.optimizer:g} = {per_param:g} B/param (weights + gradients + "
                                           "fp32 master + optimizer; the ZeRO paper's 2 + 2 + K, K = 12 for "
                                           f"mixed-precision Adam) before sharding over N_d = {layout.dp}"
                             if engine in ("deepspeed", "ddp") else RECIPES[engine]},
                    assumptions=(CONVENTION,))
