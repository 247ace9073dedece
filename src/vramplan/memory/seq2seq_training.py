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
  plus the encoder output every cross-attention's K/V projection reads. The decoder's
  cross-attention tensors (queries over the input's keys) are not counted.

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
        raise InputError(f"--input-len: {spec.name} has no encoder input (encoder-decoder models only); "
                         "use --seq")
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
        warnings.append("encoder-decoder training: encoder activations are analytical (decoder-layer formulas on the "
                        "encoder's widths); the decoder's cross-attention activations are not counted")
    return tuple(comps), tuple(warnings)
