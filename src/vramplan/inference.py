"""Inference memory: :class:`InferenceSetup` in, :class:`~vramplan.estimate.Estimate` out.

``estimate_inference(model, setup)`` resolves the model and its weights format,
checks the inputs, and lets the chosen engine (:mod:`vramplan.engines`) lay out its
memory: transformers ``generate`` (``hf``), vLLM (``vllm``) or llama.cpp
(``llamacpp``). Each engine returns named components per GPU at the peak phase
(prefill or decode), host components where it keeps layers in RAM, and its own
scalar facts (KV blocks, maximum concurrency). Beside every estimate sits the
article's rule of thumb, "inference needs about 1.2 x the weights", and how far the
estimate is from it (``details["rule_of_thumb_bytes"]``, ``["rule_of_thumb_error"]``).

The solvers :func:`max_context` and :func:`max_batch` search the largest context or
batch whose estimate still fits the GPU (bisection over this pure estimator).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from vramplan import validate as v
from vramplan.errors import InputError
from vramplan.estimate import Estimate
from vramplan.gguf_types import GgufRecipe
from vramplan.memory.overhead import Overheads
from vramplan.memory.vision_tower import MAX_IMAGES
from vramplan.model.custom import ParamOnlyModel
from vramplan.model.resolve import resolve_model
from vramplan.model.towers import MAX_IMAGE_SIDE
from vramplan.model.spec import ModelSpec
from vramplan.engines import DEFAULT_CONTEXT_TOKENS, resolved_context  # noqa: F401 (public here too)
from vramplan.quant import WeightFormat

EngineName = Literal["hf", "vllm", "llamacpp"]
ENGINES: tuple[EngineName, ...] = ("hf", "vllm", "llamacpp")
INFERENCE_ATTENTIONS: tuple[str, ...] = ("sdpa", "eager", "flash")
"""transformers ``attn_implementation`` values the hf engine models."""
LOGITS: tuple[str, ...] = ("last", "all")
"""hf: logits of the last position only (generate) or of every position (scoring)."""
HF_CACHES: tuple[str, ...] = ("dynamic", "static")
"""hf: the cache ``generate`` builds: ``dynamic`` (its default, ``DynamicCache``) or
``static`` (``cache_implementation="static"``, ``StaticCache``)."""

RULE_OF_THUMB_FACTOR = 1.2
"""The seed article's serving rule: memory is about 1.2 x the weights (sec. 5)."""


MAX_BATCH_SEARCHED = 1 << 16
"""The batch solver's upper bound (65,536 sequences; beyond any engine's scheduler)."""


@dataclass(frozen=True, kw_only=True)
class InferenceSetup:
    """How the model is served. Every size is per sequence or per GPU as named."""

    engine: EngineName = "hf"
    """Serving engine: transformers ``generate`` (hf), vLLM, or llama.cpp."""
    weights: str | WeightFormat | GgufRecipe | None = None
    """Weights format: a name (``bf16``, ``nf4-dq``, ``gptq-int4-g128``, ``Q4_K_M``...),
    a format object (e.g. from :func:`vramplan.quant.format_from_quantization_config`),
    or None = the checkpoint's own (its ``quantization_config``, else its ``torch_dtype``)."""
    kv_dtype: str | None = None
    """KV cache element format; None = the engine's default (the compute dtype; f16
    for llama.cpp)."""
    batch: int = 1
    """Sequences held at once."""
    context: int | None = None
    """Tokens held per sequence (prompt + generated); None = min(4096, max positions)."""
    prompt: int | None = None
    """Prompt tokens prefilled in one pass; None = the whole context (the worst case)."""
    prefill_chunk: int | None = None
    """Chunked prefill: tokens per forward pass (None = the engine's default: the
    whole prompt for hf, ``max_num_batched_tokens`` for vLLM, ``n_ubatch`` for llama.cpp)."""
    tp: int = 1
    """Tensor-parallel degree (GPUs splitting each layer)."""
    attention: Literal["sdpa", "eager", "flash"] = "sdpa"
    """transformers attention implementation (eager materialises the score matrix)."""
    logits: Literal["last", "all"] = "last"
    """hf: ``last``: the last position's logits only (``generate`` passes
    ``logits_to_keep=1``); ``all``: every prompt position's, as a plain forward returns
    them (perplexity, scoring, reward models)."""
    cache: Literal["dynamic", "static"] = "dynamic"
    """hf: ``dynamic``: ``DynamicCache``, grown by ``torch.cat`` (``generate``'s default);
    ``static``: ``StaticCache`` (``cache_implementation="static"``, the cache
    ``torch.compile`` needs), preallocated for the whole context, sliding layers for
    their window."""
    gpu: str | None = None
    """GPU name for the verdict and the vLLM KV budget (``vramplan gpus``)."""
    gpu_memory_utilization: float = 0.9
    """vLLM: share of the GPU's memory vLLM may use."""
    max_num_seqs: int | None = None
    """vLLM: sequences per step; None = vLLM's default for the GPU."""
    max_num_batched_tokens: int | None = None
    """vLLM: tokens per step (chunked prefill); None = vLLM's default for the GPU."""
    block_size: int = 16
    """vLLM: tokens per KV cache block."""
    cuda_graph_bytes: int | None = None
    """vLLM: memory of captured CUDA graphs; None = the documented default (0 with
    ``enforce_eager``)."""
    enforce_eager: bool = False
    """vLLM: no CUDA graphs."""
    n_gpu_layers: int | None = None
    """llama.cpp ``--n-gpu-layers``: decoder layers on the GPU (the last ones); one
    more puts the output head there too; None = all."""
    n_ubatch: int = 512
    """llama.cpp ``--ubatch-size``: tokens per compute pass (sizes the compute buffer)."""
    flash_attention: bool = True
    """llama.cpp ``--flash-attn``: no KQ score matrix in the compute buffer."""
    input_len: int | None = None
    """Encoder-decoder models (T5, BART): tokens of the encoder input per sequence (sizes
    the cross-attention cache); None = 512."""
    images: int = 0
    """Multimodal models: images per sequence; each adds its image tokens to the context
    and the prompt, and the vision tower's forward to prefill."""
    image_size: int | None = None
    """Pixels per side of each (square) image for dynamic-resolution towers (Qwen-VL,
    Pixtral); None = 1024. Fixed-resolution towers resize to their own size."""
    strict: bool = False
    """Make warnings that would give a wrong answer (context beyond max positions) errors."""
    reserve_bytes: int = 0
    """Memory to keep free on the GPU beyond the estimate (headroom target)."""
    overheads: Overheads = field(default_factory=Overheads)
    """CUDA context, workspaces, NCCL, allocator slack (each overridable)."""

    def __post_init__(self) -> None:
        if not isinstance(self.engine, str):
            raise InputError(f"engine: expected one of {', '.join(ENGINES)}, got {v.shown(self.engine)}")
        for name, hi in (("batch", v.BATCH_MAX), ("tp", v.GPUS_MAX), ("block_size", v.LENGTH_MAX),
                         ("n_ubatch", v.LENGTH_MAX)):
            v.integer(name, getattr(self, name), 1, hi)
        for name, hi in (("context", v.LENGTH_MAX), ("prompt", v.LENGTH_MAX), ("prefill_chunk", v.LENGTH_MAX),
                         ("max_num_seqs", v.BATCH_MAX), ("max_num_batched_tokens", v.LENGTH_MAX)):
            v.optional_integer(name, getattr(self, name), 1, hi)
        v.optional_integer("n_gpu_layers", self.n_gpu_layers, 0, v.LAYERS_MAX + 1)
        v.optional_integer("cuda_graph_bytes", self.cuda_graph_bytes, 0, v.SIZE_MAX)
        v.size_bytes("reserve_bytes", self.reserve_bytes)
        v.real("gpu_memory_utilization", self.gpu_memory_utilization, 0, 1, lo_open=True)
        for name in ("enforce_eager", "flash_attention", "strict"):
            v.flag(name, getattr(self, name))
        for name in ("kv_dtype", "gpu"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise InputError(f"{name}: expected a name or None, got {v.shown(getattr(self, name))}")
        if not isinstance(self.overheads, Overheads):
            raise InputError(f"overheads: expected an Overheads, got {v.shown(self.overheads)}")
        if self.engine not in ENGINES:
            from vramplan.naming import close_matches

            hint = close_matches(str(self.engine), ENGINES)
            raise InputError(f"engine: expected one of {', '.join(ENGINES)}, got {self.engine!r}"
                             + (f"; did you mean {hint[0]!r}?" if hint else ""))
        if self.attention not in INFERENCE_ATTENTIONS:
            raise InputError(f"attention: expected sdpa, eager or flash, got {self.attention!r}")
        if self.logits not in LOGITS:
            raise InputError(f"logits: expected last or all, got {self.logits!r}")
        if self.cache not in HF_CACHES:
            raise InputError(f"cache: expected dynamic or static, got {self.cache!r}")
        v.optional_integer("input_len", self.input_len, 1, v.LENGTH_MAX)
        v.integer("images", self.images, 0, MAX_IMAGES)
        v.optional_integer("image_size", self.image_size, 1, MAX_IMAGE_SIDE)
        if self.prompt is not None and self.context is not None and self.prompt > self.context:
            raise InputError(f"prompt: {self.prompt} tokens exceed context {self.context}", fields=("context",))


def _spec(model: str | ModelSpec | ParamOnlyModel) -> ModelSpec:
    spec = resolve_model(model)
    if isinstance(spec, ParamOnlyModel):
        raise InputError(f"model {spec.name!r}: a bare parameter count has no architecture; inference needs the "
                         "KV cache and activations (give a catalog name or a config.json)", fields=("model",))
    return spec


@dataclass(frozen=True, kw_only=True)
class InferenceEstimate(Estimate):
    """A serving :class:`~vramplan.estimate.Estimate` with the limits solved for on the
    way (``max_context``, ``max_batch``: the estimate is then at those values)."""

    solved: tuple[tuple[str, int], ...] = ()

    def to_dict(self) -> dict:
        return {**super().to_dict(), "solved": dict(self.solved)}


def estimate_inference(model: str | ModelSpec | ParamOnlyModel, setup: InferenceSetup | None = None, *,
                       solve_context: bool = False, solve_batch: bool = False) -> InferenceEstimate:
    """Per-GPU memory to serve ``model`` as ``setup`` says (see the module docstring).

    ``solve_context`` first finds the longest context that fits ``setup.gpu`` and
    estimates at it; ``solve_batch`` then the largest batch; ``solved`` records both."""
    from dataclasses import fields

    from vramplan.engines import run_engine

    setup = setup or InferenceSetup()
    spec = _spec(model)
    solved: list[tuple[str, int]] = []
    if solve_context:
        solved.append(("max_context", max_context(spec, setup)))
        setup = replace(setup, context=max(1, solved[-1][1]), prompt=None)
    if solve_batch:
        solved.append(("max_batch", max_batch(spec, setup)))
        setup = replace(setup, batch=max(1, solved[-1][1]))
    estimate = _with_rule_of_thumb(_run(spec, setup))
    return InferenceEstimate(**{**{f.name: getattr(estimate, f.name) for f in fields(estimate)},
                                "solved": tuple(solved), "checkpoint": getattr(spec, "checkpoint", None)})


DEFAULT_INPUT_TOKENS = 512
"""Encoder input length when ``input_len`` is not given (T5's ``n_positions``)."""


def _run(spec: ModelSpec, setup: InferenceSetup) -> Estimate:
    """The engine's estimate; encoder-decoder and encoder-only models go to
    :mod:`vramplan.engines.seq2seq`; images add their tokens to the context and the
    tower's forward to the estimate (:mod:`vramplan.memory.vision_tower`)."""
    from vramplan.engines import resolve_job, run_engine

    spec.check_memory_model()
    if setup.engine == "hf" and spec.attention_impl(setup.attention) != setup.attention:
        setup = replace(setup, attention=spec.attention_impl(setup.attention))  # the class runs eager only
    if spec.architecture != "decoder":
        from vramplan.engines import seq2seq

        if setup.images:
            raise InputError(f"images: {spec.name} has no vision tower")
        if setup.input_len is not None and spec.architecture == "encoder":
            raise InputError(f"input_len: {spec.name} is encoder-only; give its sequence as context",
                             fields=("context",))
        return seq2seq.build(resolve_job(spec, setup), setup.input_len or DEFAULT_INPUT_TOKENS)
    if setup.input_len is not None:
        raise InputError(f"input_len: {spec.name} is decoder-only (no encoder input); use prompt and context",
                         fields=("prompt", "context"))
    if not setup.images:
        from vramplan.memory.vision_tower import check_images

        check_images(spec, 0)
        return run_engine(spec, setup)
    return _with_images(spec, setup)


TOWER_PHASE_CATEGORIES = ("weights", "overhead")
"""Components present while the vision tower runs, before the first text layer:
transformers' caches allocate at their first update, so no KV cache yet (engines with a
preallocated pool keep theirs: ``kv_cache`` joins)."""


def _with_images(spec: ModelSpec, setup: InferenceSetup) -> Estimate:
    """The engine's estimate with ``setup.images`` images per sequence: their tokens join
    the context and the prompt, and the prefill phase rises to the tower's forward when
    that is higher (weights, no cache yet, the tower's high point:
    :func:`vramplan.memory.vision_tower.image_cost`)."""
    from vramplan.dtypes import get_dtype
    from vramplan.engines import resolve_job, run_engine
    from vramplan.estimate import Component
    from vramplan.memory.vision_tower import image_cost, text_prefill_held_bytes

    job = resolve_job(spec, setup)
    text_prompt = setup.prompt if setup.prompt is not None else job.context
    cost = image_cost(spec, images=setup.images, batch=setup.batch, image_size=setup.image_size,
                      act_bytes=get_dtype(job.compute_dtype).bits // 8, text_tokens=min(text_prompt, job.context))
    context = job.context + cost.tokens
    prompt = text_prompt + cost.tokens
    estimate = run_engine(spec, replace(setup, context=context, prompt=min(prompt, context)))
    if spec.num_cross_attention_layers:  # Mllama: the text cross-attends to the vision states
        estimate = _with_cross_attention_cache(spec, setup, estimate, prompt_tokens=min(prompt, context),
                                               vision_states=setup.images * cost.patches_per_image)
    estimate = _with_image_inputs(spec, setup, estimate, cost.pixel_bytes, text_prefill_held_bytes(
        spec, images=setup.images, batch=setup.batch, prompt_tokens=min(prompt, context),
        act_bytes=get_dtype(job.compute_dtype).bits // 8))
    kept = TOWER_PHASE_CATEGORIES + (() if setup.engine == "hf" else ("kv_cache",))
    fixed = tuple(c for c in estimate.components if c.category in kept)
    note = (f"vision tower forward over {setup.batch} x {setup.images} image(s) of {cost.patches_per_image} patches: "
            "fp32 pixels and their cast, text embeddings, rotary tables, one block's live tensors "
            "(before the first text layer, no KV cache yet)")
    tower = Component(name="activations/vision_tower", bytes=cost.tower_activation_bytes, note=note)
    tower_phase = sum(c.bytes for c in fixed) + tower.bytes
    phases = tuple((p, max(b, tower_phase) if p == "prefill" else b) for p, b in estimate.phases)
    peak_before = max((b for _, b in estimate.phases), default=estimate.total_bytes)
    components, phase = estimate.components, estimate.phase
    if tower_phase > peak_before:  # the tower's forward is the high point
        components, phase = fixed + (tower,), "prefill"
    details = {**estimate.details, "image_tokens": cost.tokens, "patches_per_image": cost.patches_per_image,
               "vision_tower_bytes": cost.tower_activation_bytes, "pixel_bytes": cost.pixel_bytes}
    out = replace(estimate, components=components, phase=phase, details=details, phases=phases,
                  assumptions=estimate.assumptions + (
                      f"{setup.images} image(s) per sequence add {cost.tokens:,} tokens to the context and prompt",))
    if out.verdict is not None:
        out = out.with_verdict(out.verdict.gpu, out.verdict.capacity_bytes, out.verdict.reserve_bytes)
    return out


def _with_image_inputs(spec: ModelSpec, setup: InferenceSetup, estimate: Estimate, pixel_bytes: int,
                       prefill_held_bytes: int) -> Estimate:
    """``estimate`` with the processor's pixels (``generate`` keeps ``pixel_values`` in its
    model inputs to the end: every phase) and what the wrapper holds through the text
    prefill (:func:`vramplan.memory.vision_tower.text_prefill_held_bytes`)."""
    from vramplan.estimate import Component

    phases = tuple((p, b + pixel_bytes + (prefill_held_bytes if p == "prefill" else 0)) for p, b in estimate.phases)
    components = estimate.components + (Component(
        name="activations/pixel_values", bytes=pixel_bytes,
        note="the image processor's fp32 pixels, kept by generate to the end"),)
    held_note = "image features, tower states or masks the wrapper holds through the text prefill"
    if estimate.phase == "prefill" and prefill_held_bytes:
        components += (Component(name="activations/image_features", bytes=prefill_held_bytes, note=held_note),)
    elif prefill_held_bytes and dict(phases).get("prefill", 0) > dict(phases).get(estimate.phase, 0):
        over = dict(phases)["prefill"] - dict(phases)[estimate.phase]
        more = f"; the prefill with them exceeds the {estimate.phase} peak by this"
        components += (Component(name="activations/image_features", bytes=over, note=held_note + more),)
    return replace(estimate, components=components, phases=phases)


def _with_cross_attention_cache(spec: ModelSpec, setup: InferenceSetup, estimate: Estimate, *,
                                vision_states: int, prompt_tokens: int) -> Estimate:
    """``estimate`` with the cross-attention layers' cache of ``vision_states`` vision
    states per sequence (filled at the first cross-attention layer, kept to the end):
    :func:`vramplan.memory.cross_attention.cross_kv_bytes`, in every phase."""
    from vramplan.dtypes import get_dtype
    from vramplan.engines import resolve_job
    from vramplan.estimate import Component
    from vramplan.memory.cross_attention import cross_kv_bytes
    from vramplan.memory.kv_cache import get_kv_dtype

    if setup.engine != "hf":
        raise InputError(f"engine: images on {spec.name} (cross-attention to the vision states) are modelled for "
                         "transformers only (engine hf)", fields=("engine", "images"))
    job = resolve_job(spec, setup)
    cross = cross_kv_bytes(spec, input_tokens=vision_states, batch=setup.batch, tp=setup.tp,
                           dtype=get_kv_dtype(setup.kv_dtype or job.compute_dtype))
    component = Component(name="kv_cache/cross_attention", bytes=cross,
                          note=f"{spec.num_cross_attention_layers} cross-attention layers x {vision_states:,} vision "
                               "states per sequence (keys and values of their KV heads)")
    # through the text prefill: the tower's output (``vision_outputs``, returned with the
    # logits), its projection (``cross_attention_states``) and the prepared cross-attention mask
    act = get_dtype(job.compute_dtype).bits // 8
    tower = spec.vision_tower
    tower_out = tower.projector[0].shape[1] if tower is not None and tower.projector else 0
    held = setup.batch * vision_states * ((tower_out + spec.hidden_size) + prompt_tokens) * act
    phases = tuple((p, b + cross + (held if p == "prefill" else 0)) for p, b in estimate.phases)
    note = "the vision states, their projection and the cross-attention mask, held through the text prefill"
    components = estimate.components + (component,)
    if estimate.phase == "prefill":
        components += (Component(name="activations/cross_attention_inputs", bytes=held, note=note),)
    elif dict(phases).get("prefill", 0) > dict(phases).get(estimate.phase, 0):
        over = dict(phases)["prefill"] - dict(phases)[estimate.phase]
        components += (Component(name="activations/cross_attention_inputs", bytes=over,
                                 note=note + f"; the prefill with them exceeds the {estimate.phase} peak by this"),)
    return replace(estimate, components=components, phases=phases,
                   details={**estimate.details, "cross_attention_kv_bytes": cross})


def _with_rule_of_thumb(estimate: Estimate) -> Estimate:
    """Add the article's 1.2 x weights figure and the estimate's distance from it."""
    weights = estimate.get("weights") + sum(c.bytes for c in estimate.host_components
                                            if c.category == "weights")
    rule = round(RULE_OF_THUMB_FACTOR * weights)
    total = estimate.total_bytes + estimate.host_bytes
    details = dict(estimate.details)
    details["weights_bytes"] = weights
    details["rule_of_thumb_bytes"] = rule
    details["rule_of_thumb_error"] = round((rule - total) / total, 4) if total else None
    return replace(estimate, details=details)


# ---- solvers ------------------------------------------------------------------------
def _fits(model: ModelSpec, setup: InferenceSetup) -> bool:
    est = estimate_inference(model, setup)
    return est.verdict is not None and est.verdict.fits


def _largest(model: ModelSpec, setup: InferenceSetup, field_name: str, upper: int) -> int:
    """The largest value of ``field_name`` in [1, upper] that fits (0 when 1 does not);
    the estimate grows with it, so bisection finds the boundary."""
    from vramplan.intmath import largest_true

    return largest_true(lambda n: _fits(model, replace(setup, **{field_name: n})), 1, upper)


def _needs_gpu(setup: InferenceSetup, what: str) -> None:
    if setup.gpu is None:
        raise InputError(f"{what}: needs gpu NAME (the memory to fit in)", fields=("gpu",))


def max_context(model: str | ModelSpec, setup: InferenceSetup) -> int:
    """Longest context per sequence (tokens) whose estimate fits ``setup.gpu`` at
    ``setup.batch`` sequences, up to the model's max positions; 0 if none fits."""
    _needs_gpu(setup, "solve_context")
    spec = _spec(model)
    return _largest(spec, replace(setup, prompt=None, strict=False), "context", spec.max_position_embeddings)


def max_batch(model: str | ModelSpec, setup: InferenceSetup, upper: int = MAX_BATCH_SEARCHED) -> int:
    """Most sequences of ``setup.context`` tokens whose estimate fits ``setup.gpu``
    (searched up to ``upper``); 0 if not even one fits."""
    _needs_gpu(setup, "solve_batch")
    return _largest(_spec(model), setup, "batch", upper)
