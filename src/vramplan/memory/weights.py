"""Weight memory: bytes of every parameter tensor in a given storage format.

Quantized formats store the linear weights they cover in their packed layout
(:mod:`vramplan.quant`) and every other tensor — embeddings, norms, biases, skipped
modules — in the format's unquantized dtype. The split is reported so users see
what a format really saves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vramplan.intmath import ceil_div
from vramplan.dtypes import get_dtype
from vramplan.errors import InputError, LayoutError, UnknownNameError
from vramplan.estimate import Component
from vramplan.gguf_types import GGUF_RECIPES, GgufRecipe, TensorContext, get_recipe, tensor_kind, tensor_type
from vramplan.model.spec import ModelSpec
from vramplan.model.tensors import TensorGroup, model_tensors
from vramplan.naming import close_matches, normalize_name
from vramplan.validate import GPUS_MAX, integer
from vramplan.quant import FORMATS, WeightFormat, format_from_quantization_config, get_format


FP32_BITS = 32
"""Bits of an fp32 element: the dtype of tensors kept in fp32 (:attr:`TensorGroup.kept_fp32`)."""


def tensor_group_bytes(group: TensorGroup, fmt: WeightFormat) -> int:
    """Bytes of all ``group.count`` tensors of ``group`` stored in ``fmt``."""
    if fmt.quantizes(group.name, group.role):
        out_f, in_f = group.shape
        return fmt.linear_bytes(out_f, in_f) * group.count
    dtype = get_dtype(fmt.unquantized_dtype)
    if group.kept_fp32 and dtype.bits < FP32_BITS:  # transformers' _keep_in_fp32_modules_strict
        dtype = get_dtype("fp32")
    return dtype.bytes_for(group.numel) * group.count


def weight_bytes_split(spec: ModelSpec, fmt: WeightFormat | str) -> tuple[int, int]:
    """(bytes of quantized tensors, bytes of tensors left unquantized)."""
    fmt = get_format(fmt)
    quantized = unquantized = 0
    for group in model_tensors(spec):
        b = tensor_group_bytes(group, fmt)
        if fmt.quantizes(group.name, group.role):
            quantized += b
        else:
            unquantized += b
    return quantized, unquantized


def weight_bytes(spec: ModelSpec, fmt: WeightFormat | str) -> int:
    """Total bytes of the model's weights in ``fmt``."""
    return sum(weight_bytes_split(spec, fmt))


def weight_components(spec: ModelSpec, fmt: WeightFormat | str, prefix: str = "weights") -> list[Component]:
    """``weights`` (plain dtype) or ``weights/quantized`` + ``weights/unquantized``."""
    fmt = get_format(fmt)
    quantized, unquantized = weight_bytes_split(spec, fmt)
    skipped_paths = fmt.skip_paths and any(g.role == "linear" and g.name.startswith(fmt.skip_paths)
                                           for g in model_tensors(spec))
    left = "embeddings, norms, biases and skipped modules" + (
        " (fused MoE experts and routers, which bitsandbytes does not convert)" if skipped_paths else "")
    if not fmt.quantized:
        return [Component(name=prefix, bytes=unquantized,
                          note=f"every parameter in {fmt.name} ({get_dtype(fmt.name).bits} bits)")]
    return [
        Component(name=f"{prefix}/quantized", bytes=quantized,
                  note=f"{fmt.description}: {fmt.bits_per_weight(spec.hidden_size, spec.hidden_size):.3f} bits/weight "
                       "incl. scales"),
        Component(name=f"{prefix}/unquantized", bytes=unquantized,
                  note=f"{left} in {fmt.unquantized_dtype}"),
    ]


def lightning_buffer_elements(spec: ModelSpec, tp: int = 1) -> int:
    """Elements of the decay tables every MiniMax-01 lightning-attention layer registers as
    buffers (transformers ``MiniMaxLightningAttention.__init__``: ``slope_rate`` ``[H, 1, 1]``,
    ``query_decay`` and ``key_decay`` ``[H, l, 1]``, ``diagonal_decay`` ``[1, H, l, l]`` for
    blocks of ``l`` positions): ``H (1 + 2 l + l^2)`` per layer, the heads split across TP
    ranks. They live beside the weights, in the dtype the model is loaded in; 0 for a
    model without lightning attention."""
    layers = sum(spec.mixer(i) == "lightning_attention" for i in range(spec.num_layers))
    block = spec.lightning_block_size
    return layers * (spec.num_attention_heads // tp) * (1 + 2 * block + block * block) if block else 0


def buffer_components(spec: ModelSpec, dtype: str, tp: int = 1) -> list[Component]:
    """``weights/buffers``: model buffers large enough to count, in ``dtype`` (see
    :func:`lightning_buffer_elements`); none for most models, whose buffers (rotary
    frequencies) are a few KiB."""
    elements = lightning_buffer_elements(spec, tp)
    if not elements:
        return []
    return [Component(name="weights/buffers", bytes=get_dtype(dtype).bytes_for(elements),
                      note=f"lightning attention's decay tables (block {spec.lightning_block_size}) in {dtype}")]


# ---- tensor parallelism -------------------------------------------------------------
_COLUMN_PARALLEL = ("q_proj", "k_proj", "v_proj", "q_b_proj", "kv_b_proj", "gate_proj", "up_proj")
"""Linears whose output features are split across TP ranks (Megatron-LM ColumnParallelLinear;
vLLM QKVParallelLinear / MergedColumnParallelLinear)."""
_ROW_PARALLEL = ("o_proj", "down_proj")
"""Linears whose input features are split (RowParallelLinear); their bias is kept whole."""
_VOCAB_PARALLEL = ("embed_tokens", "lm_head")
"""Vocabulary-split tables (VocabParallelEmbedding, ParallelLMHead)."""


def check_tensor_parallel(spec: ModelSpec, tp: int) -> None:
    """Refuse a TP degree the model cannot be split by (as vLLM and Megatron do), by
    the one rule training, serving and the planners share:
    :func:`vramplan.parallel.tensor_parallel_problem` (tp divides the query heads and
    the MLP widths, and divides the KV heads or is a multiple of them)."""
    from vramplan.parallel.admissible import tensor_parallel_problem

    integer("tp", tp, 1, GPUS_MAX, error=LayoutError)
    problem = tensor_parallel_problem(spec, tp)
    if problem is None:
        return
    name, value = problem
    if name == "num_kv_heads":
        raise LayoutError(f"tp {tp}: must divide num_key_value_heads={value} or be a multiple of it", fields=("tp",))
    raise LayoutError(f"tp {tp}: must divide {name}={value}", fields=("tp",))


def kv_heads_per_rank(spec: ModelSpec, tp: int) -> int:
    """KV heads held by one TP rank: ``kv / tp``, or 1 (replicated) when ``tp > kv``
    (vLLM ``QKVParallelLinear``: ``num_kv_head_replicas = tp / kv``)."""
    return max(1, spec.num_kv_heads // tp)


def shard_shape(group: TensorGroup, spec: ModelSpec, tp: int) -> tuple[int, ...]:
    """Shape of one tensor of ``group`` on one TP rank.

    Column-parallel linears split their output rows, row-parallel ones their input
    columns, vocabulary tables their rows (rounded up); k/v projections hold
    :func:`kv_heads_per_rank` heads; norms, routers, MLA's down-projections
    (``q_a_proj``, ``kv_a_proj_with_mqa``, replicated in vLLM) and row-parallel biases
    stay whole. Per-head sinks are split with the heads.
    """
    if tp == 1:
        return group.shape
    module = group.module
    is_weight = group.name.endswith(".weight")
    if module in ("k_proj", "v_proj") and spec.mla is None:
        # per-layer shapes (Gemma 4, MiMo): the heads of the layers holding this group
        heads = spec.layer_num_kv_heads(group.layers[0]) if group.layers else spec.num_kv_heads
        rows = max(1, heads // tp) * (group.shape[0] // heads)
        return (rows, *group.shape[1:])
    if module in _VOCAB_PARALLEL:
        return (ceil_div(group.shape[0], tp), *group.shape[1:])
    if module in _COLUMN_PARALLEL:
        return (group.shape[0] // tp, *group.shape[1:])
    if module in _ROW_PARALLEL and is_weight:
        return (group.shape[0], group.shape[1] // tp)
    if group.name == "self_attn.sinks":
        return (group.shape[0] // tp,)
    return group.shape


def _sharded(group: TensorGroup, spec: ModelSpec, tp: int) -> TensorGroup:
    from dataclasses import replace

    return group if tp == 1 else replace(group, shape=shard_shape(group, spec, tp))


def weight_bytes_per_rank(spec: ModelSpec, fmt: WeightFormat | str, tp: int = 1) -> tuple[int, int]:
    """(quantized, unquantized) weight bytes held by one of ``tp`` tensor-parallel ranks."""
    fmt = get_format(fmt)
    check_tensor_parallel(spec, tp)
    quantized = unquantized = 0
    for group in model_tensors(spec):
        b = tensor_group_bytes(_sharded(group, spec, tp), fmt)
        if fmt.quantizes(group.name, group.role):
            quantized += b
        else:
            unquantized += b
    return quantized, unquantized


# ---- per layer (llama.cpp offload, GGUF recipes) -----------------------------------
def layers_holding(spec: ModelSpec, group: TensorGroup) -> tuple[int, ...]:
    """Indices of the decoder layers that hold ``group`` (MoE blocks only in MoE layers,
    the dense MLP only in dense layers); empty for tensors outside the blocks."""
    if not group.per_layer:
        return ()
    if group.layers:
        return group.layers
    name = group.name
    if spec.moe is not None and name.startswith("mlp."):
        moe_part = name.startswith(("mlp.experts.", "mlp.gate.", "mlp.shared_expert"))
        return tuple(i for i in range(spec.num_layers) if spec.is_moe_layer(i) == moe_part)
    return tuple(range(spec.num_layers))


GroupBytes = Callable[[TensorGroup, int], int]
"""``(group, layer index or -1) -> bytes`` of the group's tensors in that layer; the
group passed in counts only the tensors of one layer (:func:`tensors_in_layer`)."""


@dataclass(frozen=True, kw_only=True)
class LayerWeights:
    """Weight bytes split by where llama.cpp places them: per decoder layer, and the
    tensors outside the blocks."""

    per_layer_bytes: tuple[int, ...]
    """Bytes of each decoder layer's tensors, in layer order."""
    embedding_bytes: int
    """Token (and position) embedding tables: llama.cpp keeps these on the host."""
    output_bytes: int
    """Output head and final norm (on the GPU once every layer is offloaded)."""

    @property
    def total_bytes(self) -> int:
        return sum(self.per_layer_bytes) + self.embedding_bytes + self.output_bytes


def layer_weights(spec: ModelSpec, group_bytes: GroupBytes,
                  keep: Callable[[TensorGroup], bool] | None = None, uniform: bool = False) -> LayerWeights:
    """Split the model's weights by layer, with ``group_bytes`` pricing each group's
    tensors in one layer (``layer=-1`` for the tensors outside the blocks); only the
    groups ``keep`` accepts, when given. ``uniform``: the price does not depend on the
    layer, so each group is priced once."""
    from dataclasses import replace

    per_layer = [0] * spec.num_layers
    embedding = output = 0
    for group in model_tensors(spec):
        if keep is not None and not keep(group):
            continue
        layers = layers_holding(spec, group)
        if not layers:
            if group.role == "embedding":
                embedding += group_bytes(group, -1)
            else:
                output += group_bytes(group, -1)
            continue
        one_layer = replace(group, count=group.count // len(layers))
        same = group_bytes(one_layer, layers[0]) if uniform else None
        for i in layers:
            per_layer[i] += same if same is not None else group_bytes(one_layer, i)
    return LayerWeights(per_layer_bytes=tuple(per_layer), embedding_bytes=embedding, output_bytes=output)


def tensors_in_layer(spec: ModelSpec, group: TensorGroup) -> int:
    """How many of ``group``'s tensors one layer holding it has (experts x 1, norms x
    norms_per_layer); ``group.count`` for tensors outside the blocks."""
    layers = layers_holding(spec, group)
    return group.count // len(layers) if layers else group.count


def format_group_bytes(spec: ModelSpec, fmt: WeightFormat | str) -> GroupBytes:
    """:data:`GroupBytes` for a uniform format (the same layout in every layer)."""
    fmt = get_format(fmt)

    def price(group: TensorGroup, layer: int) -> int:
        return tensor_group_bytes(group, fmt)

    return price


def gguf_group_bytes(spec: ModelSpec, recipe: GgufRecipe | str) -> GroupBytes:
    """:data:`GroupBytes` for a llama.cpp GGUF recipe: each tensor gets the type
    :func:`vramplan.gguf_types.tensor_type` picks for its kind and layer, and is
    stored as whole rows of that type (``ggml_row_size``)."""
    recipe = get_recipe(recipe) if isinstance(recipe, str) else recipe
    num_experts = spec.moe.num_experts if spec.moe is not None else 0

    def price(group: TensorGroup, layer: int) -> int:
        kind = tensor_kind(group.module, group.role, tied_embeddings=spec.tie_word_embeddings)
        row = group.shape[-1]
        ctx = TensorContext(kind=kind, layer=max(layer, 0), num_layers=spec.num_layers, row_elements=row,
                            gqa_ratio=spec.num_attention_heads // spec.num_kv_heads, num_experts=num_experts,
                            is_expert=group.name.startswith("mlp.experts."))
        ggml = tensor_type(recipe, ctx)
        return ggml.row_bytes(row) * (group.numel // row) * group.count

    return price


# ---- the weights a user chose, whatever the kind ------------------------------------
WeightsChoice = WeightFormat | GgufRecipe
"""A Hugging Face-style storage format, or a llama.cpp GGUF recipe."""


def resolve_weights(spec: ModelSpec, text: str | WeightFormat | GgufRecipe | None = None) -> WeightsChoice:
    """The weights format: the checkpoint's own when ``text`` is None or ``"auto"``
    (its ``quantization_config``, else its ``torch_dtype``), a format name
    (``"nf4-dq"``, ``"gptq-int4-g128"``), or a GGUF recipe (``"Q4_K_M"``,
    ``"gguf-q5_k_m"``). Raises with did-you-mean over both tables, and when the
    format cannot apply to the model (:func:`check_format_applies`)."""
    if isinstance(text, (WeightFormat, GgufRecipe)):
        choice: WeightsChoice = text
    elif text is None or normalize_name(text) in ("auto", "checkpoint"):
        qc = spec.quantization_config
        try:
            choice = format_from_quantization_config(qc, dtype=spec.dtype) if qc else get_format(spec.dtype)
        except InputError:
            if spec.checkpoint is None:
                raise
            from vramplan.memory.stored_weights import stored_format  # read from headers: no table needed

            choice = stored_format(spec)
    else:
        choice = _named_weights(text)
    check_format_applies(spec, choice)
    return choice


def _named_weights(text: str) -> WeightsChoice:
    key = normalize_name(text)
    recipes = {normalize_name(k): k for k in GGUF_RECIPES}
    gguf_key = key.removeprefix("gguf-").removeprefix("gguf:")
    if key in FORMATS or not (gguf_key in recipes or key.startswith(("gguf-", "gguf:"))):
        try:
            return get_format(text)
        except UnknownNameError as exc:
            if gguf_key not in recipes:
                display = {**{k: k for k in FORMATS}, **recipes}
                raise UnknownNameError("weight format", text, [display[k] for k in close_matches(key, display)],
                                       "weights: a format such as bf16, nf4-dq, gptq-int4-g128, awq, fp8, "
                                       "or a GGUF recipe such as Q4_K_M") from exc
    return get_recipe(gguf_key)


def check_format_applies(spec: ModelSpec, choice: WeightsChoice) -> None:
    """Refuse a format that quantizes nothing in this model (MXFP4 covers only MoE
    experts: a dense model has none)."""
    if isinstance(choice, WeightFormat) and choice.only_modules:
        if not any(choice.quantizes(g.name, g.role) for g in model_tensors(spec)):
            raise InputError(f"weights {choice.name}: quantizes only {', '.join(choice.only_modules)}, and "
                             f"{spec.name} has no such tensors (it is not a mixture-of-experts model)",
                             fields=("weights",))
    if isinstance(choice, GgufRecipe) and choice.name == "MXFP4_MOE" and spec.moe is None:
        raise InputError(f"weights MXFP4_MOE: quantizes only MoE experts, and {spec.name} has none",
                         fields=("weights",))


def is_quantized(spec: ModelSpec, choice: WeightsChoice, group: TensorGroup) -> bool:
    """Does ``choice`` store ``group`` in a quantized (block) layout?"""
    if isinstance(choice, WeightFormat):
        return choice.quantizes(group.name, group.role)
    kind = tensor_kind(group.module, group.role, tied_embeddings=spec.tie_word_embeddings)
    return kind not in ("vector", "ffn_gate_inp", "position_embd") and choice.base not in ("F32", "F16", "BF16")


def choice_group_bytes(spec: ModelSpec, choice: WeightsChoice, tp: int = 1) -> GroupBytes:
    """:data:`GroupBytes` of one TP rank's shard, for any weights choice."""
    if isinstance(choice, GgufRecipe):
        if tp != 1:
            raise LayoutError(f"tp {tp}: GGUF weights run on llama.cpp, which splits by layer, not by "
                              "tensor parallelism here; use tp=1", fields=("tp",))
        return gguf_group_bytes(spec, choice)
    check_tensor_parallel(spec, tp)
    price = format_group_bytes(spec, choice)
    return lambda group, layer: price(_sharded(group, spec, tp), layer)


def choice_name(choice: WeightsChoice) -> str:
    return choice.name if isinstance(choice, WeightFormat) else f"GGUF {choice.name}"


def weight_split_components(spec: ModelSpec, choice: WeightsChoice, tp: int = 1,
                            layers: Callable[[int], bool] | None = None) -> list[Component]:
    """``weights`` (unquantized choice) or ``weights/quantized`` + ``weights/unquantized``
    for one TP rank, counting only the decoder layers ``layers`` accepts (all when
    None) plus the tensors outside the blocks when ``layers`` accepts -1. A model read
    from its files and kept in its own format weighs what it stores
    (:mod:`vramplan.memory.stored_weights`)."""
    if spec.checkpoint is not None:
        from vramplan.memory.stored_weights import stored_weight_components

        stored = stored_weight_components(spec, choice, tp, layers)
        if stored is not None:
            return stored
    price = choice_group_bytes(spec, choice, tp)
    uniform = isinstance(choice, WeightFormat)
    quant = layer_weights(spec, price, keep=lambda g: is_quantized(spec, choice, g), uniform=uniform)
    plain = layer_weights(spec, price, keep=lambda g: not is_quantized(spec, choice, g), uniform=uniform)

    def total(lw: LayerWeights) -> int:
        inside = sum(b for i, b in enumerate(lw.per_layer_bytes) if layers is None or layers(i))
        outside = lw.embedding_bytes + lw.output_bytes if layers is None or layers(-1) else 0
        return inside + outside

    q, u = total(quant), total(plain)
    where = f" per rank of tp={tp}" if tp > 1 else ""
    if not q:
        return [Component(name="weights", bytes=u, note=f"every tensor in {choice_name(choice)}{where}")]
    desc = choice.description
    return [Component(name="weights/quantized", bytes=q, note=f"{choice_name(choice)}: {desc}{where}, scales included"),
            Component(name="weights/unquantized", bytes=u,
                      note=f"embeddings, norms, biases, routers and skipped modules{where}")]
