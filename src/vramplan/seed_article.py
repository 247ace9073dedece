"""The seed article's training rule of thumb, runnable, beside the same rule computed exactly.

The article ("如何估算大模型需要的显存", sec. 4, 训练显存) sizes LLaMA-7B int8 training as::

    weights      7B x 1 byte                                  =  7 GB
    gradients    the same                                     =  7 GB
    AdamW        2 x the weights                              = 14 GB
    activations  (4096 + 11008) x 2048 x 32 x 1 byte          = 990 MB per sample
    total        7GB + 7GB + 14GB + 990M x 50 / 1024          ~= 77 GB  (batch 50 on an A100 80GB)

Every term takes one bytes-per-value, the precision's (sec. 3: int8 1, fp16 2, fp32 4,
fp64 8). Its units are its own: "7B" is the parameter count rounded to whole billions
(LLaMA-7B has 6,738,415,616), "990MB" is 989,855,744 bytes in decimal megabytes, and
"990M x 50 / 1024" turns those MB into a "GB" of 1024 decimal MB. Its terms add up to
76.34 of those GB, which it writes as "~= 77GB".

:func:`seed_arithmetic` carries both columns: the article's figures in its units, and
the same rule with the exact parameter count and bytes (rendered in GiB or GB). The
estimate itself (:func:`seed_estimate`) is the exact column. The rule counts one
hidden-wide and one MLP-wide value per layer and token where autograd keeps about ten
(:mod:`vramplan.memory.activations`), and no logits, step temporaries or peak over the
step: the default activation model is the one to plan with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from vramplan.errors import InputError, Remark
from vramplan.estimate import Component, Estimate

if TYPE_CHECKING:
    from vramplan.model.custom import ParamOnlyModel
    from vramplan.model.spec import ModelSpec
    from vramplan.training import TrainingSetup

PRECISION_BYTES: dict[str, int] = {"int8": 1, "fp16": 2, "bf16": 2, "fp32": 4, "fp64": 8,
                                   "fp16-mixed": 2, "bf16-mixed": 2}
"""Bytes per value the rule gives every term, by ``--precision`` (the article's sec. 3
table; a ``*-mixed`` recipe counts at its 16-bit compute dtype)."""
RULE_ONLY_PRECISIONS = ("int8", "fp64")
"""Precisions the rule takes that are no training recipe of this tool."""
ARTICLE_MB = 10**6
"""The article's MB: decimal (989,855,744 B is its "990MB")."""
ARTICLE_MB_PER_GB = 1024
"""... and its GB: 1024 of those MB ("990M * 50/1024")."""
ARTICLE_EXAMPLE_INPUTS = (7, 1, 990, 50, 2)
"""The article's LLaMA-7B int8 example as it writes it: 7B parameters, 1 byte per value,
990MB per sample, batch 50, AdamW's 2 states."""
ARTICLE_STATED_TOTAL = "~= 77GB"
"""What the article writes for that example's total."""


def bytes_per_value(precision: str, override: int | None = None) -> int:
    """The rule's bytes per value: ``override`` (``--seed-bytes``) or the precision's."""
    if override is not None:
        return override
    try:
        return PRECISION_BYTES[precision]
    except KeyError:
        raise InputError(f"precision: the seed rule takes one of {', '.join(PRECISION_BYTES)}, "
                         f"got {precision!r}") from None


def activation_bytes_per_sample(spec: ModelSpec, seq: int, value_bytes: int) -> int:
    """The article's rule: ``(hidden + intermediate) x seq x layers x bytes`` per sample
    (LLaMA-7B, int8: (4096 + 11008) x 2048 x 32 x 1 = 989,855,744 B, its "990MB")."""
    return (spec.hidden_size + spec.intermediate_size) * seq * spec.num_layers * value_bytes


def article_billions(params: int) -> int:
    """The count as the article writes it: whole billions (6,738,415,616 -> 7)."""
    return max(1, round(params / 10**9))


@dataclass(frozen=True, kw_only=True)
class SeedTerm:
    """One line of the rule: the article's arithmetic in its units, the exact bytes."""

    name: str
    """``weights``, ``gradients``, ``optimizer`` or ``activations``."""
    article: str
    """The article's arithmetic for this term, in its units (``"7B x 1 B = 7 GB"``)."""
    article_gb: float
    """The term in the article's GB (rounded inputs, its units)."""
    exact_bytes: int
    """The same term with the exact parameter count and bytes."""

    def to_dict(self) -> dict:
        return {"name": self.name, "article": self.article, "article_gb": self.article_gb,
                "exact_bytes": self.exact_bytes}


@dataclass(frozen=True, kw_only=True)
class SeedArithmetic:
    """The article's rule for one job, in two columns with one total each."""

    precision: str
    bytes_per_value: int
    terms: tuple[SeedTerm, ...]
    article_stated: str | None
    """What the article writes for the total when the job is its own example (``"~= 77GB"``)."""

    @property
    def article_total_gb(self) -> float:
        return round(sum(t.article_gb for t in self.terms), 2)

    @property
    def exact_total_bytes(self) -> int:
        return sum(t.exact_bytes for t in self.terms)

    @property
    def article_line(self) -> str:
        """The article's sum as it writes it: ``7GB + 7GB + 14GB + 990M x 50 / 1024 = 76.34GB``."""
        parts = [f"{t.article_gb:g}GB" for t in self.terms if t.name != "activations"]
        acts = next(t for t in self.terms if t.name == "activations")
        return " + ".join(parts + [acts.article.split(" = ")[0]]) + f" = {self.article_total_gb:g}GB"

    def to_dict(self) -> dict:
        return {"precision": self.precision, "bytes_per_value": self.bytes_per_value,
                "terms": [t.to_dict() for t in self.terms], "article_total_gb": self.article_total_gb,
                "exact_total_bytes": self.exact_total_bytes, "article_line": self.article_line,
                "article_stated": self.article_stated}


def seed_arithmetic(spec: ModelSpec, setup: TrainingSetup, params: int) -> SeedArithmetic:
    """Both columns of the rule for ``spec`` trained as ``setup`` (``params`` exact)."""
    b = bytes_per_value(setup.precision, setup.seed_dtype_bytes)
    states = len(setup.opt.states)
    billions = article_billions(params)
    per_sample = activation_bytes_per_sample(spec, setup.seq, b)
    mb = round(per_sample / ARTICLE_MB)
    weights_gb = billions * b
    acts_gb = round(mb * setup.batch / ARTICLE_MB_PER_GB, 2)
    terms = (
        SeedTerm(name="weights", article=f"{billions}B x {b} B = {weights_gb}GB", article_gb=weights_gb,
                 exact_bytes=params * b),
        SeedTerm(name="gradients", article=f"same as the weights = {weights_gb}GB", article_gb=weights_gb,
                 exact_bytes=params * b),
        SeedTerm(name="optimizer", article=f"{states} x {weights_gb}GB = {states * weights_gb}GB "
                                           f"({setup.opt.name})",
                 article_gb=states * weights_gb, exact_bytes=states * params * b),
        SeedTerm(name="activations", article=f"{mb}M x {setup.batch} / 1024 = {acts_gb:g}GB",
                 article_gb=acts_gb, exact_bytes=per_sample * setup.batch),
    )
    own = (billions, b, mb, setup.batch, states) == ARTICLE_EXAMPLE_INPUTS
    return SeedArithmetic(precision=setup.precision, bytes_per_value=b, terms=terms,
                          article_stated=ARTICLE_STATED_TOTAL if own else None)


def seed_estimate(spec: ModelSpec | ParamOnlyModel, setup: TrainingSetup) -> tuple[Estimate, SeedArithmetic]:
    """The rule as an estimate (the exact column: weights, gradients and optimizer
    states at one bytes-per-value each, plus the per-sample activations times the
    micro-batch), and both columns of the arithmetic."""
    from vramplan.model.custom import ParamOnlyModel
    from vramplan.model.params import count_params

    if isinstance(spec, ParamOnlyModel):
        raise InputError(f"model {spec.name!r}: the seed rule needs hidden, intermediate and layer counts; "
                         "give a catalog name or config.json")
    params = count_params(spec).total_params
    arithmetic = seed_arithmetic(spec, setup, params)
    b = arithmetic.bytes_per_value
    per_sample = activation_bytes_per_sample(spec, setup.seq, b)
    states = len(setup.opt.states)
    parts = (
        Component(name="weights", bytes=params * b, note=f"{params:,} params x {b} B (seed article)"),
        Component(name="gradients", bytes=params * b, note="same as the weights (seed article)"),
        Component(name="optimizer/states", bytes=states * params * b,
                  note=f"{states} states x weights ({setup.opt.name}, seed article)"),
        Component(name="activations/seed_rule", bytes=per_sample * setup.batch,
                  note=f"(hidden + intermediate) x seq x layers x {b} B = {per_sample:,} B/sample x {setup.batch}"),
    )
    estimate = Estimate(model=spec.name, kind="training", components=parts, phase="backward",
                        phases=(("backward", sum(c.bytes for c in parts)),),
                        details={"seed_bytes_per_value": b, "seed_activation_bytes_per_sample": per_sample,
                                 "trainable_params": params},
                        assumptions=(Remark(f"seed article method at precision {setup.precision}: every term at "
                                            f"{b} B per value; no logits, no step temporaries, no peak over the step",
                                            fields=("precision",)),))
    return estimate, arithmetic
