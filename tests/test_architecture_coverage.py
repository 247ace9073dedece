"""Coverage against transformers: every causal-LM model type transformers ships is
written as its default config, built on the meta device, and read by vramplan; the
parameter totals must agree to the parameter.

Types are sorted by what transformers builds:

- decoder-only language models (the denominator of the coverage figure);
- the decoder halves of encoder-decoder models and encoder models used as
  decoders (types that are also seq2seq or masked-LM types), and multimodal
  wrappers whose causal-LM class carries a vision or audio tower: vramplan does not
  read these; the reader refuses them in one line that names the type and points at
  ``vramplan trace``.

Every decoder-only type that is not read exactly is listed in :data:`NOT_READ` with the
reason; the list is checked both ways (a listed type that starts to pass must leave it).
"""

from __future__ import annotations

import functools
import json
import warnings

import pytest

from vramplan.errors import ConfigError
from vramplan.model import count_params
from vramplan.model.hf_config import spec_from_config

pytestmark = pytest.mark.exact

COVERAGE_FLOOR = 0.95
"""Share of the buildable decoder-only types read exactly (the measured figure is in
the test output and in docs/architectures.md)."""

NOT_READ: dict[str, str] = {
    # decoder-only types transformers 5.24 builds from its default config that are not read exactly
    "blt": "byte-latent transformer: local encoder/decoder around a global model",
    "hrm_text": "hierarchical recurrent modules",
    "inkling2_loop_text": "looped blocks",
    "inkling2_text": "own block layout",
    "inkling_text": "own block layout",
    "longcat_flash": "read as the checkpoint: the meta build adds gate/up projections for zero-compute experts",
    "phi4_multimodal": "vision and audio embedders inside the causal-LM class",
}


@functools.cache
def _enumerated() -> dict[str, tuple[str, dict, int | None]]:
    """model_type -> (kind, default config dict, meta-built total or None)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers.models.auto import modeling_auto as auto

    seq2seq = set(auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES)
    masked = set(auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES)
    out: dict[str, tuple[str, dict, int | None]] = {}
    transformers.logging.set_verbosity_error()
    for model_type in sorted(auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                config = transformers.AutoConfig.for_model(model_type)
                with torch.device("meta"):
                    model = transformers.AutoModelForCausalLM.from_config(config)
        except Exception:  # noqa: BLE001 - types whose default config does not build are out of scope
            continue
        total = sum(p.numel() for p in model.parameters())
        name = type(model).__name__
        if model_type in seq2seq or model_type in masked:
            kind = "encoder-decoder or encoder"
        elif name.endswith("ForConditionalGeneration"):
            kind = "multimodal wrapper"
        else:
            kind = "decoder"
        out[model_type] = (kind, config.to_dict(), total)
    return out


CAUSAL_LM_HOLDS_TOWER = frozenset({"fuyu", "git"})
"""Types whose causal-LM class builds the vision encoder or the patch projector itself
(``GitForCausalLM``, ``FuyuForCausalLM``)."""


def _read_total(config: dict) -> int | None:
    """Parameters of the text model as read: the causal-LM class builds no vision tower
    (Llama 4's ``Llama4ForCausalLM``), so counted towers are left out here
    (tests/test_towers.py checks them against the whole wrapper), except where it does
    (:data:`CAUSAL_LM_HOLDS_TOWER`)."""
    try:
        return _read_total_or_raise(config)
    except ConfigError:
        return None


def _read_total_or_raise(config: dict) -> int:
    counted = count_params(spec_from_config(config, complete=False))
    if config.get("model_type") in CAUSAL_LM_HOLDS_TOWER:
        return counted.total_params
    return counted.total_params - sum(counted.get(c) for c in ("vision_tower", "audio_tower", "projector"))


@functools.cache
def _results() -> dict[str, bool]:
    return {t: _read_total(cfg) == total for t, (kind, cfg, total) in _enumerated().items() if kind == "decoder"}


def test_decoder_coverage_floor():
    results = _results()
    read = sorted(t for t, ok in results.items() if ok)
    share = len(read) / len(results)
    print(f"\ndecoder-only types that build: {len(results)}; read exactly: {len(read)} ({share:.0%})")
    assert share >= COVERAGE_FLOOR


def test_every_unread_decoder_type_is_listed_with_a_reason():
    unread = {t for t, ok in _results().items() if not ok}
    assert sorted(unread - set(NOT_READ)) == []


def test_listed_types_are_really_unread():
    passing = {t for t, ok in _results().items() if ok}
    assert sorted(passing & set(NOT_READ)) == []


def test_types_not_read_are_refused_in_one_line_never_miscounted():
    """A decoder type outside the table, an encoder or an encoder-decoder is refused
    with the way out; it never gets a number that differs from transformers'."""
    for model_type, (kind, cfg, total) in _enumerated().items():
        try:
            ours = _read_total_or_raise(cfg)
        except ConfigError as exc:
            assert "\n" not in str(exc)
            continue
        if kind == "decoder" and model_type not in NOT_READ:
            assert ours == total, model_type
        if kind == "decoder" and model_type in NOT_READ:
            assert ours != total, model_type


@pytest.mark.parametrize("model_type", sorted(set(NOT_READ) - {"longcat_flash"}))
def test_types_not_read_are_counted_from_the_meta_build(model_type, tmp_path):
    # `params` never refuses a type transformers builds when the exact extra is installed:
    # the total is transformers' own count of the causal-LM class (parameters once).
    from vramplan import questions

    enumerated = _enumerated()
    if model_type not in enumerated:
        pytest.skip(f"transformers does not build {model_type} from its default config")
    _, config, total = enumerated[model_type]
    with pytest.raises(ConfigError, match="not supported by the analytical reader"):
        spec_from_config(config, complete=False)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config, default=str))
    data = questions.params({"model": str(path)})
    assert data["total_params"] == total
    assert sum(c["params"] for c in data["components"]) == total
    assert data["active_params"] is None and "meta build" in data["notes"][0]


def test_without_the_exact_extra_a_type_not_read_is_refused_in_one_line(monkeypatch, tmp_path):
    from vramplan import questions
    from vramplan.errors import MissingExtraError
    from vramplan.trace import deps

    def missing():
        raise MissingExtraError("exact mode needs torch")

    monkeypatch.setattr(deps, "require_exact", missing)
    _, config, _ = _enumerated()["hrm_text"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config, default=str))
    with pytest.raises(ConfigError, match="not supported by the analytical reader") as err:
        questions.params({"model": str(path)})
    assert "\n" not in str(err.value) and "vramplan[exact]" in str(err.value)
