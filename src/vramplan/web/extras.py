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
  Nothing is written to or read from the server's disk; the newest
  :data:`MAX_PASTED` configs are kept.
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
MAX_PASTED = 64
"""Pasted configs kept in memory (oldest dropped first)."""
PASTED_PREFIX = "pasted-"
EXPORTS = {
    # engine: (file name, media type)
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
    """The best layout of the plan the other options describe, as ``engine``'s config."""
    from vramplan.export import export_config
    from vramplan.model import resolve_model
    from vramplan.web.api import handle

    query = dict(query)
    engine = query.pop("engine", "") or query.pop("export", "")
    if engine not in EXPORTS:
        raise InputError(f"engine: expected one of {', '.join(EXPORTS)}, got {engine!r}")
    query.pop("export", None)
    status, data = handle("/api/plan", query)
    if status != 200:
        raise InputError(data["error"]["message"])
    if not data.get("candidates"):
        raise InputError("export: no layout fits, nothing to export")
    training = data.get("kind") == "training"
    text = export_config(engine, data, resolve_model(query.get("model", "")), training=training)
    filename, media_type = EXPORTS[engine]
    return {"engine": engine, "filename": filename, "media_type": media_type, "text": text}


def paste_config(body: bytes) -> dict:
    """Parse a pasted config.json, register it, and describe the model."""
    from vramplan.model import count_params
    from vramplan.model.hf_config import spec_from_config
    from vramplan.model.resolve import register_model

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
    with _PASTED_LOCK:
        _PASTED[name] = spec
        _PASTED.move_to_end(name)
        register_model(name, spec)
        while len(_PASTED) > MAX_PASTED:
            old, _ = _PASTED.popitem(last=False)
            register_model(old, None)
    counts = count_params(spec)
    return {"model": name, "slug": name, "hub_id": hub_id, "name": hub_id or name, "model_type": spec.model_type,
            "total_params": counts.total_params, "active_params": counts.active_params,
            "attention": spec.attention_kind, "layers": spec.num_layers,
            "max_position_embeddings": spec.max_position_embeddings, "dtype": spec.dtype}


GET_ENDPOINTS: dict[str, Callable[[Mapping[str, str]], dict]] = {"formats": formats, "export": export}
POST_ENDPOINTS: dict[str, Callable[[bytes], dict]] = {"config": paste_config}


def handle_get(name: str, query: Mapping[str, str]) -> tuple[int, dict]:
    """(HTTP status, JSON body) for ``GET /api/<name>`` when ``name`` is one of :data:`GET_ENDPOINTS`."""
    try:
        return 200, GET_ENDPOINTS[name](query)
    except VramplanError as exc:
        return 400, exc.to_dict()


def body_limit(path: str) -> int:
    """Bytes of request body ``POST path`` may carry (0: no body, no POST)."""
    name = path.split("?", 1)[0][len("/api/"):].strip("/") if path.startswith("/api/") else ""
    return MAX_CONFIG_BYTES if name in POST_ENDPOINTS else 0


def handle_post(path: str, body: bytes) -> tuple[int, dict]:
    """(HTTP status, JSON body) for ``POST path``."""
    name = path.split("?", 1)[0][len("/api/"):].strip("/") if path.startswith("/api/") else ""
    if name not in POST_ENDPOINTS:
        return 404, InputError(f"POST {path.split('?', 1)[0]}: expected one of "
                               f"{', '.join('/api/' + n for n in POST_ENDPOINTS)}").to_dict()
    try:
        return 200, POST_ENDPOINTS[name](body)
    except VramplanError as exc:
        return 400, exc.to_dict()
