"""Saved activations of one training forward of small encoder-decoder and encoder models,
measured by PyTorch (every tensor autograd saves, through ``saved_tensors_hooks``,
counted once per storage) against vramplan's forward-end activations (the decoder's
per-layer plan + the encoder's and the cross-attentions' terms).

Eager attention in fp32 on the CPU (the CPU's SDPA saves what eager saves; GPU SDPA
kernels do not), dropout off. Run: ``PYTHONPATH=src python tests/encdec_measure.py``.
"""

from __future__ import annotations

import warnings

CASES = {
    "t5": dict(d_model=256, d_kv=32, d_ff=1024, num_layers=4, num_heads=8, vocab_size=512, dropout_rate=0.0,
               decoder_start_token_id=0, pad_token_id=0),
    "t5 gated": dict(d_model=256, d_kv=32, d_ff=1024, num_layers=4, num_heads=8, vocab_size=512, dropout_rate=0.0,
                     decoder_start_token_id=0, pad_token_id=0, feed_forward_proj="gated-gelu"),
    "bart": dict(d_model=256, encoder_layers=4, decoder_layers=4, encoder_ffn_dim=1024, decoder_ffn_dim=1024,
                 encoder_attention_heads=8, decoder_attention_heads=8, vocab_size=512, dropout=0.0,
                 attention_dropout=0.0, activation_dropout=0.0, max_position_embeddings=512,
                 decoder_start_token_id=2, pad_token_id=1),
    "bert": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=8, intermediate_size=1024, vocab_size=512,
                 hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
}
BATCH, INPUT_TOKENS, TARGET_TOKENS = 4, 256, 64


def measured_saved_bytes(model, **inputs) -> int:
    import torch

    seen: dict[int, int] = {}

    def pack(t):
        if not (t.requires_grad and t.is_leaf):  # parameters are weights, not activations
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(**inputs)
    return sum(seen.values())


def estimated_bytes(config: dict, encoder_only: bool) -> int:
    from vramplan.memory.seq2seq_training import extra_training_components
    from vramplan.model.hf_config import spec_from_config
    from vramplan.training import TrainingSetup, _context, activation_plan

    spec = spec_from_config(config, complete=False)
    setup = TrainingSetup(batch=BATCH, seq=INPUT_TOKENS if encoder_only else TARGET_TOKENS, precision="fp32",
                          attention="eager", input_len=None if encoder_only else INPUT_TOKENS)
    plan = activation_plan(spec, setup)
    extra = extra_training_components(spec, setup, _context(spec, setup))[0]
    return sum(plan.per_layer_kept) + plan.outside_layers + sum(c.bytes for c in extra)


def main() -> None:
    import torch
    import transformers

    warnings.simplefilter("ignore")
    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    print(f"{'model':10} {'measured':>12} {'estimated':>12} {'error':>8}")
    for name, kwargs in CASES.items():
        model_type = name.split()[0]
        config = transformers.AutoConfig.for_model(model_type, **kwargs)
        encoder_only = model_type == "bert"
        auto = transformers.AutoModelForMaskedLM if encoder_only else transformers.AutoModelForSeq2SeqLM
        model = auto.from_config(config, attn_implementation="eager").train()
        ids = torch.randint(4, 500, (BATCH, INPUT_TOKENS))
        labels = ids if encoder_only else torch.randint(4, 500, (BATCH, TARGET_TOKENS))
        measured = measured_saved_bytes(model, input_ids=ids, labels=labels)
        estimated = estimated_bytes(config.to_dict(), encoder_only)
        print(f"{name:10} {measured:12,} {estimated:12,} {estimated / measured - 1:+8.1%}")


if __name__ == "__main__":
    main()
