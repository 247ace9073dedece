"""What a checkpoint stores, as its file headers say: where it came from, its exact
tensor bytes by decoder layer, and the tensors the architecture does not explain.

Built by :mod:`vramplan.sources` from safetensors or GGUF headers (never from the
weights themselves) and carried on :attr:`ModelSpec.checkpoint`, so the weights term
can use the bytes as stored instead of a format's formula.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SourceKind = Literal["hub", "modelscope", "local", "gguf"]
FileFormat = Literal["safetensors", "gguf"]


@dataclass(frozen=True, kw_only=True)
class ModelSource:
    """Where a model was read from, enough to read it again."""

    kind: SourceKind
    """``hub`` (Hugging Face), ``modelscope``, ``local`` (a checkpoint directory) or
    ``gguf`` (a local GGUF file)."""
    repo: str | None = None
    """Repository id on the Hub or ModelScope; ``None`` for local files."""
    revision: str | None = None
    """The commit the files were read at (a full sha on the Hub); ``None`` for local files."""
    path: str | None = None
    """Local directory or file; ``None`` for remote repositories."""
    files: tuple[str, ...] = ()
    """Files read: config.json, the safetensors index and shards, or the GGUF files."""

    def to_dict(self) -> dict:
        return {"kind": self.kind, "repo": self.repo, "revision": self.revision, "path": self.path,
                "files": list(self.files)}


@dataclass(frozen=True, kw_only=True)
class StoredPart:
    """Tensors of the checkpoint that the architecture does not explain (a vision
    tower, a multi-token-prediction layer, an extra head), grouped by module."""

    name: str
    """Module prefix as stored, e.g. ``"model.vision_tower"`` or ``"mtp (layers 61-61)"``."""
    num_tensors: int
    """Tensors in the group."""
    elements: int
    """Elements as stored (packed quantized tensors count their packed elements)."""
    bytes: int
    """Bytes as stored."""


@dataclass(frozen=True, kw_only=True)
class StoredCheckpoint:
    """The tensor inventory of a checkpoint, summed where memory needs it."""

    source: ModelSource
    """Where the files came from."""
    file_format: FileFormat
    """``safetensors`` or ``gguf``."""
    num_tensors: int
    """Tensors in all files together."""
    bytes_by_dtype: tuple[tuple[str, int], ...]
    """(stored dtype or ggml type, bytes), largest first."""
    per_layer_bytes: tuple[int, ...]
    """Bytes of each decoder layer's tensors the architecture explains, in layer order."""
    embedding_bytes: int
    """Token (and position) embedding tables."""
    output_bytes: int
    """Everything else of the text model outside the blocks: final norm, output head."""
    extra_parts: tuple[StoredPart, ...] = ()
    """Tensors the architecture does not explain, each group its own component."""
    explained_elements: int = 0
    """Elements of the tensors the architecture explains, as stored."""
    packed: bool = False
    """Some explained tensors are stored packed (GPTQ/AWQ int32, bitsandbytes uint8,
    MXFP4 blocks), so element counts are not parameter counts."""

    @property
    def explained_bytes(self) -> int:
        """Bytes of the tensors the architecture explains."""
        return sum(self.per_layer_bytes) + self.embedding_bytes + self.output_bytes

    @property
    def extra_bytes(self) -> int:
        return sum(p.bytes for p in self.extra_parts)

    @property
    def total_bytes(self) -> int:
        """Bytes of every tensor in the checkpoint (Σ of the headers' tensor sizes)."""
        return self.explained_bytes + self.extra_bytes

    def to_dict(self) -> dict:
        return {"file_format": self.file_format, "num_tensors": self.num_tensors, "total_bytes": self.total_bytes,
                "explained_bytes": self.explained_bytes, "embedding_bytes": self.embedding_bytes,
                "output_bytes": self.output_bytes, "per_layer_bytes": list(self.per_layer_bytes),
                "bytes_by_dtype": dict(self.bytes_by_dtype), "explained_elements": self.explained_elements,
                "packed": self.packed,
                "extra_parts": [{"name": p.name, "num_tensors": p.num_tensors, "elements": p.elements,
                                 "bytes": p.bytes} for p in self.extra_parts]}


def source_keys(checkpoint: StoredCheckpoint | None) -> dict:
    """The keys every answer about a model read from files carries (``source``: where
    it was read, ``checkpoint``: its stored inventory); none for other models."""
    if checkpoint is None:
        return {}
    return {"source": checkpoint.source.to_dict(), "checkpoint": checkpoint.to_dict()}
