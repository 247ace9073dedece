"""The spellings people type, each read as a named thing and said in the output.

Sources: Meta's Llama 3.1 model card ("128k" context) and its config
(``max_position_embeddings`` 131072); Mistral's 7B v0.1 config (32768 positions, the
"32k" of its card); bitsandbytes / transformers ``BitsAndBytesConfig(load_in_4bit=True)``
and ``load_in_8bit`` (4-bit blockwise codes with fp32 absmax per 64; LLM.int8 with an fp32
row scale); the runtime memory the GPUs report (nvidia-smi MiB, quoted in each entry's
``memory_note``).
"""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vramplan.cli import main
from vramplan.errors import InputError, UnknownNameError
from vramplan.gpus import find_gpu, list_gpus, read_gpu
from vramplan.model import resolve_model
from vramplan.options import options_of
from vramplan.quant import FORMATS, get_format, spelling_note
from vramplan.units import GiB, parse_tokens


def run(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


# ---- token counts -------------------------------------------------------------------
def test_k_is_1024_as_model_cards_mean_it():
    assert parse_tokens("128K") == resolve_model("llama-3.1-8b").max_position_embeddings == 131072
    assert parse_tokens("32k") == resolve_model("mistral-7b-v0.1").max_position_embeddings == 32768
    assert parse_tokens("1M") == 1024**2 and parse_tokens("1.5k") == 1536 and parse_tokens("4096") == 4096


@given(n=st.integers(1, 10**6))
def test_token_suffixes(n):
    assert parse_tokens(str(n)) == n
    assert parse_tokens(f"{n}k") == parse_tokens(f"{n}K") == n * 1024
    assert parse_tokens(f"{n}M") == n * 1024**2


@pytest.mark.parametrize("text", ["0.3k", "abc", "0", "-1k", "1g", "inf", "32kb"])
def test_bad_token_counts_name_the_field(text):
    with pytest.raises(InputError, match="--context"):
        parse_tokens(text, "--context")


def test_token_options_parse_the_same_on_the_web_and_the_command_line(capsys):
    names = {"train": ("seq",), "infer": ("context", "prompt", "prefill_chunk", "max_num_batched_tokens"),
             "plan": ("seq",)}
    for question, wanted in names.items():
        by_name = {o.name: o for o in options_of(question)}
        for name in wanted:
            assert by_name[name].kind == "tokens"
            assert by_name[name].parse("32k", by_name[name].all_flags[0]) == 32768
    code, out, _ = run(capsys, "infer", "llama-3.1-8b", "--context", "32k", "--json")
    assert code == 0 and json.loads(out)["details"]["context_tokens"] == 32768
    from vramplan.web import api

    status, body = api.handle("/api/infer", {"model": "llama-3.1-8b", "context": "32k"})
    assert status == 200 and body["details"]["context_tokens"] == 32768
    code, _, err = run(capsys, "train", "llama-3.2-1b", "--seq", "0.3k")
    assert code == 2 and "--seq" in err and "whole number of tokens" in err and err.count("\n") == 1


# ---- weight formats -----------------------------------------------------------------
@pytest.mark.parametrize("spelling, name", [("int4", "nf4"), ("4bit", "nf4"), ("4-bit", "nf4"), ("bnb-4bit", "nf4"),
                                            ("INT4", "nf4"), ("load_in_4bit", "nf4"), ("8bit", "int8"),
                                            ("int8", "int8"), ("bnb-8bit", "int8")])
def test_bit_widths_read_as_bitsandbytes(spelling, name):
    assert get_format(spelling) is FORMATS[name]
    note = spelling_note(spelling)
    assert note.startswith(f"weights {spelling} read as {name} (bitsandbytes") and note.fields == ("weights",)


def test_the_reading_is_said_in_the_output(capsys):
    code, out, _ = run(capsys, "infer", "llama-3.1-8b", "--weights", "int4")
    assert code == 0 and "read: --weights int4 read as nf4" in out
    code, out, _ = run(capsys, "infer", "llama-3.1-8b", "--weights", "4bit", "--json")
    data = json.loads(out)
    assert data["details"]["weights_format"] == "nf4" and data["readings"][0].startswith("weights 4bit read as nf4")
    code, out, _ = run(capsys, "infer", "llama-3.1-8b", "--weights", "gptq", "--json")
    assert json.loads(out)["readings"] == []


# ---- GPUs ---------------------------------------------------------------------------
@pytest.mark.parametrize("name, slug", [
    ("a800", "a800-sxm-80gb"), ("NVIDIA A800-SXM4-80GB", "a800-sxm-80gb"), ("a800 pcie", "a800-pcie-80gb"),
    ("h800", "h800-sxm"), ("NVIDIA H800", "h800-sxm"), ("h800-pcie", "h800-pcie"), ("h20", "h20"),
    ("NVIDIA L20", "l20"), ("l20", "l20"), ("RTX 4090 D", "rtx-4090-d"), ("NVIDIA GeForce RTX 4090 D", "rtx-4090-d"),
    ("4090d", "rtx-4090-d"), ("a10g", "a10g"), ("NVIDIA A10G", "a10g"), ("l4", "l4"), ("t4", "t4"),
    ("nvidia-tesla-t4", "t4"), ("nvidia-h100-mega-80gb", "h100-sxm"),
])
def test_gpu_aliases(name, slug):
    assert find_gpu(name).slug == slug


def test_memory_is_the_runtime_figure_in_each_note():
    """Entries whose note quotes nvidia-smi's MiB hold exactly that many MiB."""
    checked = 0
    for g in list_gpus():
        m = re.search(r"nvidia-smi reports (\d+) MiB", g.memory_note)
        if m:
            assert g.memory_bytes == int(m.group(1)) * 2**20, g.slug
            checked += 1
    assert checked > 20
    assert find_gpu("rtx-4090-d").memory_bytes == find_gpu("rtx-4090").memory_bytes
    assert find_gpu("a10g").bf16_dense_flops < find_gpu("a10").bf16_dense_flops


@pytest.mark.parametrize("text, size", [("24GB", 24 * 10**9), ("80GiB", 80 * GiB), ("80G", 80 * GiB),
                                        ("48 GB", 48 * 10**9)])
def test_a_bare_capacity_is_a_gpu(text, size):
    reading = read_gpu(text)
    assert reading.spec.memory_bytes == size and reading.spec.capacity_only and reading.count is None
    assert reading.note.startswith(f"gpu {text} read as a GPU with")


def test_counts_and_names_that_look_like_counts():
    assert read_gpu("2x80GB").count == 2 and read_gpu("2x80GB").spec.memory_bytes == 80 * 10**9
    assert read_gpu("8xh100").spec.slug == "h100-sxm" and read_gpu("8 x H100").count == 8
    assert read_gpu("7900xtx").spec.slug == "rx-7900-xtx" and read_gpu("7900xtx").count is None
    with pytest.raises(UnknownNameError):
        read_gpu("3xfoo")
    with pytest.raises(InputError, match="0 GPUs"):
        read_gpu("0x80GB")


def test_a_capacity_in_the_commands(capsys):
    code, out, _ = run(capsys, "infer", "llama-3.1-8b", "--gpu", "24GB", "--json")
    data = json.loads(out)
    assert code == 0 and data["verdict"]["capacity_bytes"] == 24 * 10**9
    assert data["readings"][0].startswith("gpu 24GB read as a GPU with 22.35 GiB")
    code, _, err = run(capsys, "plan", "llama-3.1-8b", "--gpu", "24GB")
    assert code == 2 and "name the card" in err and err.count("\n") == 1


def test_a_count_sets_the_layout_or_tp(capsys):
    """``--gpu 2xh100`` is ``--gpu h100 --gpus 2`` for training and ``--tp 2`` for serving;
    a different explicit count is an error."""
    _, a, _ = run(capsys, "train", "llama-3.1-8b", "--gpu", "2xh100", "--zero", "3", "--json")
    _, b, _ = run(capsys, "train", "llama-3.1-8b", "--gpu", "h100", "--gpus", "2", "--zero", "3", "--json")
    a, b = json.loads(a), json.loads(b)
    assert a["readings"] == ["gpu 2xh100 read as 2 x h100-sxm (gpus 2)"]  # fields; the table shows flags
    assert {**a, "readings": []} == b
    _, a, _ = run(capsys, "infer", "llama-3.1-8b", "--gpu", "2x80GB", "--json")
    _, b, _ = run(capsys, "infer", "llama-3.1-8b", "--gpu", "80GB", "--tp", "2", "--json")
    a, b = json.loads(a), json.loads(b)
    assert a["total_bytes"] == b["total_bytes"] and a["details"]["tp"] == 2
    code, _, err = run(capsys, "train", "llama-3.1-8b", "--gpu", "2xh100", "--gpus", "4")
    assert code == 2 and "give one count" in err
    code, _, err = run(capsys, "infer", "llama-3.1-8b", "--gpu", "2x80GB", "--tp", "4")
    assert code == 2 and "give one count" in err


# ---- LoRA targets -------------------------------------------------------------------
def test_short_lora_targets(capsys):
    _, a, _ = run(capsys, "train", "llama-3.2-1b", "--method", "lora", "--lora-targets", "q,v", "--json")
    _, b, _ = run(capsys, "train", "llama-3.2-1b", "--method", "lora", "--lora-targets", "q_proj,v_proj", "--json")
    a, b = json.loads(a), json.loads(b)
    assert a["total_bytes"] == b["total_bytes"] and a["readings"] == ["lora_targets read q as q_proj, v as v_proj"]
    _, c, _ = run(capsys, "train", "llama-3.2-1b", "--method", "lora", "--lora-targets", "all-linear", "--json")
    _, d, _ = run(capsys, "train", "llama-3.2-1b", "--method", "lora", "--json")
    assert json.loads(c)["total_bytes"] == json.loads(d)["total_bytes"]


@given(text=st.one_of(st.text(max_size=30),
                      st.tuples(st.integers(-5, 10**8), st.sampled_from(["x", "X", "*", "×"]),
                                st.sampled_from(["80GB", "24GiB", "h100", "0GB", "1e400GB", "nan GB", "a10g", ""]))
                      .map(lambda t: f"{t[0]}{t[1]}{t[2]}")))
def test_any_gpu_text_is_a_gpu_or_one_line_error(text):
    from vramplan.errors import VramplanError

    try:
        reading = read_gpu(text)
    except VramplanError as exc:
        assert "\n" not in str(exc)
        return
    assert reading.spec.memory_bytes >= 1 and (reading.count is None or 1 <= reading.count <= 10**6)


def test_a_bit_width_is_not_a_gguf_recipe(capsys):
    code, out, err = run(capsys, "infer", "llama-3.1-8b", "--engine", "llamacpp", "--weights", "int4")
    assert code == 2 and out == "" and "GGUF recipe such as Q4_K_M" in err and err.count("\n") == 1


def test_the_page_takes_a_typed_token_count():
    """The length fields of the web page are text, so ``32k`` reaches the API (which reads it)."""
    from pathlib import Path

    import vramplan.web

    html = (Path(vramplan.web.__file__).parent / "static" / "index.html").read_text()
    for name in ("context", "seq", "prompt", "prefill-chunk", "max-num-batched-tokens"):
        assert re.search(rf'<input name="{name}" type="text"', html), name
