"""Run one trace: resolve the config, build the model on fake tensors, apply the
CUDA rules, run the step under the recorder, summarize."""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import time
from dataclasses import replace
from pathlib import Path

from vramplan.errors import InputError
from vramplan.trace.deps import require_exact
from vramplan.trace.setup import TraceSetup


def resolve_config(model) -> tuple[str, dict]:
    """(name, config.json dict) from a config dict, a catalog name or Hub id, or a
    path to a config.json (or a directory holding one)."""
    if isinstance(model, dict):
        return str(model.get("_name_or_path") or model.get("model_type", "model")), model
    if not isinstance(model, str) or not model.strip():
        raise InputError(f"model: expected a catalog name or a config.json path, got {model!r}")
    text = model.strip()
    path = Path(text).expanduser()
    if text.lower().endswith(".gguf") or path.is_dir():
        from vramplan.sources import read_config

        config = read_config(text)  # a checkpoint directory or GGUF files
        if config is not None:
            return str(path), config
    if path.exists() or text.endswith(".json"):
        from vramplan.model.hf_config import load_config_file

        return str(path), load_config_file(path)
    from vramplan.catalog import find_model
    from vramplan.errors import UnknownNameError
    from vramplan.sources import looks_like_repo, read_config

    if not text.startswith(("hf://", "modelscope:")):
        try:
            entry = find_model(text)
            return entry.slug, entry.config()
        except UnknownNameError:
            if not looks_like_repo(text):
                raise
    return text, read_config(text if text.startswith(("hf://", "modelscope:")) else "hf://" + text)


def run_trace(model, setup: TraceSetup, *, progress=None, real: bool = False):
    """Trace ``setup`` on ``model``; ``real=True`` runs on real CPU tensors instead of
    fake ones (same rules; used to check the fake trace), which needs the memory."""
    require_exact()
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from vramplan.trace.build import attention_used, build_model, num_layers
    from vramplan.trace.cuda_rules import cuda_rules
    from vramplan.trace.hostmem import check_host_memory, fake_trace_host_bytes, real_run_host_bytes
    from vramplan.trace.recorder import Recorder
    from vramplan.trace.result import summarize
    from vramplan.trace.step import run_inference, run_training_step

    name, config = resolve_config(model)
    from vramplan.model.hf_config import text_config

    total_layers = num_layers(dict(text_config(config)))
    traced_layers = setup.layers or total_layers
    if real:
        check_host_memory(real_run_host_bytes(run_trace(config, setup).peak_bytes), "a real CPU run")
    else:
        check_host_memory(fake_trace_host_bytes(traced_layers), "the fake-tensor trace")
    started = time.perf_counter()
    fake_mode = _NullMode() if real else FakeTensorMode(allow_non_fake_inputs=False)
    torch.manual_seed(0)
    model_obj = build_model(config, setup, None if real else fake_mode)
    attention = attention_used(model_obj)
    recorder = Recorder()
    autocast_dtype = torch.bfloat16 if setup.autocast else None
    images = nullcontext()
    if setup.images and not real:
        from vramplan.trace.images import constant_inputs

        images = constant_inputs(model_obj, fake_mode)
    with fake_mode, cuda_rules(autocast_dtype=autocast_dtype, sdpa=not real) as rules, _unpacked_positions(), images:
        if setup.training:
            run_training_step(model_obj, setup, recorder, rules, progress)
        else:
            run_inference(model_obj, setup, recorder, rules, progress)
        del model_obj
    result = summarize(recorder, model=name, setup=setup, layers_traced=traced_layers, num_layers=total_layers,
                       seconds=time.perf_counter() - started)
    notes = trace_notes(name, config, setup, attention)
    return replace(result, notes=notes)


@contextmanager
def _unpacked_positions():
    """Mask creation as the real step does it. Without an attention mask, transformers
    reads ``position_ids`` to detect packed sequences
    (``masking_utils.find_packed_sequence_indices``); the traced batch holds one
    unpadded sequence per row (positions ``0..s-1``), so the real step finds none and
    skips the causal mask for SDPA's ``is_causal`` (``_ignore_causal_mask_sdpa``):
    flash, and grouped-query attention without ``repeat_kv``. Fake tensors have no
    values to read, and transformers then assumes packing (``is_tracing``) and builds a
    4-D mask; here it gets the real step's answer."""
    import transformers.masking_utils as masking
    from torch._subclasses.fake_tensor import FakeTensor

    original = masking.find_packed_sequence_indices

    def find_packed_sequence_indices(position_ids):
        return None if isinstance(position_ids, FakeTensor) else original(position_ids)

    masking.find_packed_sequence_indices = find_packed_sequence_indices
    try:
        yield
    finally:
        masking.find_packed_sequence_indices = original


class _NullMode:
    """Stands in for FakeTensorMode in a real run."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def trace_notes(name: str, config: dict, setup: TraceSetup, attention: str) -> tuple[str, ...]:
    """What the trace ran differently from what the setup or checkpoint says."""
    from vramplan.model.hf_config import text_config

    notes = []
    if attention != setup.attention:
        notes.append(f"attention: {name} has no {setup.attention} implementation in transformers; "
                     f"traced with {attention}")
    if text_config(config).get("quantization_config") or config.get("quantization_config"):
        precision = "fp32" if setup.precision == "fp32" else "bf16"
        notes.append(f"weights: the checkpoint's quantization is not traced (its kernels need a GPU); "
                     f"weights traced in {precision}")
    return tuple(notes)
