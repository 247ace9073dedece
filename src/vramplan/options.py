"""The options of every question, declared once: name, kind, default, bounds, choices
and help. The command line builds its click options from these declarations and the
web API parses query strings with them, so a default or an allowed value cannot
differ between the two; choices come from the core's own tuples.

An option's *name* is the Python keyword (``grad_accum``); its *flag* is the spelling
on the command line and in a query string (``--grad-accum``, ``grad-accum=4``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vramplan.errors import InputError
from vramplan.memory.vision_tower import MAX_IMAGES
from vramplan.model.custom import BIAS_CHOICES, MLP_CHOICES, NORM_CHOICES, POSITION_CHOICES
from vramplan.model.towers import MAX_IMAGE_SIDE
from vramplan.units import BYTE_UNITS
from vramplan.validate import LENGTH_MAX

Kind = Literal["int", "float", "str", "flag", "switch", "tokens"]
"""``tokens``: a token count, ``4096`` or ``32k`` / ``128K`` / ``1M`` (:func:`vramplan.units.parse_tokens`)."""


@dataclass(frozen=True, kw_only=True)
class Option:
    """One option of a question."""

    name: str
    """Python keyword."""
    kind: Kind
    """``flag``: present or not; ``switch``: ``--on/--off`` pair (``flags[0]`` / ``off_flag``)."""
    help: str = ""
    default: object = None
    show_default: bool = False
    flags: tuple[str, ...] = ()
    """Spellings; ``()``: ``--`` + the name with dashes."""
    off_flag: str | None = None
    """The negative spelling of a ``switch``."""
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    min_open: bool = False
    max_open: bool = False
    required: bool = False
    multiple: bool = False
    """The flag may repeat; the value is a tuple of what each gave."""
    fields: tuple[str, ...] = ()
    """The core's names for what this option sets, where they differ from ``name``
    (``seed_bytes`` sets ``TrainingSetup.seed_dtype_bytes``): errors name those, and
    the command line shows this option's flag in their place (:func:`flags_by_field`)."""

    @property
    def all_flags(self) -> tuple[str, ...]:
        return self.flags or ("--" + self.name.replace("_", "-"),)

    def parse(self, text: str, flag: str) -> object:
        """The value of ``text`` given as ``flag`` (a query string value), checked like
        the command line checks it; raises InputError naming the flag."""
        if self.kind == "flag":
            return True
        if self.kind == "switch":
            return flag in self.all_flags
        if self.kind == "str":
            value: object = text
        elif self.kind == "tokens":
            from vramplan.units import parse_tokens

            value = parse_tokens(text, f"Invalid value for '{self.all_flags[0]}'")
        else:
            cast = int if self.kind == "int" else float
            try:
                value = cast(text)
            except ValueError:
                word = "integer" if self.kind == "int" else "float"
                raise InputError(f"Invalid value for '{self.all_flags[0]}': {text!r} is not a valid {word}") from None
        if self.choices and value not in self.choices:
            raise InputError(f"Invalid value for '{self.all_flags[0]}': {text!r} is not one of "
                             + ", ".join(repr(c) for c in self.choices))
        if isinstance(value, (int, float)) and not self._in_range(value):
            raise InputError(f"Invalid value for '{self.all_flags[0]}': {value} is not in the range {self._range()}")
        return value

    def _in_range(self, value: float) -> bool:
        lo, hi = self.minimum, self.maximum
        if lo is not None and (value < lo or (self.min_open and value == lo)):
            return False
        return not (hi is not None and (value > hi or (self.max_open and value == hi)))

    def _range(self) -> str:
        parts = []
        if self.minimum is not None:
            parts.append(f"x{'>' if self.min_open else '>='}{self.minimum}")
        if self.maximum is not None:
            parts.append(f"x{'<' if self.max_open else '<='}{self.maximum}")
        return " and ".join(parts)


MAX_LAYERS = 10_000
"""Upper bound of --layers (the deepest published decoders have a few hundred)."""
MAX_COUNT = 1_000_000
"""Upper bound of every count a flag takes (layers, widths, GPUs, degrees): far above any real
model or cluster, low enough that the arithmetic behind it stays bounded and exact."""


def _int(name: str, help: str, default: int | None = None, *, minimum: int | None = 1, show: bool = True,
         flags: tuple[str, ...] = (), maximum: int | None = None, fields: tuple[str, ...] = ()) -> Option:
    return Option(name=name, kind="int", help=help, default=default, show_default=show and default is not None,
                  minimum=minimum, maximum=maximum, flags=flags, fields=fields)


def _choice(name: str, choices: tuple[str, ...], help: str, default: str | None = None, *,
            show: bool = True, fields: tuple[str, ...] = ()) -> Option:
    return Option(name=name, kind="str", help=help, default=default, choices=choices,
                  show_default=show and default is not None, fields=fields)


def _str(name: str, help: str, default: str | None = None, *, show: bool = True,
         flags: tuple[str, ...] = ()) -> Option:
    return Option(name=name, kind="str", help=help, default=default, show_default=show and default is not None,
                  flags=flags)


def _flag(name: str, help: str, *, flags: tuple[str, ...] = (), fields: tuple[str, ...] = ()) -> Option:
    return Option(name=name, kind="flag", help=help, default=False, flags=flags, fields=fields)


# ---- the model ----------------------------------------------------------------------
ARCH_OPTIONS: tuple[Option, ...] = (
    _int("layers", "Decoder layers (custom architecture).", show=False, maximum=MAX_LAYERS),
    _int("hidden", "Hidden size (custom architecture).", show=False, maximum=MAX_COUNT),
    _int("heads", "Attention heads (custom architecture).", show=False, maximum=MAX_COUNT),
    _int("kv_heads", "Key/value heads (default: --heads).", show=False, maximum=MAX_COUNT),
    _int("head_dim", "Per-head dims (default: hidden / heads).", show=False, maximum=MAX_COUNT),
    _int("intermediate", "MLP hidden size (default: Llama's 8h/3 rounded to 256).", show=False, maximum=MAX_COUNT),
    _int("vocab", "Vocabulary size (default 32000).", show=False, maximum=MAX_COUNT),
    _int("experts", "Routed experts per layer (MoE).", show=False, maximum=MAX_COUNT),
    _int("experts_per_token", "Experts each token is routed to (MoE, default 2).", show=False, maximum=MAX_COUNT),
    _choice("mlp", MLP_CHOICES,
            "MLP: gated (SwiGLU: gate, up, down; default) or plain (up, down: GPT-2, Falcon, BLOOM)."),
    _choice("norm", NORM_CHOICES, "Norm layers (default rmsnorm)."),
    _choice("bias", BIAS_CHOICES,
            "Linear biases: none (default), qkv (Qwen2), attention (q/k/v/o), all (every linear)."),
    _choice("position", POSITION_CHOICES,
            "Positions: rotary (default), alibi (no parameters), learned (a table of --max-positions rows)."),
    Option(name="max_positions", kind="tokens", help="Context the model was built for: 4096, 32k, 128K (default 4096).",
           minimum=1, maximum=MAX_COUNT),
    _str("activation", "Activation name (default silu for a gated MLP, gelu for a plain one).", show=False),
    _flag("tied", "The output head shares the embedding matrix.", flags=("--tie-embeddings",)),
    _flag("parallel_block", "Attention and MLP read the same norm and add their outputs (GPT-J, Falcon-7B, Cohere)."),
)
"""A custom architecture instead of MODEL (:func:`vramplan.model.custom_spec`)."""
ARCH_REQUIRED = ("layers", "hidden", "heads")


def _layout_options() -> tuple[Option, ...]:
    from vramplan.parallel import FSDP_MODES, OFFLOADS

    return (
        _int("gpus", "Total GPUs (dp is inferred from it when --dp is not given).", show=False, maximum=MAX_COUNT),
        _int("nodes", "Nodes; GPUs per node = --gpus / --nodes.", show=False, maximum=MAX_COUNT),
        _int("gpus_per_node", "GPUs in one node (default 8).", show=False, maximum=MAX_COUNT),
        _int("dp", "Data-parallel degree.", show=False, maximum=MAX_COUNT),
        _int("tp", "Tensor-parallel degree.", show=False, maximum=MAX_COUNT),
        _int("pp", "Pipeline-parallel stages.", show=False, maximum=MAX_COUNT),
        _int("cp", "Context-parallel degree.", show=False, maximum=MAX_COUNT),
        _int("ep", "Expert-parallel degree (MoE).", show=False, maximum=MAX_COUNT),
        _choice("zero", ("0", "1", "2", "3"), "DeepSpeed ZeRO stage.", fields=("zero_stage",)),
        _choice("fsdp", tuple(m for m in FSDP_MODES if m != "none"),
                "PyTorch FSDP sharding strategy (not with --zero)."),
        _choice("offload", tuple(OFFLOADS),
                "Offload optimizer states (ZeRO-Offload) or parameters too (ZeRO-Infinity) to host RAM."),
        _int("micro_batches", "Micro-batches per step (gradient accumulation).", show=False, maximum=MAX_COUNT),
        _int("virtual_stages", "Interleaved pipeline chunks per rank.", show=False, maximum=MAX_COUNT),
        _flag("sp", "Megatron sequence parallelism (with --tp > 1).", fields=("sequence_parallel",)),
    )


LAYOUT_NAMES = ("gpus", "nodes", "gpus_per_node", "dp", "tp", "pp", "cp", "ep", "zero", "fsdp", "offload",
                "micro_batches", "virtual_stages", "sp")
"""The fields of :class:`vramplan.parallel.LayoutRequest`, in flag order."""


def layout_options() -> tuple[Option, ...]:
    """The parallel-layout options (``plan``, ``train``)."""
    return _layout_options()


DEFAULT_CONTEXT_TOKENS = 4096
"""Tokens held per served sequence when ``context`` is not given, capped at the model's
max positions (:func:`vramplan.engines.resolved_context`): the one serving default of
``infer``, ``plan --infer`` (:data:`vramplan.plans.DEFAULT_PLAN_SEQ`), the Python API and
the web page (whose context field is empty until a value is typed)."""

UNITS = BYTE_UNITS
COMMON_OPTIONS: tuple[Option, ...] = (
    _choice("units", UNITS, "Binary (GiB = 1024^3 B, as nvidia-smi) or decimal (GB = 10^9 B) units.", "GiB"),
)


def train_options() -> tuple[Option, ...]:
    """``train``: the setup (:class:`vramplan.training.TrainingSetup`) and the GPU."""
    from vramplan.training import DEFAULT_TRAIN_SEQ

    return (
        Option(name="method", kind="str", default="full", show_default=True, help="full, lora or qlora"),
        Option(name="precision", kind="str", default="bf16-mixed", show_default=True, help="fp32, bf16-mixed, fp16-mixed, bf16, fp16; with --activation-model seed also int8 (the article's example) and fp64."),
        Option(name="optimizer", kind="str", default="adamw", show_default=True, help="adamw, adamw-fused, adamw-forloop, adamw-8bit, paged-adamw-8bit, sgd, sgd-momentum, adafactor, lion"),
        Option(name="load_dtype", kind="str", help="dtype the weights are loaded in when it is not the precision's: fp32, bf16 or fp16 [default: fp32 trained weights under *-mixed, a LoRA base in the compute dtype]."),
        Option(name="batch", kind="int", default=1, show_default=True, help="Micro-batch size."),
        Option(name="seq", kind="tokens", default=DEFAULT_TRAIN_SEQ, show_default=True, help="Tokens per sequence: 4096, 32k, 128K (k = 1024)."),
        Option(name="grad_accum", kind="int", default=1, show_default=True, help="Micro-batches per optimizer step."),
        Option(name="recompute", kind="str", help="none, selective or full [default: full for qlora, else none]."),
        Option(name="attention", kind="str", default="sdpa", show_default=True, help="flash, sdpa or eager."),
        Option(name="lora_rank", kind="int", default=16, show_default=True, help="LoRA rank r."),
        Option(name="lora_targets", kind="str", help="Comma-separated linear modules, or all-linear (peft's keyword) [default: all-linear]."),
        Option(name="fused_ce", kind="flag", default=False, help="Fused linear cross entropy (Liger-Kernel)."),
        Option(name="dropout", kind="flag", default=False, help="Dropout active in the model (GPT-2 style)."),
        Option(name="activation_model", kind="str", default="derived", show_default=True, help="derived (this tool's) or seed (the seed article's rule of thumb)."),
        Option(name="seed_bytes", kind="int", minimum=1, maximum=8, help="Bytes per value for --activation-model seed [default: the --precision's: int8 1, fp16/bf16 2, fp32 4].", fields=("seed_dtype_bytes",)),
        Option(name="input_len", kind="tokens", minimum=1, maximum=LENGTH_MAX, help="Encoder-decoder models (T5, BART): encoder input tokens per sequence, 512 or 4k (--seq is the target length) [default: --seq]."),
        Option(name="images", kind="int", default=0, show_default=True, minimum=0, maximum=MAX_IMAGES, help="Multimodal models: images per sequence (their tokens join --seq)."),
        Option(name="image_size", kind="int", minimum=1, maximum=MAX_IMAGE_SIDE, help="Pixels per side of each image, for dynamic-resolution towers (Qwen-VL, Pixtral) [default: 1024]."),
        Option(name="gpu", kind="str", help="GPU to check the fit on (e.g. h100, rtx-4090)."),
        Option(name="reserve", kind="str", help="Memory to keep free on the GPU beyond the peak and the overheads (e.g. 2GiB).", fields=("reserve_bytes",)),
        Option(name="strict", kind="flag", default=False, help="Turn warnings (sequence beyond max positions) into errors."),
    )


def infer_options() -> tuple[Option, ...]:
    """``infer``: the setup (:class:`vramplan.inference.InferenceSetup`) and the solvers."""
    from vramplan.inference import ENGINES, HF_CACHES, INFERENCE_ATTENTIONS, LOGITS

    return (
        Option(name="engine", kind="str", default="hf", show_default=True, choices=ENGINES, help="transformers generate, vLLM, or llama.cpp."),
        Option(name="weights", kind="str", help="Weights format (bf16, nf4-dq, gptq-int4-g128, awq, fp8, Q4_K_M...); default: the checkpoint's own."),
        Option(name="kv_dtype", kind="str", help="KV cache dtype: fp16, bf16, fp8, int8, q8_0, q4_0 (default: compute dtype)."),
        Option(name="batch", kind="int", default=1, show_default=True, minimum=1, help="Sequences held at once."),
        Option(name="context", kind="tokens", minimum=1, help=f"Tokens per sequence, prompt + generated: 8192, 32k, 128K (k = 1024) (default min({DEFAULT_CONTEXT_TOKENS}, max positions))."),
        Option(name="prompt", kind="tokens", minimum=1, help="Prompt tokens prefilled (default: --context)."),
        Option(name="prefill_chunk", kind="tokens", minimum=1, help="Chunked prefill: tokens per pass."),
        Option(name="tp", kind="int", default=1, show_default=True, minimum=1, help="Tensor-parallel GPUs."),
        Option(name="attention", kind="str", default="sdpa", show_default=True, choices=INFERENCE_ATTENTIONS, help="transformers attention implementation."),
        Option(name="logits", kind="str", default="last", show_default=True, choices=LOGITS, help="hf: last position only (generate) or every position (a scoring / perplexity forward)."),
        Option(name="cache", kind="str", default="dynamic", show_default=True, choices=HF_CACHES, help="hf: generate's DynamicCache (grown by concatenation) or a StaticCache (cache_implementation=\"static\": preallocated, sliding layers for their window)."),
        Option(name="input_len", kind="tokens", minimum=1, maximum=LENGTH_MAX, help="Encoder-decoder models (T5, BART): encoder input tokens per sequence, 512 or 4k (sizes the cross-attention cache) [default: 512]."),
        Option(name="images", kind="int", default=0, show_default=True, minimum=0, maximum=MAX_IMAGES, help="Multimodal models: images per sequence (their tokens join the context and the prompt)."),
        Option(name="image_size", kind="int", minimum=1, maximum=MAX_IMAGE_SIDE, help="Pixels per side of each image, for dynamic-resolution towers (Qwen-VL, Pixtral) [default: 1024]."),
        Option(name="gpu", kind="str", help="GPU for the verdict (see `vramplan gpus`)."),
        Option(name="gpu_memory_utilization", kind="float", default=0.9, show_default=True, help="vLLM's share of the GPU."),
        Option(name="max_num_seqs", kind="int", minimum=1, help="vLLM max_num_seqs."),
        Option(name="max_num_batched_tokens", kind="tokens", minimum=1, help="vLLM max_num_batched_tokens."),
        Option(name="block_size", kind="int", default=16, show_default=True, minimum=1, help="vLLM KV block size."),
        Option(name="enforce_eager", kind="flag", default=False, help="vLLM without CUDA graphs."),
        Option(name="n_gpu_layers", kind="int", minimum=0, help="llama.cpp layers on the GPU (default all)."),
        Option(name="n_ubatch", kind="int", default=512, show_default=True, minimum=1, help="llama.cpp micro-batch."),
        Option(name="no_flash_attn", kind="flag", default=False, help="llama.cpp without flash attention.", fields=("flash_attention",)),
        Option(name="cuda_context", kind="str", help="Override the CUDA context size (e.g. 600MiB).", fields=("cuda_context_bytes",)),
        Option(name="reserve", kind="str", help="Memory to keep free on the GPU (e.g. 2GiB).", fields=("reserve_bytes",)),
        Option(name="solve_context", kind="flag", default=False, flags=("--max-context",), help="Find the longest context that fits --gpu."),
        Option(name="solve_batch", kind="flag", default=False, flags=("--max-batch",), help="Find the largest batch that fits --gpu."),
        Option(name="fit", kind="flag", default=False, help="llama.cpp: the most --n-gpu-layers that fit --gpu (as llama.cpp's --fit); the rest is in host RAM."),
        Option(name="strict", kind="flag", default=False, help="Context beyond max positions is an error, not a warning."),
        Option(name="list_formats", kind="flag", default=False, help="List the weight formats and exit."),
    )


def plan_options() -> tuple[Option, ...]:
    """``plan``: what to plan, the search bounds and the export."""
    from vramplan.plans import DEFAULT_PLAN_SEQ, RECOMPUTE_CHOICES
    from vramplan.plans import EXPORTS as EXPORT_ENGINES
    from vramplan.training import ATTENTIONS, METHODS

    return (
        Option(name="training", kind="switch", default=True, flags=("--train",), off_flag="--infer", help="Plan training (default) or serving."),
        Option(name="gpu", kind="str", required=True, help="GPU kind (see `vramplan gpus`)."),
        Option(name="max_gpus", kind="int", minimum=1, help="Try GPU counts up to N (powers of two, then whole nodes) and report the fewest that fit."),
        Option(name="headroom", kind="float", default=0.05, show_default=True, minimum=0, maximum=1, max_open=True, help="Share of each GPU's memory to keep free."),
        Option(name="seq", kind="tokens", default=DEFAULT_PLAN_SEQ, show_default=True, flags=("--seq", "--seq-len", "--context"), minimum=1, help="Tokens per sequence (training) or context held in the KV cache (serving).", fields=("context",)),
        Option(name="batch", kind="int", minimum=1, help="Training: micro-batch size per GPU (default: try 1, 2, 4, 8). Serving: concurrent sequences.", fields=("micro_batch",)),
        Option(name="global_batch", kind="int", minimum=1, help="Sequences per optimizer step (default: 4M tokens' worth, at least one per GPU)."),
        Option(name="recompute", kind="str", choices=RECOMPUTE_CHOICES, help="Activation recomputation (default: try each)."),
        Option(name="attention", kind="str", default="sdpa", show_default=True, choices=ATTENTIONS, help="Attention kernel (eager keeps the s x s scores)."),
        Option(name="precision", kind="str", default="bf16-mixed", show_default=True, help="fp32, bf16-mixed, fp16-mixed, bf16, fp16 (as `vramplan train`); each engine applies its own mixed-precision recipe, printed with the plan."),
        Option(name="optimizer", kind="str", default="adamw", show_default=True, help="As `vramplan train` (adamw, adamw-8bit, sgd...)."),
        Option(name="method", kind="str", default="full", show_default=True, choices=METHODS, help="Full training, LoRA on a 16-bit base, or QLoRA on an NF4 base."),
        Option(name="lora_rank", kind="int", default=16, show_default=True, minimum=1, help="LoRA rank r."),
        Option(name="weights", kind="str", default="bf16", show_default=True, help="Serving: weight format (bf16, fp8, awq-int4...)."),
        Option(name="kv_dtype", kind="str", default="fp16", show_default=True, help="Serving: KV-cache dtype."),
        Option(name="engine", kind="str", default="hf", show_default=True, choices=("hf", "vllm", "llamacpp"), help="Serving: the engine whose memory model sizes each layout (transformers, vLLM, llama.cpp; GGUF weights need llamacpp)."),
        Option(name="mfu", kind="float", minimum=0, maximum=1, min_open=True, help="Model FLOPs utilisation of large matrix multiplies (default 0.44); each layout's is scaled down for small per-GPU multiplies."),
        Option(name="host_ram", kind="str", flags=("--host-memory", "--host-ram"), help="Host RAM per node offload may use (e.g. 1TiB, 512GiB); layouts needing more are dropped. Default: 1 TiB for datacenter GPUs, 128 GiB otherwise.", fields=("host_bytes_per_node",)),
        Option(name="top", kind="int", default=10, show_default=True, minimum=1, help="Layouts to list."),
        Option(name="export_to", kind="str", flags=("--export",), choices=EXPORT_ENGINES, fields=("export",), help="Print the best layout as a config for this engine instead of the table."),
    )


def rl_options() -> tuple[Option, ...]:
    """``rl``: the post-training job (:class:`vramplan.jobs.RLJob`) and its roles."""
    return (
        Option(name="algo", kind="str", default="grpo", show_default=True, help="grpo, ppo, dpo, rloo or online-dpo."),
        Option(name="gpu", kind="str", required=True, help="GPU name (vramplan gpus)."),
        Option(name="gpus", kind="int", default=8, show_default=True, help="GPUs in the job."),
        Option(name="gpus_per_node", kind="int", default=8, show_default=True, help="GPUs per node (host RAM is per node)."),
        Option(name="placement", kind="str", default="colocated", show_default=True, help="colocated (every role on every GPU) or split (engine GPUs + trainer GPUs)."),
        Option(name="rollout_gpus", kind="int", help="Split: GPUs running the engine [default: half]."),
        Option(name="sharding", kind="str", default="fsdp", show_default=True, help="Trainer sharding: fsdp, zero2, zero3, zero3-offload or none."),
        Option(name="method", kind="str", default="full", show_default=True, help="Policy: full, lora or qlora."),
        Option(name="precision", kind="str", default="bf16-mixed", show_default=True, help="Policy precision recipe."),
        Option(name="optimizer", kind="str", default="adamw", show_default=True, help="Policy optimizer."),
        Option(name="micro_batch", kind="int", default=1, show_default=True, help="Policy micro-batch per GPU (sequences).", fields=("batch",)),
        Option(name="recompute", kind="str", default="full", show_default=True, help="none, selective or full (TRL/verl: full)."),
        Option(name="lora_rank", kind="int", default=16, show_default=True, help="LoRA rank r."),
        Option(name="fused_ce", kind="flag", default=False, help="Fused linear cross entropy in the policy's loss."),
        Option(name="offload_params", kind="flag", default=False, help="Policy parameters to CPU while the engine generates."),
        Option(name="offload_optimizer", kind="flag", default=False, help="Policy optimizer states to CPU while the engine generates."),
        Option(name="kl_coef", kind="float", help="KL weight; 0 drops the reference [default: the algo's]."),
        Option(name="reference_model", kind="str", help="Reference model [default: MODEL].", fields=("reference.model",)),
        Option(name="offload_reference", kind="flag", default=False, help="Reference weights in CPU between its forwards."),
        Option(name="reward_models", kind="str", default=(), multiple=True, flags=("--reward-model",), help="Reward model (repeatable) [PPO: MODEL].", fields=("rewards",)),
        Option(name="no_reward_model", kind="flag", default=False, help="Rule-based rewards only (no reward model)."),
        Option(name="offload_reward", kind="flag", default=False, help="Reward weights in CPU between their forwards."),
        Option(name="critic_model", kind="str", help="PPO critic [default: MODEL].", fields=("critic.model",)),
        Option(name="rollout_tp", kind="int", default=1, show_default=True, help="Tensor parallel size of one engine.", fields=("tp", "rollout.tp")),
        Option(name="gpu_memory_utilization", kind="float", default=0.5, show_default=True, help="vLLM's share of each engine GPU."),
        Option(name="max_model_len", kind="tokens", help="vLLM max_model_len [default: prompt + completion]."),
        Option(name="max_num_seqs", kind="int", help="vLLM max_num_seqs [default: vLLM's]."),
        Option(name="max_num_batched_tokens", kind="tokens", help="vLLM max_num_batched_tokens [default: vLLM's; TRL colocate: 4096]."),
        Option(name="sleep_level", kind="int", default=1, show_default=True, help="Colocated: 0 (engine keeps its memory), 1 (weights to CPU), 2 (weights discarded)."),
        Option(name="kv_dtype", kind="str", help="Engine KV cache dtype [default: compute dtype]."),
        Option(name="enforce_eager", kind="flag", default=False, help="Engine without CUDA graphs."),
        Option(name="engine_process", kind="str", default="shared", show_default=True, help="Colocated engine in the trainer's process (shared: TRL, verl) or its own (separate: OpenRLHF)."),
        Option(name="prompts", kind="int", default=64, show_default=True, help="Prompts per rollout step (whole job).", fields=("prompts_per_step",)),
        Option(name="generations", kind="int", default=8, show_default=True, help="Completions per prompt."),
        Option(name="prompt_len", kind="tokens", default=512, show_default=True, help="Longest prompt (tokens).", fields=("prompt_tokens",)),
        Option(name="completion_len", kind="tokens", default=512, show_default=True, help="Longest completion (tokens).", fields=("completion_tokens",)),
        Option(name="score_micro_batch", kind="int", help="Sequences per GPU in reference/reward/log-prob forwards [default: --micro-batch]."),
        Option(name="no_solve", kind="flag", default=False, help="Skip the solvers (utilisation, completion, generations, placement)."),
        Option(name="export", kind="str", help="Print the job as trl, verl or openrlhf configuration."),
    )


SEARCH_MODELS = Option(name="search", kind="str", default="",
                       help="Only models whose name, Hub id or family contains TEXT.")
SEARCH_GPUS = Option(name="search", kind="str", default="",
                     help="Only GPUs whose name, alias, vendor or segment contains TEXT.")

QUESTION_OPTIONS = {"train": train_options, "infer": infer_options, "plan": plan_options}
"""Options of each question that takes a model, beside :data:`ARCH_OPTIONS` and (train,
plan) :func:`layout_options`."""


def options_of(question: str) -> tuple[Option, ...]:
    """Every option ``question`` takes (model architecture, layout and units included)."""
    if question == "params":
        return ARCH_OPTIONS
    if question == "models":
        return (SEARCH_MODELS,)
    if question == "gpus":
        return (SEARCH_GPUS, *COMMON_OPTIONS)
    if question == "rl":
        return rl_options() + COMMON_OPTIONS
    own = QUESTION_OPTIONS[question]()
    layout = layout_options() if question in ("train", "plan") else ()
    return own + ARCH_OPTIONS + layout + COMMON_OPTIONS


def flags_by_field(question: str) -> dict[str, str]:
    """The flag the command line shows for each field an error of ``question`` may name:
    every option's name and its :attr:`Option.fields`, to the option's flag spelled as
    the field when it has one (plan's ``context``: ``--context``), else its first. One
    mapping, made from the declarations above (a test checks no field has two flags)."""
    out: dict[str, str] = {}
    for o in options_of(question):
        for name in (o.name, *o.fields):
            spelled = "--" + name.replace("_", "-")
            out.setdefault(name, spelled if spelled in o.all_flags else o.all_flags[0])
    return out
