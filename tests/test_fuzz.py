"""Fuzzing the edges: hostile config files (a generated corpus), hostile flag values
(hypothesis) and hostile Python arguments. Every run ends in a result whose figures
are sane or in the project's one-line error: no traceback, no hang, no negative or
non-finite figure. ``benchmarks/bench_fuzz.py`` runs the same harness longer."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzzing import run_cli
from hostile_configs import field_corpus, whole_file_corpus

FUZZ_SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _check(outcome):
    assert outcome.kind in ("ok", "clean_error"), outcome.detail


# --------------------------------------------------------------------------- config files

WHOLE = list(whole_file_corpus())
FIELDS = list(field_corpus())
FIELD_SAMPLE = random.Random(14).sample(FIELDS, 120)


@pytest.fixture()
def config_path(tmp_path):
    def write(text):
        path = tmp_path / "config.json"
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        return str(path)

    return write


@pytest.mark.parametrize("name, text", WHOLE, ids=[n for n, _ in WHOLE])
@pytest.mark.parametrize("command", [["params"], ["infer", "--gpu", "h100"], ["train", "--gpu", "h100"],
                                     ["plan", "--gpu", "h100", "--gpus", "8"]], ids=lambda c: c[0])
def test_whole_file_hostile_configs(config_path, command, name, text):
    _check(run_cli([command[0], config_path(text), *command[1:], "--json"]))


def test_every_single_field_mutation_params(config_path):
    """All single-field mutations (~5,800 files) through `params`: seconds in-process."""
    bad = []
    for name, text in FIELDS:
        outcome = run_cli(["params", config_path(text), "--json"])
        if outcome.kind not in ("ok", "clean_error"):
            bad.append(f"{name}: {outcome.detail}")
    assert not bad, "\n".join(bad[:20])


@pytest.mark.parametrize("name, text", FIELD_SAMPLE, ids=[n for n, _ in FIELD_SAMPLE])
def test_field_mutations_through_the_estimates(config_path, name, text):
    path = config_path(text)
    _check(run_cli(["infer", path, "--gpu", "h100", "--json"]))
    _check(run_cli(["train", path, "--gpu", "h100", "--json"]))


@pytest.mark.parametrize("name, text", FIELD_SAMPLE[:30], ids=[n for n, _ in FIELD_SAMPLE[:30]])
def test_field_mutations_through_the_planner(config_path, name, text):
    _check(run_cli(["plan", config_path(text), "--gpu", "h100", "--gpus", "8", "--json"]))


# --------------------------------------------------------------------------- flags

HOSTILE_VALUES = ("0", "-1", "1", "2", "3", "7", "8", "64", "4096", "1000000", "1e3", "2.5", "nan", "inf", "-inf",
                  "", " ", "abc", "0x10", "1_000", str(2**31), str(2**40), str(2**62), str(2**63), str(2**64),
                  "9" * 400, "\x00", "½", "１２")
value = st.one_of(st.sampled_from(HOSTILE_VALUES), st.integers(-2, 2**70).map(str))
MODELS = ("gpt2", "llama-3.2-1b", "mixtral-8x7b", "deepseek-v2-lite", "qwen3-30b-a3b", "7B", "1e30B", "0B",
          "a" * 300, "/proc/self/mem", "/dev/zero", "/etc", "")

INFER_FLAGS = ("--batch", "--context", "--prompt", "--prefill-chunk", "--tp", "--gpu-memory-utilization",
               "--max-num-seqs", "--max-num-batched-tokens", "--block-size", "--n-gpu-layers", "--n-ubatch",
               "--cuda-context", "--reserve", "--layers", "--hidden", "--heads", "--kv-heads", "--vocab",
               "--experts", "--experts-per-token", "--head-dim", "--intermediate")
TRAIN_FLAGS = ("--batch", "--seq", "--grad-accum", "--lora-rank", "--seed-bytes", "--gpus", "--nodes", "--dp",
               "--tp", "--pp", "--cp", "--ep", "--zero", "--micro-batches", "--virtual-stages", "--gpus-per-node",
               "--lora-targets", "--layers", "--hidden", "--heads", "--experts", "--experts-per-token")
PLAN_FLAGS = ("--gpus", "--max-gpus", "--nodes", "--gpus-per-node", "--seq", "--batch", "--global-batch",
              "--headroom", "--mfu", "--top", "--tp", "--pp", "--cp", "--ep", "--virtual-stages", "--lora-rank",
              "--host-memory", "--layers", "--hidden", "--heads", "--vocab", "--experts")


def _argv(command, flags, extra=()):
    return st.tuples(st.sampled_from(MODELS), st.lists(st.tuples(st.sampled_from(flags), value), max_size=3)).map(
        lambda t: [command, t[0], *extra, *[x for pair in t[1] for x in pair], "--json"])


@FUZZ_SETTINGS
@given(argv=_argv("infer", INFER_FLAGS, ("--gpu", "h100"))
       | _argv("infer", INFER_FLAGS, ("--engine", "vllm", "--gpu", "h100")))
def test_infer_flags(argv):
    _check(run_cli(argv))


@FUZZ_SETTINGS
@given(argv=_argv("train", TRAIN_FLAGS, ("--gpu", "h100")) | _argv("params", ("--layers", "--hidden", "--heads")))
def test_train_flags(argv):
    _check(run_cli(argv))


@settings(FUZZ_SETTINGS, max_examples=25)
@given(argv=_argv("plan", PLAN_FLAGS, ("--gpu", "h100")))
def test_plan_flags(argv):
    _check(run_cli(argv, timeout_s=60))


# --------------------------------------------------------------------------- Python API

ANY = st.one_of(st.none(), st.booleans(), st.integers(-3, 2**70), st.floats(allow_nan=True, allow_infinity=True),
                st.text(max_size=5), st.lists(st.integers(-2, 10), max_size=3).map(tuple),
                st.sampled_from([(0,), (-1,), (2**63,), ("a",), (), [1], {"a": 1}, object()]))


def _kwargs(fields):
    return st.dictionaries(st.sampled_from(fields), ANY, min_size=1, max_size=2)


def _raises_only_project_errors(factory, kwargs):
    from vramplan.errors import VramplanError

    try:
        factory(**kwargs)
    except VramplanError as exc:
        assert "\n" not in str(exc)


@FUZZ_SETTINGS
@given(kwargs=_kwargs(("method", "precision", "optimizer", "batch", "seq", "grad_accum", "recompute", "attention",
                       "lora_rank", "lora_targets", "fused_ce", "dropout", "activation_model", "seed_dtype_bytes",
                       "strict")))
def test_training_setup_arguments(kwargs):
    from vramplan.training import TrainingSetup

    _raises_only_project_errors(TrainingSetup, kwargs)


@FUZZ_SETTINGS
@given(kwargs=_kwargs(("engine", "kv_dtype", "batch", "context", "prompt", "prefill_chunk", "tp", "attention",
                       "gpu", "gpu_memory_utilization", "max_num_seqs", "max_num_batched_tokens", "block_size",
                       "cuda_graph_bytes", "enforce_eager", "n_gpu_layers", "n_ubatch", "flash_attention",
                       "strict", "reserve_bytes", "overheads")))
def test_inference_setup_arguments(kwargs):
    from vramplan.inference import InferenceSetup

    _raises_only_project_errors(InferenceSetup, kwargs)


@FUZZ_SETTINGS
@given(kwargs=_kwargs(("dp", "tp", "pp", "cp", "ep", "sequence_parallel", "zero_stage", "fsdp", "offload",
                       "micro_batches", "virtual_stages", "gpus_per_node", "engine", "zero")))
def test_parallel_layout_arguments(kwargs):
    from vramplan.parallel import ParallelLayout

    _raises_only_project_errors(ParallelLayout, kwargs)


@FUZZ_SETTINGS
@given(kwargs=_kwargs(("gpu_counts", "headroom", "gpus_per_node", "global_batch", "mfu", "micro_batch_sizes",
                       "engines", "recomputes", "virtual_stages", "host_bytes_per_node", "fixed_degrees")))
def test_plan_request_arguments(kwargs):
    from vramplan.distributed import TrainingJob
    from vramplan.gpus import find_gpu
    from vramplan.model import resolve_model
    from vramplan.planner import PlanRequest

    job = TrainingJob(model=resolve_model("gpt2"))
    _raises_only_project_errors(PlanRequest, {"job": job, "gpu": find_gpu("h100"), "gpu_counts": (8,), **kwargs})
