"""Tiny models and one measured step per case, shared by the oracle test and the
accuracy benchmark. Each case builds the model with transformers on CPU from a
config, runs real steps and measures tensor memory (tests/train_measure.py), and
builds the estimate from the same config through vramplan's own reader."""

from __future__ import annotations

from dataclasses import dataclass, field

TINY_LLAMA = dict(model_type="llama", vocab_size=1000, hidden_size=128, intermediate_size=344,
                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                  use_cache=False, tie_word_embeddings=False)
"""Llama with GQA; vocabulary kept small so the layers, not the logits, set the peak."""
WIDE_LLAMA = dict(TINY_LLAMA, vocab_size=512, hidden_size=256, intermediate_size=688, num_attention_heads=8,
                  num_key_value_heads=4, num_hidden_layers=3)
TINY_GPT2 = dict(model_type="gpt2", vocab_size=1000, n_embd=128, n_layer=2, n_head=4, n_positions=1024,
                 activation_function="gelu_pytorch_tanh", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                 use_cache=False)
TINY_QWEN_MOE = dict(model_type="qwen2_moe", vocab_size=1000, hidden_size=128, intermediate_size=344,
                     moe_intermediate_size=96, shared_expert_intermediate_size=192, num_experts=8,
                     num_experts_per_tok=2, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
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
    Case("llama fp32 b8 s64", TINY_LLAMA, batch=8, seq=64),
    Case("llama fp32 recompute full", TINY_LLAMA, recompute="full"),
    Case("llama bf16 adamw", TINY_LLAMA, precision="bf16"),
    Case("llama bf16 eager", TINY_LLAMA, precision="bf16", attention="eager"),
    Case("llama bf16-mixed adamw", TINY_LLAMA, precision="bf16-mixed"),
    Case("llama bf16-mixed recompute full", TINY_LLAMA, precision="bf16-mixed", recompute="full"),
    Case("wide llama fp32 b8", WIDE_LLAMA, batch=8, seq=256),
    Case("wide llama bf16-mixed b8", WIDE_LLAMA, precision="bf16-mixed", batch=8, seq=256),
    Case("gpt2 fp32 eager", TINY_GPT2, attention="eager"),
    Case("gpt2 fp32 sdpa", TINY_GPT2),
    Case("qwen2-moe fp32", TINY_QWEN_MOE),
    Case("deepseek mla fp32 eager", TINY_MLA, attention="eager"),
    Case("llama lora fp32", TINY_LLAMA, method="lora"),
    Case("llama lora bf16", TINY_LLAMA, method="lora", precision="bf16"),
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
    if case.precision in ("bf16", "fp16"):
        model.to(torch.bfloat16 if case.precision == "bf16" else torch.float16)
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
    raise ValueError(case.optimizer)


def measure(case: Case):
    import torch

    from train_measure import measure_training_step

    model = build_model(case)
    batch = torch.randint(0, case.config["vocab_size"], (case.batch, case.seq))
    opt = make_optimizer(case, model.parameters())
    autocast = torch.bfloat16 if case.precision == "bf16-mixed" else None
    return measure_training_step(model, batch, opt, autocast_dtype=autocast)


def estimate(case: Case):
    from vramplan.model.hf_config import spec_from_config
    from vramplan.training import TrainingSetup, estimate_training

    spec = spec_from_config(dict(case.config), name=case.name)
    setup = TrainingSetup(precision=case.precision, optimizer=case.optimizer, batch=case.batch, seq=case.seq,
                          attention=case.attention, recompute=case.recompute, method=case.method,
                          lora_rank=case.lora_rank, dropout=case.dropout,
                          lora_targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))
    return estimate_training(spec, setup)
