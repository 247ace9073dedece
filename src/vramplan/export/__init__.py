"""Configs for the engines that will run a planned layout: DeepSpeed (JSON), PyTorch
FSDP through accelerate (YAML), Megatron-LM (command-line arguments), vLLM and
llama.cpp (command lines). Each module has the same shape: ``render(...) -> str``."""

from __future__ import annotations

from typing import Any

from vramplan.errors import InputError

ENGINES = ("deepspeed", "fsdp", "megatron", "vllm", "llamacpp")


def export_config(engine: str, data: dict, spec: Any, *, training: bool) -> str:
    """The best candidate of a plan (``data`` as ``vramplan plan --json`` prints it)
    as a config for ``engine``."""
    best = data["candidates"][0]
    if training:
        if engine in ("vllm", "llamacpp"):
            raise InputError(f"--export {engine}: a serving engine; use it with --infer")
        if engine == "deepspeed":
            from vramplan.export.deepspeed import render
        elif engine == "fsdp":
            from vramplan.export.fsdp import render
        else:
            from vramplan.export.megatron import render
        return render(best, spec, seq_len=data["seq_len"])
    if engine == "vllm":
        from vramplan.export.vllm import render
    elif engine == "llamacpp":
        from vramplan.export.llamacpp import render
    else:
        raise InputError(f"--export {engine}: a training engine; use it with --train")
    return render(best, spec, context=data["context"], usable_bytes=data["usable_bytes"],
                  kv_dtype=data["kv_dtype"], batch=data["batch"])
