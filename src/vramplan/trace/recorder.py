"""Follow every tensor storage from its allocation to its free, as the CUDA
caching allocator counts it.

:class:`Recorder` is a ``TorchDispatchMode``: each op's non-aliasing outputs are new
storages (their bytes rounded as the allocator rounds them); a weak reference on
each storage records the free when the last tensor using it dies (the approach of
``torch.distributed._tools.mem_tracker``). Each block keeps what was happening
when it was born (phase, region label, innermost model module) so that
:mod:`vramplan.trace.classify` can name its category afterwards.
"""

from __future__ import annotations

from vramplan.intmath import round_up
import weakref
from functools import cache
from contextlib import contextmanager
from dataclasses import dataclass

CUDA_MIN_BLOCK_BYTES = 512
"""The CUDA caching allocator rounds every request up to a multiple of 512 bytes
(``kMinBlockSize`` in c10/cuda/CUDACachingAllocator.cpp ``round_size``); what
``torch.cuda.memory_allocated()`` reports is the sum of rounded blocks. Empty
storages take no block."""


def cuda_block_bytes(nbytes: int) -> int:
    """Bytes the CUDA caching allocator charges for a request of ``nbytes``: 0 for
    0, else ``nbytes`` rounded up to a multiple of :data:`CUDA_MIN_BLOCK_BYTES`."""
    if nbytes <= 0:
        return 0
    return round_up(nbytes, CUDA_MIN_BLOCK_BYTES)


@dataclass(kw_only=True, eq=False)
class Block:
    """One storage as the allocator sees it."""

    bytes: int
    """Rounded bytes."""
    born: int
    """Event index of the allocation."""
    died: int | None = None
    """Event index of the free; ``None`` while alive."""
    phase: str = ""
    """Phase of the step at allocation."""
    label: str = ""
    """Region label at allocation (``"kv_cache"``, ``"logits/loss"``...) or empty."""
    module: str = ""
    """Kind of the innermost model module running at allocation (see :func:`module_kind`)."""
    category: str = ""
    """Component name given after the fact (gradients, optimizer states...), or empty."""


_labels: list[str] = []


@contextmanager
def labelled(name: str):
    """Allocations inside get the region label ``name`` (e.g. ``"kv_cache"``)."""
    _labels.append(name)
    try:
        yield
    finally:
        _labels.pop()


MODULE_KINDS: tuple[tuple[str, str], ...] = (
    # (substring of a module path component, kind); first match wins
    ("lora_", "lora"),
    ("rotary", "attention"), ("attn", "attention"), ("attention", "attention"),
    ("experts", "mlp"), ("moe", "mlp"), ("mlp", "mlp"),
    ("norm", "norms"), ("ln_", "norms"),
    ("embed", "embeddings"), ("wte", "embeddings"), ("wpe", "embeddings"),
)


def module_kind(stack: list[str]) -> str:
    """The kind of the innermost running module, from its path in the model
    (``model.layers.3.self_attn.q_proj.lora_A.default``): the last path component
    that names one (lora, attention, mlp, norms, embeddings) wins; ``other`` when
    none does; empty when no module runs."""
    if not stack:
        return ""
    for component in reversed(stack[-1].lower().split(".")):
        for needle, kind in MODULE_KINDS:
            if needle in component:
                return kind
    return "other"


class Recorder:
    """Records allocations and frees while :meth:`recording`."""

    def __init__(self) -> None:
        from torch.utils.weak import WeakIdKeyDictionary

        self.blocks: list[Block] = []
        self.events: list[tuple[Block, int]] = []
        """(block, +bytes or -bytes), in order."""
        self.marks: list[tuple[int, str]] = []
        """(event index, phase) where each phase starts."""
        self.phase = "load"
        self._by_storage = WeakIdKeyDictionary()
        self._refs: list = []
        self._modules: list[str] = []

    # -- storages -----------------------------------------------------------------
    def _storage(self, t):
        return t.untyped_storage()

    def block_of(self, t) -> Block | None:
        """The block holding tensor ``t``'s storage, if recorded."""
        return self._by_storage.get(self._storage(t))

    def _new(self, storage, category: str = "") -> Block:
        block = Block(bytes=cuda_block_bytes(storage.nbytes()), born=len(self.events), phase=self.phase,
                      label=_labels[-1] if _labels else "", module=module_kind(self._modules), category=category)
        self._by_storage[storage] = block
        self._refs.append(weakref.ref(storage, lambda _ref, b=block: self._free(b)))
        self.blocks.append(block)
        self.events.append((block, block.bytes))
        return block

    def _free(self, block: Block) -> None:
        if block.died is None:
            block.died = len(self.events)
            self.events.append((block, -block.bytes))

    def adopt(self, t, category: str) -> None:
        """Count an existing tensor (parameters, optimizer states, inputs) as live,
        under ``category``; a storage already counted is re-labelled instead."""
        if t is None:
            return
        storage = self._storage(t)
        block = self._by_storage.get(storage)
        if block is None:
            block = self._new(storage, category)
        block.category = category

    def mark(self, t, category: str) -> None:
        """Name the category of tensor ``t``'s block (gradients, states, logits)."""
        block = self.block_of(t) if t is not None else None
        if block is not None:
            block.category = category

    # -- phases and modules --------------------------------------------------------
    @contextmanager
    def in_phase(self, phase: str):
        """Allocations inside belong to ``phase``; the timeline marks its start."""
        previous = self.phase
        self.phase = phase
        self.marks.append((len(self.events), phase))
        try:
            yield
        finally:
            self.phase = previous

    @contextmanager
    def module_hooks(self, model=None):
        """Keep the stack of running modules, by their path in ``model`` (class name
        for modules outside it); global forward hooks, removed on exit."""
        from torch.nn.modules import module as nn_module

        paths = {id(m): name for name, m in model.named_modules()} if model is not None else {}

        def pre(mod, args):
            self._modules.append(paths.get(id(mod)) or type(mod).__name__)

        def post(mod, args, out):
            if self._modules:
                self._modules.pop()

        handles = (nn_module.register_module_forward_pre_hook(pre), nn_module.register_module_forward_hook(post))
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    # -- the dispatch mode -----------------------------------------------------------
    @contextmanager
    def recording(self):
        """Record the outputs of every op run inside."""
        mode = _Mode(self)
        with mode:
            yield self

    def on_outputs(self, func, out) -> None:
        import torch
        from torch.utils._pytree import tree_leaves

        returns = func._schema.returns
        aliasing = any(r.alias_info is not None for r in returns)
        if aliasing:
            return
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and not t.is_sparse:
                storage = self._storage(t)
                if storage not in self._by_storage:
                    self._new(storage)


@cache
def _mode_class():
    from torch.utils._python_dispatch import TorchDispatchMode

    class Mode(TorchDispatchMode):
        def __init__(self, recorder: Recorder):
            super().__init__()
            self.recorder = recorder

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            self.recorder.on_outputs(func, out)
            return out

    return Mode


def _Mode(recorder: Recorder):
    return _mode_class()(recorder)
