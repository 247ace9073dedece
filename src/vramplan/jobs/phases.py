"""Per-GPU memory of a post-training job, phase by phase, and the peak over phases.

One step of an online job runs these phases on every GPU that holds the roles:

- ``rollout``: the engine awake (weights + the whole KV pool + its buffers) beside
  what the trainer keeps resident (less what it offloads while generating);
- ``weight_sync``: the policy's weights gathered into the engine (colocated: the
  engine's weights woken, KV not yet; split: a transfer buffer on both sides);
- ``scoring/<role>``: each forward-only pass at the scoring micro-batch (reference
  and reward models, the policy's old log-probabilities, the critic's values), with
  the engine asleep;
- ``training/<role>``: each trained role's step (the single-job estimate) beside the
  other roles' resident states and the sleeping engine.

Colocated, all phases share every GPU. Split, the engine GPUs hold rollout and sync,
the trainer GPUs the rest. The peak of a GPU group is the largest phase; the role
that sets it is the one computing in that phase. Offline algorithms (DPO) have no
engine: scoring (reference) and training only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from vramplan.estimate import Component, Estimate, Verdict
from vramplan.jobs.footprints import (COMPUTE_BYTES, EngineFootprint, FrozenFootprint, TrainerFootprint,
                                      engine_footprint, forward_transient_bytes, frozen_footprint, layer_params,
                                      rollout_batch_bytes, score_micro_batch, trainer_footprint, value_model_spec,
                                      weight_sync_bytes)
from vramplan.jobs.roles import RLJob
from vramplan.jobs.validate import role_specs


@dataclass(frozen=True, kw_only=True)
class RoleTerm:
    """One role's component in a phase, per GPU."""

    role: str
    component: Component

    def to_dict(self) -> dict:
        return {"role": self.role, **self.component.to_dict()}


@dataclass(frozen=True, kw_only=True)
class Phase:
    """The live components of one phase on one GPU."""

    name: str
    active_role: str
    """The role computing in this phase."""
    terms: tuple[RoleTerm, ...]

    @property
    def total_bytes(self) -> int:
        return sum(t.component.bytes for t in self.terms)

    def by_role(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.terms:
            out[t.role] = out.get(t.role, 0) + t.component.bytes
        return out

    def to_dict(self) -> dict:
        return {"phase": self.name, "active_role": self.active_role, "total_bytes": self.total_bytes,
                "by_role": self.by_role(), "terms": [t.to_dict() for t in self.terms]}


ENGINE_ROLE = "rollout"
"""The rollout engine's role name: vLLM allocates its weights, KV pool and graphs as
pools, so the caching allocator's slack does not apply to them."""


def phase_verdict(phase: Phase, gpu_slug: str, capacity_bytes: int) -> Verdict:
    """The fit of one phase under the one fit rule (:func:`vramplan.memory.overhead.fit_verdict`):
    its terms (the trainer process's overheads among them) plus the allocator slack over
    the tensors the trainer allocates one by one (every role's but the engine's pools)."""
    from vramplan.memory.overhead import fit_verdict

    comps = tuple(Component(name=_unique_name(t), bytes=t.component.bytes, note=t.component.note)
                  for t in phase.terms)
    pooled = sum(t.component.bytes for t in phase.terms
                 if t.role == ENGINE_ROLE and t.component.category != "overhead")
    est = Estimate(model="", kind="training", components=comps, phase=phase.name)
    verdict = fit_verdict(est, gpu_slug, capacity_bytes, pooled_bytes=pooled).verdict
    assert verdict is not None
    return verdict


def _unique_name(t: RoleTerm) -> str:
    """``category/role[/rest]``: the term's category first (the fit rule reads the
    ``overhead`` category), then its role, so two roles' ``weights`` stay apart."""
    category, _, rest = t.component.name.partition("/")
    return f"{category}/{t.role}" + (f"/{rest}" if rest else "")


@dataclass(frozen=True, kw_only=True)
class GpuGroup:
    """GPUs that hold the same roles (all GPUs colocated; engine or trainer GPUs split)."""

    name: str
    num_gpus: int
    phases: tuple[Phase, ...]
    gpu: str
    """GPU slug."""
    capacity_bytes: int
    """Usable memory of one GPU."""

    @cached_property
    def verdicts(self) -> tuple[Verdict, ...]:
        """Each phase's fit, in :attr:`phases` order."""
        return tuple(phase_verdict(p, self.gpu, self.capacity_bytes) for p in self.phases)

    @cached_property
    def _peak_index(self) -> int:
        return max(range(len(self.phases)), key=lambda i: self.verdicts[i].required_bytes)

    @property
    def peak(self) -> Phase:
        """The phase that needs the most of the GPU (peak + overheads)."""
        return self.phases[self._peak_index]

    @property
    def verdict(self) -> Verdict:
        """The peak phase's fit: the group's."""
        return self.verdicts[self._peak_index]

    @property
    def peak_bytes(self) -> int:
        return self.peak.total_bytes

    @property
    def required_bytes(self) -> int:
        return self.verdict.required_bytes

    @property
    def headroom_bytes(self) -> int:
        return self.verdict.headroom_bytes

    @property
    def fits(self) -> bool:
        return self.verdict.fits

    def phase(self, name: str) -> Phase:
        for p in self.phases:
            if p.name == name:
                return p
        raise KeyError(name)

    def to_dict(self) -> dict:
        peak = self.peak
        return {"group": self.name, "num_gpus": self.num_gpus, "capacity_bytes": self.capacity_bytes,
                "peak_bytes": peak.total_bytes, "required_bytes": self.required_bytes, "peak_phase": peak.name,
                "peak_role": peak.active_role, "headroom_bytes": self.headroom_bytes, "fits": self.fits,
                "verdict": self.verdict.to_dict(),
                "phases": [{**p.to_dict(), "required_bytes": v.required_bytes}
                           for p, v in zip(self.phases, self.verdicts)]}


@dataclass(frozen=True, kw_only=True)
class HostTerm:
    """Host RAM one node holds for a role."""

    role: str
    name: str
    bytes_per_node: int
    note: str

    def to_dict(self) -> dict:
        return {"role": self.role, "name": self.name, "bytes_per_node": self.bytes_per_node, "note": self.note}


@dataclass(frozen=True, kw_only=True)
class Roles:
    """Every role's footprint, resolved once."""

    policy: TrainerFootprint
    critic: TrainerFootprint | None
    frozen: tuple[FrozenFootprint, ...]
    engine: EngineFootprint | None
    sync_bytes: int
    """Trainer side of the weight sync (what the policy gathers to send)."""
    engine_sync_bytes: int
    """Engine side: one layer received at a time."""
    rollout_batch_bytes: int
    """The rollout's tensors a trainer GPU keeps until the update."""
    policy_forward_bytes: int
    critic_forward_bytes: int


@dataclass(frozen=True, kw_only=True)
class Composition:
    groups: tuple[GpuGroup, ...]
    host: tuple[HostTerm, ...] = field(default_factory=tuple)


def _terms(role: str, comps) -> list[RoleTerm]:
    return [RoleTerm(role=role, component=c) for c in comps if c.bytes > 0]


def _overhead(roles: Roles) -> list[RoleTerm]:
    return [RoleTerm(role="process", component=Component(
        name="overhead", bytes=roles.policy.overhead_bytes,
        note="CUDA context, cuBLAS workspace, NCCL buffers of the trainer process (one per GPU)"))]


def _frozen_resident(roles: Roles, *, except_role: str | None = None) -> list[RoleTerm]:
    out = []
    for f in roles.frozen:
        if f.offload or f.role == except_role:
            continue
        out += _terms(f.role, [Component(name="weights", bytes=f.weights_bytes,
                                         note=f"{f.role} weights (frozen)")])
    return out


def _trainer_resident(t: TrainerFootprint | None, *, params_off: bool, optimizer_off: bool) -> list[RoleTerm]:
    if t is None:
        return []
    return _terms(t.role, t.resident(params_off=params_off, optimizer_off=optimizer_off))


def _rollout_batch(roles: Roles) -> list[RoleTerm]:
    return _terms("policy", [Component(name="buffers/rollout_batch", bytes=roles.rollout_batch_bytes,
                                       note="this GPU's rollout: token ids, masks, old and reference log-probs")])


def _asleep(roles: Roles) -> list[RoleTerm]:
    return _terms(ENGINE_ROLE, roles.engine.asleep) if roles.engine is not None else []


def trainer_phases(roles: Roles, *, with_engine: bool) -> list[Phase]:
    """Scoring and training phases on a GPU that holds the trainer roles (and, when
    ``with_engine``, the sleeping engine)."""
    engine = _asleep(roles) if with_engine else []
    pol, cri = roles.policy, roles.critic
    phases = []

    def base(*, skip: str | None = None, optimizer_off: bool) -> list[RoleTerm]:
        out = engine + _overhead(roles) + _frozen_resident(roles, except_role=skip) + _rollout_batch(roles)
        if skip != pol.role:
            out += _trainer_resident(pol, params_off=False, optimizer_off=optimizer_off and pol.offload_optimizer)
        if cri is not None and skip != cri.role:
            out += _trainer_resident(cri, params_off=False, optimizer_off=optimizer_off and cri.offload_optimizer)
        return out

    for f in roles.frozen:
        own = [Component(name="weights", bytes=f.weights_bytes, note=f"{f.role} weights"
                         + (" (loaded from CPU for its forward)" if f.offload else ""))]
        if f.gathered_bytes:
            own.append(Component(name="buffers/gathered_params", bytes=f.gathered_bytes,
                                 note="one decoder layer gathered for compute (FSDP/ZeRO-3 unit)"))
        own.append(Component(name="activations/forward", bytes=f.forward_bytes,
                             note="no-grad forward at the scoring micro-batch (vramplan.memory.inference_buffers)"))
        phases.append(Phase(name=f"scoring/{f.role}", active_role=f.role,
                            terms=tuple(base(skip=f.role, optimizer_off=True) + _terms(f.role, own))))
    forwards = [(pol, roles.policy_forward_bytes, "old log-probabilities")]
    if cri is not None:
        forwards.append((cri, roles.critic_forward_bytes, "values"))
    for t, transient, what in forwards:
        phases.append(Phase(name=f"scoring/{t.role}", active_role=t.role, terms=tuple(
            base(optimizer_off=True) + _terms(t.role, [Component(
                name="activations/forward", bytes=transient,
                note=f"{what}: no-grad forward at the scoring micro-batch")]))))
    for t in [pol] + ([cri] if cri is not None else []):
        phases.append(Phase(name=f"training/{t.role}", active_role=t.role,
                            terms=tuple(_train_terms(roles, t, engine))))
    return phases


def _train_terms(roles: Roles, t: TrainerFootprint, engine: list[RoleTerm]) -> list[RoleTerm]:
    """A trained role's step: its single-job estimate (overhead included) beside the
    frozen roles and the other trained role's resident states."""
    out = engine + _frozen_resident(roles) + _terms(t.role, t.training.components) + _rollout_batch(roles)
    other = roles.critic if t is roles.policy else roles.policy
    if other is not None and other is not t:
        out += _trainer_resident(other, params_off=False, optimizer_off=other.offload_optimizer)
    return out


def rollout_phase(roles: Roles, *, colocated: bool) -> Phase:
    """The engine generating; colocated, beside the trainer's resident states less what
    it offloads while generating."""
    assert roles.engine is not None
    out = _terms(ENGINE_ROLE, roles.engine.awake)
    if colocated:
        out += _overhead(roles) + _frozen_resident(roles)
        for t in (roles.policy, roles.critic):
            out += _trainer_resident(t, params_off=bool(t and t.offload_params),
                                     optimizer_off=bool(t and t.offload_optimizer))
    return Phase(name="rollout", active_role=ENGINE_ROLE, terms=tuple(out))


def sync_phase(roles: Roles, *, side: str) -> Phase:
    """The policy's weights going into the engine. ``side``: ``colocated`` (one GPU holds
    both, the engine's weights woken before its KV cache), ``engine`` or ``trainer``."""
    assert roles.engine is not None
    buffer = [RoleTerm(role="policy", component=Component(
        name="buffers/weight_sync", bytes=roles.engine_sync_bytes if side == "engine" else roles.sync_bytes,
        note="parameters gathered in bf16 for the transfer (one layer; the whole model for LoRA under ZeRO-3)"))]
    if side == "engine":
        return Phase(name="weight_sync", active_role="policy", terms=tuple(_terms(ENGINE_ROLE, roles.engine.awake)
                                                                           + buffer))
    pol, cri = roles.policy, roles.critic
    out = _overhead(roles) + _frozen_resident(roles) + buffer
    out += _trainer_resident(pol, params_off=False, optimizer_off=pol.offload_optimizer)
    if cri is not None:
        out += _trainer_resident(cri, params_off=cri.offload_params, optimizer_off=cri.offload_optimizer)
    if side == "colocated":
        asleep = list(roles.engine.asleep)
        woken = asleep if roles.engine.sleep_level == 0 else asleep + [
            Component(name="weights", bytes=roles.engine.weights_bytes, note="engine weights woken for the sync "
                      "(wake_up(tags=['weights']))")]
        out = _terms(ENGINE_ROLE, woken) + out
    return Phase(name="weight_sync", active_role="policy", terms=tuple(out))


def resolve_roles(job: RLJob) -> Roles:
    """Every role's footprint for ``job`` (validated models)."""
    specs = role_specs(job)
    policy = trainer_footprint(job, "policy", job.policy, specs["policy"])
    critic = trainer_footprint(job, "critic", job.critic_role, specs["critic"], value_head=True) \
        if job.critic_role else None
    frozen = []
    if job.reference_role is not None:
        frozen.append(frozen_footprint(job, "reference", job.reference_role, specs["reference"], logits=True))
    for i, r in enumerate(job.reward_roles):
        name = "reward" if len(job.reward_roles) == 1 else f"reward{i + 1}"
        frozen.append(frozen_footprint(job, name, r, value_model_spec(specs[name]), logits=False))
    engine = None
    if job.has_rollout:
        engine = engine_footprint(job, specs["rollout"],
                                  shared_process=job.placement == "colocated" and job.engine_process == "shared")
    b, s = score_micro_batch(job), job.sequence_tokens
    return Roles(policy=policy, critic=critic, frozen=tuple(frozen), engine=engine,
                 sync_bytes=weight_sync_bytes(job, specs["policy"]) if job.has_rollout else 0,
                 engine_sync_bytes=layer_params(specs["policy"]) * COMPUTE_BYTES if job.has_rollout else 0,
                 rollout_batch_bytes=rollout_batch_bytes(job),
                 policy_forward_bytes=forward_transient_bytes(specs["policy"], sequences=b, tokens=s, logits=True),
                 critic_forward_bytes=forward_transient_bytes(value_model_spec(specs["critic"]), sequences=b, tokens=s,
                                                              logits=False)
                 if critic else 0)


def compose(job: RLJob, roles: Roles, gpu_slug: str, capacity_bytes: int) -> Composition:
    """The GPU groups of ``job`` with their phases (each judged by
    :func:`phase_verdict` on one GPU of ``capacity_bytes``), and host RAM per node."""
    colocated = job.placement == "colocated" or not job.has_rollout
    if colocated:
        phases = []
        if roles.engine is not None:
            phases += [rollout_phase(roles, colocated=True), sync_phase(roles, side="colocated")]
        phases += trainer_phases(roles, with_engine=roles.engine is not None)
        groups = (GpuGroup(name="all", num_gpus=job.gpus, phases=tuple(phases), gpu=gpu_slug,
                           capacity_bytes=capacity_bytes),)
    else:
        engine = GpuGroup(name="engine", num_gpus=job.engine_gpus, gpu=gpu_slug, capacity_bytes=capacity_bytes,
                          phases=(rollout_phase(roles, colocated=False), sync_phase(roles, side="engine")))
        trainer = GpuGroup(name="trainer", num_gpus=job.trainer_gpus, gpu=gpu_slug, capacity_bytes=capacity_bytes,
                           phases=tuple([sync_phase(roles, side="trainer")]
                                        + trainer_phases(roles, with_engine=False)))
        groups = (engine, trainer)
    return Composition(groups=groups, host=host_terms(job, roles, colocated=colocated))


def host_terms(job: RLJob, roles: Roles, *, colocated: bool) -> tuple[HostTerm, ...]:
    """Host RAM per node for everything offloaded: trainer states moved out while the
    engine generates, frozen roles' weights between their forwards, and the engine's
    weight backup under sleep level 1 (vLLM docs: "the model weights are backed up in
    CPU memory")."""
    node = job.gpus_per_node
    trainer_in_node = min(node, job.trainer_gpus)
    out = []
    for t in (roles.policy, roles.critic):
        if t is not None and t.training.host_bytes:
            out.append(HostTerm(role=t.role, name="optimizer/offloaded", bytes_per_node=t.training.host_bytes,
                                note="ZeRO-Offload: fp32 master weights, optimizer states and gradients in host "
                                     "RAM through the step (vramplan.distributed)"))
    for t in (roles.policy, roles.critic):
        if t is None or not (t.offload_params or t.offload_optimizer):
            continue
        moved = t.offloaded_bytes(params_off=t.offload_params, optimizer_off=t.offload_optimizer)
        what = " and ".join(w for w, on in (("parameters", t.offload_params),
                                            ("optimizer states", t.offload_optimizer)) if on)
        out.append(HostTerm(role=t.role, name="offloaded", bytes_per_node=moved * trainer_in_node,
                            note=f"{what} of {trainer_in_node} GPUs while the role is idle"))
    for f in roles.frozen:
        if f.offload:
            out.append(HostTerm(role=f.role, name="weights", bytes_per_node=f.weights_bytes * trainer_in_node,
                                note=f"weights of {trainer_in_node} GPUs between its forwards"))
    if roles.engine is not None and colocated and job.rollout.sleep_level == 1:
        engine_in_node = min(node, job.engine_gpus)
        out.append(HostTerm(role="rollout", name="weights", bytes_per_node=roles.engine.weights_bytes * engine_in_node,
                            note=f"vLLM sleep level 1: weight backup of {engine_in_node} GPUs in CPU memory"))
    return tuple(out)
