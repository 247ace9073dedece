"""One step, run under the recorder with its phases marked.

Training is traced in steady state: the optimizer's states already exist (one
untraced ``step()`` on zero gradients creates them, as the first real step would),
gradients were set to ``None`` by the previous ``zero_grad``, and the step is the
usual loop body: forward + loss under autocast, ``backward()``, ``step()``,
``zero_grad(set_to_none=True)``. The logits are dropped after the loss, as a
training loop that keeps only the loss does.
"""

from __future__ import annotations

from vramplan.trace.recorder import Recorder, labelled
from vramplan.trace.setup import SGD_MOMENTUM, TraceSetup


def make_optimizer(params, setup: TraceSetup):
    """The torch.optim optimizer of ``setup``. ``foreach=True`` is what PyTorch
    picks by default for CUDA tensors (torch/optim/optimizer.py
    ``_default_to_fused_or_foreach``); on CPU it would pick the for-loop."""
    import torch

    impl = {"foreach": {"foreach": True}, "fused": {"fused": True}, "forloop": {"foreach": False}}[setup.optimizer_impl]
    if setup.optimizer == "sgd":
        return torch.optim.SGD(params, lr=1e-3, momentum=SGD_MOMENTUM, **impl)
    cls = torch.optim.AdamW if setup.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=1e-4, **impl)


def _init_optimizer_state(optimizer, params) -> None:
    """Create the states a first real step creates, without a forward."""
    import torch

    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _inputs(model, setup: TraceSetup, length: int):
    import torch

    vocab = model.config.get_text_config().vocab_size
    return torch.randint(0, vocab, (setup.batch_size, length))


def adopt_model(recorder: Recorder, model, setup: TraceSetup) -> None:
    """Count parameters and buffers: LoRA adapters, fp32 master weights under
    mixed precision, else weights."""
    import torch

    master = setup.autocast and setup.method == "full"
    for name, p in model.named_parameters():
        if "lora_" in name:
            recorder.adopt(p, "adapters/weights")
        else:
            fp32_master = master and p.requires_grad and p.dtype == torch.float32
            recorder.adopt(p, "master_weights" if fp32_master else "weights")
    for b in model.buffers():
        recorder.adopt(b, "weights/buffers")


def _host_step_counter(optimizer, setup: TraceSetup) -> bool:
    """The Adam ``step`` counter lives in host memory on CUDA unless fused or
    capturable (torch/optim/adam.py ``_init_group``)."""
    return setup.optimizer_impl != "fused"


def adopt_optimizer(recorder: Recorder, optimizer, model, setup: TraceSetup) -> None:
    adapter_ids = {id(p) for n, p in model.named_parameters() if "lora_" in n}
    host_steps = _host_step_counter(optimizer, setup)
    for p, state in optimizer.state.items():
        prefix = "adapters/optimizer" if id(p) in adapter_ids else "optimizer"
        for key, value in state.items():
            if key == "step" and host_steps:
                continue
            recorder.adopt(value, f"{prefix}/{key}")


def run_training_step(model, setup: TraceSetup, recorder: Recorder, rules, progress=None, *,
                      measure_from_step: bool = False) -> None:
    """``measure_from_step``: on a real GPU, reset the peak statistics after the
    optimizer states exist, so the peak read is the steady step's.

    A causal LM trains on ``seq`` tokens that are their own labels; a masked LM
    (BERT) the same, unshifted; a sequence-to-sequence LM (T5, BART) reads
    ``input_len`` encoder tokens and trains on ``seq`` target tokens, its decoder
    fed the targets shifted right as its forward does when given labels."""
    from vramplan.trace.build import model_kind

    kind = "image_text" if setup.images else model_kind(model.config)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, setup)
    _init_optimizer_state(optimizer, params)
    extra = {}
    if kind == "image_text":
        input_ids, extra = _image_inputs(model, setup)
        labels = input_ids.clone()
    else:
        input_ids = _inputs(model, setup, setup.encoder_tokens if kind == "seq2seq" else setup.seq)
        labels = _inputs(model, setup, setup.seq) if kind == "seq2seq" else input_ids.clone()
    if kind == "seq2seq":
        extra["decoder_input_ids"] = _base_model(model).prepare_decoder_input_ids_from_labels(labels=labels)
    if measure_from_step:
        import torch

        torch.cuda.reset_peak_memory_stats()
    adopt_model(recorder, model, setup)
    adopt_optimizer(recorder, optimizer, model, setup)
    for t in (input_ids, labels, *extra.values()):
        recorder.adopt(t, "activations/inputs")
    adapter_ids = {id(p) for n, p in model.named_parameters() if "lora_" in n}
    vocab = model.config.get_text_config().vocab_size
    with recorder.module_hooks(model), recorder.recording():
        with recorder.in_phase("forward"):
            with rules.autocast():
                logits = model(input_ids=input_ids, **extra).logits
                recorder.mark(logits, "logits/logits")
                with labelled("logits/loss"):
                    loss = _loss(model, kind, logits, labels, vocab)
            del logits
        _tick(progress)
        with recorder.in_phase("backward"):
            loss.backward()
        for p in params:
            recorder.mark(p.grad, "adapters/gradients" if id(p) in adapter_ids else "gradients")
        _tick(progress)
        with recorder.in_phase("optimizer_step"):
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        del loss
    _tick(progress)


def _image_inputs(model, setup: TraceSetup):
    """(input_ids, the other forward inputs) of ``setup.images`` images per sequence, as
    the processor makes them (:mod:`vramplan.trace.images`): index inputs constant,
    ``pixel_values`` a fake fp32 tensor (real in a real run)."""
    import torch

    from vramplan.trace.images import as_constant, image_inputs

    from torch.utils._python_dispatch import _disable_current_modes

    base = _base_model(model)
    fake_mode = getattr(next(model.parameters()), "fake_mode", None)
    with _disable_current_modes():  # real index tensors, made constant below
        made = image_inputs(base.config.to_dict(), base.config, batch=setup.batch_size, seq=setup.seq,
                            images=setup.images, image_size=setup.image_size)
    extra = {k: as_constant(t, fake_mode) for k, t in made.forward_kwargs.items()}
    extra["pixel_values"] = torch.zeros(made.pixel_shape, dtype=torch.float32)
    return as_constant(made.input_ids, fake_mode), extra


def _base_model(model):
    """The transformers model under a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _loss(model, kind: str, logits, labels, vocab: int):
    """The loss as the model's own forward computes it from ``labels``: a causal LM's
    ``loss_function`` (shifted, fp32 upcast); a masked or sequence-to-sequence LM whose
    forward calls ``self.loss_function`` (ModernBERT: ``ForMaskedLMLoss``, unshifted,
    fp32 upcast) the same; the others (T5, BART, BERT) ``CrossEntropyLoss()`` on the
    flattened logits in their own dtype."""
    import inspect

    import torch

    base = _base_model(model)
    if kind in ("causal", "image_text"):
        return model.loss_function(logits=logits, labels=labels, vocab_size=vocab)
    if "self.loss_function" in inspect.getsource(type(base).forward):
        return base.loss_function(logits, labels, vocab_size=vocab)
    return torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), labels.view(-1))


def _tick(progress) -> None:
    if progress is not None:
        progress()


def _labelled_cache(cache):
    """Allocations inside the cache's ``update`` are KV cache."""
    update = cache.update

    def wrapped(*args, **kwargs):
        with labelled("kv_cache"):
            return update(*args, **kwargs)

    cache.update = wrapped
    return cache


def run_inference(model, setup: TraceSetup, recorder: Recorder, rules, progress=None) -> None:
    """Prefill ``seq`` tokens, then ``decode_tokens`` single-token forwards with the
    cache. With ``logits="last"`` only the last position's logits are computed
    (``logits_to_keep=1``), as generation does; with ``"all"`` the prefill returns
    every position's (``logits_to_keep=0``), as a plain scoring forward does.

    A sequence-to-sequence LM runs as ``generate`` does: the encoder once over
    ``input_len`` tokens (its output kept to the end), then the decoder over the
    ``seq`` decoder prompt and each new token, with an ``EncoderDecoderCache`` (the
    self-attention cache as ``cache`` says, the cross-attention cache filled by the first
    decoder forward). A masked LM has no cache: one forward over ``seq`` tokens."""
    import torch
    import transformers

    from vramplan.trace.build import model_kind

    kind = "image_text" if setup.images else model_kind(model.config)
    if kind == "masked":
        prompt = _inputs(model, setup, setup.seq)
        adopt_model(recorder, model, setup)
        recorder.adopt(prompt, "activations/inputs")
        with torch.no_grad(), recorder.module_hooks(model), recorder.recording():
            with recorder.in_phase("prefill"):
                out = model(input_ids=prompt)
                recorder.mark(out.logits, "logits/logits")
                del out
            _tick(progress)
        return
    total = setup.seq + setup.decode_tokens
    config = model.config.get_text_config(decoder=True)
    own_cache = not _takes_default_cache(model)
    if own_cache:
        cache = None  # the model builds its own on the first forward, as ``generate`` lets it
    elif setup.cache == "static":
        cache = transformers.StaticCache(config=config, max_cache_len=total)
    else:
        cache = transformers.DynamicCache(config=config)
    cache = _labelled_cache(cache) if cache is not None else None
    images = {}
    if kind == "image_text":
        prompt, images = _image_inputs(model, setup)
        total = prompt.shape[1] + setup.decode_tokens
        if setup.cache == "static" and not own_cache:
            cache = _labelled_cache(transformers.StaticCache(config=config, max_cache_len=total))
    else:
        prompt = _inputs(model, setup, setup.seq)
    adopt_model(recorder, model, setup)
    for t in (prompt, *images.values()):
        recorder.adopt(t, "activations/inputs")
    cache_kw = _cache_keyword(model)
    if own_cache and cache_kw not in _forward_parameters(model) and "state" in _forward_parameters(model):
        cache_kw = "state"  # RWKV passes its recurrent state under its own name
    keep = {} if "logits_to_keep" not in _forward_parameters(model) else {"logits_to_keep": 1}
    with torch.no_grad(), recorder.module_hooks(model), recorder.recording():
        encoded = {}
        if kind == "seq2seq":
            source = _inputs(model, setup, setup.encoder_tokens)
            recorder.adopt(source, "activations/inputs")
            cross = transformers.DynamicCache(config=config)
            if setup.cache == "static":
                cross = transformers.StaticCache(config=config, max_cache_len=setup.encoder_tokens)
            cache = transformers.EncoderDecoderCache(cache, _labelled_cache(cross))
            with recorder.in_phase("prefill"):
                encoded = {"encoder_outputs": model.get_encoder()(input_ids=source)}
        with recorder.in_phase("prefill"):
            first = dict(keep, logits_to_keep=0) if keep and setup.logits == "all" else keep
            ids = {"decoder_input_ids" if kind == "seq2seq" else "input_ids": prompt}
            out = model(**ids, use_cache=True, **first, **encoded, **images, **{cache_kw: cache})
            token = out.logits[:, -1:].argmax(-1)
            if own_cache:
                cache = getattr(out, cache_kw, None)
            del out
        _tick(progress)
        for _ in range(setup.decode_tokens):
            with recorder.in_phase("decode"):
                ids = {"decoder_input_ids" if kind == "seq2seq" else "input_ids": token}
                out = model(**ids, use_cache=True, **keep, **encoded, **{cache_kw: cache})
                token = out.logits[:, -1:].argmax(-1)
                del out
            _tick(progress)


def _takes_default_cache(model) -> bool:
    """Can the model run on a transformers ``DynamicCache``/``StaticCache``? MiniMax-01
    and xLSTM keep their states in a cache class of their own and refuse others, RWKV in
    a ``state`` list; ``generate`` then passes none and the model builds its own
    (``GenerationMixin._supports_default_dynamic_cache``), which the next forward gets."""
    supports = getattr(_base_model(model), "_supports_default_dynamic_cache", None)
    return supports is None or supports()


def _forward_parameters(model):
    import inspect

    return inspect.signature(_base_model(model).forward).parameters


def _cache_keyword(model) -> str:
    """``cache`` in recent transformers, ``past_key_values`` before."""
    return "cache" if "cache" in _forward_parameters(model) else "past_key_values"
