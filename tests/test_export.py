"""Exports of a planned layout, read back by the engines' own config code where it is
installed: DeepSpeed's ``DeepSpeedZeroConfig`` (pydantic, rejects unknown keys) and
accelerate's ``ClusterConfig`` YAML loader."""

from __future__ import annotations

import importlib.util
import json
import shlex

import pytest

from vramplan.catalog import find_model
from vramplan.cli import main
from vramplan.parallel import DEEPSPEED_DEFAULTS

needs_deepspeed = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                                     reason="deepspeed not installed")
needs_accelerate = pytest.mark.skipif(importlib.util.find_spec("accelerate") is None,
                                      reason="accelerate not installed")


def _run(capsys, *args: str) -> str:
    assert main(list(args)) == 0
    return capsys.readouterr().out


@needs_deepspeed
def test_our_zero_defaults_are_deepspeeds():
    # The buffer defaults the estimate assumes are DeepSpeed's own (DeepSpeedZeroConfig).
    from deepspeed.runtime.zero.config import DeepSpeedZeroConfig

    ds = DeepSpeedZeroConfig()
    assert ds.reduce_bucket_size == DEEPSPEED_DEFAULTS.reduce_bucket_elements
    assert ds.allgather_bucket_size == DEEPSPEED_DEFAULTS.allgather_bucket_elements
    assert ds.prefetch_bucket_size == DEEPSPEED_DEFAULTS.prefetch_bucket_elements
    assert ds.param_persistence_threshold == DEEPSPEED_DEFAULTS.param_persistence_threshold
    assert ds.max_live_parameters == DEEPSPEED_DEFAULTS.max_live_parameters
    assert ds.sub_group_size == DEEPSPEED_DEFAULTS.sub_group_elements
    assert DeepSpeedZeroConfig(stage=3).overlap_comm is True
    assert DeepSpeedZeroConfig(stage=2).overlap_comm is False


@needs_deepspeed
@pytest.mark.parametrize("flags", [["--zero", "3"], ["--zero", "2", "--offload", "optimizer"],
                                   ["--zero", "3", "--offload", "params"]])
def test_deepspeed_export_parses(capsys, flags):
    from deepspeed.runtime.zero.config import DeepSpeedZeroConfig

    out = _run(capsys, "plan", "llama-3.1-8b", "--gpu", "h100", "--gpus", "8", *flags, "--export", "deepspeed")
    cfg = json.loads(out)
    zero = DeepSpeedZeroConfig(**cfg["zero_optimization"])
    assert zero.stage == int(flags[1])
    if "--offload" in flags:
        assert zero.offload_optimizer is not None and zero.offload_optimizer.device == "cpu"
    if "params" in flags:
        assert zero.offload_param is not None and zero.offload_param.device == "cpu"
    # train_batch_size = micro-batch x accumulation x data-parallel ranks (DeepSpeed's rule).
    dp = cfg["_vramplan"]["num_gpus"] // (cfg["_vramplan"]["tp"] * cfg["_vramplan"]["pp"])
    assert cfg["train_batch_size"] == cfg["train_micro_batch_size_per_gpu"] * cfg["gradient_accumulation_steps"] * dp


@needs_accelerate
@pytest.mark.parametrize("mode", ["full_shard", "shard_grad_op", "hybrid_shard", "fsdp2"])
def test_fsdp_export_loads_in_accelerate(capsys, tmp_path, mode):
    from accelerate.commands.config.config_args import ClusterConfig

    out = _run(capsys, "plan", "llama-3.1-8b", "--gpu", "h100", "--gpus", "16", "--fsdp", mode,
               "--tp", "1", "--pp", "1", "--cp", "1", "--export", "fsdp")
    path = tmp_path / "accelerate.yaml"
    path.write_text(out)
    cfg = ClusterConfig.from_yaml_file(str(path))
    assert str(cfg.distributed_type).endswith("FSDP")
    assert cfg.num_processes == 16 and cfg.num_machines == 2
    if mode == "fsdp2":
        assert cfg.fsdp_config["fsdp_version"] == 2
    else:
        assert cfg.fsdp_config["fsdp_sharding_strategy"] == mode.upper()


def test_megatron_export_arguments(capsys):
    out = _run(capsys, "plan", "llama-3.1-70b", "--gpu", "h100", "--gpus", "64", "--tp", "8", "--pp", "4",
               "--zero", "1", "--export", "megatron")
    args = shlex.split(out.replace("\\\n", " "))
    spec = find_model("llama-3.1-70b").spec()

    def value(flag: str) -> str:
        return args[args.index(flag) + 1]

    assert value("--tensor-model-parallel-size") == "8" and value("--pipeline-model-parallel-size") == "4"
    assert value("--num-layers") == str(spec.num_layers) and value("--num-query-groups") == "8"
    assert "--group-query-attention" in args
    dp = 64 // (8 * 4 * int(value("--context-parallel-size")))
    assert int(value("--global-batch-size")) % (int(value("--micro-batch-size")) * dp) == 0


def test_vllm_and_llamacpp_exports(capsys):
    out = _run(capsys, "plan", "llama-3.1-70b", "--infer", "--gpu", "a100-80gb", "--max-gpus", "8",
               "--batch", "16", "--context", "8192", "--export", "vllm")
    args = shlex.split(out.splitlines()[0])
    assert args[:3] == ["vllm", "serve", "meta-llama/Llama-3.1-70B"]
    assert args[args.index("--max-model-len") + 1] == "8192"
    tp = int(args[args.index("--tensor-parallel-size") + 1])
    assert 64 % tp == 0 and 0 < float(args[args.index("--gpu-memory-utilization") + 1]) < 1
    out = _run(capsys, "plan", "llama-3.1-8b", "--infer", "--gpu", "rtx-4090", "--gpus", "2",
               "--context", "8192", "--export", "llamacpp")
    args = shlex.split(out)
    assert args[0] == "llama-server" and args[args.index("-ngl") + 1] == "33"


def test_export_engine_mismatch_is_one_line(capsys):
    assert main(["plan", "llama-3.1-8b", "--gpu", "h100", "--gpus", "8", "--export", "vllm"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --export vllm") and err.count("\n") == 1
