"""The questions vramplan answers, each from one mapping of option values (names and
defaults in :mod:`vramplan.options`) to the core's typed answer. The command line and
the web API both call these, so an option means the same everywhere and every answer
is computed here once; the edges only parse their input and render the result's
``to_dict()``.

- :func:`train` -> :class:`~vramplan.training.TrainingEstimate`
- :func:`infer` -> :class:`~vramplan.inference.InferenceEstimate`
- :func:`plan` -> :class:`~vramplan.plans.PlanReport`
- :func:`rl` -> :class:`~vramplan.jobs.solvers.RLReport` (:func:`rl_job`: the job itself)
- :func:`params`, :func:`models`, :func:`gpus` -> JSON-ready listings
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from vramplan.errors import InputError, Remark, fields_named

if TYPE_CHECKING:
    from vramplan.inference import InferenceEstimate
    from vramplan.jobs import RLJob
    from vramplan.jobs.solvers import RLReport
    from vramplan.model import ModelSpec, ParamOnlyModel
    from vramplan.parallel import LayoutRequest
    from vramplan.plans import PlanReport
    from vramplan.training import TrainingEstimate

QUESTIONS = ("models", "gpus", "params", "infer", "train", "plan")


def defaults(question: str) -> dict[str, Any]:
    """Every option of ``question`` at its default."""
    from vramplan.options import options_of

    return {o.name: o.default for o in options_of(question)}


def model_from(values: Mapping[str, Any]) -> ModelSpec | ParamOnlyModel:
    """The model of ``values``: ``model`` (catalog name, config path, Hub id, parameter
    count) or a custom architecture from the architecture options, not both."""
    from vramplan.model import custom_spec, resolve_model
    from vramplan.options import ARCH_OPTIONS, ARCH_REQUIRED

    arch = {o.name: values[o.name] for o in ARCH_OPTIONS if values.get(o.name) not in (None, False)}
    model = values.get("model")
    if model is not None and not isinstance(model, str) and not arch:
        return model  # already resolved (a ModelSpec or a bare parameter count)
    if arch:
        if model:
            raise InputError(f"model {model!r} and a custom architecture ({', '.join(arch)}) given together: "
                             "pass one or the other", fields=("model", *arch))
        missing = [k for k in ARCH_REQUIRED if k not in arch]
        if missing:
            named = ("layers", "hidden", "heads", "kv_heads", "intermediate", "vocab")
            raise InputError(f"custom architecture: missing {', '.join(missing)} "
                             f"(needed with any of {' '.join(named)})", fields=(*missing, *named))
        return custom_spec(**arch)
    if not model:
        raise InputError("model: expected a catalog name (see `vramplan models`), a Hub id (org/name), a checkpoint "
                         "directory, a .gguf file, a config.json path, a parameter count like 7B, "
                         "or a custom architecture (layers, hidden, heads)", fields=("layers", "hidden", "heads"))
    return resolve_model(model)


def layout_request(values: Mapping[str, Any]) -> LayoutRequest:
    """The parts of a parallel layout ``values`` fix."""
    from vramplan.options import LAYOUT_NAMES
    from vramplan.parallel import LayoutRequest

    given = {name: values.get(name) for name in LAYOUT_NAMES}
    given["sp"] = bool(given["sp"])
    return LayoutRequest(**given)


def _gpu_count(v: dict[str, Any], count_name: str, unset: object, readings: list[str]) -> Any:
    """Read ``v["gpu"]`` (a name, a capacity, ``NxWHAT``); a count sets ``v[count_name]``
    (``gpus`` for a layout, ``tp`` for serving) when that is ``unset``, and must agree
    with it otherwise. Returns the GPU's spec (or None) and notes how it was read."""
    from vramplan.gpus import read_gpu

    if not v.get("gpu"):
        return None
    reading = read_gpu(v["gpu"])
    note = reading.note
    if reading.count is not None:
        if v.get(count_name) in (None, unset):
            v[count_name] = reading.count
        elif v[count_name] != reading.count:
            raise InputError(f"gpu: {v['gpu']} is {reading.count} GPUs, but {count_name} is {v[count_name]}; "
                             "give one count", fields=(count_name,))
        note = Remark(f"{note} ({count_name} {reading.count})", fields=(*fields_named(note), count_name))
    if note:
        readings.append(note)
    return reading.spec


def _with_readings(estimate: Any, readings: list[str]) -> Any:
    return replace(estimate, readings=tuple(readings)) if readings else estimate


def train(values: Mapping[str, Any], *, advise: bool = True) -> TrainingEstimate:
    """``vramplan train``: per-GPU training memory, on one GPU or the layout given.
    ``--gpu 2x80GB`` is two GPUs of 80 GB: ``--gpus 2`` unless --gpus says otherwise.
    When it does not fit the GPU named, what to change (``advise``: :mod:`vramplan.advice`)."""
    from vramplan.model import ModelSpec
    from vramplan.training import TrainingSetup, estimate_training
    from vramplan.units import parse_bytes

    v = {**defaults("train"), **values}
    spec = model_from(v)
    readings: list[str] = []
    gpu = _gpu_count(v, "gpus", None, readings)
    targets = tuple(t.strip() for t in v["lora_targets"].split(",") if t.strip()) if v["lora_targets"] else None
    if targets is not None and v["method"] == "full":
        raise InputError("lora_targets: given with method full (no adapters are trained); "
                         "use method lora or qlora, or leave the targets out", fields=("method",))
    if targets and isinstance(spec, ModelSpec):
        from vramplan.memory.lora import read_targets

        targets, note = read_targets(spec, targets)
        if note:
            readings.append(note)
    setup = TrainingSetup(method=v["method"], precision=v["precision"], optimizer=v["optimizer"],
                          load_dtype=v["load_dtype"], batch=v["batch"], seq=v["seq"], grad_accum=v["grad_accum"], recompute=v["recompute"],
                          attention=v["attention"], lora_rank=v["lora_rank"], lora_targets=targets,
                          fused_ce=bool(v["fused_ce"]), dropout=bool(v["dropout"]),
                          activation_model=v["activation_model"], seed_dtype_bytes=v["seed_bytes"],
                          strict=bool(v["strict"]), input_len=v["input_len"], images=v["images"],
                          image_size=v["image_size"])
    layout = layout_request(v)
    reserve = parse_bytes(v["reserve"], "reserve") if v.get("reserve") else 0
    if not layout.given:
        est = estimate_training(spec, setup, None, gpu=gpu, reserve_bytes=reserve)
    else:
        from vramplan.parallel_rules import layout_rules_broken

        lay = layout.layout()
        est = estimate_training(spec, setup, lay, gpu=gpu, reserve_bytes=reserve)
        # The memory of a layout its engine refuses is still answered, with the engine's rule.
        refused = tuple(f"{lay.resolved_engine} does not run this layout: {r.describe()}"
                        for r in layout_rules_broken(lay))
        est = replace(est, warnings=tuple(est.warnings) + refused) if refused else est
    if advise and est.verdict is not None and not est.verdict.fits:
        from vramplan.advice import training_changes

        est = replace(est, changes=training_changes(v, est))
    return _with_readings(est, readings)


def inference_setup(values: Mapping[str, Any]):
    """The :class:`~vramplan.inference.InferenceSetup` of ``values``."""
    from vramplan.inference import InferenceSetup
    from vramplan.memory.overhead import Overheads
    from vramplan.units import parse_bytes

    v = {**defaults("infer"), **values}
    overheads = Overheads()
    if v["cuda_context"] is not None:
        overheads = replace(overheads, cuda_context_bytes=parse_bytes(v["cuda_context"], "cuda_context"))
    return InferenceSetup(
        engine=v["engine"], weights=v["weights"], kv_dtype=v["kv_dtype"], batch=v["batch"], context=v["context"],
        prompt=v["prompt"], prefill_chunk=v["prefill_chunk"], tp=v["tp"], attention=v["attention"],
        logits=v["logits"], cache=v["cache"], gpu=v["gpu"],
        gpu_memory_utilization=v["gpu_memory_utilization"], max_num_seqs=v["max_num_seqs"],
        max_num_batched_tokens=v["max_num_batched_tokens"], block_size=v["block_size"],
        enforce_eager=bool(v["enforce_eager"]), n_gpu_layers=v["n_gpu_layers"], n_ubatch=v["n_ubatch"],
        flash_attention=not v["no_flash_attn"], strict=bool(v["strict"]), input_len=v["input_len"],
        images=v["images"], image_size=v["image_size"],
        reserve_bytes=parse_bytes(v["reserve"], "reserve") if v["reserve"] else 0, overheads=overheads)


def infer(values: Mapping[str, Any], *, advise: bool = True) -> InferenceEstimate:
    """``vramplan infer``: per-GPU serving memory, with the solved limits asked for
    (``fit``: llama.cpp's GPU layers first); when it does not fit the GPU named, what
    to change (``advise``: :mod:`vramplan.advice`).
    ``--gpu 2x80GB`` is two GPUs of 80 GB: ``--tp 2`` unless --tp says otherwise."""
    from vramplan.inference import estimate_inference
    from vramplan.quant import spelling_note

    v = {**defaults("infer"), **values}
    readings: list[str] = []
    _gpu_count(v, "tp", 1, readings)
    note = spelling_note(v["weights"]) if v["weights"] else None
    if note and v["engine"] == "llamacpp":
        raise InputError(f"weights: {v['weights']} is a bare bit width, read as bitsandbytes, which llama.cpp "
                         "does not run; choose a GGUF recipe such as Q4_K_M or Q4_0 (4-bit) or Q8_0 (8-bit)",
                         fields=("engine",))
    if note:
        readings.insert(0, note)
    spec = model_from(v)
    solved: tuple[tuple[str, int], ...] = ()
    if v.get("fit"):
        from vramplan.engines.llamacpp import fit_gpu_layers
        from vramplan.inference import _spec

        if v["engine"] != "llamacpp":
            raise InputError(f"fit: solves llama.cpp's n_gpu_layers; needs engine llamacpp, got {v['engine']!r}",
                             fields=("n_gpu_layers", "engine"))
        if v["n_gpu_layers"] is not None:
            raise InputError("fit: solves n_gpu_layers; give one or the other", fields=("n_gpu_layers",))
        layers = fit_gpu_layers(_spec(spec), inference_setup(v))
        solved = (("n_gpu_layers", layers),)
        v["n_gpu_layers"] = max(0, layers)
    est = estimate_inference(spec, inference_setup(v), solve_context=bool(v["solve_context"]),
                             solve_batch=bool(v["solve_batch"]))
    est = replace(est, solved=solved + est.solved)
    if advise and est.verdict is not None and not est.verdict.fits:
        from vramplan.advice import inference_changes

        est = replace(est, changes=inference_changes(v, est))
    return _with_readings(est, readings)


def plan(values: Mapping[str, Any], *, advise: bool = True) -> PlanReport:
    """``vramplan plan``: the layouts that fit, and the questions around them; a
    serving plan in which nothing fits says what to change (``advise``:
    :func:`vramplan.advice.serving_plan_changes`)."""
    from vramplan.plans import plan_inference, plan_training
    from vramplan.training import TrainingSetup
    from vramplan.units import parse_bytes

    v = {**defaults("plan"), **values}
    spec = model_from(v)
    if isinstance(v.get("gpu"), str):
        v["gpu"] = _gpu_count(v, "gpus", None, [])
    if not v.get("gpu"):
        raise InputError("gpu: expected a GPU kind (see `vramplan gpus`)")
    layout = layout_request(v)
    if v["training"]:
        host = parse_bytes(v["host_ram"], "host_ram") if v["host_ram"] is not None else None
        setup = TrainingSetup(method=v["method"], precision=v["precision"], optimizer=v["optimizer"],
                              batch=v["batch"] or 1, seq=v["seq"], attention=v["attention"],
                              lora_rank=v["lora_rank"])
        return plan_training(spec, v["gpu"], setup, layout, max_gpus=v["max_gpus"], headroom=v["headroom"],
                             micro_batch=v["batch"], recompute=v["recompute"], global_batch=v["global_batch"],
                             mfu=v["mfu"], host_bytes_per_node=host, top=v["top"])
    report = plan_inference(spec, v["gpu"], layout, context=v["seq"], batch=v["batch"] or 1,
                            weights=v["weights"], kv_dtype=v["kv_dtype"], max_gpus=v["max_gpus"],
                            headroom=v["headroom"], top=v["top"], engine=v["engine"])
    if advise and not report.candidates:
        from vramplan.advice import serving_plan_changes

        report = replace(report, changes=serving_plan_changes(v, lambda changed: plan(changed, advise=False)))
    return report


def rl_job(values: Mapping[str, Any]) -> RLJob:
    """The post-training job ``values`` describe (``model`` and :func:`vramplan.options.rl_options`)."""
    from vramplan.jobs import FrozenRole, RLJob, RolloutEngine, TrainerRole
    from vramplan.training import TrainingSetup

    f = {**defaults("rl"), **values}
    setup = TrainingSetup(method=f["method"], precision=f["precision"], optimizer=f["optimizer"],
                          batch=f["micro_batch"], recompute=f["recompute"], lora_rank=f["lora_rank"],
                          fused_ce=f["fused_ce"])
    policy = TrainerRole(setup=setup, offload_params=f["offload_params"], offload_optimizer=f["offload_optimizer"])
    rewards = None
    if f["no_reward_model"]:
        rewards = ()
    elif f["reward_models"]:
        rewards = tuple(FrozenRole(model=m, offload=f["offload_reward"]) for m in f["reward_models"])
    elif f["offload_reward"]:  # the algorithm's own reward model, offloaded (none for GRPO/RLOO/DPO)
        from vramplan.jobs.roles import ALGOS

        spec = ALGOS.get(f["algo"])
        rewards = (FrozenRole(offload=True),) if spec is not None and spec.reward_model else ()
    engine = RolloutEngine(tp=f["rollout_tp"], gpu_memory_utilization=f["gpu_memory_utilization"],
                           max_model_len=f["max_model_len"], max_num_seqs=f["max_num_seqs"],
                           max_num_batched_tokens=f["max_num_batched_tokens"],
                           sleep_level=f["sleep_level"], kv_dtype=f["kv_dtype"], enforce_eager=f["enforce_eager"])
    return RLJob(model=f["model"], algo=f["algo"], gpu=f["gpu"], gpus=f["gpus"], gpus_per_node=f["gpus_per_node"],
                 placement=f["placement"], rollout_gpus=f["rollout_gpus"], sharding=f["sharding"], policy=policy,
                 critic=TrainerRole(model=f["critic_model"], setup=setup) if f["critic_model"] else None,
                 reference=FrozenRole(model=f["reference_model"], offload=f["offload_reference"]),
                 rewards=rewards, kl_coef=f["kl_coef"], rollout=engine, prompts_per_step=f["prompts"],
                 generations=f["generations"], prompt_tokens=f["prompt_len"], completion_tokens=f["completion_len"],
                 score_micro_batch=f["score_micro_batch"], engine_process=f["engine_process"])


def rl(values: Mapping[str, Any]) -> RLReport:
    """``vramplan rl``: per-GPU memory of a post-training job, phase by phase, with its
    solvers (skipped with ``no_solve``)."""
    from vramplan.jobs.solvers import report_rl

    return report_rl(rl_job(values), solve=not values.get("no_solve", False))


def params(values: Mapping[str, Any]) -> dict:
    """``vramplan params``: parameter counts by component."""
    from vramplan.errors import UnreadModelTypeError
    from vramplan.model import ParamOnlyModel, count_params
    from vramplan.model.stored import source_keys

    try:
        spec = model_from(values)
    except UnreadModelTypeError as unread:
        return _meta_params(unread)
    if isinstance(spec, ParamOnlyModel):
        return {"model": spec.name, "total_params": spec.total_params, "active_params": spec.total_params,
                "components": [{"name": "total", "params": spec.total_params}],
                "notes": ["a bare parameter count has no architecture: no split by component"]}
    return {"model": spec.name, **count_params(spec).to_dict(), "notes": list(spec.notes),
            **source_keys(spec.checkpoint)}


def _meta_params(unread) -> dict:
    """``params`` of a model type the analytical reader does not follow: counted from
    transformers' meta build when the ``exact`` extra is installed (never a guess),
    else the reader's one-line refusal, which names the extra."""
    from vramplan.errors import ConfigError, MissingExtraError
    from vramplan.trace.meta_params import meta_param_count

    try:
        count = meta_param_count(unread.config)
    except (MissingExtraError, ConfigError):
        raise unread from None
    except Exception:  # noqa: BLE001 - transformers refusing a hostile config in its own words
        raise unread from None
    mtype = unread.config.get("model_type")
    return {"model": unread.name, "total_params": count.total_params, "active_params": None,
            "active_params_reason": "not modelled for this type",
            "components": [{"name": n, "params": p} for n, p in count.components],
            "notes": [f"counted from transformers' meta build ({count.class_name}): model_type {mtype!r} has no "
                      "analytical reader, so no split by component beyond this and no active share; "
                      "`vramplan trace` measures its memory"]}


def models(values: Mapping[str, Any]) -> dict:
    """``vramplan models``: the catalog, filtered by ``search``."""
    from vramplan.catalog import search_models
    from vramplan.model import count_params

    rows = []
    for entry in search_models(values.get("search") or ""):
        spec = entry.spec()
        counts = count_params(spec)
        rows.append({"slug": entry.slug, "hub_id": entry.hub_id, "name": entry.name, "family": entry.family,
                     "model_type": spec.model_type, "total_params": counts.total_params,
                     "active_params": counts.active_params, "attention": spec.attention_kind,
                     "layers": spec.num_layers, "max_position_embeddings": spec.max_position_embeddings,
                     "dtype": spec.dtype})
    return {"models": rows}


def gpu_row(spec: Any) -> dict:
    """One GPU catalogue entry as a JSON-ready dict (bytes and FLOP/s as numbers)."""
    return {"slug": spec.slug, "name": spec.name, "vendor": spec.vendor, "segment": spec.segment,
            "memory_nominal": spec.memory_nominal, "memory_bytes": spec.memory_bytes,
            "usable_memory_bytes": spec.usable_memory_bytes, "memory_note": spec.memory_note,
            "memory_bandwidth_bytes_per_s": spec.memory_bandwidth_bytes_per_s,
            "bf16_dense_flops": spec.bf16_dense_flops, "fp8_dense_flops": spec.fp8_dense_flops,
            "interconnect": spec.interconnect, "interconnect_bytes_per_s": spec.interconnect_bytes_per_s,
            "unified_memory": spec.unified_memory, "gpu_memory_fraction": spec.gpu_memory_fraction,
            "aliases": list(spec.aliases), "source": spec.source}


def gpus(values: Mapping[str, Any]) -> dict:
    """``vramplan gpus``: the GPU catalogue, filtered by ``search``."""
    from vramplan.gpus import search_gpus

    return {"gpus": [gpu_row(g) for g in search_gpus(values.get("search") or "")]}
