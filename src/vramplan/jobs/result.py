"""The answer for one post-training job: :func:`estimate_rl` -> :class:`RLEstimate`.

The result carries every GPU group's phases (per role, per component), the peak of
each group and which phase and role set it, host RAM per node, and the rollout's KV
facts (pool, what the rollout needs, how many sequences run at once). Its
``to_dict()`` is ``vramplan rl --json``; its shape does not depend on the inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

from vramplan.intmath import ceil_div
from vramplan.jobs.phases import Composition, GpuGroup, HostTerm, Roles, compose, resolve_roles
from vramplan.jobs.roles import RLJob


@dataclass(frozen=True, kw_only=True)
class RolloutFacts:
    """What the rollout engine holds and how much of the rollout runs at once."""

    gpu_memory_utilization: float
    tp: int
    sleep_level: int
    instances: int
    sequences_per_instance: int
    kv_pool_bytes: int
    kv_needed_bytes: int
    """KV cache for all of one instance's sequences at once."""
    concurrent_sequences: int
    """Sequences one instance runs at once: min(KV pool / one sequence, max_num_seqs)."""
    waves: int
    """Rounds the instance needs to finish its sequences (1: all at once)."""
    starts: bool

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True, kw_only=True)
class RLEstimate:
    """Per-GPU memory of a post-training job over its phases."""

    model: str
    algo: str
    placement: str
    gpu: str
    gpus: int
    roles: tuple[str, ...]
    groups: tuple[GpuGroup, ...]
    host: tuple[HostTerm, ...]
    rollout: RolloutFacts | None
    assumptions: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def fits(self) -> bool:
        return all(g.fits for g in self.groups) and (self.rollout is None or self.rollout.starts)

    @property
    def peak_group(self) -> GpuGroup:
        return min(self.groups, key=lambda g: g.headroom_bytes)

    @property
    def host_bytes_per_node(self) -> int:
        return sum(h.bytes_per_node for h in self.host)

    def group(self, name: str) -> GpuGroup:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)

    def to_dict(self) -> dict:
        peak = self.peak_group
        return {"model": self.model, "algo": self.algo, "placement": self.placement, "gpu": self.gpu,
                "gpus": self.gpus, "roles": list(self.roles), "fits": self.fits,
                "peak_bytes": peak.peak_bytes, "required_bytes": peak.required_bytes, "peak_group": peak.name, "peak_phase": peak.peak.name,
                "peak_role": peak.peak.active_role,
                "groups": [g.to_dict() for g in self.groups],
                "host_bytes_per_node": self.host_bytes_per_node, "host": [h.to_dict() for h in self.host],
                "rollout": self.rollout.to_dict() if self.rollout else None,
                "assumptions": list(self.assumptions), "warnings": list(self.warnings)}


def estimate_rl(job: RLJob) -> RLEstimate:
    """Per-GPU memory of ``job`` phase by phase (see :mod:`vramplan.jobs.phases`)."""
    from vramplan.gpus import one_gpu

    gpu = one_gpu(job.gpu)
    roles = resolve_roles(job)
    comp = compose(job, roles, gpu.slug, gpu.usable_memory_bytes)
    return RLEstimate(model=roles.policy.training.model, algo=job.algo,
                      placement=job.placement if job.has_rollout else "colocated", gpu=gpu.slug, gpus=job.gpus,
                      roles=_role_names(roles), groups=comp.groups, host=comp.host,
                      rollout=_rollout_facts(job, roles), assumptions=_assumptions(job),
                      warnings=_warnings(job, roles, comp))


def _role_names(roles: Roles) -> tuple[str, ...]:
    names = ["policy"] + (["critic"] if roles.critic else []) + [f.role for f in roles.frozen]
    return tuple(names + (["rollout"] if roles.engine else []))


def _rollout_facts(job: RLJob, roles: Roles) -> RolloutFacts | None:
    e = roles.engine
    if e is None:
        return None
    by_kv = e.kv_pool_bytes // e.kv_per_sequence_bytes if e.kv_per_sequence_bytes else 0
    concurrent = min(by_kv, e.max_num_seqs)
    waves = ceil_div(e.sequences_per_instance, concurrent) if concurrent else 0
    return RolloutFacts(gpu_memory_utilization=job.rollout.gpu_memory_utilization, tp=job.rollout.tp,
                        sleep_level=job.rollout.sleep_level if job.placement == "colocated" else 0,
                        instances=job.engine_gpus // job.rollout.tp, sequences_per_instance=e.sequences_per_instance,
                        kv_pool_bytes=e.kv_pool_bytes, kv_needed_bytes=e.kv_needed_bytes,
                        concurrent_sequences=concurrent, waves=waves, starts=e.starts)


def _assumptions(job: RLJob) -> tuple[str, ...]:
    out = [f"{job.algo}: {job.spec.source}",
           f"trainer roles sharded with {job.sharding} over {job.trainer_gpus} GPU(s); "
           f"sequence = {job.prompt_tokens} prompt + {job.completion_tokens} completion tokens",
           "one trainer process per GPU (one CUDA context); " + (
               "the colocated engine runs inside it (TRL vllm_mode='colocate', verl's hybrid worker)"
               if job.engine_process == "shared" else
               "the engine runs in its own process with its own CUDA context (OpenRLHF's vLLM actors)"),
           "every sequence at its longest (prompt + completion): packing or shorter real completions use less",
           "the policy's loss as vramplan.training counts a cross-entropy over the vocabulary (fp32 log-softmax "
           "and its backward); critic and reward models carry a one-output head instead of the LM head"]
    if job.has_rollout:
        out.append("the engine pre-allocates its whole KV pool: gpu_memory_utilization x GPU memory - weights - "
                   "profiling peak - non-torch memory (vLLM gpu_worker.determine_available_memory)")
        if job.placement == "colocated":
            out.append(f"engine sleep level {job.rollout.sleep_level} while the trainer runs"
                       + (" (no sleep: the engine keeps all its memory)" if job.rollout.sleep_level == 0 else ""))
    if not job.has_reference:
        why = "KL weight 0" if job.effective_kl_coef == 0 else "LoRA policy: the base with adapters disabled"
        out.append(f"no reference model ({why}, as TRL does)")
    return tuple(out)


def _warnings(job: RLJob, roles: Roles, comp: Composition) -> tuple[str, ...]:
    out = list(roles.policy.training.warnings)
    if roles.engine is not None:
        out += [w for w in roles.engine.estimate.warnings if w not in out]
        facts = _rollout_facts(job, roles)
        if facts and facts.starts and facts.waves > 1:
            out.append(f"the KV pool holds {facts.concurrent_sequences} of the {facts.sequences_per_instance} "
                       f"sequences per engine instance at once: {facts.waves} waves (slower, not out of memory)")
    return tuple(out)
