"""Parameter counts by component, the total, and the parameters active per token.

Built from :func:`vramplan.model.tensors.model_tensors`, so the count is exactly the
tensors the model holds. Tied embeddings count once (as ``nn.Module.parameters()``
does). Checked against ``transformers`` building the same config on the meta device
(tests/test_params_vs_transformers.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from vramplan.model.spec import ModelSpec
from vramplan.model.tensors import COMPONENTS, model_tensors


@dataclass(frozen=True, kw_only=True)
class ParamCount:
    """Parameters of a model, split by component."""

    components: tuple[tuple[str, int], ...]
    """(component, parameters) in display order; components with none are left out."""
    active_params: int | None
    """Parameters one token passes through: all but the routed experts it is not sent to;
    ``None`` when the config leaves the experts per token unset."""

    @property
    def total_params(self) -> int:
        return sum(n for _, n in self.components)

    def get(self, component: str) -> int:
        return dict(self.components).get(component, 0)

    def to_dict(self) -> dict:
        return {
            "total_params": self.total_params,
            "active_params": self.active_params,
            "components": [{"name": name, "params": n} for name, n in self.components],
        }


ROUTED_EXPERT_PREFIXES = ("mlp.experts.", "self_attn.experts.q_proj", "self_attn.experts.o_proj")
"""Tensors of routed experts: MoE MLP experts and JetMoE's attention experts (a token
runs ``experts_per_token`` of each)."""


def count_params(spec: ModelSpec) -> ParamCount:
    """Count the parameters of ``spec`` by component.

    Active parameters (for MoE) follow the convention of the Mixtral and DeepSeek
    papers: every non-expert parameter plus ``experts_per_token / num_experts`` of the
    routed-expert parameters (the embedding counts once, the head once).
    """
    by_component = dict.fromkeys(COMPONENTS, 0)
    expert_params = 0
    for group in model_tensors(spec):
        by_component[group.component] += group.params
        if group.name.startswith(ROUTED_EXPERT_PREFIXES):
            expert_params += group.params
    total = sum(by_component.values())
    active: int | None = total
    if spec.moe is not None and expert_params:
        top_k = spec.moe.experts_per_token
        active = total - expert_params + expert_params * top_k // spec.moe.num_experts if top_k else None
    components = tuple((name, n) for name, n in by_component.items() if n)
    return ParamCount(components=components, active_params=active)
