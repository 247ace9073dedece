"""Fixture checkpoints and a loopback Hub, shared by the test_sources_* files.

Checkpoints are written with the real ``safetensors`` library from the state dict
transformers builds (on the meta device) for a small config; quantized layouts replace
the linear weights with the tensors each format stores. GGUF files are written with
``gguf.GGUFWriter``. The loopback server answers the endpoints ``huggingface_hub``
calls: the model-info API, HEAD and (ranged) GET on ``/<repo>/resolve/<rev>/<file>``.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from loopback import Loopback, QuietHandler

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from safetensors.torch import save_file  # noqa: E402

LLAMA = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
         "max_position_embeddings": 128, "torch_dtype": "bfloat16", "tie_word_embeddings": False}


def meta_model(config: dict):
    """transformers' model for ``config`` on the meta device (the oracle's build)."""
    cfg = transformers.AutoConfig.for_model(**config)
    with torch.device("meta"):
        return transformers.AutoModelForCausalLM.from_config(cfg)


def transformers_params(config: dict) -> int:
    return sum(p.numel() for p in meta_model(config).parameters())


def state_dict(config: dict, dtype=torch.bfloat16) -> dict:
    """Zero tensors with the names and shapes of the model's state dict (tied heads left out)."""
    model = meta_model(config)
    seen: set[int] = set()
    out = {}
    for name, p in model.named_parameters(remove_duplicate=True):
        if id(p) in seen:
            continue
        seen.add(id(p))
        out[name] = torch.zeros(p.shape, dtype=dtype)
    return out


def write_checkpoint(directory: Path, config: dict, tensors: dict, shards: int = 1) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    if shards == 1:
        save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
        return directory
    names = sorted(tensors)
    weight_map = {}
    for i in range(shards):
        part = names[i::shards]
        fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file({n: tensors[n] for n in part}, str(directory / fname), metadata={"format": "pt"})
        weight_map.update({n: fname for n in part})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    (directory / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    return directory


def data_bytes_of_files(directory: Path) -> int:
    """Σ tensor data bytes of every safetensors file, by the safetensors library."""
    from safetensors import safe_open

    total = 0
    for f in sorted(directory.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for k in st.keys():
                t = st.get_slice(k)
                dtype = getattr(torch, {"BF16": "bfloat16", "F16": "float16", "F32": "float32", "I32": "int32",
                                        "U8": "uint8", "F8_E4M3": "float8_e4m3fn", "I64": "int64"}[t.get_dtype()])
                n = 1
                for d in t.get_shape():
                    n *= d
                total += n * torch.tensor([], dtype=dtype).element_size()
    return total


# ---- quantized layouts ---------------------------------------------------------------
def _linears(sd: dict) -> list[str]:
    return [n for n, t in sd.items() if ".layers." in n and n.endswith("proj.weight") and t.dim() == 2]


def gptq(sd: dict, bits: int = 4, group: int = 32) -> dict:
    """AutoGPTQ packing: qweight int32 (in*bits/32, out), qzeros int32 (in/g, out*bits/32),
    scales fp16 (in/g, out), g_idx int32 (in)."""
    out = dict(sd)
    for n in _linears(sd):
        o, i = sd[n].shape
        m = n.removesuffix(".weight")
        del out[n]
        out[f"{m}.qweight"] = torch.zeros(i * bits // 32, o, dtype=torch.int32)
        out[f"{m}.qzeros"] = torch.zeros(i // group, o * bits // 32, dtype=torch.int32)
        out[f"{m}.scales"] = torch.zeros(i // group, o, dtype=torch.float16)
        out[f"{m}.g_idx"] = torch.zeros(i, dtype=torch.int32)
    return out


def awq(sd: dict, group: int = 32) -> dict:
    """AutoAWQ GEMM packing: qweight int32 (in, out/8), qzeros int32 (in/g, out/8), scales fp16 (in/g, out)."""
    out = dict(sd)
    for n in _linears(sd):
        o, i = sd[n].shape
        m = n.removesuffix(".weight")
        del out[n]
        out[f"{m}.qweight"] = torch.zeros(i, o // 8, dtype=torch.int32)
        out[f"{m}.qzeros"] = torch.zeros(i // group, o // 8, dtype=torch.int32)
        out[f"{m}.scales"] = torch.zeros(i // group, o, dtype=torch.float16)
    return out


def bnb4(sd: dict) -> dict:
    """bitsandbytes NF4 as transformers saves it: packed uint8 weight (out*in/2, 1), fp32
    absmax per 64, a 16-entry quant_map, and the quant state as uint8 JSON bytes."""
    out = dict(sd)
    for n in _linears(sd):
        o, i = sd[n].shape
        out[n] = torch.zeros(o * i // 2, 1, dtype=torch.uint8)
        out[f"{n}.absmax"] = torch.zeros(o * i // 64, dtype=torch.float32)
        out[f"{n}.quant_map"] = torch.zeros(16, dtype=torch.float32)
        out[f"{n}.quant_state.bitsandbytes__nf4"] = torch.zeros(97, dtype=torch.uint8)
    return out


def fp8(sd: dict, block: int = 128) -> dict:
    """DeepSeek-V3 FP8: e4m3 weight + fp32 weight_scale_inv per 128 x 128 block."""
    out = dict(sd)
    for n in _linears(sd):
        o, i = sd[n].shape
        out[n] = torch.zeros(o, i, dtype=torch.float8_e4m3fn)
        out[n.replace(".weight", ".weight_scale_inv")] = torch.zeros(-(-o // block), -(-i // block),
                                                                       dtype=torch.float32)
    return out


def mxfp4_experts(sd: dict) -> dict:
    """gpt-oss MXFP4: each 3-D expert weight (E, in, out) stored as ``_blocks`` uint8
    (E, out, in/32, 16) and ``_scales`` uint8 (E, out, in/32)."""
    out = dict(sd)
    for n, t in sd.items():
        if ".experts." in n and t.dim() == 3:
            e, i, o = t.shape
            del out[n]
            out[f"{n}_blocks"] = torch.zeros(e, o, i // 32, 16, dtype=torch.uint8)
            out[f"{n}_scales"] = torch.zeros(e, o, i // 32, dtype=torch.uint8)
    return out


GPT_OSS = {"model_type": "gpt_oss", "architectures": ["GptOssForCausalLM"], "hidden_size": 64,
           "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "head_dim": 16, "vocab_size": 256, "max_position_embeddings": 256, "num_local_experts": 4,
           "num_experts_per_tok": 2, "sliding_window": 32, "layer_types": ["sliding_attention", "full_attention"],
           "torch_dtype": "bfloat16", "tie_word_embeddings": False}


# ---- GGUF ----------------------------------------------------------------------------
def write_gguf(path: Path, config: dict, qtype_name: str = "Q8_0", extra_kv: dict | None = None,
               arch: str = "llama", split: int = 1) -> list[Path]:
    """A llama-architecture GGUF of ``config`` with real tensor data (zeros), written by
    ``gguf.GGUFWriter``; 2-D weights in ``qtype_name``, vectors in F32."""
    import gguf
    import numpy as np

    h, layers = config["hidden_size"], config["num_hidden_layers"]
    heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
    ff, vocab = config["intermediate_size"], config["vocab_size"]
    hd = h // heads
    shapes = {"token_embd.weight": (vocab, h), "output_norm.weight": (h,)}
    if not config.get("tie_word_embeddings"):
        shapes["output.weight"] = (vocab, h)
    for i in range(layers):
        shapes.update({f"blk.{i}.attn_norm.weight": (h,), f"blk.{i}.ffn_norm.weight": (h,),
                       f"blk.{i}.attn_q.weight": (heads * hd, h), f"blk.{i}.attn_k.weight": (kv * hd, h),
                       f"blk.{i}.attn_v.weight": (kv * hd, h), f"blk.{i}.attn_output.weight": (h, heads * hd),
                       f"blk.{i}.ffn_gate.weight": (ff, h), f"blk.{i}.ffn_up.weight": (ff, h),
                       f"blk.{i}.ffn_down.weight": (h, ff)})
    qtype = gguf.GGMLQuantizationType[qtype_name]
    names = list(shapes)
    paths = []
    for part in range(split):
        p = path if split == 1 else path.with_name(f"{path.stem}-{part + 1:05d}-of-{split:05d}.gguf")
        w = gguf.GGUFWriter(str(p), arch)
        if part == 0:
            w.add_block_count(layers)
            w.add_embedding_length(h)
            w.add_head_count(heads)
            w.add_head_count_kv(kv)
            w.add_feed_forward_length(ff)
            w.add_context_length(config["max_position_embeddings"])
            w.add_layer_norm_rms_eps(1e-5)
            w.add_token_list([f"t{i}" for i in range(vocab)])
            for k, v in (extra_kv or {}).items():
                w.add_string(k, v) if isinstance(v, str) else w.add_uint32(k, v)
        if split > 1:
            w.add_uint16("split.no", part)
            w.add_uint16("split.count", split)
        for n in names[part::split]:
            shape = shapes[n]
            data = np.zeros(shape, dtype=np.float32)
            if len(shape) == 2 and qtype not in (gguf.GGMLQuantizationType.F32,):
                q = gguf.quants.quantize(data, qtype)
                w.add_tensor(n, q, raw_dtype=qtype)
            else:
                w.add_tensor(n, data)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        paths.append(p)
    return paths


def write_mmproj(path: Path) -> Path:
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), "clip")
    w.add_string("general.type", "mmproj")
    w.add_tensor("v.blk.0.attn_q.weight", np.zeros((32, 32), dtype=np.float16))
    w.add_tensor("mm.0.weight", np.zeros((64, 32), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


# ---- a loopback Hub ------------------------------------------------------------------
class RepoServer:
    """Repos (name -> file name -> bytes) served on a loopback port (:mod:`loopback`)."""

    def __init__(self):
        self.repos: dict[str, dict[str, bytes]] = {}

    def serve(self, handler) -> None:
        self.loopback = Loopback.of(handler)
        self.url = self.loopback.url

    def add_dir(self, repo: str, directory: Path) -> None:
        self.repos[repo] = {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}

    def close(self) -> None:
        self.loopback.close()


class FakeHub(RepoServer):
    """Repos served over HTTP on 127.0.0.1 the way the Hub serves them."""

    def __init__(self):
        super().__init__()
        self.gated: set[str] = set()
        self.status: int | None = None
        """Answer every request with this status (404, 401, 500)."""
        self.delay_s = 0.0
        self.redirect_loop = False
        self.requests: list[str] = []
        hub = self

        class Handler(QuietHandler):
            def do_HEAD(self):
                self._safely(head=True)

            def do_GET(self):
                self._safely(head=False)

            def _safely(self, head: bool):
                try:
                    self._answer(head)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the slow-server test)

            def _answer(self, head: bool):
                hub.requests.append(f"{self.command} {self.path}")
                if hub.delay_s:
                    time.sleep(hub.delay_s)
                if hub.redirect_loop:
                    return self.send(302, headers={"Location": self.path})
                if hub.status:
                    return self.send(hub.status, json.dumps({"error": "nope"}).encode(),
                                      {"Content-Type": "application/json", "X-Error-Code": "RepoNotFound"
                                       if hub.status == 404 else ""}, head)
                path = self.path.split("?")[0]
                if path.startswith("/api/models/"):
                    rest = path[len("/api/models/"):]
                    repo, _, rev = rest.partition("/revision/")
                    return self._info(repo, rev or "main", head)
                parts = path.lstrip("/").split("/")
                if len(parts) >= 5 and parts[2] == "resolve":
                    repo, rev, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
                    return self._file(repo, rev, filename, head)
                self.send(404, b"{}", {"X-Error-Code": "EntryNotFound"}, head)

            def _gate(self, repo: str, head: bool) -> bool:
                if repo not in hub.repos:
                    self.send(404, b'{"error":"Repository not found"}', {"X-Error-Code": "RepoNotFound",
                                                                           "Content-Type": "application/json"},
                               head)
                    return True
                if repo in hub.gated and not self.headers.get("authorization"):
                    self.send(401, b'{"error":"gated"}', {"X-Error-Code": "GatedRepo",
                                                           "Content-Type": "application/json"}, head)
                    return True
                return False

            def _info(self, repo, rev, head):
                if self._gate(repo, head):
                    return
                files = hub.repos[repo]
                body = json.dumps({"id": repo, "modelId": repo, "sha": hub.sha(repo), "private": False,
                                   "siblings": [{"rfilename": f} for f in sorted(files)]}).encode()
                self.send(200, body, {"Content-Type": "application/json"}, head)

            def _file(self, repo, rev, filename, head):
                if self._gate(repo, head):
                    return
                files = hub.repos[repo]
                if filename not in files:
                    return self.send(404, b"{}", {"X-Error-Code": "EntryNotFound"}, head)
                data = files[filename]
                etag = hashlib.sha256(data).hexdigest()
                headers = {"X-Repo-Commit": hub.sha(repo), "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
                rng = self.headers.get("range") or self.headers.get("Range")
                if rng and not head:
                    start_s, _, end_s = rng.removeprefix("bytes=").partition("-")
                    start, end = int(start_s), min(int(end_s) if end_s else len(data) - 1, len(data) - 1)
                    return self.send(206, data[start:end + 1],
                                      {**headers, "Content-Range": f"bytes {start}-{end}/{len(data)}"})
                if head:
                    self.send_response(200)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    return
                self.send(200, data, headers)

        self.serve(Handler)

    def sha(self, repo: str) -> str:
        files = self.repos[repo]
        return hashlib.sha1(json.dumps(sorted((k, hashlib.sha1(v).hexdigest()) for k, v in files.items()))
                            .encode()).hexdigest()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A loopback Hub with ``huggingface_hub`` pointed at it and an empty cache."""
    server = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "5")
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "5")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")
    yield server
    server.close()


class FakeModelScope(RepoServer):
    """Repos served on 127.0.0.1 the way ModelScope serves them: the file-list API
    ``/api/v1/models/<id>/repo/files`` and files (ranged) at ``/api/v1/models/<id>/repo?FilePath=``."""

    def __init__(self):
        import urllib.parse

        super().__init__()
        self.requests: list[tuple[str, str | None]] = []
        ms = self

        class Handler(QuietHandler):
            def do_GET(self):
                ms.requests.append((self.path, self.headers.get("Range")))
                url = urllib.parse.urlparse(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                parts = url.path.split("/")  # '', api, v1, models, org, name, repo[, files]
                repo = "/".join(parts[4:6]) if len(parts) >= 7 else ""
                files = ms.repos.get(repo)
                if files is None:
                    return self.send(404, b'{"Code":404,"Message":"not found"}')
                if url.path.endswith("/repo/files"):
                    listing = [{"Path": n, "Name": n, "Type": "blob", "Size": len(b),
                                "Sha256": hashlib.sha256(b).hexdigest(), "Revision": "master"}
                               for n, b in sorted(files.items())]
                    return self.send(200, json.dumps({"Code": 200, "Success": True, "Data": {"Files": listing}})
                                      .encode(), {"Content-Type": "application/json"})
                data = files.get(query.get("FilePath", ""))
                if data is None:
                    return self.send(404, b"{}")
                rng = self.headers.get("Range")
                if rng:
                    start_s, _, end_s = rng.removeprefix("bytes=").partition("-")
                    start, end = int(start_s), min(int(end_s), len(data) - 1)
                    return self.send(206, data[start:end + 1], {"Content-Range": f"bytes {start}-{end}/{len(data)}"})
                self.send(200, data)

        self.serve(Handler)


@pytest.fixture
def modelscope_server(tmp_path, monkeypatch):
    pytest.importorskip("modelscope")
    server = FakeModelScope()
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", server.url)
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms-cache"))
    monkeypatch.setenv("MODELSCOPE_API_TOKEN", "")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    _reset_modelscope_config()  # the package keeps its endpoint per process; each test has its own server
    yield server
    server.close()
    _reset_modelscope_config()


def _reset_modelscope_config() -> None:
    try:
        from modelscope_hub.config import set_default_config
    except ImportError:
        return
    set_default_config(None)
