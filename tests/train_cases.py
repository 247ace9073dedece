"""Tiny models and one measured step per case, shared by the oracle test and the
accuracy benchmark. Each case builds the model with transformers on CPU from a
config, runs real steps and measures tensor memory (tests/train_measure.py), and
builds the estimate from the same config through vramplan's own reader."""

from __future__ import annotations

from dataclasses import dataclass, field

TINY_LLAMA = dict(model_type="llama", vocab_size=1000, hidden_size=128, intermediate_size=344,
                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024,
                  use_cache=False, tie_word_embeddings=False)
"""Llama; vocabulary kept small so the layers, not the logits, set the peak. As many key as
query heads: with grouped keys in fp32, CUDA's SDPA runs the math kernel and a CPU step a
fused one, so this CPU oracle cannot speak for that case (the trace, which follows CUDA's
kernel choice, does: tests/test_sdpa_math_kernel.py)."""
WIDE_LLAMA = dict(TINY_LLAMA, vocab_size=512, hidden_size=256, intermediate_size=688, num_attention_heads=8,
                  num_key_value_heads=8, num_hidden_layers=3)
SMALL_VOCAB_LLAMA = dict(WIDE_LLAMA, vocab_size=64)
"""Logits negligible: the peak falls inside a layer's backward."""
TINY_GPT2 = dict(model_type="gpt2", vocab_size=1000, n_embd=128, n_layer=2, n_head=4, n_positions=1024,
                 activation_function="gelu_pytorch_tanh", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                 use_cache=False)
TINY_QWEN_MOE = dict(model_type="qwen2_moe", vocab_size=1000, hidden_size=128, intermediate_size=344,
                     moe_intermediate_size=96, shared_expert_intermediate_size=192, num_experts=8,
                     num_experts_per_tok=2, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                     max_position_embeddings=1024, use_cache=False, decoder_sparse_step=1, mlp_only_layers=[],
                     norm_topk_prob=False)
TINY_MLA = dict(model_type="deepseek_v3", vocab_size=1000, hidden_size=128, intermediate_size=344,
                moe_intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1, first_k_dense_replace=2,
                q_lora_rank=64, kv_lora_rank=32, qk_rope_head_dim=16, qk_nope_head_dim=32, v_head_dim=32,
                max_position_embeddings=1024, use_cache=False, rope_interleave=False, n_group=1, topk_group=1)
"""DeepSeek-style MLA; ``first_k_dense_replace`` = layers keeps every MLP dense."""


@dataclass(frozen=True)
class Case:
    """One measured configuration."""

    name: str
    config: dict
    precision: str = "fp32"
    optimizer: str = "adamw"
    batch: int = 4
    seq: int = 128
    attention: str = "sdpa"
    recompute: str = "none"
    method: str = "full"
    lora_rank: int = 8
    dropout: bool = False
    extra: dict = field(default_factory=dict)


CASES: tuple[Case, ...] = (
    Case("llama fp32 adamw sdpa", TINY_LLAMA),
    Case("llama fp32 adamw eager", TINY_LLAMA, attention="eager"),
    Case("llama fp32 adamw-fused", TINY_LLAMA, optimizer="adamw-fused"),
    Case("llama fp32 sgd", TINY_LLAMA, optimizer="sgd"),
    Case("llama fp32 sgd-momentum", TINY_LLAMA, optimizer="sgd-momentum"),
    Case("llama fp32 b1 s512", TINY_LLAMA, batch=1, seq=512),
    Case("llama fp32 recompute full", TINY_LLAMA, recompute="full"),
    Case("llama bf16 adamw", TINY_LLAMA, precision="bf16"),
    Case("llama bf16 eager", TINY_LLAMA, precision="bf16", attention="eager"),
    Case("llama bf16-mixed adamw", TINY_LLAMA, precision="bf16-mixed"),
    Case("llama bf16-mixed recompute full", TINY_LLAMA, precision="bf16-mixed", recompute="full"),
    Case("wide llama fp32", WIDE_LLAMA, batch=4, seq=128),
    Case("wide llama bf16-mixed", WIDE_LLAMA, precision="bf16-mixed", batch=4, seq=128),
    Case("small-vocab llama fp32", SMALL_VOCAB_LLAMA, batch=4, seq=128),
    Case("small-vocab llama bf16 eager", SMALL_VOCAB_LLAMA, precision="bf16", attention="eager", batch=4, seq=128),
    Case("gpt2 fp32 eager", TINY_GPT2, attention="eager"),
    Case("gpt2 fp32 sdpa", TINY_GPT2),
    Case("qwen2-moe fp32", TINY_QWEN_MOE),
    Case("deepseek mla fp32 eager", TINY_MLA, attention="eager"),
    Case("llama fp32 adafactor", TINY_LLAMA, optimizer="adafactor"),
    Case("llama fp32 grad-accum 2", TINY_LLAMA, extra={"grad_accum": 2}),
    Case("llama fp16-mixed adamw", TINY_LLAMA, precision="fp16-mixed"),
    Case("gpt2 bf16 eager dropout", dict(TINY_GPT2, resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1),
         precision="bf16", attention="eager", dropout=True),
    Case("qwen2-moe bf16", TINY_QWEN_MOE, precision="bf16"),
    Case("llama lora fp32", TINY_LLAMA, method="lora"),
    Case("llama lora bf16", TINY_LLAMA, method="lora", precision="bf16"),
    Case("llama lora bf16-mixed", TINY_LLAMA, method="lora", precision="bf16-mixed"),
)


def build_model(case: Case):
    import torch
    import transformers

    cfg = dict(case.config)
    model_type = cfg.pop("model_type")
    config = transformers.AutoConfig.for_model(model_type, **cfg)
    config._attn_implementation = case.attention
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config)
    if case.precision in ("bf16", "fp16") or (case.method == "lora" and case.precision.endswith("-mixed")):
        model.to(torch.float16 if case.precision.startswith("fp16") else torch.bfloat16)  # LoRA: 16-bit base
    model.train()
    if case.recompute == "full":
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if case.method == "lora":
        import peft

        lcfg = peft.LoraConfig(r=case.lora_rank, lora_alpha=16, lora_dropout=0.0,
                               target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                               "down_proj"])
        model = peft.get_peft_model(model, lcfg)
    return model


def make_optimizer(case: Case, params):
    import torch

    params = [p for p in params if p.requires_grad]
    if case.optimizer == "adamw":
        return torch.optim.AdamW(params, foreach=True)  # the CUDA default; CPU defaults to the loop
    if case.optimizer == "adamw-fused":
        return torch.optim.AdamW(params, fused=True)
    if case.optimizer == "sgd":
        return torch.optim.SGD(params, lr=0.01, foreach=True)
    if case.optimizer == "sgd-momentum":
        return torch.optim.SGD(params, lr=0.01, momentum=0.9, foreach=True)
    if case.optimizer == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(params)
    raise ValueError(case.optimizer)


def measure(case: Case):
    import torch

    from train_measure import measure_training_step

    model = build_model(case)
    batch = torch.randint(0, case.config["vocab_size"], (case.batch, case.seq))
    opt = make_optimizer(case, model.parameters())
    autocast = {"bf16-mixed": torch.bfloat16, "fp16-mixed": torch.float16}.get(case.precision)
    return measure_training_step(model, batch, opt, autocast_dtype=autocast,
                                 grad_accum=case.extra.get("grad_accum", 1))


def estimate(case: Case):
    from vramplan.model.hf_config import spec_from_config
    from vramplan.training import TrainingSetup, estimate_training

    spec = spec_from_config(dict(case.config), name=case.name)
    setup = TrainingSetup(precision=case.precision, optimizer=case.optimizer, batch=case.batch, seq=case.seq,
                          attention=case.attention, recompute=case.recompute, method=case.method,
                          grad_accum=case.extra.get("grad_accum", 1),
                          lora_rank=case.lora_rank, dropout=case.dropout,
                          lora_targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))
    return estimate_training(spec, setup)


def cpu_dropout_adjustment_bytes(case: Case) -> int:
    """Bytes by which CPU over-counts dropout masks relative to CUDA.

    CUDA's ``native_dropout`` returns a ``torch.bool`` mask (1 B per element); the CPU
    kernel draws ``bernoulli_`` into ``empty_like(input)`` and keeps the mask in the
    input dtype (2 B in bf16). The estimate models CUDA, so for dropout cases the
    measurement is corrected by (element bytes - 1) x mask elements: per layer one
    ``a x s`` mask per query token (attention probabilities) and two ``h`` masks
    (attention and MLP outputs), plus one ``h`` mask on the embedding output.
    """
    if not case.dropout:
        return 0
    cfg = case.config
    h, layers, heads = cfg["n_embd"], cfg["n_layer"], cfg["n_head"]
    tokens = case.batch * case.seq
    elems = tokens * (layers * (heads * case.seq + 2 * h) + h)
    elem_bytes = 4 if case.precision == "fp32" else 2
    return elems * (elem_bytes - 1)


def measure_as_cuda(case: Case):
    """The CPU measurement with the documented CPU-vs-CUDA corrections applied."""
    from dataclasses import replace

    m = measure(case)
    adj = cpu_dropout_adjustment_bytes(case)
    if not adj:
        return m
    phases = {k: (v - adj if k in ("forward", "backward") else v) for k, v in m.phase_peaks.items()}
    return replace(m, peak_bytes=max(phases.values()), phase_peaks=phases)
