"""An accelerate config (``accelerate launch --config_file``) running PyTorch FSDP
for a planned layout. Keys follow accelerate's ``fsdp_config`` (accelerate docs,
"Fully Sharded Data Parallel")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vramplan.model import ModelSpec
    from vramplan.planner import Candidate

_STRATEGY = {"full_shard": "FULL_SHARD", "shard_grad_op": "SHARD_GRAD_OP", "hybrid_shard": "HYBRID_SHARD",
             "no_shard": "NO_SHARD", "fsdp2": "FULL_SHARD"}


def config(candidate: Candidate, spec: ModelSpec, *, seq: int, precision: str = "bf16-mixed") -> dict:
    """The accelerate config dict for an FSDP ``candidate``; ``mixed_precision`` as the
    precision computes (``no`` for fp32)."""
    from vramplan.export.checks import require_runnable
    from vramplan.export.deepspeed import compute_dtype

    require_runnable("fsdp", candidate)
    lay = candidate.layout
    version = 2 if lay.fsdp == "fsdp2" else 1
    fsdp: dict[str, Any] = {
        "fsdp_version": version,
        "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "fsdp_offload_params": lay.offload == "params",
        "fsdp_state_dict_type": "SHARDED_STATE_DICT",
        "fsdp_activation_checkpointing": candidate.recompute == "full",
    }
    if version == 1:
        fsdp.update({"fsdp_sharding_strategy": _STRATEGY[lay.fsdp], "fsdp_backward_prefetch": "BACKWARD_PRE",
                     "fsdp_use_orig_params": True})
    else:
        fsdp["fsdp_reshard_after_forward"] = lay.fsdp != "shard_grad_op"
    dtype = compute_dtype(precision)
    return {"compute_environment": "LOCAL_MACHINE", "distributed_type": "FSDP",
            "mixed_precision": dtype if dtype in ("bf16", "fp16") else "no",
            "num_machines": lay.num_nodes, "num_processes": lay.num_gpus, "machine_rank": 0,
            "main_training_function": "main", "use_cpu": False, "fsdp_config": fsdp}


def _yaml(value: Any, indent: int = 0) -> str:
    pad = "  " * indent
    lines = []
    for key, v in value.items():
        if isinstance(v, dict):
            lines.append(f"{pad}{key}:")
            lines.append(_yaml(v, indent + 1))
        else:
            text = "true" if v is True else "false" if v is False else str(v)
            lines.append(f"{pad}{key}: {text}")
    return "\n".join(lines)


def render(candidate: Candidate, spec: ModelSpec, *, seq: int, precision: str = "bf16-mixed",
           rank: int = 1) -> str:
    """accelerate YAML text, headed by the layout and its rank in the plan."""
    head = (f"# vramplan: {candidate.layout.describe()} (layout {rank} of the plan), micro-batch "
            f"{candidate.micro_batch_size}, {candidate.layout.micro_batches} accumulation steps, seq {seq}\n")
    return head + _yaml(config(candidate, spec, seq=seq, precision=precision)) + "\n"
