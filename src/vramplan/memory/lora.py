"""LoRA and QLoRA: which tensors train, and what the frozen base still costs.

LoRA (Hu et al. 2021) adds ``B A`` beside a frozen linear ``W`` (out x in): ``A`` is
``r x in``, ``B`` is ``out x r``, so ``r (in + out)`` trainable parameters per
targeted weight. Defaults follow the QLoRA paper (Dettmers et al. 2023, sec. 4:
adapters on *all* linear layers of the blocks: q, k, v, o, gate, up, down) and
peft's ``LoraConfig`` (``lora_dropout = 0``; adapters kept in fp32,
``autocast_adapter_dtype=True``).

Activations: a frozen linear does not need its input for a weight gradient, but the
adapter's ``A`` does, so the input stays saved for every targeted module; the
adapter adds its ``r``-wide intermediate (saved by ``B``) per token. Tensors saved
to propagate gradients through the frozen layers (norms, activations, attention)
are unchanged.

QLoRA: the base is NF4 with double quantization (:mod:`vramplan.quant`), and
bitsandbytes dequantizes one weight at a time to the compute dtype for each matmul
(forward and backward): one buffer the size of the largest quantized linear.
Gradient checkpointing is on by default, as peft's
``prepare_model_for_kbit_training(use_gradient_checkpointing=True)`` sets it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from vramplan.dtypes import FP32_BYTES
from vramplan.errors import InputError, Remark
from vramplan.model.spec import ModelSpec
from vramplan.model.tensors import TensorGroup, model_tensors

DEFAULT_TARGETS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""The Llama names of "all linear layers of the blocks" (QLoRA paper, sec. 4)."""
ROUTER_MODULES = frozenset({"gate", "shared_expert_gate"})
"""MoE gates: transformers 5's routers are modules holding a bare ``weight``
(``Qwen3MoeTopKRouter``), not ``nn.Linear``, so peft's ``all-linear`` skips them (the
fused-expert conversion below adds them back where peft does)."""
ALL_LINEAR = "all-linear"
"""peft's ``target_modules`` keyword: every ``nn.Linear`` / ``Conv1D`` but the output head."""


def all_linear_targets(spec: ModelSpec) -> tuple[str, ...]:
    """Every linear module inside the blocks except MoE gates: the QLoRA paper's
    "all linear layers" for any family (MLA's ``q_a_proj``/``kv_b_proj``..., MoE
    experts and shared experts included)."""
    names: list[str] = []
    for g in model_tensors(spec):
        if g.role == "linear" and g.per_layer and g.module not in ROUTER_MODULES and g.module not in names:
            names.append(g.module)
    return tuple(names)


FUSED_EXPERT_COMPONENTS = frozenset({"experts"})
"""Routed experts. transformers 5 stores them as fused 3-D parameters
(``Qwen2MoeExperts.gate_up_proj`` [E, 2 i, h], ``down_proj`` [E, h, i]), not
``nn.Linear`` modules, so peft's ``target_modules`` (matched on module names) attaches no
per-expert ``lora.Linear`` there; peft wraps the fused parameters themselves only for
the families of :data:`PEFT_MOE_CONVERSION`."""

PEFT_MOE_CONVERSION: dict[str, str] = {
    **dict.fromkeys(("afmoe", "beam", "cohere2_moe", "deepseek_v2", "deepseek_v3", "deepseek_v32", "dots1",
                     "ernie4_5_moe", "exaone_moe", "flex_olmo", "glm4_moe", "glm4_moe_lite", "glm4v_moe",
                     "glm_moe_dsa", "hunyuan_v1_moe", "longcat_flash", "mellum", "olmoe", "qwen3_moe",
                     "qwen3_next", "qwen3_omni_moe", "qwen3_omni_moe_text", "qwen3_omni_moe_thinker",
                     "sarvam_mla", "solar_open"), "qwen2_moe"),
    **dict.fromkeys(("minimax", "minimax_m2", "mixtral"), "mixtral"),
}
"""``model_type`` -> peft's transformers-5 MoE conversion pattern (peft 0.21
``utils/transformers_weight_conversion.py``: ``_MODEL_TO_CONVERSION_PATTERN`` for the
types transformers 5.24 has a checkpoint conversion mapping for). For these,
``convert_peft_config_for_transformers`` rewrites ``target_modules`` before injection:
the names of :data:`PEFT_MOE_TARGET_MAPPING` leave ``target_modules`` (so shared experts
and dense MLPs of the same names get no adapter) and become ``target_parameters`` on
the fused experts and the router, wrapped by ``lora.ParamWrapper``. Qwen2-MoE itself
(pattern source, not listed) and gpt-oss are not converted."""

PEFT_MOE_TARGET_MAPPING: dict[str, dict[str, str]] = {
    # pattern -> {target name as peft sees it: the fused parameter it becomes}
    "qwen2_moe": {"gate": "gate", "gate_proj": "gate_up_proj", "up_proj": "gate_up_proj", "down_proj": "down_proj"},
    "mixtral": {"gate": "gate", "w1": "gate_up_proj", "w3": "gate_up_proj", "w2": "down_proj"},
}
"""peft 0.21 ``_MOE_TARGET_MODULE_MAPPING``. ``gate_up_proj`` fuses two targets, so peft
gives it rank ``2 r`` (``rank_pattern``) and refuses one without the other. With
``all-linear`` every key is targeted (``_resolve_string_target_modules``). Mixtral's
keys are its v4 names (``w1``/``w3``/``w2``): the Llama names vramplan uses reach
Mixtral's experts only through ``all-linear``."""


PEFT_MAMBA_TYPES = frozenset({"falcon_h1", "mamba", "mamba2", "falcon_mamba", "nemotron_h"})
"""Model types on which peft refuses LoRA on :data:`PEFT_MAMBA_INCOMPATIBLE` modules
(peft 0.21 ``tuners_utils._check_lora_target_modules_mamba``; ``all-linear`` expands to
them, so it is refused there too)."""
PEFT_MAMBA_INCOMPATIBLE = frozenset({"out_proj", "conv1d"})


def mamba_safe_targets(spec: ModelSpec) -> tuple[str, ...] | None:
    """Every linear of the blocks but those peft refuses, for a model type of
    :data:`PEFT_MAMBA_TYPES` (the default target set there); ``None`` elsewhere."""
    if spec.model_type not in PEFT_MAMBA_TYPES:
        return None
    return tuple(m for m in all_linear_targets(spec) if m not in PEFT_MAMBA_INCOMPATIBLE)


@dataclass(frozen=True, kw_only=True)
class PeftTargets:
    """What peft attaches adapters to for a ``target_modules`` value."""

    modules: tuple[str, ...]
    """``nn.Linear`` module names wrapped by ``lora.Linear`` (input -> A -> B)."""
    fused: tuple[str, ...] = ()
    """Fused parameters wrapped by ``lora.ParamWrapper``: ``gate_up_proj``,
    ``down_proj`` (routed experts), ``gate`` (router)."""


def peft_targets(spec: ModelSpec, targets: Sequence[str] | None) -> PeftTargets:
    """Resolve a target list (or ``None`` / ``("all-linear",)``: every linear of the
    blocks) as peft 0.21 on transformers 5 does."""
    all_linear = targets is None or tuple(targets) == (ALL_LINEAR,)
    modules = list(all_linear_targets(spec) if all_linear else targets)
    refused = sorted(PEFT_MAMBA_INCOMPATIBLE & set(modules)) if spec.model_type in PEFT_MAMBA_TYPES else []
    if refused:
        via = f" ({ALL_LINEAR} includes it)" if all_linear else ""
        raise InputError(f"lora_targets: peft refuses LoRA on {', '.join(refused)} of Mamba-based models "
                         f"(model_type {spec.model_type!r}){via}; expected some of "
                         f"{', '.join(mamba_safe_targets(spec) or ())}")
    pattern = PEFT_MOE_CONVERSION.get(spec.model_type) if spec.moe is not None else None
    if pattern is None:
        return PeftTargets(modules=tuple(modules))
    mapping = PEFT_MOE_TARGET_MAPPING[pattern]
    names = set(mapping) if all_linear else {m for m in modules if m in mapping}
    modules = [m for m in modules if m not in names]
    pair = [n for n, p in mapping.items() if p == "gate_up_proj"]
    if 0 < len(names & set(pair)) < len(pair):
        raise InputError(f"lora_targets: peft fuses {' and '.join(pair)} into {spec.name}'s gate_up_proj; "
                         "target both or neither")
    fused = tuple(dict.fromkeys(mapping[n] for n in mapping if n in names))
    return PeftTargets(modules=tuple(modules), fused=fused)


ADAPTER_BYTES = FP32_BYTES
"""peft keeps adapter weights in fp32 (``autocast_adapter_dtype=True``)."""


def target_groups(spec: ModelSpec, targets: Sequence[str] | None) -> list[TensorGroup]:
    """The linear weight groups ``lora.Linear`` attaches to; unknown target names raise
    with the names the model has."""
    linear = [g for g in model_tensors(spec) if g.role == "linear"]
    known = sorted({g.module for g in linear})
    for name in targets or ():
        if name not in known and name != ALL_LINEAR:
            raise InputError(f"lora_targets: {name!r} is not a linear module of {spec.name}; "
                             f"expected some of {', '.join(known)} (or {ALL_LINEAR})")
    modules = peft_targets(spec, targets).modules
    groups = [g for g in linear if g.module in modules and g.per_layer and g.component not in FUSED_EXPERT_COMPONENTS]
    return _fused_linears(spec, groups)


def read_targets(spec: ModelSpec, targets: Sequence[str]) -> tuple[tuple[str, ...], str | None]:
    """``targets`` with short names spelled out: ``q`` -> ``q_proj`` where the model has
    ``q_proj`` and no ``q`` (peft matches whole module names, so ``q`` alone would
    match nothing), ``all_linear`` -> ``all-linear``. Returns the names and a line saying
    how they were read (``None`` when nothing changed)."""
    known = {g.module for g in model_tensors(spec) if g.role == "linear"}
    read: list[str] = []
    changed: list[str] = []
    for name in targets:
        full = name
        if name.lower().replace("_", "-").replace(" ", "-") == "all-linear":
            full = "all-linear"
        elif name not in known and f"{name}_proj" in known:
            full = f"{name}_proj"
        if full != name:
            changed.append(f"{name} as {full}")
        if full not in read:
            read.append(full)
    return tuple(read), (Remark(f"lora_targets read {', '.join(changed)}", fields=("lora_targets",))
                         if changed else None)


FUSED_LINEARS: dict[str, dict[str, tuple[str, ...]]] = {
    "gpt2": {"c_attn": ("q_proj", "k_proj", "v_proj")},
    "gpt_bigcode": {"c_attn": ("q_proj", "k_proj", "v_proj")},
    "gpt_neox": {"query_key_value": ("q_proj", "k_proj", "v_proj")},
    "falcon": {"query_key_value": ("q_proj", "k_proj", "v_proj")},
    "bloom": {"query_key_value": ("q_proj", "k_proj", "v_proj")},
    "phi3": {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")},
}
"""Families whose checkpoints fuse several of the listed linears into one module
(GPT-2 ``c_attn``, GPT-NeoX ``query_key_value``, Phi-3 ``qkv_proj`` / ``gate_up_proj``,
per their transformers modeling files). :mod:`vramplan.model.tensors` lists the
parts; peft wraps the module, so one adapter (``lora_A`` r x in, ``lora_B``
sum(out) x r) and one cast of the shared input serve all parts: targeting any part
targets the module."""


def _fused_linears(spec: ModelSpec, groups: list[TensorGroup]) -> list[TensorGroup]:
    """``groups`` with the parts of a fused module merged into one ``(sum out, in)`` group."""
    fused = FUSED_LINEARS.get(spec.model_type, {})
    if not fused:
        return groups
    part_of = {part: name for name, parts in fused.items() for part in parts}
    out: list[TensorGroup] = []
    merged: dict[tuple[str, str], int] = {}
    for g in groups:
        name = part_of.get(g.module)
        if name is None or not g.name.endswith(".weight"):
            out.append(g)
            continue
        parent = g.name.rsplit(".", 2)[0]
        key = (parent, name)
        if key in merged:
            first = out[merged[key]]
            out[merged[key]] = replace(first, shape=(first.shape[0] + g.shape[0], first.shape[1]))
        else:
            merged[key] = len(out)
            out.append(replace(g, name=f"{parent}.{name}.weight"))
    return out


def fused_adapter_groups(spec: ModelSpec, targets: Sequence[str] | None, rank: int) -> list[TensorGroup]:
    """``lora.ParamWrapper``'s tensors on fused experts and routers: for a 3-D
    ``[E, out, in]`` parameter ``lora_A`` is ``nn.Linear(in, r E)`` and ``lora_B``
    ``nn.Linear(r E, out)`` (peft 0.21 ``ParamWrapper.update_layer``), with rank ``2 r``
    on ``gate_up_proj`` (two fused targets); a router ``[E, h]`` gets ``r x h`` and
    ``E x r``."""
    moe = spec.moe
    if moe is None or not spec.num_moe_layers:
        return []
    h, i, e, n = spec.hidden_size, moe.expert_intermediate_size, moe.num_experts, spec.num_moe_layers
    shapes = {"gate_up_proj": ((2 if spec.mlp_gated else 1) * i, h, 2 * rank * e),
              "down_proj": (h, i, rank * e), "gate": (e, h, rank)}
    groups = []
    for name in peft_targets(spec, targets).fused:
        out_f, in_f, wide = shapes[name]
        prefix = "mlp.gate" if name == "gate" else f"mlp.experts.{name}"
        component = "router" if name == "gate" else "experts"
        groups.append(TensorGroup(name=f"{prefix}.lora_A.weight", component=component, role="linear",
                                  shape=(wide, in_f), count=n))
        groups.append(TensorGroup(name=f"{prefix}.lora_B.weight", component=component, role="linear",
                                  shape=(out_f, wide), count=n))
    return groups


def folded_weight_bytes_per_layer(spec: ModelSpec, targets: Sequence[str] | None, rank: int,
                                  weight_bytes: int) -> int:
    """Bytes one MoE layer keeps for backward because peft folds the LoRA update into
    the fused weights: ``ParamWrapper`` registers a parametrization
    ``W' = baddbmm(W, B, A)`` (``_LoraFactorsProxy``, in the weight's dtype), the expert
    matmuls save ``W'`` (``[E, out, in]``, the size of the whole expert stack) and
    ``baddbmm`` saves the two factors cast to the weight's dtype; the router's
    ``W + B A`` likewise."""
    moe = spec.moe
    fused = peft_targets(spec, targets).fused
    if moe is None or not fused:
        return 0
    h, i, e = spec.hidden_size, moe.expert_intermediate_size, moe.num_experts
    numel = {"gate_up_proj": e * (2 if spec.mlp_gated else 1) * i * h, "down_proj": e * h * i, "gate": e * h}
    folded = sum(numel[name] for name in fused) * weight_bytes
    factors = sum(g.numel for g in fused_adapter_groups(spec, targets, rank)) * weight_bytes \
        if weight_bytes < ADAPTER_BYTES else 0
    return folded + factors


def adapter_groups(spec: ModelSpec, targets: Sequence[str] | None, rank: int) -> list[TensorGroup]:
    """Every trainable LoRA tensor: :func:`module_adapter_groups` and
    :func:`fused_adapter_groups`."""
    return module_adapter_groups(spec, targets, rank) + fused_adapter_groups(spec, targets, rank)


SHARED_BLOCK_PREFIX = "shared_transformer."
"""Module path of Zamba's shared blocks (:func:`vramplan.model.tensors.shared_block_tensors`)."""


def adapter_count(spec: ModelSpec, g: TensorGroup) -> int:
    """How many adapters peft attaches to the linear ``g``: one per tensor, except on
    Zamba's shared blocks, which transformers builds once per hybrid layer with their
    weights tied (``_tied_weights_keys``): peft wraps each layer's module, so every hybrid
    layer gets its own adapters (and runs them) whatever ``num_mem_blocks``."""
    if spec.shared_block is None or not g.name.startswith(SHARED_BLOCK_PREFIX) or "_adapter" in g.name:
        return g.count
    return sum(1 for i in range(spec.num_layers) if spec.mixer(i) == "attention")


def module_adapter_groups(spec: ModelSpec, targets: Sequence[str] | None, rank: int) -> list[TensorGroup]:
    """``lora.Linear``'s tensors: ``lora_A`` (r x in) and ``lora_B`` (out x r) per target
    (:func:`adapter_count` of them)."""
    groups = []
    for g in target_groups(spec, targets):
        count = adapter_count(spec, g)
        out_f, in_f = g.shape
        prefix = g.name.removesuffix(".weight")
        groups.append(TensorGroup(name=f"{prefix}.lora_A.weight", component=g.component, role="linear",
                                  shape=(rank, in_f), count=count))
        groups.append(TensorGroup(name=f"{prefix}.lora_B.weight", component=g.component, role="linear",
                                  shape=(out_f, rank), count=count))
    return groups


def rank_beyond_targets_warning(spec: ModelSpec, targets: Sequence[str] | None, rank: int) -> str | None:
    """A warning when ``rank`` exceeds the smaller side of a targeted matrix. peft accepts
    any positive rank (``LoraLayer.update_layer`` checks only ``r > 0``) and builds
    ``lora_A`` (r x in) and ``lora_B`` (out x r) as asked, so the memory is counted as
    given; the update ``B A`` of such a module cannot exceed the smaller side's rank."""
    narrow = [(g.name.removesuffix(".weight"), min(g.shape)) for g in target_groups(spec, targets)
              if rank > min(g.shape)]
    if not narrow:
        return None
    name, side = min(narrow, key=lambda t: t[1])
    return Remark(f"lora_rank: {rank} exceeds the smaller side of {len(narrow)} targeted matrix kind(s) "
                  f"(smallest: {name}, {side}); peft builds the adapters as asked (counted so), but their update "
                  "there has rank at most that side")


ATTENTION_OUTPUT_MODULE = "o_proj"
"""The linear reading the attention output (GPT-NeoX's ``dense``, GPT-2's ``c_proj``
under their canonical name, :mod:`vramplan.model.tensors`)."""


NO_GRAD_PREFIX = ".indexer."
"""Modules that run under ``torch.no_grad()``, whose adapters save nothing: the
sparse-attention indexer (``DeepseekV32Indexer.forward`` and the families that follow
it pick the top-k keys without a gradient)."""


def adapter_activation_bytes_per_token(spec: ModelSpec, targets: Sequence[str] | None, rank: int,
                                       compute_bytes: int, autocast: bool, *, quantized_base: bool = False) -> int:
    """Bytes per token, summed over all layers, that the adapters save.

    peft's ``_cast_input_dtype`` casts each adapted module's input to the adapter
    dtype (fp32) when the base computes in 16 bits, so every adapted module keeps its
    own copy of its input (``in_features`` wide): fp32 without autocast, and under
    autocast the compute-dtype copy the adapter matmul casts it back to. Each also
    keeps ``A x`` (``r`` wide, saved by ``B``) in the dtype the adapter matmul runs in.
    On an fp32 base nothing is cast: the input is the one the base linear saves.

    ``quantized_base``: QLoRA's ``lora.Linear4bit`` (peft ``tuners/lora/bnb.py``) casts
    the input only outside autocast (``requires_conversion = not
    torch.is_autocast_enabled()``). Under autocast the adapter matmul casts only inputs
    not yet in the compute dtype: every input on QLoRA's fp32 stream (norm outputs, the
    fp32 MLP product of ``Linear4bit``'s fp32 outputs), but not the attention output,
    which the attention returns in the compute dtype and ``A`` saves as it is (kept as
    the attention's output already).
    """
    total = 0
    for g in target_groups(spec, targets):
        if NO_GRAD_PREFIX in g.name:
            continue
        uncast = quantized_base and autocast and g.module == ATTENTION_OUTPUT_MODULE and g.component == "attention"
        total += adapter_bytes_per_token(g.shape[1], rank, compute_bytes, autocast,
                                         input_cast=not uncast) * adapter_count(spec, g)
    return total


def adapter_bytes_per_token(in_features: int, rank: int, compute_bytes: int, autocast: bool, *,
                            input_cast: bool = True) -> int:
    """What one adapted module saves per token (:func:`adapter_activation_bytes_per_token`):
    its own copy of its input when the base computes in 16 bits (``input_cast``), and
    ``A x``, both in the dtype the adapter matmul runs in."""
    matmul_bytes = compute_bytes if autocast else ADAPTER_BYTES
    cast = matmul_bytes * in_features if compute_bytes < ADAPTER_BYTES and input_cast else 0
    return rank * matmul_bytes + cast


def adapter_weight_cast_bytes(groups: Sequence[TensorGroup], compute_bytes: int, autocast: bool) -> int:
    """Autocast's compute-dtype copies of the fp32 adapter weights (0 without autocast)."""
    return sum(g.params for g in groups) * compute_bytes if autocast else 0


def dequant_buffer_bytes(spec: ModelSpec, targets_quantized: Sequence[TensorGroup], compute_bytes: int) -> int:
    """The dequantized copy of the largest quantized linear weight (bitsandbytes
    ``dequantize_4bit`` output, compute dtype), alive during its matmul."""
    if not targets_quantized:
        return 0
    return max(g.numel for g in targets_quantized) * compute_bytes
