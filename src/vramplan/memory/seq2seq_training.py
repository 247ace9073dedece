"""Training terms of encoder-decoder models and of image inputs, beside the decoder's.

- Images: each image's tokens (:func:`vramplan.model.towers.image_tokens`) join the
  sequence the text model trains on. The vision tower is frozen under LoRA/QLoRA (its
  tensors lie outside the blocks adapters attach to, and with no trainable parameter
  below it autograd saves nothing in it); under full fine-tuning its weights, gradients
  and optimizer states are counted, its saved activations are not (a warning says so).
- Encoder-decoder (T5, BART): the decoder trains on ``seq`` target tokens (the usual
  plan), and the encoder's layers save their activations over ``input_len`` tokens:
  the decoder-layer formulas of :mod:`vramplan.memory.activations` on the encoder's
  widths (bidirectional attention saves the same tensors as causal under SDPA/flash),
  plus the encoder output every cross-attention's K/V projection reads; and each decoder
  layer's cross-attention (:func:`cross_attention_saved_bytes`).

Analytical; not checked against ``vramplan trace`` (the trace builds causal LMs).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from vramplan.errors import InputError
from vramplan.estimate import Component
from vramplan.memory import activations as act
from vramplan.model.spec import ModelSpec

if TYPE_CHECKING:
    from vramplan.training import TrainingSetup

LIVE_PHASES = ("forward", "backward")
"""Phases in which the encoder's saved activations are alive (freed by its backward)."""


def with_image_tokens(spec: ModelSpec, setup: TrainingSetup) -> TrainingSetup:
    """``setup`` with its images' tokens added to ``seq``; one-line errors for images on a
    model without a vision tower and ``input_len`` on a model without an encoder input."""
    from vramplan.memory.vision_tower import check_images
    from vramplan.model.towers import image_tokens

    if setup.input_len is not None and spec.architecture != "encoder_decoder":
        raise InputError(f"input_len: {spec.name} has no encoder input (encoder-decoder models only); use seq",
                         fields=("seq",))
    if spec.attention_impl(setup.attention) != setup.attention:  # the class runs eager attention only
        setup = replace(setup, attention=spec.attention_impl(setup.attention))
    tower = check_images(spec, setup.images)
    if tower is None or not setup.images:
        return setup
    return replace(setup, seq=setup.seq + setup.images * image_tokens(tower, setup.image_size))


def extra_training_components(spec: ModelSpec, setup: TrainingSetup,
                              ctx: act.ActivationContext) -> tuple[tuple[Component, ...], tuple[str, ...]]:
    """(components alive in :data:`LIVE_PHASES`, warnings) for encoder-decoders and images."""
    from vramplan.engines.seq2seq import encoder_view

    comps: list[Component] = []
    warnings: list[str] = []
    if setup.images and setup.method == "full":
        warnings.append("full fine-tuning trains the vision tower: its weights, gradients and optimizer states are "
                        "counted, its saved activations are not")
    if spec.architecture == "encoder_decoder":
        tokens = setup.input_len or setup.seq
        enc = encoder_view(spec)
        ectx = replace(ctx, seq=tokens)
        policy = setup.recompute_policy
        if policy == "full":
            per_layer = act.checkpointed_layer_bytes(enc, ectx)
        else:
            per_layer = act.saved_layer_bytes(act.layer_activation_parts(enc, ectx, 0), policy)
        output = ectx.tokens * spec.hidden_size * ectx.c
        comps.append(Component(name="activations/encoder", bytes=enc.num_layers * per_layer + output,
                               note=f"{enc.num_layers} encoder layers over {tokens} input tokens + the encoder "
                                    "output the cross-attentions read (analytical)"))
        comps.append(Component(name="activations/cross_attention", bytes=cross_attention_saved_bytes(spec, setup, ctx),
                               note=f"{spec.num_layers} decoder cross-attentions over {tokens} input tokens "
                                    "(analytical)"))
        warnings.append("encoder-decoder training: encoder and cross-attention activations are analytical "
                        "(decoder-layer formulas on the encoder's widths), not checked against the trace")
    return tuple(comps), tuple(warnings)


def cross_attention_saved_bytes(spec: ModelSpec, setup: TrainingSetup, ctx: act.ActivationContext) -> int:
    """What one step saves in the decoder's cross-attentions, all layers: per layer the
    normed decoder input and the queries (``t_out x (h + inner)``), the keys and values
    projected from the encoder output (``2 x t_in x inner``), the attention output read
    by ``o_proj`` (``t_out x inner``); eager attention adds its probabilities
    (``heads x t_out x t_in``, plus the fp32 softmax output)."""
    if spec.architecture != "encoder_decoder":
        return 0
    c, b = ctx.c, setup.batch
    inner = spec.num_attention_heads * spec.head_dim
    t_out, t_in = b * setup.seq, b * (setup.input_len or setup.seq)
    per_layer = c * (t_out * (spec.hidden_size + 2 * inner) + 2 * t_in * inner)
    if setup.attention == "eager":
        per_layer += spec.num_attention_heads * t_out * (setup.input_len or setup.seq) * (c + act.FP32)
    if setup.recompute_policy == "full":
        return 0  # recomputed with the layer; the checkpointed input is counted by the decoder plan
    return spec.num_layers * per_layer
