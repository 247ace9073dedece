"""What to change when a job does not fit: one advisor for ``train`` and ``infer``.

Each candidate change is a set of option values (the names of
:mod:`vramplan.options`) laid over the user's own; the changed job is estimated
again through :mod:`vramplan.questions`, the same path the command line and the web
take, so a change's ``peak_bytes`` and ``fits`` are what the command prints when the
settings are given (no assumed savings). A change names its settings by option name
(``{"recompute": "full"}``); the command line shows them as flags. Solved values (the
largest micro-batch, the longest sequence or context, the most sequences, the most
llama.cpp GPU layers) come from the core's solvers under the same fit rule
(:func:`vramplan.memory.overhead.fit_verdict`).

Ranking: changes that fit first, each group in the order of how little they change
the job (a kernel or a memory-saving switch before a different method, a different
method before more GPUs), then by the memory they need.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from vramplan.errors import VramplanError
from vramplan.estimate import Change, Estimate
from vramplan.intmath import ceil_div

GPU_COUNTS = (2, 4, 8)
"""GPU counts tried for the multi-GPU changes (one node); the fewest that fit is named."""

EIGHT_BIT_OPTIMIZERS = ("adamw-8bit", "paged-adamw-8bit")

QUANTIZED_WEIGHTS = {
    "hf": ("int8", "nf4-dq"),            # bitsandbytes LLM.int8() and QLoRA's NF4 (transformers)
    "vllm": ("fp8", "awq-int4-g128"),    # vLLM's online fp8 and AWQ checkpoints
    "llamacpp": ("Q8_0", "Q4_K_M"),      # GGUF recipes
}
"""Weight formats offered per engine, larger first."""

FP8_KV = {"hf": "fp8", "vllm": "fp8", "llamacpp": "q8_0"}
"""The 8-bit KV cache dtype of each engine."""


def _ask(question: str) -> Callable[[Mapping[str, Any]], Estimate]:
    from vramplan import questions

    return {"train": questions.train, "infer": questions.infer}[question]


def evaluate(question: str, values: Mapping[str, Any], changed: Mapping[str, Any], text: str) -> Change | None:
    """``changed`` laid over ``values`` and estimated again; ``None`` when the changed
    job is refused (an input the model or engine cannot take) or has no verdict."""
    try:
        est = _ask(question)({**values, **changed}, advise=False)
    except VramplanError:
        return None
    if est.verdict is None:
        return None
    return Change(change=text, settings=dict(changed), peak_bytes=est.total_bytes,
                  fits=est.verdict.fits, required_bytes=est.verdict.required_bytes, host_bytes=est.host_bytes)


def _rank(found: list[tuple[int, Change | None]], est: Estimate) -> tuple[Change, ...]:
    """Fitting changes first, then by order of intrusiveness, then by memory; the same
    settings twice are kept once, and a change that neither fits nor needs less than
    ``est`` is left out."""
    seen: set[tuple[tuple[str, object], ...]] = set()
    out = []
    now = est.verdict.required_bytes if est.verdict is not None else est.total_bytes
    useful = [(i, c) for i, c in found if c is not None and (c.fits or c.required_bytes < now)]
    for _, ch in sorted(useful,
                        key=lambda item: (not item[1].fits, item[0], item[1].required_bytes)):
        key = tuple(ch.settings.items())
        if key not in seen:
            seen.add(key)
            out.append(ch)
    return tuple(out)


def _fewest_gpus(question: str, values: Mapping[str, Any], make: Callable[[int], dict[str, Any]],
                 text: Callable[[int], str]) -> Change | None:
    """The change on the fewest of :data:`GPU_COUNTS` GPUs that fits, else on the most."""
    last = None
    for n in GPU_COUNTS:
        ch = evaluate(question, values, make(n), text(n))
        if ch is not None:
            last = ch
            if ch.fits:
                return ch
    return last


# ---- training ---------------------------------------------------------------------------
def training_changes(values: Mapping[str, Any], est: Estimate) -> tuple[Change, ...]:
    """Ranked changes for a ``train`` job (option values ``values``, estimate ``est``)
    whose verdict says it does not fit."""
    from vramplan.options import LAYOUT_NAMES

    v = dict(values)
    q = "train"
    method, optimizer = v["method"], v["optimizer"]
    recompute = v["recompute"] or ("full" if method == "qlora" else "none")
    layout_given = any(v.get(name) not in (None, False) for name in LAYOUT_NAMES)
    found: list[tuple[int, Change | None]] = []

    def add(rank: int, changed: dict[str, Any], text: str) -> None:
        found.append((rank, evaluate(q, v, changed, text)))

    savers: dict[str, Any] = {}
    saver_names: list[str] = []
    if recompute != "full":
        add(10, {"recompute": "full"}, "full activation recomputation (gradient checkpointing)")
        savers["recompute"] = "full"
        saver_names.append("full recomputation")
    if not v["fused_ce"]:
        add(11, {"fused_ce": True}, "fused linear cross-entropy (Liger-Kernel): no whole logits tensor")
        savers["fused_ce"] = True
        saver_names.append("fused cross-entropy")
    if method == "full" and optimizer not in EIGHT_BIT_OPTIMIZERS:
        add(20, {"optimizer": "adamw-8bit"}, "8-bit AdamW (bitsandbytes): 2 B of state per parameter")
        add(21, {"optimizer": "paged-adamw-8bit"}, "paged 8-bit AdamW (bitsandbytes): states page to host RAM "
                                                   "under pressure")
        savers["optimizer"] = "adamw-8bit"
        saver_names.append("8-bit AdamW")
    if len(savers) > 1:
        alone = [c.required_bytes for _, c in found if c is not None]
        combined = evaluate(q, v, savers, " + ".join(saver_names) + " together")
        if combined is not None and (not alone or combined.required_bytes < min(alone)):
            found.append((22, combined))  # only when together they save more than the best alone
    fit = getattr(est, "fits", None)
    batch, accum = v["batch"], v["grad_accum"]
    if batch > 1:
        smaller = max(1, min(batch - 1, fit.largest_micro_batch if fit and fit.largest_micro_batch else 1))
        steps = ceil_div(batch * accum, smaller)
        add(15, {"batch": smaller, "grad_accum": steps},
            f"micro-batch {smaller} with {steps} accumulation steps ({smaller * steps} sequences per step, "
            f"was {batch * accum})")
    if fit and fit.largest_seq and fit.largest_seq < v["seq"]:
        add(30, {"seq": fit.largest_seq}, f"the longest sequence that fits: {fit.largest_seq:,} tokens")
    if method == "full":
        add(40, {"method": "lora"}, "LoRA on a frozen 16-bit base")
    if method != "qlora":
        add(41, {"method": "qlora"}, "QLoRA: LoRA on a 4-bit NF4 base")
    if not layout_given:
        found.append((50, _fewest_gpus(q, v, lambda n: {"gpus": n, "zero": "3"},
                                       lambda n: f"ZeRO-3 data parallel on {n} GPUs")))
        found.append((51, _fewest_gpus(q, v, lambda n: {"gpus": n, "tp": n},
                                       lambda n: f"tensor parallel on {n} GPUs")))
        add(60, {"gpus": 1, "zero": "3", "offload": "optimizer"},
            "ZeRO-3 with the optimizer states offloaded to host RAM")
        add(61, {"gpus": 1, "zero": "3", "offload": "params"},
            "ZeRO-3 with parameters and optimizer states offloaded to host RAM")
    return _rank(found, est)


# ---- serving ---------------------------------------------------------------------------
def inference_changes(values: Mapping[str, Any], est: Estimate) -> tuple[Change, ...]:
    """Ranked changes for an ``infer`` job whose verdict says it does not fit."""
    from vramplan import questions
    from vramplan.engines.llamacpp import fit_gpu_layers
    from vramplan.inference import max_batch, max_context

    v = dict(values)
    q = "infer"
    engine = v["engine"]
    found: list[tuple[int, Change | None]] = []

    def add(rank: int, changed: dict[str, Any], text: str) -> None:
        found.append((rank, evaluate(q, v, changed, text)))

    spec = questions.model_from(v)
    setup = questions.inference_setup(v)
    current_weights = str(est.details.get("weights_format", ""))
    for i, fmt in enumerate(QUANTIZED_WEIGHTS[engine]):
        if fmt.lower() != current_weights.lower():
            add(20 + i, {"weights": fmt}, f"{fmt} weights")
    kv = FP8_KV[engine]
    if str(est.details.get("kv_dtype", "")).lower() != kv:
        add(10, {"kv_dtype": kv}, f"{kv} KV cache")
    if v["batch"] > 1:
        most = _solved(lambda: max_batch(spec, setup))
        if most and most < v["batch"]:
            add(30, {"batch": most}, f"{most} concurrent sequences, the most that fit")
    most = _solved(lambda: max_context(spec, setup))
    if most and most < est.details.get("context_tokens", most + 1):
        add(31, {"context": most}, f"the longest context that fits: {most:,} tokens")
    if engine == "llamacpp":
        layers = _solved(lambda: fit_gpu_layers(spec, setup))
        if layers is not None and layers >= 0:
            add(40, {"n_gpu_layers": layers}, f"{layers} layers on the GPU, the rest in host RAM (llama.cpp's own fit)")
    else:
        if v["tp"] == 1:
            found.append((50, _fewest_gpus(q, v, lambda n: {"tp": n}, lambda n: f"tensor parallel on {n} GPUs")))
        gguf = {"engine": "llamacpp", "weights": "Q4_K_M", "tp": 1, "kv_dtype": None}
        from dataclasses import replace

        layers = _solved(lambda: fit_gpu_layers(spec, replace(questions.inference_setup({**v, **gguf}))))
        change = {"engine": "llamacpp", "weights": "Q4_K_M"} | ({"tp": 1} if v["tp"] != 1 else {})
        if layers is not None and 0 <= layers <= spec.num_layers:
            change["n_gpu_layers"] = layers
        add(60, change, "llama.cpp with Q4_K_M weights" + (
            f", {layers} layers on the GPU and the rest in host RAM" if "n_gpu_layers" in change else ""))
    return _rank(found, est)


def _solved(solve: Callable[[], int]) -> int | None:
    try:
        return solve()
    except VramplanError:
        return None


# ---- serving plans --------------------------------------------------------------------------
PLAN_MAX_GPUS = 64
"""GPU count up to which a serving plan's "more GPUs" change searches."""


def serving_plan_changes(values: Mapping[str, Any], plan: Callable[..., Any]) -> tuple[Any, ...]:
    """What would make a serving plan fit (``plan(changed_values)`` re-plans with the
    changes laid over ``values``, the options of ``vramplan plan --infer``): an 8-bit KV
    cache, quantized weights, half the context, more GPUs. Each is planned again; a
    :class:`vramplan.plans.PlanChange` per change, fitting first, then by memory."""
    from vramplan.plans import PlanChange

    v = dict(values)
    engine = v["engine"]
    tries: list[tuple[str, dict[str, Any]]] = []
    kv = FP8_KV[engine]
    if str(v["kv_dtype"]).lower() != kv:
        tries.append((f"{kv} KV cache", {"kv_dtype": kv}))
    for fmt in QUANTIZED_WEIGHTS[engine]:
        if fmt.lower() != str(v["weights"]).lower():
            tries.append((f"{fmt} weights", {"weights": fmt}))
    if v["seq"] >= 2:
        tries.append((f"shorter context ({v['seq'] // 2} tokens)", {"seq": v["seq"] // 2}))
    if v.get("gpus") is None and (v.get("max_gpus") or 0) < PLAN_MAX_GPUS:
        tries.append((f"more GPUs (up to {PLAN_MAX_GPUS})", {"max_gpus": PLAN_MAX_GPUS}))
    out = []
    for text, changed in tries:
        try:
            report = plan({**v, **changed})
        except VramplanError:
            continue
        fits = bool(report.candidates)
        need = report.candidates[0].peak_bytes if fits else report.min_peak_bytes
        out.append(PlanChange(change=text, settings=dict(changed), min_peak_bytes=need or 0, fits=fits,
                              min_gpus=report.min_gpus))
    return tuple(sorted(out, key=lambda c: (not c.fits, c.min_peak_bytes)))
