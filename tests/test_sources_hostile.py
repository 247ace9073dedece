"""Hostile files: each gives one line naming what is wrong, in bounded memory, at once."""

from __future__ import annotations

import json
import resource
import struct
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vramplan.errors import ConfigError, InputError
from vramplan.model import resolve_model
from vramplan.sources.gguf_header import parse_gguf, read_gguf_file
from vramplan.sources.safetensors_header import read_safetensors_file

CONFIG = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 128}


def _st_file(path: Path, header: dict | bytes, data: bytes = b"", length: int | None = None) -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


def _tensor(dtype="F16", shape=(2, 2), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


SAFETENSORS_CASES = {
    "truncated header": (lambda p: p.write_bytes(b"\x10\x00\x00"), "truncated"),
    "length past the file": (lambda p: _st_file(p, {"a": _tensor()}, length=10_000), "runs past the end"),
    "length over 100 MB": (lambda p: _st_file(p, b"{}", length=200_000_000), "exceeds"),
    "length 2^64-1": (lambda p: _st_file(p, b"{}", length=2**64 - 1), "exceeds"),
    "not UTF-8": (lambda p: _st_file(p, b'{"\xff\xfe": 1}'), "not UTF-8"),
    "not JSON": (lambda p: _st_file(p, b"{not json"), "not JSON"),
    "JSON list": (lambda p: _st_file(p, b"[1, 2]"), "expected a JSON object"),
    "deep nesting": (lambda p: _st_file(p, b"[" * 100_000 + b"]" * 100_000), "not JSON"),
    "unknown dtype": (lambda p: _st_file(p, {"a": _tensor(dtype="F12")}, b"\0" * 8), "unknown dtype 'F12'"),
    "negative shape": (lambda p: _st_file(p, {"a": _tensor(shape=(-2, 2))}, b"\0" * 8), "shape"),
    "overflowing shape": (lambda p: _st_file(p, {"a": _tensor(shape=(2**62, 2**62), offsets=(0, 8))}, b"\0" * 8),
                          "needs"),
    "float shape": (lambda p: _st_file(p, {"a": _tensor(shape=(2.5, 2))}, b"\0" * 8), "shape"),
    "offsets overlap": (lambda p: _st_file(p, {"a": _tensor(), "b": _tensor(offsets=(4, 12))}, b"\0" * 16),
                        "overlaps|hold"),
    "offsets past the end": (lambda p: _st_file(p, {"a": _tensor(offsets=(0, 8))}, b"\0" * 4), "past the end"),
    "offsets leave a gap": (lambda p: _st_file(p, {"a": _tensor(offsets=(8, 16))}, b"\0" * 16), "gap"),
    "size disagrees with shape": (lambda p: _st_file(p, {"a": _tensor(offsets=(0, 6))}, b"\0" * 8), "needs 8"),
    "metadata not an object": (lambda p: _st_file(p, {"__metadata__": [1], "a": _tensor()}, b"\0" * 8),
                               "__metadata__"),
}


@pytest.mark.parametrize("case", list(SAFETENSORS_CASES))
def test_hostile_safetensors(tmp_path, case):
    make, words = SAFETENSORS_CASES[case]
    path = tmp_path / "model.safetensors"
    make(path)
    with pytest.raises(ConfigError) as exc:
        read_safetensors_file(path)
    message = str(exc.value)
    assert "\n" not in message and len(message) < 400
    import re

    assert re.search(words, message), message


def test_hostile_file_in_a_checkpoint_dir_is_one_line(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    _st_file(tmp_path / "model.safetensors", {"a": _tensor(dtype="Q9")}, b"\0" * 8)
    with pytest.raises(ConfigError, match="unknown dtype 'Q9'"):
        resolve_model(str(tmp_path))


def test_index_naming_missing_shards(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    _st_file(tmp_path / "model-00001-of-00002.safetensors", {"a": _tensor()}, b"\0" * 8)
    with pytest.raises(ConfigError, match="model-00002-of-00002.safetensors which is not in"):
        resolve_model(str(tmp_path))


def test_index_naming_a_tensor_the_shard_lacks(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "model-00001-of-00001.safetensors", "ghost": "model-00001-of-00001.safetensors"}}))
    _st_file(tmp_path / "model-00001-of-00001.safetensors", {"a": _tensor()}, b"\0" * 8)
    with pytest.raises(ConfigError, match="'ghost'"):
        resolve_model(str(tmp_path))


def test_index_with_a_path_escaping_the_directory(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "../x.safetensors"}}))
    with pytest.raises(ConfigError, match="shard"):
        resolve_model(str(tmp_path))


# ---- GGUF ------------------------------------------------------------------------------
def _gguf(version=3, n_tensors=0, n_kv=0, body=b"") -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv) + body


def _kv_string(key: str, value_len: int, value: bytes = b"") -> bytes:
    k = key.encode()
    return struct.pack("<Q", len(k)) + k + struct.pack("<IQ", 8, value_len) + value


def _tensor_info(name: str, ne: list[int], type_id: int, offset: int = 0) -> bytes:
    n = name.encode()
    return struct.pack("<Q", len(n)) + n + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne) \
        + struct.pack("<IQ", type_id, offset)


GGUF_CASES = {
    "bad magic": (b"GGML" + b"\0" * 40, "not a GGUF file"),
    "empty": (b"", "empty file|magic"),
    "version 99": (_gguf(version=99), "version 99"),
    "2^60 tensors": (_gguf(n_tensors=2**60), "tensor count"),
    "2^60 key/values": (_gguf(n_kv=2**60), "key/value count"),
    "string longer than the file": (_gguf(n_kv=1, body=_kv_string("general.name", 2**40)), "length"),
    "array longer than the file": (_gguf(n_kv=1, body=struct.pack("<Q", 3) + b"abc" + struct.pack("<IIQ", 9, 8, 2**50)),
                                   "array length"),
    "unknown value type": (_gguf(n_kv=1, body=struct.pack("<Q", 3) + b"abc" + struct.pack("<I", 77)),
                           "unknown value type 77"),
    "unknown ggml type": (_gguf(n_tensors=1, body=_tensor_info("w", [32, 2], 99)) + b"\0" * 64,
                          "unknown ggml type 99"),
    "too many dims": (_gguf(n_tensors=1, body=_tensor_info("w", [1, 1, 1, 1, 1], 0)) + b"\0" * 64, "n_dims 5"),
    "tensor past the end": (_gguf(n_tensors=1, body=_tensor_info("w", [1024, 1024], 0)) + b"\0" * 64,
                            "past the end"),
    "row not whole blocks": (_gguf(n_tensors=1, body=_tensor_info("w", [33, 1], 8)) + b"\0" * 64,
                             "not a multiple"),
    "overlapping tensors": (_gguf(n_tensors=2, body=_tensor_info("a", [8], 0, 0) + _tensor_info("b", [8], 0, 0))
                            + b"\0" * 128, "overlaps"),
    "misaligned tensor": (_gguf(n_tensors=1, body=_tensor_info("a", [8], 0, 3)) + b"\0" * 128, "aligned"),
}


@pytest.mark.parametrize("case", list(GGUF_CASES))
def test_hostile_gguf(tmp_path, case):
    import re

    data, words = GGUF_CASES[case]
    path = tmp_path / "m.gguf"
    path.write_bytes(data)
    start = time.monotonic()
    with pytest.raises(ConfigError) as exc:
        read_gguf_file(path)
    assert time.monotonic() - start < 2
    message = str(exc.value)
    assert "\n" not in message and re.search(words, message), message


def test_hostile_gguf_through_the_cli_path(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(_gguf(n_tensors=2**60))
    with pytest.raises(ConfigError, match="tensor count"):
        resolve_model(str(path))


def test_missing_gguf_split(tmp_path):
    path = tmp_path / "m-00001-of-00003.gguf"
    path.write_bytes(_gguf())
    with pytest.raises(ConfigError, match="missing m-00002-of-00003.gguf"):
        resolve_model(str(path))


def test_gguf_path_that_is_not_a_file(tmp_path):
    with pytest.raises(InputError, match="is not a file"):
        resolve_model(str(tmp_path / "nothing.gguf"))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=256))
def test_any_bytes_give_a_config_error_or_a_header(data):
    """Arbitrary bytes after a valid GGUF prefix: a ConfigError or a parsed header, never
    another exception (the parser is total over its input)."""
    from vramplan.sources.gguf_header import NeedMoreBytes

    for blob in (data, b"GGUF" + data, _gguf(n_kv=1) + data, _gguf(n_tensors=1) + data):
        try:
            parse_gguf(blob, len(blob), "fuzz")
        except (ConfigError, NeedMoreBytes):
            pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_safetensors_header_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fz") / "x.safetensors"
    _st_file(path, data, b"\0" * 16)
    try:
        read_safetensors_file(path)
    except ConfigError:
        pass


def test_memory_stays_bounded_on_a_huge_claim(tmp_path):
    """A file claiming a 2^40-byte string or 2^60 tensors is refused before anything
    of that size is allocated."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for data in (_gguf(n_kv=1, body=_kv_string("k", 2**40)), _gguf(n_tensors=2**60)):
        path = tmp_path / "big.gguf"
        path.write_bytes(data)
        with pytest.raises(ConfigError):
            read_gguf_file(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB


def test_token_list_with_a_string_longer_than_the_file(tmp_path):
    """A long string array (a vocabulary) whose second string claims 2^63 bytes."""
    key = b"tokenizer.ggml.tokens"
    strings = struct.pack("<Q", 1) + b"a" + struct.pack("<Q", 2**63) + b"b" * 8
    body = struct.pack("<Q", len(key)) + key + struct.pack("<IIQ", 9, 8, 5000) + strings
    path = tmp_path / "m.gguf"
    path.write_bytes(_gguf(n_kv=1, body=body) + b"\0" * 40_000)
    with pytest.raises(ConfigError, match="past the end|length"):
        read_gguf_file(path)
