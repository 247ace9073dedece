"""Each hostile input a fuzz run once turned into a traceback, a hang or a silent wrong
number, as a regression test: every one now ends in the project's one-line error
naming the field (or a correct answer)."""

from __future__ import annotations

import json

import pytest

from conftest import catalog_config
from fuzzing import run_cli
from vramplan.errors import ConfigError, InputError, LayoutError, VramplanError

BIG = str(2**63)


def write(tmp_path, cfg, name="config.json"):
    path = tmp_path / name
    path.write_text(cfg if isinstance(cfg, str) else json.dumps(cfg))
    return str(path)


def error_of(argv) -> str:
    outcome = run_cli(argv, timeout_s=30)
    assert outcome.kind == "clean_error", outcome
    return outcome.detail


# --------------------------------------------------------------------------- config files

@pytest.mark.parametrize("literal, text", [
    ("NaN", "NaN is not a JSON number"),
    ("Infinity", "Infinity is not a JSON number"),
    ("-Infinity", "-Infinity is not a JSON number"),
    ("1e400", "1e400 overflows a float"),
    ("9" * 5000, "an integer of 5,000 digits"),
    ("1e300", "hidden_size"),
])
def test_non_finite_and_huge_numbers_in_a_config(tmp_path, literal, text):
    raw = json.dumps({**catalog_config("llama-3.1-8b"), "hidden_size": "@"}).replace('"@"', literal)
    for command in ("params", "infer", "train", "plan"):
        assert text in error_of([command, write(tmp_path, raw), "--gpu", "h100", "--json"]
                                if command != "params" else [command, write(tmp_path, raw)])


def test_deeply_nested_json(tmp_path):
    assert "nested deeper than 64 levels" in error_of(["params", write(tmp_path, "[" * 100_000 + "]" * 100_000)])


@pytest.mark.parametrize("value", [["llama"], {"x": 1}])
def test_model_type_of_the_wrong_type(tmp_path, value):
    path = write(tmp_path, {**catalog_config("llama-3.1-8b"), "model_type": value})
    assert "model_type: expected a string" in error_of(["params", path])


def test_name_or_path_as_an_object_is_ignored(tmp_path):
    path = write(tmp_path, {**catalog_config("llama-3.2-1b"), "_name_or_path": {"x": 1}})
    assert run_cli(["plan", path, "--gpu", "h100", "--gpus", "8", "--json"]).kind == "ok"


@pytest.mark.parametrize("model, key, value, text", [
    ("qwen1.5-moe-a2.7b", "mlp_only_layers", 3, "mlp_only_layers: expected a list of integers"),
    ("qwen1.5-moe-a2.7b", "mlp_only_layers", "abc", "mlp_only_layers: expected a list of integers"),
    ("qwen1.5-moe-a2.7b", "shared_expert_intermediate_size", [1], "shared_expert_intermediate_size"),
    ("qwen1.5-moe-a2.7b", "shared_expert_intermediate_size", "abc", "shared_expert_intermediate_size"),
    ("qwen1.5-moe-a2.7b", "shared_expert_intermediate_size", -5, "shared_expert_intermediate_size"),
    ("deepseek-v2-lite", "n_shared_experts", [1], "n_shared_experts"),
    ("deepseek-v2-lite", "n_shared_experts", "2", "n_shared_experts"),
    ("deepseek-v2-lite", "n_shared_experts", -3, "n_shared_experts"),
    ("deepseek-v2-lite", "n_shared_experts", 10**12, "n_shared_experts"),
    ("deepseek-v2-lite", "first_k_dense_replace", [1], "first_k_dense_replace"),
    ("deepseek-v2-lite", "first_k_dense_replace", 2.5, "first_k_dense_replace"),
    ("llama-3.1-8b", "head_dim", 10**12, "head_dim"),
    ("llama-3.1-8b", "num_hidden_layers", 10**6, "num_hidden_layers"),
    ("llama-3.1-8b", "num_hidden_layers", 1e30, "num_hidden_layers"),
    ("mixtral-8x7b", "num_local_experts", 10**12, "num_local_experts"),
])
def test_bad_fields_are_named(tmp_path, model, key, value, text):
    path = write(tmp_path, {**catalog_config(model), key: value})
    for argv in (["params", path], ["plan", path, "--gpu", "h100", "--gpus", "8", "--json"]):
        assert text in error_of(argv)


def test_config_size_is_capped_before_reading(tmp_path):
    path = tmp_path / "config.json"
    with open(path, "wb") as f:
        f.truncate(200 * 2**20)  # sparse: 200 MB that read whole would take ~1 GiB
    assert "config files are read up to 16,777,216 bytes" in error_of(["params", str(path)])


@pytest.mark.parametrize("path, text", [
    ("/proc/self/mem", "cannot read"),
    ("/dev/zero", "not a regular file"),
])
def test_special_files(path, text):
    assert text in error_of(["params", path])


def test_very_long_model_name():
    assert "expected at most 250" in error_of(["params", "a" * 300])
    assert "expected at most 250" in error_of(["params", "a" * 5000])


# --------------------------------------------------------------------------- flags

@pytest.mark.parametrize("argv, text", [
    (["plan", "llama-3.1-8b", "--gpu", "h100", "--seq-len", BIG], "--seq"),
    (["plan", "llama-3.1-8b", "--gpu", "h100", "--gpus-per-node", BIG], "--gpus-per-node"),
    (["plan", "llama-3.1-8b", "--gpu", "h100", "--virtual-stages", BIG], "--virtual-stages"),
    (["plan", "--layers", "2", "--hidden", BIG, "--heads", "2", "--gpu", "h100"], "--hidden"),
    (["plan", "--layers", "2", "--hidden", "64", "--heads", "2", "--vocab", BIG, "--gpu", "h100"], "--vocab"),
    (["plan", "llama-3.1-8b", "--gpu", "h100", "--global-batch", str(2**62)], "--global-batch"),
    (["plan", "llama-3.1-8b", "--gpu", "h100", "--gpus", BIG], "--gpus"),
    (["plan", "llama-3.1-8b", "--gpu", "h100", "--gpus", str(2**40)], "--gpus: expected an integer from 1 to 1,000,000"),
    (["plan", "llama-3.1-8b", "--gpu", "h100", "--max-gpus", BIG], "--max-gpus"),
    (["plan", "llama-3.1-8b", "--gpu", "h100", "--nodes", BIG], "--nodes"),
    (["plan", "llama-3.1-8b", "--gpu", "h100", "--nodes", "1000000"], "--nodes"),
    (["infer", "--layers", BIG, "--hidden", "64", "--heads", "2"], "--layers"),
    (["infer", "--layers", "1000000", "--hidden", "64", "--heads", "2"], "--layers: expected an integer from 1 to 10,000"),
    (["infer", "gpt2", "--gpu-memory-utilization", "nan"], "not finite"),
    (["infer", "gpt2", "--cuda-context", "0.4"], "less than one byte"),
    (["infer", "gpt2", "--gpu", "h100", "--reserve", "1e-9"], "less than one byte"),
    (["infer", "gpt2", "--gpu", "h100", "--reserve", "200GiB"], "--reserve: "),
    (["params", "1e30B"], "expected at most 9,007,199,254,740,992 parameters"),
    (["train", "llama-3.2-1b", "--method", "lora", "--lora-targets", ",,,"], "--lora-targets: expected 1 to"),
    (["train", "llama-3.2-1b", "--cp", "4096", "--seq", "2048"], "is not divisible by --cp 4096"),
    (["train", "llama-3.2-1b", "--gpus", "8", "--sp"], "sequence_parallel with tp=1"),
    (["params", "--layers", "2", "--hidden", "64", "--heads", "2", "--experts-per-token", "2"],
     "given without --experts"),
])
def test_hostile_flags(argv, text):
    assert text in error_of(argv)


def test_parameter_counts_are_exact():
    from vramplan.units import parse_param_count

    assert parse_param_count("1.1T") == 1_100_000_000_000
    assert parse_param_count("6.7b") == 6_700_000_000
    assert parse_param_count("9007199254740992") == 2**53


def test_large_max_gpus_is_bounded_and_reported():
    outcome = run_cli(["plan", "deepseek-v3", "--gpu", "h100", "--max-gpus", "1000000", "--json"], timeout_s=60)
    assert outcome.kind == "clean_error" and "layouts" in outcome.detail


def test_vllm_without_kv_budget_says_so():
    from vramplan.inference import InferenceSetup, estimate_inference

    est = estimate_inference("llama-3.1-8b", InferenceSetup(engine="vllm", gpu="h100", gpu_memory_utilization=0.0001))
    assert not est.verdict.fits and any("refuse to start" in w for w in est.warnings)


def test_trace_svg_into_a_missing_folder(tmp_path):
    assert "does not exist" in error_of(["trace", "gpt2", "--svg", str(tmp_path / "no" / "x.svg")])


def test_trace_refuses_what_other_commands_refuse(tmp_path):
    path = write(tmp_path, {**catalog_config("llama-3.2-1b"), "num_key_value_heads": 64})
    assert "num_key_value_heads" in error_of(["trace", path])
    path = write(tmp_path, {**catalog_config("llama-3.2-1b"), "hidden_size": 2**63})
    assert "hidden_size" in error_of(["trace", path])


# --------------------------------------------------------------------------- Python API

def _job():
    from vramplan.distributed import TrainingJob
    from vramplan.model import resolve_model

    return TrainingJob(model=resolve_model("gpt2"))


@pytest.mark.parametrize("kwargs, error, text", [
    (dict(micro_batch_sizes=(0,)), InputError, "micro_batch_sizes[0]: expected a positive integer, got 0"),
    (dict(micro_batch_sizes=(-1,)), InputError, "micro_batch_sizes[0]"),
    (dict(gpu_counts=(2**63,)), InputError, "gpu_counts[0]: expected an integer from 1 to 1,000,000"),
    (dict(gpu_counts=(True,)), InputError, "gpu_counts[0]"),
    (dict(gpu_counts=8), InputError, "gpu_counts: expected a list of integers"),
    (dict(headroom=float("nan")), InputError, "headroom"),
    (dict(global_batch=2**62), InputError, "global_batch"),
    (dict(engines=("deepspeed",)), InputError, "engines"),
    (dict(fixed_degrees=(("tp",),)), InputError, "fixed_degrees[0]"),
])
def test_plan_request_arguments(kwargs, error, text):
    from vramplan.gpus import find_gpu
    from vramplan.planner import PlanRequest

    with pytest.raises(error) as info:
        PlanRequest(**{"job": _job(), "gpu": find_gpu("h100"), "gpu_counts": (8,), **kwargs})
    assert text in str(info.value)


@pytest.mark.parametrize("kwargs, text", [
    (dict(fused_ce="yes"), "fused_ce: expected true or false, got 'yes'"),
    (dict(batch=True), "batch: expected an integer"),
    (dict(batch=2.0), "batch: expected an integer"),
    (dict(seq="2048"), "seq: expected an integer"),
    (dict(lora_targets="q_proj"), "lora_targets: expected a list of names"),
    (dict(lora_targets=("",)), "lora_targets[0]"),
    (dict(method=["full"]), "method: expected a name"),
])
def test_training_setup_arguments(kwargs, text):
    from vramplan.training import TrainingSetup

    with pytest.raises(InputError) as info:
        TrainingSetup(**kwargs)
    assert text in str(info.value)


@pytest.mark.parametrize("kwargs, text", [
    (dict(batch=0), "batch: expected a positive integer"),
    (dict(context=2**40), "context: expected an integer from 1 to"),
    (dict(gpu_memory_utilization=float("inf")), "gpu_memory_utilization"),
    (dict(enforce_eager=1), "enforce_eager: expected true or false"),
    (dict(engine=["vllm"]), "engine: expected one of"),
    (dict(reserve_bytes=-1), "reserve_bytes"),
    (dict(overheads=None), "overheads: expected an Overheads"),
])
def test_inference_setup_arguments(kwargs, text):
    from vramplan.inference import InferenceSetup

    with pytest.raises(InputError) as info:
        InferenceSetup(**kwargs)
    assert text in str(info.value)


@pytest.mark.parametrize("kwargs, text", [
    (dict(tp=2**63), "tp: expected an integer from 1 to 1,000,000"),
    (dict(dp=1.0), "dp: expected an integer"),
    (dict(zero_stage=True), "zero_stage: expected one of 0, 1, 2, 3"),
    (dict(zero_stage="3"), "zero_stage: expected one of 0, 1, 2, 3"),
    (dict(fsdp=["full_shard"]), "fsdp: expected a name"),
    (dict(sequence_parallel="yes"), "sequence_parallel: expected true or false"),
    (dict(sequence_parallel=True), "sequence_parallel with tp=1"),
])
def test_parallel_layout_arguments(kwargs, text):
    from vramplan.parallel import ParallelLayout

    with pytest.raises(LayoutError) as info:
        ParallelLayout(**kwargs)
    assert text in str(info.value)


def test_model_spec_bounds():
    from dataclasses import replace

    from vramplan.model import resolve_model

    spec = resolve_model("llama-3.2-1b")
    for field, value in (("num_layers", 10**6), ("hidden_size", 2**63), ("vocab_size", -1), ("head_dim", 1.5)):
        with pytest.raises(ConfigError, match=field):
            replace(spec, **{field: value})


def test_errors_are_value_errors():
    assert issubclass(VramplanError, ValueError)


def test_lora_targets_with_full_training_is_refused():
    message = error_of(["train", "llama-3.1-8b", "--method", "full", "--lora-targets", "q_proj"])
    assert "--lora-targets: given with --method full" in message
