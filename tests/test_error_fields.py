"""Core errors name Python fields (``seq: expected ...``), never command-line flags; the
command line shows each field as its flag, from the one mapping the option declarations
make (:func:`vramplan.options.flags_by_field`)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from vramplan.cli import command_flags, main
from vramplan.errors import ConfigError, InputError, LayoutError, UnknownNameError, VramplanError
from vramplan.options import flags_by_field, options_of

SRC = Path(__file__).resolve().parents[1] / "src" / "vramplan"
EDGES = ("cli", "web", "export")
"""Packages that speak to a user in their own terms (flags, query names, other engines'
arguments); every other module is the core."""


def _core_modules() -> list[Path]:
    return [p for p in sorted(SRC.rglob("*.py")) if p.relative_to(SRC).parts[0] not in EDGES]


def _message_texts(node: ast.AST) -> list[str]:
    return [c.value for c in ast.walk(node) if isinstance(c, ast.Constant) and isinstance(c.value, str)]


def _error_sites(tree: ast.AST):
    """Raise statements, and calls that build an error or its hint (``XError(...)``,
    ``lookup(..., hint=...)``, ``parse_bytes(..., field)``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            yield node, node.exc
        elif isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            if name.endswith("Error") or name in ("lookup", "parse_bytes", "get_format", "get_recipe", "get_dtype"):
                yield node, node


def test_no_core_error_text_names_a_flag():
    found: dict[str, None] = {}
    for path in _core_modules():
        for node, expr in _error_sites(ast.parse(path.read_text())):
            for text in _message_texts(expr):
                if "--" in text:
                    found[f"{path.relative_to(SRC)}:{node.lineno}: {text!r}"] = None
    assert not found, "core errors naming flags:\n" + "\n".join(found)


def test_the_scan_sees_errors():
    """The scan above would find a flag if one were there (it reads raise sites)."""
    tree = ast.parse('def f():\n    raise InputError(f"--seq: expected a positive integer, got {x}")\n')
    assert any("--" in t for _, e in _error_sites(tree) for t in _message_texts(e))
    assert len([p for p in _core_modules() if p.name in ("training.py", "inference.py", "plans.py")]) == 3


# ---- the same bad input, from Python and from the command line ---------------------------
def _python_error(call) -> VramplanError:
    with pytest.raises(VramplanError) as info:
        call()
    return info.value


def _cli_error(capsys, *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    return err[len("error: "):].strip()


def _train(**kw):
    from vramplan.training import TrainingSetup, estimate_training

    return lambda: estimate_training("llama-3.2-1b", TrainingSetup(**kw))


def _infer(**kw):
    from vramplan.inference import InferenceSetup, estimate_inference

    solve = kw.pop("solve_context", False)
    return lambda: estimate_inference("llama-3.1-8b", InferenceSetup(**kw), solve_context=solve)


def _layout(**kw):
    from vramplan.parallel import LayoutRequest
    from vramplan.training import estimate_training

    return lambda: estimate_training("llama-3.1-8b", layout=LayoutRequest(**kw).layout())


def _plan(**kw):
    from vramplan.parallel import LayoutRequest
    from vramplan.plans import plan_training
    from vramplan.training import TrainingSetup

    layout = LayoutRequest(**kw.pop("layout", {}))
    return lambda: plan_training("llama-3.1-8b", "h100", TrainingSetup(), layout, **kw)


def _rl(**kw):
    from vramplan.jobs import RLJob, RolloutEngine
    from vramplan.jobs.solvers import report_rl

    engine = RolloutEngine(**kw.pop("rollout", {}))
    return lambda: report_rl(RLJob(model="qwen2.5-7b", gpu="h100-sxm", rollout=engine, **kw), solve=False)


CASES = [
    # (python call, field it names, command line, flag shown there)
    (_train(seq=200_000, strict=True), "seq", ["train", "llama-3.2-1b", "--seq", "200000", "--strict"], "--seq"),
    (_train(method="lora", lora_rank=0), "lora_rank",
     ["train", "llama-3.2-1b", "--method", "lora", "--lora-rank", "0"], "--lora-rank"),
    (_train(method="lora", lora_targets=("qkv",)), "lora_targets",
     ["train", "llama-3.2-1b", "--method", "lora", "--lora-targets", "qkv"], "--lora-targets"),
    (_train(method="qlora", precision="fp32"), "precision",
     ["train", "llama-3.2-1b", "--method", "qlora", "--precision", "fp32"], "--precision"),
    (_infer(engine="llamacpp", tp=2, weights="Q4_K_M"), "tp",
     ["infer", "llama-3.1-8b", "--engine", "llamacpp", "--tp", "2", "--weights", "Q4_K_M"], "--tp"),
    (_infer(engine="llamacpp", weights="awq"), "weights",
     ["infer", "llama-3.1-8b", "--engine", "llamacpp", "--weights", "awq"], "--weights"),
    (_infer(engine="vllm", kv_dtype="q4_0"), "kv_dtype",
     ["infer", "llama-3.1-8b", "--engine", "vllm", "--kv-dtype", "q4_0"], "--kv-dtype"),
    (_infer(context=200_000, strict=True), "context",
     ["infer", "llama-3.1-8b", "--context", "200000", "--strict"], "--context"),
    (_infer(solve_context=True), "solve_context", ["infer", "llama-3.1-8b", "--max-context"], "--max-context"),
    (_infer(tp=3), "tp", ["infer", "llama-3.1-8b", "--tp", "3"], "--tp"),
    (_layout(gpus=12, nodes=5), "nodes", ["train", "llama-3.1-8b", "--gpus", "12", "--nodes", "5"], "--nodes"),
    (_plan(layout={"gpus": 8}, max_gpus=16), "max_gpus",
     ["plan", "llama-3.1-8b", "--gpu", "h100", "--gpus", "8", "--max-gpus", "16"], "--max-gpus"),
    (_rl(algo="grpoo"), "algo", ["rl", "qwen2.5-7b", "--gpu", "h100-sxm", "--no-solve", "--algo", "grpoo"],
     "--algo"),
    (_rl(prompts_per_step=0), "prompts_per_step",
     ["rl", "qwen2.5-7b", "--gpu", "h100-sxm", "--no-solve", "--prompts", "0"], "--prompts"),
    (_rl(rollout={"tp": 8}), "rollout.tp",
     ["rl", "qwen2.5-7b", "--gpu", "h100-sxm", "--no-solve", "--rollout-tp", "8"], "--rollout-tp"),
    (_rl(rollout={"max_model_len": 100}), "max_model_len",
     ["rl", "qwen2.5-7b", "--gpu", "h100-sxm", "--no-solve", "--max-model-len", "100"], "--max-model-len"),
]


@pytest.mark.parametrize("call, field, argv, flag", CASES, ids=[" ".join(c[2][:1] + c[2][2:]) for c in CASES])
def test_python_sees_the_field_and_the_command_line_the_flag(capsys, call, field, argv, flag):
    exc = _python_error(call)
    assert "--" not in str(exc), str(exc)
    assert field in exc.fields and field in str(exc)
    shown = _cli_error(capsys, *argv)
    assert flag in shown
    assert shown.replace(flag, "") != shown and "--" in shown
    # the command line's text is the core's, with names swapped for flags and nothing else
    assert len(shown.split()) == len(str(exc).split())


def test_web_sees_the_field():
    from vramplan.web.api import handle

    status, body = handle("/api/train", {"model": "llama-3.2-1b", "seq": "200000", "strict": "true"})
    assert status == 400 and body["error"]["message"].startswith("seq: ")


# ---- the mapping ---------------------------------------------------------------------------
QUESTIONS_WITH_OPTIONS = ("train", "infer", "plan", "params", "models", "gpus", "rl")


@pytest.mark.parametrize("question", QUESTIONS_WITH_OPTIONS)
def test_each_field_has_one_flag(question):
    owners: dict[str, set[str]] = {}
    for o in options_of(question):
        for name in (o.name, *o.fields):
            owners.setdefault(name, set()).add(o.name)
    assert not {k: v for k, v in owners.items() if len(v) > 1}  # a field set by two options
    for name, flag in flags_by_field(question).items():
        owner = [o for o in options_of(question) if name in (o.name, *o.fields)][0]
        assert flag in owner.all_flags


@pytest.mark.parametrize("command", ["train", "infer", "plan", "rl", "params"])
def test_the_mapping_names_real_flags(command):
    """Every flag the mapping shows is one the command accepts."""
    from vramplan.cli import cli

    import click

    cmd = cli.get_command(click.Context(cli), command)
    accepted = {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)} | {"MODEL"}
    assert set(command_flags(command).values()) <= accepted


def test_the_rl_command_is_built_from_its_declarations():
    from vramplan.cli import cli

    import click

    cmd = cli.get_command(click.Context(cli), "rl")
    declared = [o.name for o in options_of("rl")]
    built = [p.name for p in cmd.params if isinstance(p, click.Option) and p.name != "as_json"]
    assert built == declared


def test_leading_field_and_explicit_fields():
    assert InputError("seq: expected a positive integer, got 0").fields == ("seq",)
    assert InputError("fixed_degrees[2]: expected a pair").fields == ("fixed_degrees",)
    assert InputError("gpu memory: expected a positive size").fields == ()
    assert LayoutError("tp 3: must divide num_attention_heads=32", fields=("tp",)).fields == ("tp",)
    assert ConfigError("head_dim: expected a positive integer").fields == ()  # a config.json key
    e = UnknownNameError("optimizer", "adamx", ("adamw",), "optimizer: expected one of adamw, sgd")
    assert e.fields == ("optimizer",) and e.lead == "unknown optimizer 'adamx'; did you mean 'adamw'?"


def test_config_keys_stay_as_they_are(capsys, tmp_path):
    import json

    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
                               "num_attention_heads": 4, "head_dim": -1, "intermediate_size": 128,
                               "vocab_size": 100}))
    shown = _cli_error(capsys, "params", str(cfg))
    assert "--head-dim" not in shown


# ---- warnings, readings, assumptions and advice: fields in the core, flags on the command line ----
def _our_flags() -> re.Pattern:
    spelled: set[str] = set()
    for question in QUESTIONS_WITH_OPTIONS:
        for o in options_of(question):
            spelled.update((*o.all_flags, *((o.off_flag,) if o.off_flag else ())))
    alternatives = "|".join(sorted(map(re.escape, spelled), key=len, reverse=True))
    return re.compile(rf"(?<![\w-])({alternatives})(?![\w.-])")


def test_no_core_text_names_one_of_our_flags():
    """Every string the core builds (docstrings aside) is free of vramplan's own flags:
    warnings, assumptions, readings and advice name fields. ``options.py`` declares the
    flags; other tools' flags (OpenRLHF's ``--algo.kl.init_coef``) are theirs to name."""
    flag = _our_flags()
    found = []
    for path in _core_modules():
        if path.name == "options.py":
            continue
        tree = ast.parse(path.read_text())
        docs = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                if flag.search(node.value):
                    found.append(f"{path.relative_to(SRC)}:{node.lineno}: {node.value[:80]!r}")
    assert not found, "core text naming flags:\n" + "\n".join(found)
    assert flag.search('f"raise --gpu-memory-utilization or use --tp"')  # the scan would see one


def _run(capsys, *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_a_warning_names_fields_and_the_table_shows_flags(capsys):
    from vramplan.inference import InferenceSetup, estimate_inference

    est = estimate_inference("llama-3.1-70b", InferenceSetup(engine="vllm", gpu="rtx-4090"))
    refused = next(w for w in est.warnings if "refuse to start" in w)
    assert "raise gpu_memory_utilization or use tp" in refused and "--" not in refused
    assert set(refused.fields) == {"gpu_memory_utilization", "tp"}
    out = _run(capsys, "infer", "llama-3.1-70b", "--engine", "vllm", "--gpu", "rtx-4090")
    assert "raise --gpu-memory-utilization or use --tp" in " ".join(out.split())
    replicated = estimate_inference("llama-3.1-8b", InferenceSetup(tp=16)).warnings
    assert any(w.startswith("tp 16 exceeds the 8 KV heads") for w in replicated)
    assert "warning: --tp 16 exceeds the 8 KV heads" in " ".join(_run(capsys, "infer", "llama-3.1-8b", "--tp", "16")
                                                                  .split())


def test_readings_and_assumptions_name_fields(capsys):
    from vramplan import questions

    est = questions.infer({"model": "llama-3.1-8b", "weights": "int4", "gpu": "2xh100"})
    assert est.readings[0].startswith("weights int4 read as nf4")
    assert "gpu 2xh100 read as 2 x h100-sxm (tp 2)" in est.readings
    out = " ".join(_run(capsys, "infer", "llama-3.1-8b", "--weights", "int4", "--gpu", "2xh100").split())
    assert "read: --weights int4 read as nf4" in out and "read: --gpu 2xh100 read as 2 x h100-sxm (--tp 2)" in out
    assert "per 64 weights" in out  # a remark names its field once: the same word later is prose
    seed = questions.train({"model": "llama-3.2-1b", "activation_model": "seed"})
    assert any(a.startswith("seed article method at precision bf16-mixed") for a in seed.assumptions)
    out = " ".join(_run(capsys, "train", "llama-3.2-1b", "--activation-model", "seed").split())
    assert "seed article method at --precision bf16-mixed" in out


def test_advice_names_options_and_the_table_shows_flags(capsys):
    from vramplan import questions
    from vramplan.options import options_of

    est = questions.train({"model": "llama-3.1-8b", "gpu": "rtx-4090"})
    names = {o.name for o in options_of("train")}
    assert est.changes and all(set(c.settings) <= names and "--" not in c.change for c in est.changes)
    assert {"method": "qlora"} in [c.settings for c in est.changes]
    assert "vramplan train llama-3.1-8b ... --method qlora" in _run(capsys, "train", "llama-3.1-8b", "--gpu",
                                                                    "rtx-4090")


def test_rl_advice_names_options_and_the_table_shows_flags(capsys):
    from vramplan.jobs import RLJob, TrainerRole
    from vramplan.jobs.solvers import advice
    from vramplan.training import TrainingSetup

    job = RLJob(model="qwen2.5-7b", gpu="h100-sxm", gpus=8, policy=TrainerRole(setup=TrainingSetup(batch=40)))
    changes = advice(job)
    assert {"micro_batch": 20} in [c.settings for c in changes]
    assert all("--" not in c.change for c in changes)
    out = _run(capsys, "rl", "qwen2.5-7b", "--gpu", "h100-sxm", "--micro-batch", "40")
    assert "advice: --micro-batch 20 (half the policy micro-batch)" in out


def test_export_errors_name_fields(capsys):
    from vramplan.export import export_config
    from vramplan.parallel import LayoutRequest
    from vramplan.plans import plan_training
    from vramplan.training import TrainingSetup

    report = plan_training("llama-3.1-8b", "h100", TrainingSetup(), LayoutRequest(gpus=8))
    exc = _python_error(lambda: export_config("vllm", report))
    assert str(exc).startswith("export vllm: a serving engine") and exc.fields == ("export",)
    shown = _cli_error(capsys, "plan", "llama-3.1-8b", "--gpu", "h100", "--gpus", "8", "--export", "vllm")
    assert shown.startswith("--export vllm: a serving engine")
