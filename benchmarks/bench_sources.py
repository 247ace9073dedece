"""What reading a model from its files costs: a cold CLI run on a local sharded
checkpoint of Llama 3.1 405B's layout (191 safetensors shards, headers only) and on a
GGUF of the same layout (Q4_K/Q6_K, with a 128,256-token vocabulary), side by side
with the same command on the catalog name, in the same run.

    python benchmarks/bench_sources.py            # 7 runs each, prints the table
    python benchmarks/bench_sources.py --runs 15

The fixtures are header-only: each file holds its real header and is extended to its
real size as a sparse file (nothing of the weights is written or read). Goal: local
header reading adds under 50 ms to the cold command.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

GOAL_ADDED_MS = 50.0
"""Local header reading adds at most this much to a cold CLI run."""
SHARDS = 191
"""meta-llama/Llama-3.1-405B ships 191 safetensors shards."""


def _config() -> dict:
    from vramplan.catalog import find_model

    return find_model("llama-3.1-405b").config()


def _tensors(cfg: dict) -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes of the state dict of LlamaForCausalLM for ``cfg``."""
    h, ff, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = h // cfg["num_attention_heads"]
    kv = cfg["num_key_value_heads"] * hd
    out = [("model.embed_tokens.weight", (v, h))]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out += [(p + "self_attn.q_proj.weight", (h, h)), (p + "self_attn.k_proj.weight", (kv, h)),
                (p + "self_attn.v_proj.weight", (kv, h)), (p + "self_attn.o_proj.weight", (h, h)),
                (p + "mlp.gate_proj.weight", (ff, h)), (p + "mlp.up_proj.weight", (ff, h)),
                (p + "mlp.down_proj.weight", (h, ff)), (p + "input_layernorm.weight", (h,)),
                (p + "post_attention_layernorm.weight", (h,))]
    return out + [("model.norm.weight", (h,)), ("lm_head.weight", (v, h))]


def write_sharded_dir(directory: Path, cfg: dict) -> None:
    """191 bf16 shards, headers written, data left sparse."""
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps(cfg))
    tensors = _tensors(cfg)
    weight_map = {}
    for s in range(SHARDS):
        name = f"model-{s + 1:05d}-of-{SHARDS:05d}.safetensors"
        header, offset = {"__metadata__": {"format": "pt"}}, 0
        for tname, shape in tensors[s::SHARDS]:
            n = 2
            for d in shape:
                n *= d
            header[tname] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
            offset += n
            weight_map[tname] = name
        raw = json.dumps(header).encode()
        path = directory / name
        path.write_bytes(struct.pack("<Q", len(raw)) + raw)
        os.truncate(path, 8 + len(raw) + offset)
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


def write_gguf(path: Path, cfg: dict) -> None:
    """A GGUF header of the same layout (llama.cpp's Q4_K_M choices: Q6_K for attn_v,
    ffn_down and the output, Q4_K elsewhere, F32 norms), data left sparse."""
    import gguf
    import numpy as np

    t = gguf.GGMLQuantizationType
    w = gguf.GGUFWriter(str(path), "llama")
    h = cfg["hidden_size"]
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_embedding_length(h)
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_token_list([f"token{i}" for i in range(cfg["vocab_size"])])
    total = 0
    for name, shape in _tensors(cfg):
        g = (name.replace("model.embed_tokens", "token_embd").replace("model.norm", "output_norm")
             .replace("lm_head", "output").replace("model.layers.", "blk."))
        qtype = t.F32 if len(shape) == 1 else (t.Q6_K if any(k in name for k in ("v_proj", "down_proj", "lm_head"))
                                               else t.Q4_K)
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        nbytes = shape[0] * 4 if qtype == t.F32 else shape[0] * (shape[1] // block * size)
        byte_shape = shape if qtype == t.F32 else (shape[0], shape[1] // block * size)
        w.add_tensor_info(g, byte_shape, np.float32 if qtype == t.F32 else np.uint8, nbytes, raw_dtype=qtype)
        total += -(-nbytes // 32) * 32
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    os.truncate(path, -(-path.stat().st_size // 32) * 32 + total)


def cold_ms(model: str, runs: int) -> float:
    """Median wall time of ``python -m vramplan params MODEL --json`` in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "vramplan", "params", model, "--json"], capture_output=True,
                           text=True, env=env)
        times.append((time.perf_counter() - start) * 1000)
        if r.returncode:
            raise SystemExit(f"{model}: {r.stderr.strip()}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    cfg = _config()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, gg = Path(tmp) / "llama-405b", Path(tmp) / "llama-405b-Q4_K_M.gguf"
        write_sharded_dir(ckpt, cfg)
        write_gguf(gg, cfg)
        from vramplan.model import resolve_model

        rows = [("catalog name llama-3.1-405b", "llama-3.1-405b"),
                (f"checkpoint dir ({SHARDS} shards)", str(ckpt)), ("GGUF file (Q4_K_M layout)", str(gg))]
        base = None
        print(f"{'MODEL':34} {'cold CLI ms':>12} {'added ms':>9} {'in-process read ms':>19} {'stored GiB':>11}")
        for label, model in rows:
            ms = cold_ms(model, args.runs)
            base = ms if base is None else base
            start = time.perf_counter()
            spec = resolve_model(model)
            read_ms = (time.perf_counter() - start) * 1000
            stored = f"{spec.checkpoint.total_bytes / 2**30:.1f}" if spec.checkpoint else "-"
            added = "" if ms == base else f"{ms - base:+.0f}"
            print(f"{label:34} {ms:12.0f} {added:>9} {read_ms:19.1f} {stored:>11}")
        print(f"goal: header reading adds < {GOAL_ADDED_MS:.0f} ms to the cold command (median of {args.runs})")


if __name__ == "__main__":
    main()
