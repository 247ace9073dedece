"""Megatron-LM ``pretrain_gpt.py`` arguments for a planned layout (flag names from
``megatron/training/arguments.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vramplan.model import ModelSpec
    from vramplan.planner import Candidate


def arguments(candidate: Candidate, spec: ModelSpec, *, seq: int, precision: str = "bf16-mixed") -> list[str]:
    """The argument list for ``candidate`` (``--bf16``/``--fp16`` as the precision computes)."""
    from vramplan.export.checks import require_runnable
    from vramplan.export.deepspeed import compute_dtype

    require_runnable("megatron", candidate)
    lay = candidate.layout
    args = [
        "--tensor-model-parallel-size", str(lay.tp),
        "--pipeline-model-parallel-size", str(lay.pp),
        "--context-parallel-size", str(lay.cp),
        "--micro-batch-size", str(candidate.micro_batch_size),
        "--global-batch-size", str(candidate.micro_batch_size * lay.micro_batches * lay.dp),
        "--seq-length", str(seq),
        "--num-layers", str(spec.num_layers),
        "--hidden-size", str(spec.hidden_size),
        "--num-attention-heads", str(spec.num_attention_heads),
        "--ffn-hidden-size", str(spec.intermediate_size),
    ]
    dtype = compute_dtype(precision)
    if dtype in ("bf16", "fp16"):
        args.append(f"--{dtype}")
    if spec.num_kv_heads != spec.num_attention_heads:
        args += ["--group-query-attention", "--num-query-groups", str(spec.num_kv_heads)]
    if spec.moe is not None:
        args += ["--num-experts", str(spec.moe.num_experts), "--moe-router-topk", str(spec.moe.experts_per_token),
                 "--expert-model-parallel-size", str(lay.ep)]
    if lay.sequence_parallel:
        args.append("--sequence-parallel")
    if lay.virtual_stages > 1:
        args += ["--num-layers-per-virtual-pipeline-stage", str(spec.num_layers // (lay.pp * lay.virtual_stages))]
    if lay.zero_stage == 1:
        args.append("--use-distributed-optimizer")
    if candidate.recompute == "selective":
        args += ["--recompute-granularity", "selective"]
    elif candidate.recompute == "full":
        args += ["--recompute-granularity", "full", "--recompute-method", "uniform", "--recompute-num-layers", "1"]
    return args


def render(candidate: Candidate, spec: ModelSpec, *, seq: int, precision: str = "bf16-mixed",
           rank: int = 1) -> str:
    """One line per flag, shell-continued, after a comment naming the layout and its rank in the plan."""
    args = arguments(candidate, spec, seq=seq, precision=precision)
    pairs: list[str] = []
    for a in args:
        if a.startswith("--") or not pairs:
            pairs.append(a)
        else:
            pairs[-1] += f" {a}"
    head = f"# vramplan: {candidate.layout.describe()} (layout {rank} of the plan)\n"
    return head + "torchrun pretrain_gpt.py \\\n  " + " \\\n  ".join(pairs) + "\n"
