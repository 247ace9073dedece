"""A corpus of hostile config.json files, generated (never stored): every numeric,
boolean, list and name field of real catalog configs set to values a careless or
malicious file could hold, plus files hostile as a whole (deep nesting, huge
numbers, NaN literals, wrong top-level types, bad encodings).

``python tests/hostile_configs.py DIR`` writes the corpus to DIR (one file each);
the fuzz tests and ``benchmarks/bench_fuzz.py`` use :func:`corpus` directly.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parents[1] / "src" / "vramplan" / "catalog" / "models"

BASE_MODELS = ("llama-3.1-8b", "qwen1.5-moe-a2.7b", "deepseek-v2-lite", "mixtral-8x7b", "gpt2", "pythia-1b",
               "gpt-oss-20b", "gemma-3-1b", "qwen3-30b-a3b")
"""One catalog config per reader family."""

# Raw JSON literals: NaN and Infinity are not JSON, but Python's json module writes and
# (by default) reads them; 1e400 overflows a float; the rest are legal JSON values of
# the wrong type or out of range.
HOSTILE_LITERALS: tuple[str, ...] = (
    "NaN", "Infinity", "-Infinity", "1e400", "1e300", "1e30", "1e12", "1000000", "-1", "0", "2.5",
    str(2**63), str(2**64), "9" * 5000, '"abc"', '"12"', "[]", "[1, 2]", "{}", '{"a": 1}', "true", "false",
    "null", '""',
)

_SKIP_KEYS = frozenset({"architectures", "auto_map", "transformers_version"})


def _base(slug: str) -> dict:
    return json.loads((MODELS_DIR / f"{slug}.json").read_text())["config"]


def _mutations(cfg: dict, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(field path, config text) with one field replaced by each hostile literal."""
    marker = "__HOSTILE__"
    for key, value in cfg.items():
        if key in _SKIP_KEYS:
            continue
        if isinstance(value, dict) and key == "text_config":
            for path, text in _mutations(value, prefix=f"{key}."):
                yield path, json.dumps({**cfg, key: "@@INNER@@"}).replace('"@@INNER@@"', text)
            continue
        for literal in HOSTILE_LITERALS:
            text = json.dumps({**cfg, key: marker}).replace(f'"{marker}"', literal)
            yield f"{prefix}{key}={literal[:12]}", text


def field_corpus(models: tuple[str, ...] = BASE_MODELS) -> Iterator[tuple[str, str]]:
    """Every single-field mutation of every base config."""
    for slug in models:
        for path, text in _mutations(_base(slug)):
            yield f"{slug}:{path}", text


def whole_file_corpus() -> Iterator[tuple[str, str | bytes]]:
    """Files hostile as a whole."""
    llama = _base("llama-3.1-8b")
    yield "deep-array", "[" * 100_000 + "]" * 100_000
    yield "deep-object", '{"a":' * 50_000 + "1" + "}" * 50_000
    yield "deep-inside", json.dumps({**llama, "rope_scaling": "@@"}).replace('"@@"', "[" * 5000 + "]" * 5000)
    yield "top-level-list", "[1, 2, 3]"
    yield "top-level-number", "42"
    yield "top-level-string", '"llama"'
    yield "empty", ""
    yield "whitespace", "   \n"
    yield "truncated", json.dumps(llama)[:-10]
    yield "not-utf8", b"\xff\xfe" + json.dumps(llama).encode("utf-16-le")
    yield "bom", "\ufeff" + json.dumps(llama)
    yield "duplicate-keys", json.dumps(llama)[:-1] + ', "hidden_size": -4096}'
    yield "model-type-list", json.dumps({**llama, "model_type": ["llama"]})
    yield "model-type-object", json.dumps({**llama, "model_type": {"x": 1}})
    yield "name-or-path-object", json.dumps({**llama, "_name_or_path": {"x": 1}})
    yield "text-config-list", json.dumps({"model_type": "gemma3", "text_config": [1]})
    yield "huge-string", json.dumps({**llama, "model_type": "x" * 1_000_000})
    yield "many-keys", json.dumps({**llama, **{f"k{i}": i for i in range(100_000)}})
    yield "layers-1e6", json.dumps({**llama, "num_hidden_layers": 1_000_000})
    yield "layers-1e30", json.dumps({**llama, "num_hidden_layers": 1e30})
    yield "experts-1e12", json.dumps({**_base("mixtral-8x7b"), "num_local_experts": 10**12})
    yield "shared-experts-1e12", json.dumps({**_base("deepseek-v2-lite"), "n_shared_experts": 10**12})
    yield "head-dim-1e12", json.dumps({**llama, "head_dim": 10**12})
    yield "kv-heads-above-heads", json.dumps({**llama, "num_key_value_heads": 64})
    yield "shared-experts-negative", json.dumps({**_base("deepseek-v2-lite"), "n_shared_experts": -3})
    yield "shared-width-negative", json.dumps({**_base("qwen1.5-moe-a2.7b"), "shared_expert_intermediate_size": -5})
    yield "mlp-only-layers-string", json.dumps({**_base("qwen1.5-moe-a2.7b"), "mlp_only_layers": "abc"})
    yield "mlp-only-layers-number", json.dumps({**_base("qwen1.5-moe-a2.7b"), "mlp_only_layers": 3})
    yield "first-k-dense-fraction", json.dumps({**_base("deepseek-v2-lite"), "first_k_dense_replace": 2.5})


def corpus() -> Iterator[tuple[str, str | bytes]]:
    """The whole corpus: whole-file cases first, then single-field mutations."""
    yield from whole_file_corpus()
    yield from field_corpus()


def write_corpus(folder: Path) -> int:
    """Write every case to ``folder`` as ``NNNN.json``; return how many."""
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    for n, (_, text) in enumerate(corpus(), start=1):
        data = text if isinstance(text, bytes) else text.encode("utf-8")
        (folder / f"{n:05d}.json").write_bytes(data)
    return n


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/hostile_configs.py DIR")
    print(f"{write_corpus(Path(sys.argv[1]))} files written to {sys.argv[1]}")
