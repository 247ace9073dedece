"""A DeepSpeed config (``ds_config.json``) for a planned layout.

Keys and meanings follow DeepSpeed's config docs (deepspeed.ai/docs/config-json) and
``deepspeed/runtime/zero/config.py``; the bucket sizes written are the defaults the
estimate assumed, so the config runs what was estimated.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vramplan.model import ModelSpec
    from vramplan.planner import Candidate


def compute_dtype(precision: str) -> str:
    """The 16-bit dtype (``bf16``/``fp16``) a training precision computes in, or ``fp32``."""
    from vramplan.memory.precision import get_precision

    return get_precision(precision).compute_dtype


def config(candidate: Candidate, spec: ModelSpec, *, seq: int, precision: str = "bf16-mixed") -> dict:
    """The DeepSpeed config dict for ``candidate`` (a plan candidate); ``bf16`` or
    ``fp16`` enabled as the precision computes (neither for fp32)."""
    from vramplan.export.checks import require_runnable
    from vramplan.parallel import DEEPSPEED_DEFAULTS as z

    require_runnable("deepspeed", candidate)
    lay = candidate.layout
    stage = lay.zero_stage
    zero: dict[str, Any] = {"stage": stage, "contiguous_gradients": True,
                            "reduce_bucket_size": z.reduce_bucket_elements,
                            "allgather_bucket_size": z.allgather_bucket_elements,
                            "overlap_comm": stage == 3}
    if stage == 3:
        zero.update({"stage3_prefetch_bucket_size": z.prefetch_bucket_elements,
                     "stage3_param_persistence_threshold": z.param_persistence_threshold,
                     "stage3_max_live_parameters": z.max_live_parameters,
                     "sub_group_size": z.sub_group_elements})
    if lay.offload in ("optimizer", "params"):
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if lay.offload == "params":
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    cfg: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": candidate.micro_batch_size,
        "gradient_accumulation_steps": lay.micro_batches,
        # DeepSpeed's rule: micro-batch x accumulation steps x data-parallel ranks.
        "train_batch_size": candidate.micro_batch_size * lay.micro_batches * lay.dp,
    }
    dtype = compute_dtype(precision)
    if dtype in ("bf16", "fp16"):
        cfg[dtype] = {"enabled": True}
    cfg.update({"zero_optimization": zero, "gradient_clipping": 1.0})
    if candidate.recompute != "none":
        cfg["activation_checkpointing"] = {"partition_activations": False, "contiguous_memory_optimization": False}
    if lay.pp > 1:
        cfg["pipeline"] = {"stages": lay.pp, "partition": "parameters"}
    return cfg


def render(candidate: Candidate, spec: ModelSpec, *, seq: int, precision: str = "bf16-mixed",
           rank: int = 1) -> str:
    """``ds_config.json`` text; tensor/pipeline degrees (for Megatron-DeepSpeed) and the
    layout's rank in the plan noted in a leading comment-free key ``"_vramplan"``."""
    cfg = config(candidate, spec, seq=seq, precision=precision)
    lay = candidate.layout
    cfg["_vramplan"] = {"layout": lay.describe(), "plan_rank": rank, "seq": seq, "tp": lay.tp, "pp": lay.pp,
                        "num_gpus": lay.num_gpus, "peak_bytes_per_gpu": candidate.peak_bytes}
    return json.dumps(cfg, indent=2)
