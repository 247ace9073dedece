"""QLoRA's 4-bit base on fake tensors, modelled on bitsandbytes' own layout.

bitsandbytes' ``Params4bit`` is a tensor subclass that cannot wrap a fake tensor, and
its kernels need CUDA, so the trace rebuilds what it allocates from its source
(bitsandbytes 0.50: ``functional.quantize_4bit``, ``nn.Linear4bit``,
``autograd._functions.MatMul4Bit``, ``backends/cuda/ops.py``) and peft's
(``tuners/lora/bnb.py`` ``Linear4bit.forward``, ``utils/other.py``
``prepare_model_for_kbit_training``):

- per quantized weight of ``n = out x in`` elements, NF4 with double quantization
  (``bnb_4bit_use_double_quant=True``, blocksize 64): the packed ``uint8`` weight
  ``[(n + 1) // 2, 1]``, the 8-bit absmax ``uint8 [ceil(n / 64)]``, its fp32 absmax
  per 256 (``state2.absmax``), the fp32 ``offset`` (a scalar) and the 16-entry fp32
  NF4 code (``get_4bit_type`` makes one per weight); the 256-entry dynamic map of the
  nested quantization is shared by all weights;
- ``Linear4bit.forward``: the input cast to the compute dtype, ``matmul_4bit``, the
  output cast back to the input's dtype;
- ``MatMul4Bit.forward`` (CUDA ``gemm_4bit`` beyond 1,536 rows, and on most cards
  below: ``_dequant_linear_fallback``): the absmax dequantized to fp32, plus the
  offset (a second fp32 vector), the weight dequantized whole in the compute dtype,
  then ``F.linear``; autograd keeps only the packed weight (``ctx.tensors = (None, B)``);
- ``MatMul4Bit.backward``: ``dequantize_4bit`` (fp32 absmax, offset added in place,
  the weight in the compute dtype) and ``grad_output @ weight``;
- peft's LoRA on a 4-bit layer clones the base output and casts the input to the
  adapter dtype only when autocast is off;
- ``prepare_model_for_kbit_training``: every other 16-bit parameter (embeddings,
  norms, the head) is cast to fp32.
"""

from __future__ import annotations

from vramplan.intmath import ceil_div
BLOCKSIZE = 64
"""bitsandbytes' 4-bit blocksize (``quantize_4bit`` default)."""
NESTED_BLOCKSIZE = 256
"""Blocksize of the double quantization of the absmax (``quantize_blockwise(..., blocksize=256)``)."""
NF4_CODE_ENTRIES = 16
"""Entries of the NF4 code (``get_4bit_type("nf4")``)."""
SKIPPED_MODULES = ("lm_head",)
"""transformers' bitsandbytes integration keeps the output head unquantized."""


def make_linear4bit(linear, compute_dtype):
    """A ``Linear4bit`` stand-in with the tensors bitsandbytes keeps for ``linear``
    (on ``linear``'s device: meta when built for fake tensors)."""
    import torch

    class Linear4bit(torch.nn.Module):
        """Forward and backward allocate as bitsandbytes' ``Linear4bit`` does."""

        def __init__(self, out_features: int, in_features: int, bias, device) -> None:
            super().__init__()
            self.in_features, self.out_features = in_features, out_features
            self.compute_dtype = compute_dtype
            self.quant_dtype = compute_dtype
            n = out_features * in_features
            absmax_blocks = ceil_div(n, BLOCKSIZE)
            self.weight = torch.nn.Parameter(torch.empty(((n + 1) // 2, 1), dtype=torch.uint8, device=device),
                                             requires_grad=False)
            self.bias = bias
            self.register_buffer("absmax", torch.empty(absmax_blocks, dtype=torch.uint8, device=device))
            self.register_buffer("state2_absmax", torch.empty(ceil_div(absmax_blocks, NESTED_BLOCKSIZE),
                                                              dtype=torch.float32, device=device))
            self.register_buffer("offset", torch.empty((), dtype=torch.float32, device=device))
            self.register_buffer("code", torch.empty(NF4_CODE_ENTRIES, dtype=torch.float32, device=device))

        def forward(self, x):
            inp_dtype = x.dtype
            x = x.to(self.compute_dtype)
            bias = None if self.bias is None else self.bias.to(self.compute_dtype)
            return _MatMul4Bit.apply(x, self.weight, bias, self).to(inp_dtype)

    return Linear4bit(linear.out_features, linear.in_features, linear.bias, linear.weight.device)


def _dequantized(layer, dtype):
    """``dequantize_4bit``: the fp32 absmax (plus the offset) and the whole weight."""
    import torch

    absmax = torch.empty(layer.absmax.shape, dtype=torch.float32, device=layer.absmax.device)
    absmax = absmax + layer.offset
    weight = torch.empty((layer.out_features, layer.in_features), dtype=dtype, device=layer.absmax.device)
    del absmax
    return weight


def _autograd_function():
    import torch

    class MatMul4Bit(torch.autograd.Function):
        @staticmethod
        def forward(ctx, A, B, bias, layer):
            weight = _dequantized(layer, A.dtype)
            output = torch.nn.functional.linear(A, weight, bias)
            del weight
            ctx.layer = layer
            ctx.save_for_backward(B)  # the packed weight (already resident)
            return output

        @staticmethod
        def backward(ctx, grad_output):
            grad_A = None
            if ctx.needs_input_grad[0]:
                weight = _dequantized(ctx.layer, grad_output.dtype)
                grad_A = torch.matmul(grad_output, weight)
            return grad_A, None, None, None

    return MatMul4Bit


class _Lazy:
    """The autograd function, made on first use (torch is an extra)."""

    fn = None

    @classmethod
    def apply(cls, *args):
        if cls.fn is None:
            cls.fn = _autograd_function()
        return cls.fn.apply(*args)


_MatMul4Bit = _Lazy


def lora_4bit_forward(self, x, *args, **kwargs):
    """peft ``tuners/lora/bnb.py`` ``Linear4bit.forward`` (vanilla LoRA, adapters active)."""
    import torch

    result = self.base_layer(x, *args, **kwargs)
    result = result.clone()  # "As per Tim Dettmers, for 4bit, we need to defensively clone here."
    for name in self.active_adapters:
        if name not in self.lora_A.keys():
            continue
        lora_A, lora_B = self.lora_A[name], self.lora_B[name]
        dropout, scaling = self.lora_dropout[name], self.scaling[name]
        # the trace runs CUDA's autocast as CPU autocast
        requires_conversion = not torch.is_autocast_enabled("cpu")
        if requires_conversion:
            expected_dtype = result.dtype
            x = self._cast_input_dtype(x, lora_A.weight.dtype)
        output = lora_B(lora_A(dropout(x))) * scaling
        if requires_conversion:
            output = output.to(expected_dtype)
        result = result + output
    return result


def quantize_base(model, compute_dtype) -> None:
    """Swap every linear layer but the head for its 4-bit stand-in (inside peft's LoRA
    wrappers too), give those wrappers peft's 4-bit forward, and cast every other
    16-bit parameter to fp32 as ``prepare_model_for_kbit_training`` does."""
    import types

    import torch

    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if type(child) is not torch.nn.Linear or child_name in SKIPPED_MODULES:
                continue
            if child_name.startswith("lora_") or ".lora_" in f"{name}.{child_name}":
                continue
            if child_name == "base_layer":
                setattr(module, child_name, make_linear4bit(child, compute_dtype))
                module.forward = types.MethodType(lora_4bit_forward, module)
            elif name.split(".")[-1] not in ("lora_A", "lora_B"):
                setattr(module, child_name, make_linear4bit(child, compute_dtype))
    for pname, p in model.named_parameters():
        if "lora_" in pname or p.dtype == torch.uint8:
            continue
        if p.dtype in (torch.float16, torch.bfloat16):
            p.data = p.data.to(torch.float32)
