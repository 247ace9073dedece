"""Endpoints the command line has no ``--json`` twin for, used by the web page's
pickers and buttons:

- ``GET /api/formats``: the weight formats ``--weights`` accepts (``vramplan infer
  --list-formats`` as JSON): ``{"formats": [{"name", "bits_per_weight", "description",
  "kind"}]}``.
- ``GET /api/export?engine=deepspeed&<plan options>``: the best layout of ``vramplan
  plan ... --export ENGINE`` as ``{"engine", "filename", "media_type", "text"}``.
- ``POST /api/config`` with a config.json as the body (at most
  :data:`MAX_CONFIG_BYTES`): the model it describes, registered in this process under
  ``pasted-<sha256 prefix>`` so that ``model=pasted-...`` works in every endpoint.
- ``POST /api/gguf?file_bytes=N&name=F`` with the first bytes of a GGUF file (its
  header, at most :data:`MAX_GGUF_HEADER_BYTES`): the same for a GGUF model, with
  the file's own weight types (:mod:`vramplan.sources`).

Nothing is written to or read from the server's disk; the newest :data:`MAX_PASTED`
pasted models are kept.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping

from vramplan.errors import ConfigError, InputError, VramplanError

MAX_CONFIG_BYTES = 256 * 1024
"""A config.json is a few kB; anything larger is refused before it is parsed."""
MAX_GGUF_HEADER_BYTES = 64 * 1024 * 1024
"""A GGUF file's header (metadata, token list, tensor table): the page sends the
file's first bytes, never its weights."""
MAX_PASTED = 64
"""Pasted configs kept in memory (oldest dropped first)."""
PASTED_PREFIX = "pasted-"
EXPORT_FILES = {
    # engine (vramplan.plans.EXPORTS): (file name, media type)
    "deepspeed": ("ds_config.json", "application/json"),
    "fsdp": ("accelerate_fsdp.yaml", "application/yaml"),
    "megatron": ("megatron_args.sh", "text/x-shellscript"),
    "vllm": ("vllm_serve.sh", "text/x-shellscript"),
    "llamacpp": ("llama_server.sh", "text/x-shellscript"),
}
_PASTED: OrderedDict[str, object] = OrderedDict()
_PASTED_LOCK = threading.Lock()


def formats(query: Mapping[str, str]) -> dict:
    """Every weight format: the quantization formats, then llama.cpp's GGUF file types."""
    from vramplan.gguf_types import GGML_TYPES, GGUF_RECIPES
    from vramplan.quant import FORMATS

    rows = [{"name": f.name, "bits_per_weight": round(f.bits_per_weight(), 3), "description": f.description,
             "kind": "checkpoint"} for f in FORMATS.values()]
    rows += [{"name": r.name, "bits_per_weight": round(GGML_TYPES[r.base].bits_per_weight, 3),
              "description": r.description, "kind": "gguf"} for r in GGUF_RECIPES.values()]
    return {"formats": rows}


def export(query: Mapping[str, str]) -> dict:
    """The best layout of the plan the other options describe, as ``engine``'s config
    (the text ``vramplan plan ... --export ENGINE`` prints)."""
    from vramplan import questions
    from vramplan.export import export_config
    from vramplan.web.api import values_from_query

    from vramplan.plans import EXPORTS

    query = dict(query)
    engine = query.pop("engine", "") or query.pop("export", "")
    if engine not in EXPORTS:
        raise InputError(f"engine: expected one of {', '.join(EXPORTS)}, got {engine!r}")
    query.pop("export", None)
    report = questions.plan(values_from_query("plan", query))
    if not report.candidates:
        raise InputError("export: no layout fits, nothing to export")
    filename, media_type = EXPORT_FILES[engine]
    return {"engine": engine, "filename": filename, "media_type": media_type, "text": export_config(engine, report)}


def _register(name: str, spec) -> None:
    from vramplan.model.resolve import register_model

    with _PASTED_LOCK:
        _PASTED[name] = spec
        _PASTED.move_to_end(name)
        register_model(name, spec)
        while len(_PASTED) > MAX_PASTED:
            old, _ = _PASTED.popitem(last=False)
            register_model(old, None)


def _summary(name: str, spec, hub_id: str | None) -> dict:
    """The model as ``/api/models`` lists one."""
    from vramplan.model import count_params

    counts = count_params(spec)
    return {"model": name, "slug": name, "hub_id": hub_id, "name": hub_id or name, "model_type": spec.model_type,
            "total_params": counts.total_params, "active_params": counts.active_params,
            "attention": spec.attention_kind, "layers": spec.num_layers,
            "max_position_embeddings": spec.max_position_embeddings, "dtype": spec.dtype}


def paste_gguf(body: bytes, query: Mapping[str, str]) -> dict:
    """A GGUF model from the first bytes of its file (``file_bytes``: the whole file's
    size, ``name``: its file name). When the header runs past ``body`` the answer is
    a 400 of type ``NeedMoreBytes`` whose ``needed`` says how many bytes to send."""
    from vramplan.model.stored import ModelSource
    from vramplan.sources.gguf_header import NeedMoreBytes, parse_gguf
    from vramplan.sources.local import is_mmproj, spec_from_gguf_headers

    text = query.get("file_bytes", "")
    if not text.isdigit() or int(text) < len(body) or not body:
        raise InputError(f"file_bytes: expected the GGUF file's size in bytes (at least the {len(body):,} sent), "
                         f"got {text[:40]!r}")
    name = (query.get("name") or "model.gguf")[:200]
    try:
        header = parse_gguf(body, int(text), name)
    except NeedMoreBytes as exc:
        raise _NeedMore(exc.needed, name) from None
    if is_mmproj(header):
        raise ConfigError(f"{name}: a multimodal projector (mmproj), not a language model")
    key = hashlib.sha256(body[:header.data_offset] + text.encode()).hexdigest()[:12]
    spec = spec_from_gguf_headers([(name, header)], ModelSource(kind="gguf", path=name, files=(name,)), [])
    _register(PASTED_PREFIX + key, spec)
    return _summary(PASTED_PREFIX + key, spec, None)


class _NeedMore(InputError):
    """The GGUF header is longer than the bytes sent."""

    def __init__(self, needed: int, name: str):
        super().__init__(f"{name}: the GGUF header needs the first {needed:,} bytes of the file")
        self.needed = needed

    def to_dict(self) -> dict:
        return {"ok": False, "error": {"type": "NeedMoreBytes", "message": str(self), "needed": self.needed}}


def paste_config(body: bytes, query: Mapping[str, str] | None = None) -> dict:
    """Parse a pasted config.json, register it, and describe the model."""
    from vramplan.model.hf_config import spec_from_config

    if len(body) > MAX_CONFIG_BYTES:
        raise InputError(f"config.json: {len(body):,} bytes; expected at most {MAX_CONFIG_BYTES:,}")
    try:
        cfg = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError("config.json: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config.json: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"config.json: expected a JSON object, got {type(cfg).__name__}")
    canonical = json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()
    name = PASTED_PREFIX + hashlib.sha256(canonical).hexdigest()[:12]
    hub_id = cfg.get("_name_or_path") if isinstance(cfg.get("_name_or_path"), str) else None
    spec = spec_from_config(cfg, name=name, hub_id=hub_id or None)
    _register(name, spec)
    return _summary(name, spec, hub_id or None)


GET_ENDPOINTS: dict[str, Callable[[Mapping[str, str]], dict]] = {"formats": formats, "export": export}
POST_ENDPOINTS: dict[str, tuple[Callable[[bytes, Mapping[str, str]], dict], int]] = {
    # name: (answer, largest body accepted)
    "config": (paste_config, MAX_CONFIG_BYTES),
    "gguf": (paste_gguf, MAX_GGUF_HEADER_BYTES),
}


def handle_get(name: str, query: Mapping[str, str]) -> tuple[int, dict]:
    """(HTTP status, JSON body) for ``GET /api/<name>`` when ``name`` is one of :data:`GET_ENDPOINTS`."""
    try:
        return 200, GET_ENDPOINTS[name](query)
    except VramplanError as exc:
        return 400, exc.to_dict()


def _post_name(path: str) -> str:
    return path.split("?", 1)[0][len("/api/"):].strip("/") if path.startswith("/api/") else ""


def body_limit(path: str) -> int:
    """Bytes of request body ``POST path`` may carry (0: no body, no POST)."""
    entry = POST_ENDPOINTS.get(_post_name(path))
    return entry[1] if entry else 0


def handle_post(path: str, body: bytes) -> tuple[int, dict]:
    """(HTTP status, JSON body) for ``POST path`` (its query string included)."""
    from urllib.parse import parse_qsl

    name = _post_name(path)
    if name not in POST_ENDPOINTS:
        return 404, InputError(f"POST {path.split('?', 1)[0]}: expected one of "
                               f"{', '.join('/api/' + n for n in POST_ENDPOINTS)}").to_dict()
    query = dict(parse_qsl(path.split("?", 1)[1], keep_blank_values=True)) if "?" in path else {}
    try:
        return 200, POST_ENDPOINTS[name][0](body, query)
    except VramplanError as exc:
        return 400, exc.to_dict()
