"""Checks across roles: one tokenizer, an engine that can hold the policy, GPU counts.

- The reference, the critic and the engine score or generate the policy's own token
  ids, so their vocabulary must be the policy's (verl and OpenRLHF load one tokenizer
  for the actor, reference and critic). Reward models may bring their own tokenizer
  (TRL ``reward_processing_classes`` re-tokenizes the decoded text).
- The engine runs the policy's weights (synced every step), so its architecture is
  the policy's.
- vLLM's tensor parallelism splits the attention heads: ``tp`` must divide them
  (``vllm/model_executor/models/llama.py``: ``assert self.total_num_heads % tp_size == 0``)
  and divide the KV heads or be a multiple of them (replicated KV heads).
- Engine instances tile the engine GPUs: ``engine GPUs % tp == 0``.
"""

from __future__ import annotations

from vramplan.errors import InputError, LayoutError
from vramplan.jobs.roles import RLJob
from vramplan.model.custom import ParamOnlyModel
from vramplan.model.resolve import resolve_model
from vramplan.model.spec import ModelSpec

SHAPE_FIELDS = ("num_layers", "hidden_size", "num_attention_heads", "num_kv_heads", "head_dim",
                "intermediate_size", "vocab_size")


def _resolve(model, default: ModelSpec, field: str) -> ModelSpec:
    if model is None:
        return default
    spec = resolve_model(model)
    if isinstance(spec, ParamOnlyModel):
        raise InputError(f"{field} {spec.name!r}: a bare parameter count has no architecture; give a catalog name "
                         "or config.json", fields=(field,))
    return spec


def role_specs(job: RLJob) -> dict[str, ModelSpec]:
    """The ModelSpec of every role, checked against the policy's."""
    policy = _resolve(job.model, None, "model") if job.model is not None else None
    if policy is None:
        raise InputError("model: expected a model name or config.json, got nothing")
    specs = {"policy": _resolve(job.policy.model, policy, "policy.model")}
    policy = specs["policy"]
    if job.critic_role is not None:
        specs["critic"] = _resolve(job.critic_role.model, policy, "critic.model")
        _same_vocab(specs["critic"], policy, "critic.model")
    if job.reference_role is not None:
        specs["reference"] = _resolve(job.reference_role.model, policy, "reference.model")
        _same_vocab(specs["reference"], policy, "reference.model")
    rewards = job.reward_roles
    for i, r in enumerate(rewards):
        name = "reward" if len(rewards) == 1 else f"reward{i + 1}"
        specs[name] = _resolve(r.model, policy, "rewards")
    if job.has_rollout:
        specs["rollout"] = policy
        check_engine_tp(policy, job.rollout.tp)
        if job.engine_gpus % job.rollout.tp:
            raise LayoutError(f"rollout.tp {job.rollout.tp} does not divide the {job.engine_gpus} engine GPUs",
                              fields=("rollout.tp",))
        if job.placement == "split" and job.trainer_gpus < 1:
            raise InputError(f"rollout_gpus {job.engine_gpus}: leaves no GPU for the trainer out of {job.gpus}",
                             fields=("rollout_gpus",))
    return specs


def _same_vocab(spec: ModelSpec, policy: ModelSpec, field: str) -> None:
    if spec.vocab_size != policy.vocab_size:
        raise InputError(f"{field} {spec.name!r}: vocab_size {spec.vocab_size:,} differs from the policy's "
                         f"{policy.vocab_size:,} ({policy.name}); the roles share one tokenizer", fields=(field,))


def check_engine_tp(spec: ModelSpec, tp: int) -> None:
    """vLLM's head split (see the module docstring)."""
    heads, kv = spec.num_attention_heads, spec.num_kv_heads
    if heads % tp:
        raise LayoutError(f"rollout.tp {tp} does not divide {spec.name}'s num_attention_heads={heads}",
                          fields=("rollout.tp",))
    if kv % tp and tp % kv:
        raise LayoutError(f"rollout.tp {tp} and num_kv_heads={kv}: tp must divide the KV heads or be a "
                          "multiple of them", fields=("rollout.tp",))
