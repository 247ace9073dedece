"""The trace of whole steps on tiny models.

Oracles: a real CPU run of the same step (real tensors, same CUDA rules) must give
the same blocks and the same peak as the fake-tensor trace; the parameters
transformers builds give the bytes of weights, gradients and optimizer states; the
KV cache holds 2 (K and V) x layers x batch x kv heads x tokens x head dim x 2
bytes (transformers' StaticCache allocates one K and one V tensor per layer)."""

from __future__ import annotations

import pytest

from trace_models import tiny_deepseek, tiny_gemma2, tiny_llama, tiny_qwen3_moe

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.exact

from vramplan.trace import TraceSetup  # noqa: E402
from vramplan.trace.recorder import cuda_block_bytes  # noqa: E402
from vramplan.trace.run import run_trace  # noqa: E402

SMALL = dict(batch_size=2, seq=32)


@pytest.mark.parametrize("kw", [
    dict(mode="train", precision="fp32"),
    dict(mode="train", precision="bf16-mixed", dropout=0.1),
    dict(mode="train", method="lora"),
    dict(mode="train", recompute=True, optimizer="sgd"),
    dict(mode="infer"),
    dict(mode="infer", cache="dynamic"),
], ids=["fp32", "bf16-mixed-dropout", "lora", "recompute-sgd", "infer-static", "infer-dynamic"])
def test_fake_trace_equals_real_cpu_run(kw):
    setup = TraceSetup(attention="eager", **SMALL, **kw)
    fake = run_trace(tiny_llama(), setup)
    real = run_trace(tiny_llama(), setup, real=True)
    assert fake.peak_bytes == real.peak_bytes
    assert fake.at_peak == real.at_peak
    assert fake.phase_highs == real.phase_highs


def _hf_params(setup):
    from vramplan.trace.build import build_model

    return [p for p in build_model(tiny_llama(), setup, None).parameters()]


@pytest.mark.parametrize("impl", ["foreach", "fused", "forloop"])
def test_adamw_states_and_step_temporaries(impl):
    setup = TraceSetup(precision="fp32", optimizer_impl=impl, **SMALL)
    result = run_trace(tiny_llama(), setup)
    per_tensor = sum(cuda_block_bytes(p.numel() * 4) for p in _hf_params(setup))
    at = dict(result.phase_breakdowns)["optimizer_step"]
    at = dict(at)
    assert at["weights"] == at["gradients"] == at["optimizer/exp_avg"] == at["optimizer/exp_avg_sq"] == per_tensor
    temp = at.get("buffers/optimizer_step", 0)
    if impl == "foreach":
        # torch/optim/adamw (_multi_tensor_adam): torch._foreach_sqrt(exp_avg_sqs) makes a
        # full parameter-sized fp32 list at once
        assert temp == per_tensor
    elif impl == "forloop":
        # torch/optim/adamw (_single_tensor_adam): denom = (exp_avg_sq.sqrt() / bc2_sqrt): two
        # temporaries of one parameter at a time; the largest is the (tied) embedding
        largest = max(cuda_block_bytes(p.numel() * 4) for p in _hf_params(setup))
        assert temp == 2 * largest
    else:
        assert temp == 0
    if impl == "fused":
        # fused Adam keeps its step counters on the device: one 512-byte block each
        assert at["optimizer/step"] == 512 * len(_hf_params(setup))


def test_mixed_precision_master_weights_and_autocast_copies():
    setup = TraceSetup(precision="bf16-mixed", **SMALL)
    result = run_trace(tiny_llama(), setup)
    forward = dict(dict(result.phase_breakdowns)["forward"])
    params = _hf_params(setup)
    assert forward["master_weights"] == sum(cuda_block_bytes(p.numel() * 4) for p in params)
    # every matmul weight is cast to bf16 once and kept for backward; Llama-3.2-1B ties the
    # head to the embedding, so the embedding matrix is cast too (for the head's linear)
    matrices = [p for p in params if p.dim() == 2]
    assert forward["activations/weight_casts"] == sum(cuda_block_bytes(p.numel() * 2) for p in matrices)


def test_lora_has_adapters_and_no_base_gradients():
    result = run_trace(tiny_llama(), TraceSetup(method="lora", lora_rank=8, **SMALL))
    at = {n.split("/")[0] for n, _ in dict(result.phase_breakdowns)["optimizer_step"]}
    assert "adapters" in at and "gradients" not in at and "optimizer" not in at


@pytest.mark.parametrize("cache", ["static", "dynamic"])
def test_kv_cache_bytes(cache):
    setup = TraceSetup(mode="infer", batch_size=2, seq=32, decode_tokens=4, cache=cache)
    result = run_trace(tiny_llama(layers=2), setup)
    tokens = 32 + 4
    per_tensor = cuda_block_bytes(2 * 2 * tokens * 32 * 2)  # batch x kv heads x tokens x head dim x bf16
    expected = 2 * 2 * per_tensor  # K and V, 2 layers
    end = dict(dict(result.phase_breakdowns)["decode"])
    assert end["kv_cache"] == expected or cache == "dynamic"
    if cache == "dynamic":
        # growing by torch.cat: at the highest decode point the cache holds at most the
        # final size plus one layer's old K and V
        assert expected - 4 * per_tensor <= end["kv_cache"] <= expected + 2 * per_tensor


def test_sdpa_uses_less_activation_memory_than_eager():
    setup = dict(precision="bf16-mixed", batch_size=2, seq=256)
    sdpa = run_trace(tiny_llama(), TraceSetup(attention="sdpa", **setup))
    eager = run_trace(tiny_llama(), TraceSetup(attention="eager", **setup))
    fwd = lambda r: sum(b for n, b in dict(r.phase_breakdowns)["forward"] if n.startswith("activations"))  # noqa: E731
    # eager keeps [b, h, s, s] fp32 scores and bf16 probabilities per layer: 2 x 4 x 256^2 x (4 + 2) x 2 layers
    assert fwd(eager) - fwd(sdpa) >= 2 * 4 * 256 * 256 * 6 * 2 * 0.9


def test_recompute_lowers_the_forward_peak():
    setup = dict(batch_size=4, seq=256)
    plain = run_trace(tiny_llama(layers=4), TraceSetup(**setup))
    recompute = run_trace(tiny_llama(layers=4), TraceSetup(recompute=True, **setup))
    assert dict(recompute.phase_highs)["forward"] < dict(plain.phase_highs)["forward"]


@pytest.mark.parametrize("batch", [1, 2, 4])
def test_peak_grows_with_batch(batch):
    small = run_trace(tiny_llama(), TraceSetup(batch_size=batch, seq=64, precision="bf16"))
    large = run_trace(tiny_llama(), TraceSetup(batch_size=batch * 2, seq=64, precision="bf16"))
    assert large.peak_bytes > small.peak_bytes


@pytest.mark.parametrize("make", [tiny_qwen3_moe, tiny_deepseek, tiny_gemma2], ids=["moe", "mla", "gemma2"])
@pytest.mark.parametrize("mode", ["train", "infer"])
def test_other_architectures_trace(make, mode):
    result = run_trace(make(), TraceSetup(mode=mode, **SMALL))
    est = result.to_estimate()
    assert est.total_bytes == result.peak_bytes > 0
    assert est.phase == result.peak_phase
