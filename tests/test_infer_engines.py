"""Inference estimates per engine, against engines' own arithmetic and logs.

vLLM oracle: vLLM's own log lines for four models on one H100 (79.18 GiB as the
runtime reports it), collected in llm-d-benchmark
``config_explorer/empirical-vllm-memory-results.md`` ("Model loading took", "Available
KV cache memory", peak activation, non-torch memory), and the block arithmetic of
``vllm/v1/core/kv_cache_utils.py``: ``num_blocks = available_memory // page_size //
num_layers``, ``page_size = 2 x block_size x kv_heads x head_dim x dtype bytes``.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vramplan.engines import resolve_job
from vramplan.engines.llamacpp import kv_cells_per_layer
from vramplan.engines.vllm import SAMPLER_FP32_COPIES, kv_budget_bytes, profile_peak_bytes
from vramplan.errors import InputError, LayoutError
from vramplan.inference import InferenceSetup, estimate_inference, max_batch, max_context
from vramplan.memory.kv_cache import kv_bytes_per_token_per_layer
from vramplan.model import resolve_model
from vramplan.units import GiB, MiB

H100_LOGGED_TOTAL = round(79.18 * GiB)


def _vllm_job(model: str, **kw):
    return resolve_job(resolve_model(model), InferenceSetup(engine="vllm", gpu="h100", **kw))


def test_vllm_budget_equation_reproduces_logged_kv_memory():
    # Llama-3.1-8B log: weights 14.99, peak activation 4.76, non-torch 0.13 GiB ->
    # "Available KV cache memory: 51.38 GiB" at utilisation 0.9.
    budget = kv_budget_bytes(H100_LOGGED_TOTAL, 0.9, round(14.99 * GiB), round(4.76 * GiB), round(0.13 * GiB))
    assert budget / GiB == pytest.approx(51.38, abs=0.01)
    # gpt-oss-20b: 13.47 + 7.38 + 0.13 -> 50.28 GiB.
    budget = kv_budget_bytes(H100_LOGGED_TOTAL, 0.9, round(13.47 * GiB), round(7.38 * GiB), round(0.13 * GiB))
    assert budget / GiB == pytest.approx(50.28, abs=0.01)


def test_vllm_weights_match_logged_model_loading():
    # "Model loading took 14.99 GiB" for Llama-3.1-8B (bf16).
    est = estimate_inference("llama-3.1-8b", InferenceSetup(engine="vllm", gpu="h100"))
    assert est.get("weights") / GiB == pytest.approx(14.99, rel=0.005)


@pytest.mark.parametrize("model,logged_gib", [("llama-3.1-8b", 4.76), ("gpt-oss-20b", 7.38)])
def test_vllm_profile_peak_matches_logged_activation(model, logged_gib):
    # SAMPLER_FP32_COPIES was read off a third model (Qwen3-0.6B); these two check it.
    job = _vllm_job(model)
    assert profile_peak_bytes(job, 1024, 8192, 2) / GiB == pytest.approx(logged_gib, rel=0.03)
    assert SAMPLER_FP32_COPIES == pytest.approx(5.56 * GiB / (1024 * 151_936 * 4), abs=0.01)


def test_vllm_predicted_kv_budget_close_to_log():
    # End to end: our weights + activation + non-torch on the logged total -> 51.38 GiB.
    job = _vllm_job("llama-3.1-8b")
    est = estimate_inference("llama-3.1-8b", InferenceSetup(engine="vllm", gpu="h100"))
    weights, peak = est.get("weights"), est.get("activations")
    budget = kv_budget_bytes(H100_LOGGED_TOTAL, 0.9, weights, peak, est.get("overhead/non_torch"))
    assert budget / GiB == pytest.approx(51.38, rel=0.01)
    assert job.gpu is not None


def test_vllm_blocks_and_concurrency_follow_kv_cache_utils():
    setup = InferenceSetup(engine="vllm", gpu="h100", context=16000)
    est = estimate_inference("llama-3.1-8b", setup)
    spec = resolve_model("llama-3.1-8b")
    page = 16 * kv_bytes_per_token_per_layer(spec, "bf16")
    assert page == 2 * 16 * 8 * 128 * 2  # page_size_bytes of FullAttentionSpec
    budget = est.details["kv_budget_bytes"]
    assert est.details["kv_blocks"] == budget // page // spec.num_layers
    # get_max_concurrency_for_kv_cache_config: num_blocks / blocks per max_model_len request.
    blocks_per_request = -(-16000 // 16)
    assert est.details["max_concurrent_sequences"] == est.details["kv_blocks"] // blocks_per_request
    assert est.details["max_context_at_batch"] == spec.max_position_embeddings  # one sequence: 131072 fits


def test_vllm_verdict_uses_utilisation():
    # 70B in bf16 does not fit one H100; vLLM would refuse (negative budget).
    est = estimate_inference("llama-3.1-70b", InferenceSetup(engine="vllm", gpu="h100"))
    assert not est.verdict.fits and est.details["kv_budget_bytes"] < 0
    assert any("refuse" in w for w in est.warnings)
    est = estimate_inference("llama-3.1-70b", InferenceSetup(engine="vllm", gpu="h100", tp=4))
    assert est.verdict.fits


def test_llamacpp_kv_matches_its_log_arithmetic():
    # llama.cpp logs "KV self size = 1024.00 MiB, K (f16): 512.00 MiB, V (f16): 512.00 MiB"
    # for an 8B Llama-3 at n_ctx 8192: 8192 cells x 32 layers x 8 heads x 128 x 2 B x 2.
    est = estimate_inference("llama-3.1-8b", InferenceSetup(engine="llamacpp", weights="Q4_K_M", context=8192))
    assert est.get("kv_cache") == 1024 * MiB
    # q8_0 cache: 34/64 of f16 (blocks of 32 with an fp16 scale).
    est8 = estimate_inference("llama-3.1-8b", InferenceSetup(engine="llamacpp", weights="Q4_K_M", context=8192,
                                                             kv_dtype="q8_0"))
    assert est8.get("kv_cache") == 1024 * MiB * 34 // 64


def test_llamacpp_offload_moves_memory_to_host():
    spec = resolve_model("llama-3.1-8b")
    totals = []
    for ngl in (0, 8, 16, 32, 33):
        est = estimate_inference(spec, InferenceSetup(engine="llamacpp", weights="Q4_K_M", n_gpu_layers=ngl))
        totals.append((est.get("weights") + est.get("kv_cache"), est.host_bytes))
    gpu, host = zip(*totals)
    assert list(gpu) == sorted(gpu) and list(host) == sorted(host, reverse=True)
    full = estimate_inference(spec, InferenceSetup(engine="llamacpp", weights="Q4_K_M"))
    # All layers + output on the GPU; only the token embedding stays on the host.
    assert full.details["gguf_file_bytes"] == full.get("weights") + sum(
        c.bytes for c in full.host_components if c.name == "weights")
    assert kv_cells_per_layer(spec, 1000, 1, 512) == [1024] * 32  # padded to 256


def test_llamacpp_rejects_non_gguf_formats():
    with pytest.raises(InputError, match="GGUF"):
        estimate_inference("llama-3.1-8b", InferenceSetup(engine="llamacpp", weights="nf4"))


def test_hf_peak_phase_and_rule_of_thumb():
    est = estimate_inference("llama-3.1-8b", InferenceSetup(context=32768))
    assert est.phase == "prefill" and dict(est.phases)["prefill"] == est.total_bytes
    w = est.details["weights_bytes"]
    assert est.details["rule_of_thumb_bytes"] == round(1.2 * w)
    short = estimate_inference("llama-3.1-8b", InferenceSetup(context=256, prompt=16))
    assert short.phase == "decode"
    # Eager attention materialises s x s scores: more than SDPA at long prompts.
    eager = estimate_inference("llama-3.1-8b", InferenceSetup(context=8192, attention="eager"))
    sdpa = estimate_inference("llama-3.1-8b", InferenceSetup(context=8192))
    assert eager.get("activations") > sdpa.get("activations") + 32 * 8192 * 8192 * 4


def test_hf_bitsandbytes_dequant_buffer():
    est = estimate_inference("llama-3.1-8b", InferenceSetup(weights="nf4-dq", context=4096))
    assert est.get("buffers/dequant") == 14336 * 4096 * 2  # largest linear (gate/up) in bf16


def test_tp_divides_weights_and_refuses_bad_degrees():
    one = estimate_inference("llama-3.1-70b", InferenceSetup(tp=1))
    four = estimate_inference("llama-3.1-70b", InferenceSetup(tp=4))
    assert four.get("weights") < one.get("weights") / 3.9
    assert four.get("overhead/nccl") > 0
    with pytest.raises(LayoutError, match="num_attention_heads=64"):
        estimate_inference("llama-3.1-70b", InferenceSetup(tp=3))
    sixteen = estimate_inference("llama-3.1-70b", InferenceSetup(tp=16))
    assert any("replicated" in w for w in sixteen.warnings)


def test_vllm_custom_allreduce_buffers_under_tp():
    # vllm/distributed/device_communicators/custom_all_reduce.py: max_size=8192 * 1024;
    # meta (meta_size() + max_size) and input buffer (max_size) via cudaMalloc, plus
    # rank_data = torch.empty(8 * 1024 * 1024, uint8); world sizes 2, 4, 6, 8 only.
    two = estimate_inference("llama-3.1-8b", InferenceSetup(engine="vllm", tp=2))
    assert two.get("overhead/custom_allreduce") == 8192 * 1024 * 2 + 8 * 1024 * 1024
    one = estimate_inference("llama-3.1-8b", InferenceSetup(engine="vllm"))
    assert "overhead/custom_allreduce" not in {c.name for c in one.components}


def test_context_beyond_max_positions_warns_or_fails():
    est = estimate_inference("llama-2-7b", InferenceSetup(context=8192))
    assert any("max_position_embeddings=4,096" in w for w in est.warnings)
    with pytest.raises(InputError, match="max_position_embeddings"):
        estimate_inference("llama-2-7b", InferenceSetup(context=8192, strict=True))


@pytest.mark.parametrize("bad", [dict(batch=0), dict(context=-5), dict(engine="tgi"), dict(tp=0),
                                 dict(gpu_memory_utilization=1.5), dict(prompt=10, context=5)])
def test_bad_setup_values(bad):
    with pytest.raises(InputError):
        InferenceSetup(**bad)


@pytest.mark.parametrize("engine", ["hf", "vllm", "llamacpp"])
def test_solvers_find_the_boundary(engine):
    weights = "Q4_K_M" if engine == "llamacpp" else None
    setup = InferenceSetup(engine=engine, gpu="rtx-4090", weights=weights, batch=2)
    best = max_context("llama-3.1-8b", setup)
    assert 0 < best < 131072 or engine == "llamacpp"
    assert estimate_inference("llama-3.1-8b", replace(setup, context=best)).verdict.fits
    if best < 131072:
        assert not estimate_inference("llama-3.1-8b", replace(setup, context=best + 1)).verdict.fits
    n = max_batch("llama-3.1-8b", replace(setup, context=4096))
    assert estimate_inference("llama-3.1-8b", replace(setup, context=4096, batch=n)).verdict.fits
    assert not estimate_inference("llama-3.1-8b", replace(setup, context=4096, batch=n + 1)).verdict.fits


def test_solver_needs_gpu():
    with pytest.raises(InputError, match="needs gpu NAME"):
        max_context("llama-3.1-8b", InferenceSetup())


@settings(max_examples=25, deadline=None)
@given(engine=st.sampled_from(["hf", "vllm", "llamacpp"]), ctx=st.integers(1, 60_000), batch=st.integers(1, 16))
def test_estimate_grows_with_context_and_batch(engine, ctx, batch):
    weights = "Q4_K_M" if engine == "llamacpp" else None
    base = InferenceSetup(engine=engine, weights=weights, context=ctx, batch=batch)
    total = estimate_inference("qwen3-8b", base).total_bytes
    assert estimate_inference("qwen3-8b", replace(base, context=ctx + 512)).total_bytes >= total
    assert estimate_inference("qwen3-8b", replace(base, batch=batch + 1)).total_bytes >= total


@pytest.mark.parametrize("model", ["deepseek-v2-lite", "gemma-3-27b", "gpt-oss-20b", "mixtral-8x7b", "gpt2",
                                   "qwen3-30b-a3b", "phi-3-mini"])
@pytest.mark.parametrize("engine", ["hf", "vllm", "llamacpp"])
def test_every_engine_handles_catalog_architectures(model, engine):
    est = estimate_inference(model, InferenceSetup(engine=engine, context=2048, batch=2))
    assert est.total_bytes > est.get("weights") > 0
    assert est.get("kv_cache") > 0
    assert est.to_dict()["components"]


MISTRAL_V02 = dict(model_type="mistral", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                   num_attention_heads=32, num_key_value_heads=8, vocab_size=32000,
                   max_position_embeddings=32768, rope_theta=1e6, sliding_window=None)
QWEN25_15B = dict(model_type="qwen2", hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                  num_attention_heads=12, num_key_value_heads=2, vocab_size=151936,
                  max_position_embeddings=131072, tie_word_embeddings=True)


@pytest.mark.parametrize("cfg,n_ctx,n_ubatch,logged_mib", [
    # Same two logs: "CUDA_Host compute buffer size = 12.01 MiB" (2048) and "72.01 MiB"
    # (32768) for the Mistral-7B; "304.09 MiB" for the Qwen2.5-1.5B at 8192 / 8192.
    (MISTRAL_V02, 2048, 512, 12.01),
    (MISTRAL_V02, 32768, 512, 72.01),
    (QWEN25_15B, 8192, 8192, 304.09),
])
def test_llamacpp_host_compute_buffer_matches_logs(cfg, n_ctx, n_ubatch, logged_mib):
    from vramplan.engines.llamacpp import host_compute_buffer_bytes
    from vramplan.model.hf_config import spec_from_config

    est = host_compute_buffer_bytes(spec_from_config(cfg), n_ubatch=n_ubatch, n_kv=n_ctx)
    assert est / MiB == pytest.approx(logged_mib, rel=0.01)


@pytest.mark.parametrize("cfg,n_ctx,n_ubatch,flash,logged_mib", [
    # fedora-copr/logdetective PR #106: a Mistral-7B-v0.2 GGUF (32 layers, 128 KiB KV per
    # token, rope base 1e6), n_ubatch 512, flash_attn 0: "CUDA0 compute buffer size =
    # 164.00 MiB" at n_ctx 2048 and "2144.00 MiB" at 32768 (KV 256 / 4096 MiB).
    (MISTRAL_V02, 2048, 512, False, 164.00),
    (MISTRAL_V02, 32768, 512, False, 2144.00),
    # ggml-org/llama.cpp issue #10664: a Qwen2.5-1.5B draft model (28 KiB KV per token),
    # n_ctx = n_ubatch = 8192, flash_attn 1: "CUDA0 compute buffer size = 4786.94 MiB".
    (QWEN25_15B, 8192, 8192, True, 4786.94),
])
def test_llamacpp_compute_buffer_matches_logs(cfg, n_ctx, n_ubatch, flash, logged_mib):
    from vramplan.engines.llamacpp import compute_buffer_bytes
    from vramplan.model.hf_config import spec_from_config

    spec = spec_from_config(cfg)
    est = compute_buffer_bytes(spec, n_ubatch=n_ubatch, n_kv=n_ctx, flash_attention=flash)
    assert est / MiB == pytest.approx(logged_mib, rel=0.02)
    kv = estimate_inference(spec, InferenceSetup(engine="llamacpp", weights="F16", context=n_ctx,
                                                 flash_attention=flash, n_ubatch=n_ubatch)).get("kv_cache")
    assert kv / MiB == {2048: 256, 32768: 4096, 8192: 224}[n_ctx]


def test_hf_refuses_gguf():
    with pytest.raises(InputError, match="dequantizes GGUF"):
        estimate_inference("llama-3.1-8b", InferenceSetup(weights="Q4_K_M"))


@settings(max_examples=20, deadline=None)
@given(model=st.sampled_from(["llama-3.1-70b", "qwen2.5-72b", "mixtral-8x22b", "qwen3-235b-a22b"]),
       fmt=st.sampled_from(["bf16", "fp8", "nf4-dq", "gptq-int4-g128", "awq"]))
def test_more_tp_means_less_per_gpu(model, fmt):
    from vramplan.memory.weights import check_tensor_parallel, resolve_weights, weight_split_components

    spec = resolve_model(model)
    choice = resolve_weights(spec, fmt)
    per_gpu = []
    for tp in (1, 2, 4, 8):
        try:
            check_tensor_parallel(spec, tp)
        except LayoutError:
            continue
        per_gpu.append(sum(c.bytes for c in weight_split_components(spec, choice, tp)))
    assert per_gpu == sorted(per_gpu, reverse=True) and len(set(per_gpu)) == len(per_gpu)
    assert sum(c.bytes for c in weight_split_components(spec, choice)) <= \
        sum(c.bytes for c in weight_split_components(spec, resolve_weights(spec, "bf16")))


@pytest.mark.parametrize("engine,kv", [("vllm", "q4_0"), ("hf", "q8_0"), ("llamacpp", "fp8")])
def test_engine_refuses_cache_types_it_lacks(engine, kv):
    weights = "Q4_K_M" if engine == "llamacpp" else None
    with pytest.raises(InputError, match=f"kv_dtype {kv}: not a"):
        estimate_inference("llama-3.1-8b", InferenceSetup(engine=engine, kv_dtype=kv, weights=weights))


def test_vllm_warns_when_one_sequence_exceeds_the_budget():
    est = estimate_inference("llama-3.1-8b", InferenceSetup(engine="vllm", gpu="rtx-4090", context=131072))
    assert any("one sequence of 131,072 tokens" in w for w in est.warnings)
    assert not est.verdict.fits


def test_vllm_tp2_fp8_70b_against_log():
    # RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic (compressed-tensors, FP8 per channel)
    # at TP=2 on H100: "Model loading took 33.88 GiB", peak activation 4.84 GiB (same
    # llm-d-benchmark logs). Llama-3.3-70B has Llama-3.1-70B's architecture.
    fmt = {"quant_method": "compressed-tensors", "ignore": ["lm_head"],
           "config_groups": {"group_0": {"weights": {"num_bits": 8, "type": "float", "strategy": "channel"}}}}
    from vramplan.quant import format_from_quantization_config

    weights = format_from_quantization_config(fmt, dtype="bf16")
    spec = resolve_model("llama-3.1-70b")
    est = estimate_inference(spec, InferenceSetup(engine="vllm", gpu="h100", tp=2, weights=weights))
    assert est.get("weights") / GiB == pytest.approx(33.88, rel=0.005)
    assert est.get("activations") / GiB == pytest.approx(4.84, rel=0.04)
