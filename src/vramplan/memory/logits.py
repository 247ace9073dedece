"""The output logits and the cross-entropy loss: often the largest single term.

Unfused (transformers ``ForCausalLMLoss``): the head writes ``t x V`` logits in the
compute dtype; the loss upcasts them (``logits.float()``, a no-op in fp32) and
``cross_entropy`` saves the fp32 ``log_softmax`` output for backward. In backward
``nll_loss_backward`` writes an fp32 ``t x V`` gradient and ``log_softmax_backward``
another while the saved output is still alive. So, per token and vocabulary entry:

- forward high point (inside ``log_softmax``): logits ``c`` + upcast ``4`` (0 when
  ``c = 4``: same tensor) + log-probabilities ``4``;
- kept to the backward: log-probabilities, ``4``;
- backward high point: log-probabilities + two fp32 gradients, ``12``.

Fused linear cross entropy (Liger-Kernel ``fused_linear_cross_entropy_forward``)
never materialises all logits: it walks the tokens in chunks of
``next_power_of_2(ceil(t / ceil(V / h)))`` tokens (so a chunk's logits are about
``t x h`` elements), writes each chunk's logits in the compute dtype and overwrites
them with their gradient in place, and accumulates the input gradient (``t x h``,
``zeros_like(input)``) and the head's weight gradient (``zeros_like(weight)``) during
the forward.

Soft-capped logits (Gemma 2: ``cap * tanh(logits / cap)``): ``tanh`` saves its
output, one more ``c`` per element kept from the forward to the loss backward.

With vocabulary-parallel heads (Megatron) each TP rank holds ``V / tp`` columns.
"""

from __future__ import annotations

from vramplan.intmath import ceil_div
from dataclasses import dataclass

FP32 = 4
"""Bytes of an fp32 element: the loss runs in fp32."""
GRADIENT_BUFFERS = 2
"""fp32 t x V gradients alive together in backward: nll_loss's and log_softmax's."""


@dataclass(frozen=True, kw_only=True)
class LogitsBytes:
    """Bytes of the logits and loss for one micro-batch on one GPU."""

    forward_peak: int
    """Alive at the forward's high point (inside the loss)."""
    saved: int
    """Kept from the end of the forward until the loss backward."""
    backward_peak: int
    """Alive at the loss backward's high point (including ``saved``)."""
    note: str
    """How the numbers were formed."""


def logits_bytes(*, tokens: int, vocab: int, hidden: int, compute_bytes: int, tp: int = 1,
                 fused_ce: bool = False, weight_bytes: int = FP32, softcap: bool = False) -> LogitsBytes:
    """Logits and loss bytes for ``tokens`` tokens (one micro-batch on one GPU);
    ``weight_bytes`` is the head weight's element size (its gradient's, when fused)."""
    v = ceil_div(vocab, tp)
    if fused_ce:
        return _fused_logits_bytes(tokens=tokens, vocab=v, hidden=hidden, compute_bytes=compute_bytes,
                                   weight_bytes=weight_bytes)
    elems = tokens * v
    upcast = 0 if compute_bytes == FP32 else FP32
    tanh = compute_bytes if softcap else 0
    saved = (FP32 + tanh) * elems
    return LogitsBytes(
        forward_peak=(compute_bytes + upcast + FP32 + tanh) * elems,
        saved=saved,
        backward_peak=saved + GRADIENT_BUFFERS * FP32 * elems,
        note=f"{tokens:,} tokens x {v:,} vocab: logits {compute_bytes} B + fp32 upcast {upcast} B + "
             f"log_softmax 4 B" + (f" + soft-cap tanh {tanh} B" if tanh else "") + "; backward + 2 fp32 grads",
    )


def _next_power_of_2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _fused_logits_bytes(*, tokens: int, vocab: int, hidden: int, compute_bytes: int,
                        weight_bytes: int) -> LogitsBytes:
    inc_factor = max(1, ceil_div(vocab, hidden))
    chunk_tokens = min(tokens, _next_power_of_2(ceil_div(tokens, inc_factor)))
    chunk = chunk_tokens * vocab * compute_bytes  # chunk logits, overwritten by their gradient
    grad_input = tokens * hidden * compute_bytes
    grad_weight = vocab * hidden * weight_bytes
    saved = grad_input + grad_weight
    return LogitsBytes(forward_peak=saved + chunk, saved=saved, backward_peak=saved,
                       note=f"fused linear cross entropy: chunks of {chunk_tokens:,} tokens; "
                            "input and head gradients formed in the forward")
