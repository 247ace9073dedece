"""One name and one default per quantity: option choices are the core's tuples, the web
page's lists hold exactly those values, and each default length is one constant."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from vramplan.options import options_of

PAGE = Path(__file__).resolve().parents[1] / "src" / "vramplan" / "web" / "static" / "index.html"


class _Selects(HTMLParser):
    """``{(fieldset data-for or class, select name): [option values]}`` of the page."""

    def __init__(self) -> None:
        super().__init__()
        self.section = ""
        self.select: str | None = None
        self.found: dict[tuple[str, str], list[str]] = {}
        self._option: dict | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "fieldset" and ("data-for" in a or a.get("class") == "common"):
            self.section = a.get("data-for") or "common"
        elif tag == "select":
            self.select = a.get("name")
            self.found[(self.section, self.select)] = []
        elif tag == "option" and self.select:
            self._option = a
            self._text = ""

    def handle_data(self, data: str) -> None:
        if self._option is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "option" and self._option is not None and self.select:
            value = self._option.get("value", self._text.strip())
            self.found[(self.section, self.select)].append(value)
            self._option = None
        elif tag == "select":
            self.select = None


@pytest.fixture(scope="module")
def page_lists() -> dict[tuple[str, str], list[str]]:
    parser = _Selects()
    parser.feed(PAGE.read_text(encoding="utf-8"))
    return parser.found


def _choices(question: str, name: str) -> tuple[str, ...]:
    return next(o.choices for o in options_of(question) if o.name == name)


def test_the_pages_lists_hold_the_cores_values(page_lists):
    from vramplan.inference import ENGINES, INFERENCE_ATTENTIONS
    from vramplan.memory.optimizer import OPTIMIZERS
    from vramplan.memory.precision import PRECISIONS
    from vramplan.parallel import FSDP_MODES, OFFLOADS
    from vramplan.training import ACTIVATION_MODELS, ATTENTIONS, METHODS, RECOMPUTES
    from vramplan.units import BYTE_UNITS

    expect = {
        ("", "units"): BYTE_UNITS,  # the page header
        ("infer", "engine"): ENGINES,
        ("infer", "attention"): INFERENCE_ATTENTIONS,
        ("train", "method"): METHODS,
        ("train", "precision"): PRECISIONS,
        ("train", "optimizer"): OPTIMIZERS,
        ("train", "recompute"): ("", *RECOMPUTES),
        ("train", "attention"): ATTENTIONS,
        ("train", "fsdp"): ("", *(m for m in FSDP_MODES if m != "none")),
        ("train", "offload"): ("", *(m for m in OFFLOADS if m != "none")),
        ("train", "activation-model"): ACTIVATION_MODELS,
        ("plan", "method"): METHODS,
        ("plan", "precision"): PRECISIONS,
        ("plan", "optimizer"): OPTIMIZERS,
    }
    for key, values in expect.items():
        assert key in page_lists, key
        assert sorted(page_lists[key]) == sorted(values), key


def test_click_choices_are_the_cores_tuples():
    from vramplan.inference import ENGINES, INFERENCE_ATTENTIONS, LOGITS
    from vramplan.model.custom import BIAS_CHOICES, MLP_CHOICES, NORM_CHOICES, POSITION_CHOICES
    from vramplan.training import ATTENTIONS, METHODS, RECOMPUTES
    from vramplan.units import BYTE_UNITS

    assert _choices("infer", "engine") == ENGINES
    assert _choices("infer", "attention") == INFERENCE_ATTENTIONS
    assert _choices("infer", "logits") == LOGITS
    assert _choices("plan", "method") == METHODS
    assert _choices("plan", "attention") == ATTENTIONS
    assert _choices("plan", "recompute") == RECOMPUTES
    assert _choices("params", "mlp") == MLP_CHOICES and _choices("params", "norm") == NORM_CHOICES
    assert _choices("params", "bias") == BIAS_CHOICES and _choices("params", "position") == POSITION_CHOICES
    assert _choices("train", "units") == BYTE_UNITS


def test_each_length_default_is_one_constant(page_lists):
    from vramplan.inference import InferenceSetup, estimate_inference
    from vramplan.options import DEFAULT_CONTEXT_TOKENS
    from vramplan.plans import DEFAULT_PLAN_SEQ
    from vramplan.training import DEFAULT_TRAIN_SEQ, TrainingSetup

    defaults = {q: {o.name: o.default for o in options_of(q)} for q in ("train", "plan")}
    assert TrainingSetup().seq == defaults["train"]["seq"] == DEFAULT_TRAIN_SEQ
    assert defaults["plan"]["seq"] == DEFAULT_PLAN_SEQ == DEFAULT_CONTEXT_TOKENS
    assert str(DEFAULT_CONTEXT_TOKENS) in next(o.help for o in options_of("infer") if o.name == "context")
    assert estimate_inference("llama-3.1-8b", InferenceSetup()).details["context_tokens"] == DEFAULT_CONTEXT_TOKENS
    assert estimate_inference("gpt2", InferenceSetup()).details["context_tokens"] == 1024  # capped: max positions
    html = PAGE.read_text(encoding="utf-8")
    train = re.search(r'data-for="train".*?name="seq"[^>]*value="(\d+)"', html, flags=re.S)
    plan = re.search(r'data-for="plan".*?name="seq"[^>]*value="(\d+)"', html, flags=re.S)
    assert int(train.group(1)) == DEFAULT_TRAIN_SEQ and int(plan.group(1)) == DEFAULT_PLAN_SEQ
    # serving: the page sends no context of its own (the core's default, capped at the model's
    # max positions, applies) and its placeholder says that default
    context = re.search(r'data-for="infer".*?(<input name="context"[^>]*>)', html, flags=re.S).group(1)
    assert "value=" not in context and "data-always" not in context
    assert re.search(r'placeholder="(\d+)', context).group(1) == str(DEFAULT_CONTEXT_TOKENS)
    from vramplan import engines

    assert engines.DEFAULT_CONTEXT_TOKENS is DEFAULT_CONTEXT_TOKENS  # one constant, declared in options


def test_one_ceiling_division_and_one_bisection():
    """No module writes its own ``-(-a // b)`` or bisection loop (vramplan.intmath owns
    them); the planner's vectorised context ladder is the one recorded exception."""
    src = Path(__file__).resolve().parents[1] / "src" / "vramplan"
    exempt = {"intmath.py", "parallel.py", "planner.py"}
    ceil, bisect = [], []
    for path in src.rglob("*.py"):
        if path.name in exempt:
            continue
        text = path.read_text()
        ceil += [f"{path.name}:{m.start()}" for m in re.finditer(r"-\(-[^)]*//", text)]
        bisect += [path.name for _ in re.finditer(r"\bmid = \(", text)]
    assert not ceil and not bisect


@pytest.mark.parametrize("n, multiple", [(0, 4), (1, 4), (4, 4), (5, 4), (511, 512), (513, 512)])
def test_round_up_and_ceil_div(n, multiple):
    import math

    from vramplan.intmath import ceil_div, round_up

    assert ceil_div(n, multiple) == math.ceil(n / multiple)
    assert round_up(n, multiple) % multiple == 0 and 0 <= round_up(n, multiple) - n < multiple


def test_largest_true_agrees_with_a_scan():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from vramplan.intmath import largest_true

    @settings(max_examples=200, deadline=None)
    @given(lo=st.integers(-50, 50), span=st.integers(0, 200), boundary=st.integers(-60, 260))
    def check(lo, span, boundary):
        hi = lo + span
        calls = []

        def ok(n):
            calls.append(n)
            return n <= boundary

        expected = max((n for n in range(lo, hi + 1) if ok(n)), default=lo - 1)
        calls.clear()
        assert largest_true(ok, lo, hi) == expected
        assert len(calls) <= 2 + max(1, span).bit_length()

    check()


def test_dtype_sizes_come_from_dtypes():
    from vramplan import dtypes

    assert (dtypes.FP32_BYTES, dtypes.FP16_BYTES, dtypes.BF16_BYTES) == (4, 2, 2)
    src = Path(__file__).resolve().parents[1] / "src" / "vramplan"
    literal = [p.name for p in src.rglob("*.py")
               if p.name not in ("dtypes.py", "parallel.py") and re.search(r"^(FP32|F16|BF16|FP16)_BYTES = \d",
                                                                          p.read_text(), flags=re.M)]
    assert not literal
