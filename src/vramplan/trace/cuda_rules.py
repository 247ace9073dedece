"""Make a CPU run allocate what the same step allocates on CUDA.

PyTorch's CPU and CUDA paths differ in ways that change memory. While
:func:`cuda_rules` is active, the dispatcher is patched (``torch.library``
registrations, removed on exit) so that:

* **Autocast** follows the CUDA op lists. The lists below are PyTorch 2.13's
  ``AT_FORALL_LOWER_PRECISION_FP``, ``AT_FORALL_FP32``, ``AT_FORALL_FP32_SET_OPT_DTYPE``,
  ``AT_FORALL_PROMOTE`` and the ``norm`` fp32_append_dtype pair
  (``aten/src/ATen/autocast_mode.h``), with the policies of ``autocast_mode.cpp``
  (casts of fp32 leaf parameters to the low dtype are cached until autocast exits).
  CPU-only entries (``cat``, ``stack``, ``cross_entropy_loss``, ...) fall through.
  The kernels sit at the AutocastCPU key, above autograd, so autograd records and
  saves the casts exactly as it does on CUDA.
* **SDPA** runs the kernel CUDA would pick (``sdp_utils.cpp``, priority flash >
  memory-efficient > math): flash for fp16/bf16 without a mask and head dims
  <= 256 divisible by 8 (saves the output and a float32 log-sum-exp [b, h, s_q]);
  memory-efficient otherwise when query and key head dims match, they and the value
  head dim divide by 8 (4 in fp32) and keys have the query's head count
  (log-sum-exp padded to 32 rows); else the
  math path (saves the attention probabilities). Kernel workspaces inside one
  call (flash's dq accumulator, GQA's expanded dk/dv) are freed before the call
  returns and are not seen.
* **Grouped GEMM** of MoE experts with fp32 weights runs transformers' fallback op
  (PyTorch's ``_grouped_mm`` takes bf16 only).
* **Dropout** uses the fused CUDA kernel (``native_dropout``), which saves a bool
  mask (1 byte per element) instead of CPU's mask in the input dtype.

The caching allocator's 512-byte rounding is applied by the recorder.
"""

from __future__ import annotations

from contextlib import contextmanager

# PyTorch 2.13, aten/src/ATen/autocast_mode.h. Entries are "op" or "op.overload".
LOWER_PRECISION_FP: tuple[str, ...] = (
    "_convolution.deprecated", "_convolution", "conv1d", "conv2d", "conv3d", "conv_tbc", "conv_transpose1d",
    "conv_transpose2d.input", "conv_transpose3d.input", "convolution", "prelu", "addmm", "addmv", "addr",
    "matmul", "einsum", "mm", "mv", "linalg_vecdot", "linear", "addbmm", "baddbmm", "bmm", "chain_matmul",
    "linalg_multi_dot", "_thnn_fused_lstm_cell", "_thnn_fused_gru_cell", "lstm_cell", "gru_cell",
    "rnn_tanh_cell", "rnn_relu_cell", "_scaled_dot_product_flash_attention", "scaled_dot_product_attention",
)
FP32: tuple[str, ...] = (
    "acos", "asin", "cosh", "erfinv", "exp", "expm1", "log", "log10", "log2", "log1p", "reciprocal", "rsqrt",
    "sinh", "tan", "pow.Tensor_Scalar", "pow.Tensor_Tensor", "pow.Scalar", "softplus", "layer_norm",
    "native_layer_norm", "rms_norm", "group_norm", "frobenius_norm.dim", "nuclear_norm", "nuclear_norm.dim",
    "cosine_similarity", "poisson_nll_loss", "cosine_embedding_loss", "nll_loss", "nll_loss2d",
    "hinge_embedding_loss", "kl_div", "l1_loss", "smooth_l1_loss", "huber_loss", "mse_loss",
    "margin_ranking_loss", "multilabel_margin_loss", "soft_margin_loss", "triplet_margin_loss",
    "multi_margin_loss", "binary_cross_entropy_with_logits", "dist", "pdist", "cdist", "renorm", "logsumexp",
    "upsample_nearest1d", "_upsample_nearest_exact1d", "upsample_nearest2d", "_upsample_nearest_exact2d",
    "upsample_nearest3d", "_upsample_nearest_exact3d", "upsample_linear1d", "upsample_bilinear2d",
    "_upsample_bilinear2d_aa", "upsample_trilinear3d", "upsample_bicubic2d", "_upsample_bicubic2d_aa",
)
FP32_SET_OPT_DTYPE: tuple[str, ...] = (
    "prod", "prod.dim_int", "softmax.int", "log_softmax.int", "cumprod", "cumsum", "linalg_vector_norm",
    "linalg_matrix_norm", "linalg_matrix_norm.str_ord", "sum", "sum.dim_IntList",
)
FP32_APPEND_DTYPE: dict[str, str] = {
    # registered overload -> overload it redispatches to with dtype=float32 appended
    "norm.Scalar": "norm.ScalarOpt_dtype",
    "norm.ScalarOpt_dim": "norm.ScalarOpt_dim_dtype",
}
PROMOTE: tuple[str, ...] = (
    "addcdiv", "addcmul", "atan2", "bilinear", "cross", "dot", "vdot", "grid_sampler", "index_put",
    "tensordot", "scatter_add",
)

FLASH_MAX_HEAD_DIM = 256
"""Largest head dim PyTorch's flash kernel takes (sdp_utils.cpp, check_head_dim_size_flash)."""
HEAD_DIM_MULTIPLE_HALF = 8
"""Flash and memory-efficient kernels need head dims divisible by 8 in fp16/bf16 (sdp_utils.cpp)."""
HEAD_DIM_MULTIPLE_FP32 = 4
"""The memory-efficient kernel needs head dims divisible by 4 in fp32 (sdp_utils.cpp)."""


def _op(name: str):
    import torch

    base, _, overload = name.partition(".")
    packet = getattr(torch.ops.aten, base)
    return getattr(packet, overload or "default")


def _eligible(t) -> bool:
    """autocast_mode.h ``is_eligible``: a floating tensor other than float64."""
    import torch

    return isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float64


WEIGHT_CAST_LABEL = "activations/weight_casts"
"""Component of autocast's cached 16-bit weight copies: made in the forward, kept by
autograd until the layer's backward, one set per micro-batch; not parameters as stored,
so named as the analytical estimate names them (docs/training.md, model states)."""


class _Autocast:
    """The CUDA policies, applied to CPU tensors, with the weight-cast cache."""

    def __init__(self, low_dtype):
        from torch.utils.weak import WeakIdKeyDictionary

        self.low_dtype = low_dtype
        self.cache = WeakIdKeyDictionary()

    def cast(self, value, dtype):
        """autocast_mode.cpp ``cached_cast``: cast eligible tensors (recursing into
        lists); fp32 leaf parameters cast to the low dtype are cached."""
        import torch

        if isinstance(value, (list, tuple)):
            return type(value)(self.cast(v, dtype) for v in value)
        if not _eligible(value) or value.dtype == dtype:
            return value
        cacheable = (dtype == self.low_dtype and value.dtype == torch.float32 and value.requires_grad
                     and value.is_leaf and not value._is_view())
        if cacheable:
            hit = self.cache.get(value)
            if hit is None:
                from vramplan.trace.recorder import labelled

                with labelled(WEIGHT_CAST_LABEL):
                    hit = value.to(dtype)
                self.cache[value] = hit
            return hit
        return value.to(dtype)

    def promote_dtype(self, args):
        import torch

        dtype = self.low_dtype
        for a in args:
            for t in (a if isinstance(a, (list, tuple)) else (a,)):
                if _eligible(t):
                    dtype = torch.promote_types(dtype, t.dtype)
        return dtype


def _first_eligible(args) -> bool:
    return bool(args) and _eligible(args[0])


def _kernel(policy: str, name: str, state: _Autocast):
    import torch

    op = _op(name)
    exclude = torch._C.DispatchKeySet(torch._C.DispatchKey.AutocastCPU)
    dtype_index = next((i for i, a in enumerate(op._schema.arguments) if a.name == "dtype"), None)

    def lower(*args, **kwargs):
        with torch._C._ExcludeDispatchKeyGuard(exclude):
            return op(*state.cast(args, state.low_dtype), **state.cast(kwargs, state.low_dtype))

    def fp32(*args, **kwargs):
        with torch._C._ExcludeDispatchKeyGuard(exclude):
            return op(*state.cast(args, torch.float32), **state.cast(kwargs, torch.float32))

    def set_opt_dtype(*args, **kwargs):
        with torch._C._ExcludeDispatchKeyGuard(exclude):
            if _first_eligible(args):
                given = args[dtype_index] if dtype_index is not None and dtype_index < len(args) else kwargs.get("dtype")
                if given is None:
                    if dtype_index is not None and dtype_index < len(args):
                        args = (*args[:dtype_index], torch.float32, *args[dtype_index + 1:])
                    else:
                        kwargs = {**kwargs, "dtype": torch.float32}
            return op(*args, **kwargs)

    def promote(*args, **kwargs):
        with torch._C._ExcludeDispatchKeyGuard(exclude):
            dtype = state.promote_dtype((*args, *kwargs.values()))
            return op(*state.cast(args, dtype), **state.cast(kwargs, dtype))

    return {"lower": lower, "fp32": fp32, "set_opt_dtype": set_opt_dtype, "promote": promote}[policy]


def _append_dtype_kernel(target: str):
    import torch

    op = _op(target)
    exclude = torch._C.DispatchKeySet(torch._C.DispatchKey.AutocastCPU)

    def kernel(*args, **kwargs):
        with torch._C._ExcludeDispatchKeyGuard(exclude):
            return op(*args, **kwargs, dtype=torch.float32 if _first_eligible(args) else args[0].dtype)

    return kernel


def _register_autocast(lib, state: _Autocast) -> None:
    import torch

    ours: set[str] = set()
    for names, policy in ((LOWER_PRECISION_FP, "lower"), (FP32, "fp32"),
                          (FP32_SET_OPT_DTYPE, "set_opt_dtype"), (PROMOTE, "promote")):
        for name in names:
            lib.impl(name, _kernel(policy, name, state), "AutocastCPU")
            ours.add(name)
    for name, target in FP32_APPEND_DTYPE.items():
        lib.impl(name, _append_dtype_kernel(target), "AutocastCPU")
        ours.add(name)
    for qualified in torch._C._dispatch_get_registrations_for_dispatch_key("AutocastCPU"):
        name = qualified.removeprefix("aten::")
        if qualified.startswith("aten::") and name not in ours:
            lib.impl(name, torch.library.fallthrough_kernel, "AutocastCPU")


def sdpa_backend(query, key, value, attn_mask, dropout_p: float, enable_gqa: bool) -> str:
    """The kernel PyTorch picks on a CUDA GPU of compute capability >= 8.0
    (sdp_utils.cpp ``select_sdp_backend``): ``flash``, ``efficient`` or ``math``."""
    import torch

    head_dim = query.shape[-1]
    same_dims = key.shape[-1] == head_dim and value.shape[-1] == head_dim
    half = query.dtype in (torch.float16, torch.bfloat16)
    if (half and attn_mask is None and same_dims and head_dim <= FLASH_MAX_HEAD_DIM
            and head_dim % HEAD_DIM_MULTIPLE_HALF == 0):
        return "flash"
    # memory-efficient (check_head_dim_size_mem_efficient): q and k share a head dim, v's may
    # differ (MLA); both aligned; no GQA (enable_gqa runs on flash and math only)
    multiple = HEAD_DIM_MULTIPLE_HALF if half else HEAD_DIM_MULTIPLE_FP32
    aligned = head_dim % multiple == 0 and value.shape[-1] % multiple == 0
    same_heads = key.shape[-3] == query.shape[-3]
    if query.dtype in (torch.float16, torch.bfloat16, torch.float32) and key.shape[-1] == head_dim and aligned \
            and same_heads:
        return "efficient"
    return "math"


def _sdpa_kernel(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                 enable_gqa=False):
    import torch

    backend = sdpa_backend(query, key, value, attn_mask, dropout_p, enable_gqa)
    if backend == "flash":
        return torch.ops.aten._scaled_dot_product_flash_attention(
            query, key, value, dropout_p, is_causal, False, scale=scale)[0]
    if backend == "efficient":
        needs_lse = torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value))
        return torch.ops.aten._scaled_dot_product_efficient_attention(
            query, key, value, attn_mask, needs_lse, dropout_p, is_causal, scale=scale)[0]
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        repeat = query.shape[-3] // key.shape[-3]
        key = key.repeat_interleave(repeat, dim=-3)
        value = value.repeat_interleave(repeat, dim=-3)
    return torch.ops.aten._scaled_dot_product_attention_math(
        query, key, value, attn_mask, dropout_p, is_causal, None, scale=scale)[0]


def _grouped_mm_kernel(mat_a, mat_b, offs=None, bias=None, out_dtype=None):
    """``_grouped_mm`` as CUDA's autograd runs it. This kernel sits at the
    ``AutogradCPU`` key: without gradients (or with a bias / no offsets) aten's op runs
    with that key excluded; with gradients wanted :class:`_GroupedMM` runs, which, as
    the generated ``GroupedMmBackward0`` does (``derivatives.yaml``), saves ``mat_a``
    only when ``mat_b`` needs a gradient and ``mat_b`` only when ``mat_a`` does, and
    computes only the gradients needed (frozen experts get no ``[E, in, out]`` weight
    gradient). PyTorch's CPU/meta grouped GEMM takes bf16 only
    (``_meta_grouped_mm_common``): other dtypes (fp32 expert weights) compute through
    transformers' fallback op, which allocates the same output."""
    import torch

    wants_grad = torch.is_grad_enabled() and (mat_a.requires_grad or mat_b.requires_grad)
    if bias is not None or offs is None or (mat_a.dtype == torch.bfloat16 and not wants_grad):
        with torch._C._ExcludeDispatchKeyGuard(torch._C.DispatchKeySet(torch._C.DispatchKey.AutogradCPU)):
            return torch.ops.aten._grouped_mm(mat_a, mat_b, offs=offs, bias=bias, out_dtype=out_dtype)
    if not wants_grad:
        return torch.ops.transformers.grouped_mm_fallback(mat_a, mat_b, offs=offs)
    return _grouped_mm_function().apply(mat_a, mat_b, offs)


def _grouped_mm_forward(mat_a, mat_b, offs):
    import torch

    if mat_a.dtype == torch.bfloat16 and mat_b.dtype == torch.bfloat16:
        with torch._C._ExcludeDispatchKeyGuard(torch._C.DispatchKeySet(torch._C.DispatchKey.AutogradCPU)):
            return torch.ops.aten._grouped_mm(mat_a, mat_b, offs=offs)
    return torch.ops.transformers.grouped_mm_fallback(mat_a, mat_b, offs=offs)


_GROUPED_MM_FUNCTION = []


def _grouped_mm_function():
    """The autograd function of :func:`_grouped_mm_kernel` (built once, torch imported lazily)."""
    if _GROUPED_MM_FUNCTION:
        return _GROUPED_MM_FUNCTION[0]
    import torch
    from torch._subclasses.fake_tensor import FakeTensor

    class _GroupedMM(torch.autograd.Function):
        @staticmethod
        def forward(ctx, mat_a, mat_b, offs):
            need_a, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
            ctx.save_for_backward(mat_a if need_b else None, mat_b if need_a else None, offs)
            return _grouped_mm_forward(mat_a, mat_b, offs)

        @staticmethod
        def backward(ctx, grad):
            mat_a, mat_b, offs = ctx.saved_tensors
            grad_a = grad_b = None
            if ctx.needs_input_grad[0]:
                grad_a = _grouped_mm_forward(grad, mat_b.transpose(-2, -1), offs)
            if ctx.needs_input_grad[1]:
                grad_b = grad.new_zeros((offs.shape[0], mat_a.shape[1], grad.shape[1]))
                if not isinstance(offs, FakeTensor):  # real run: the values (fake: the allocation only)
                    start = 0
                    for i, end in enumerate(offs.tolist()):
                        if end > start:
                            torch.mm(mat_a[start:end].T, grad[start:end], out=grad_b[i])
                        start = end
            return grad_a, grad_b, None

    _GROUPED_MM_FUNCTION.append(_GroupedMM)
    return _GroupedMM


def _dropout_kernel(input, p, train):
    """aten ``dropout`` as on CUDA (Dropout.cpp ``is_fused_kernel_acceptable``): the
    fused kernel, whose bool mask autograd saves."""
    import torch

    if not train or p == 0 or input.numel() == 0:
        return input
    return torch.ops.aten.native_dropout(input, p, train)[0]


class CudaRules:
    """Handle returned by :func:`cuda_rules`; :meth:`autocast` opens an autocast region."""

    def __init__(self, state: _Autocast | None):
        self._state = state

    @contextmanager
    def autocast(self):
        """Autocast (CUDA lists) for one region, e.g. forward + loss; the weight-cast
        cache empties when it exits, as ``torch.autocast.__exit__`` empties CUDA's.
        A no-op when the rules were opened without an autocast dtype."""
        import torch

        if self._state is None:
            yield
            return
        try:
            with torch.autocast("cpu", dtype=self._state.low_dtype):
                yield
        finally:
            self._state.cache.clear()


@contextmanager
def cuda_rules(*, autocast_dtype=None, sdpa: bool = True):
    """While active, CPU ops allocate as on CUDA (see the module docstring); yields
    a :class:`CudaRules`.

    ``autocast_dtype``: the low dtype of autocast (``torch.bfloat16``) or ``None``
    for no autocast. ``sdpa``: follow CUDA's SDPA kernel choice (needs fake tensors:
    flash and memory-efficient kernels have no CPU implementation)."""
    import warnings

    import torch

    state = _Autocast(autocast_dtype) if autocast_dtype is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "overriding a previously registered kernel"
        lib = torch.library.Library("aten", "IMPL")
        if state is not None:
            _register_autocast(lib, state)
        if sdpa:
            lib.impl("scaled_dot_product_attention", _sdpa_kernel, "AutogradCPU")
        lib.impl("dropout", _dropout_kernel, "AutogradCPU")
        if hasattr(torch.ops, "transformers") and hasattr(torch.ops.transformers, "grouped_mm_fallback"):
            lib.impl("_grouped_mm", _grouped_mm_kernel, "AutogradCPU")
    original_clear = torch.clear_autocast_cache
    if state is not None:
        def clear_autocast_cache():
            # torch.autocast.__exit__ calls this when the outermost region closes
            # (also after each checkpointed layer's recompute): empty our cache too.
            state.cache.clear()
            original_clear()

        torch.clear_autocast_cache = clear_autocast_cache
    try:
        yield CudaRules(state)
    finally:
        torch.clear_autocast_cache = original_clear
        lib._destroy()
