"""Accuracy of the analytical estimates against exact-mode traces.

    python benchmarks/bench_accuracy.py            # prints the table, rewrites docs/accuracy.md
    python benchmarks/bench_accuracy.py --quick    # traces 2-3 layers per model and extends them
    python benchmarks/bench_accuracy.py --only llama --no-write

Each case runs the real transformers model on PyTorch fake tensors under CUDA's
allocation rules (vramplan.trace) and the analytical estimator
(vramplan.training / vramplan.inference) on the same setup, and compares the
per-GPU tensor bytes at the peak. The analytical ``overhead`` category (CUDA
context, library workspaces) has no traced counterpart and is left out.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

GIB = 2**30
"""Bytes per GiB, for the table."""
GOAL_MEDIAN_ERROR = 0.005
"""Goal: median |error| at most 0.5 % ..."""
GOAL_WORST_ERROR = 0.03
"""... and worst case at most 3 %."""
LISTED_ERROR = 0.01
"""Cases over 1 % are listed with their diagnosis."""
DOC = ROOT / "docs" / "accuracy.md"
COMMAND = "python benchmarks/bench_accuracy.py"


@dataclass(frozen=True)
class Case:
    """One benchmark row."""

    model: str
    """Catalog slug, or a label for a modified catalog config."""
    setup: dict
    """TraceSetup fields."""
    config_edit: dict = field(default_factory=dict)
    """Changes to the catalog config (a smaller variant of a real architecture)."""
    base: str = ""
    """Catalog slug the edited config starts from (defaults to ``model``)."""

    def config(self) -> dict | str:
        if not self.config_edit:
            return self.model
        from vramplan.catalog import find_model

        cfg = copy.deepcopy(find_model(self.base or self.model).config())
        cfg.update(self.config_edit)
        cfg["_name_or_path"] = self.model
        return cfg

    def estimate_config(self) -> dict | str:
        """The config the analytical estimate reads: the traced one."""
        return self.config()


def T(model, **kw):
    return Case(model, {"mode": "train", **kw})


def I(model, **kw):  # noqa: E743
    return Case(model, {"mode": "infer", **kw})


MLA_LORA_TARGETS = ("q_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""DeepSeek-V2's linear layers (MLA has no k_proj / v_proj)."""
QWEN3_MOE_8L = dict(num_hidden_layers=8)
"""Qwen3-30B-A3B's layer shape (128 experts, top-8), 8 layers."""
ALL_LINEAR = ("all-linear",)
"""peft's keyword for every linear layer but the head."""

DENSE = ("llama-3.2-1b", "qwen2.5-0.5b", "gpt2", "pythia-1b", "gemma-2-2b", "mistral-7b-v0.1", "phi-3-mini",
         "olmo-2-7b", "qwen3-8b", "gemma-7b", "gemma-3-1b", "llama-3.1-8b")
"""One dense model per architecture (llama, qwen2, gpt2, gpt_neox, gemma2, mistral, phi3,
olmo2, qwen3, gemma, gemma3_text) and a larger Llama."""
MOE = ("qwen1.5-moe-a2.7b", "qwen3-30b-a3b", "deepseek-v2-lite", "mixtral-8x7b", "gpt-oss-20b")
"""One MoE model per architecture (qwen2_moe, qwen3_moe, deepseek_v2, mixtral, gpt_oss)."""


def _dense_cases(model: str) -> list[Case]:
    """The same grid on every dense architecture: precision x optimizer x method x
    recompute x attention x logits, batch 1-8, sequence 512-4096."""
    small = model in ("gpt2", "qwen2.5-0.5b", "gemma-3-1b", "llama-3.2-1b")
    seq = 1024 if model == "gpt2" else 2048
    # fused / differently named linears (c_attn, query_key_value, qkv_proj): peft's keyword
    targets = {"lora_targets": ALL_LINEAR} if model in ("gpt2", "pythia-1b", "phi-3-mini") else {}
    return [
        T(model, batch_size=1, seq=1024),
        T(model, batch_size=2, seq=512, precision="fp32", optimizer="sgd", attention="eager"),
        T(model, batch_size=1, seq=seq, precision="bf16", optimizer_impl="fused"),
        T(model, batch_size=2, seq=1024, load_dtype="bf16", optimizer_impl="forloop"),
        T(model, batch_size=4 if small else 2, seq=1024, method="lora", **targets),
        T(model, batch_size=2, seq=1024, method="lora", load_dtype="fp32", **targets),
        T(model, batch_size=8 if small else 4, seq=seq, method="lora", recompute=True, lora_targets=ALL_LINEAR),
        T(model, batch_size=4, seq=seq, recompute=True, precision="bf16"),
        T(model, batch_size=4, seq=seq, method="qlora", recompute=True, lora_targets=ALL_LINEAR),
        I(model, batch_size=1, seq=4096 if model != "gpt2" else 1020),
        I(model, batch_size=2, seq=1024, logits="all"),
        I(model, batch_size=8, seq=512, attention="eager"),
    ]


def _moe_cases(model: str) -> list[Case]:
    targets = MLA_LORA_TARGETS if model.startswith("deepseek") else ("q_proj", "k_proj", "v_proj", "o_proj",
                                                                     "gate_proj", "up_proj", "down_proj")
    return [
        T(model, batch_size=1, seq=512),
        T(model, batch_size=2, seq=1024, precision="bf16", recompute=True),
        T(model, batch_size=2, seq=512, method="lora", lora_targets=targets),
        T(model, batch_size=1, seq=1024, method="lora", lora_targets=ALL_LINEAR),
        T(model, batch_size=4, seq=2048, method="lora", recompute=True, lora_targets=ALL_LINEAR),
        T(model, batch_size=2, seq=2048, method="qlora", recompute=True, lora_targets=targets),
        I(model, batch_size=2, seq=1024),
        I(model, batch_size=1, seq=2048, logits="all"),
    ]


CASES: tuple[Case, ...] = (
    *[c for m in DENSE for c in _dense_cases(m)],
    *[c for m in MOE for c in _moe_cases(m)],
    # --- long sequences and the named setups
    T("llama-3.2-1b", batch_size=1, seq=32768, method="lora", recompute=True),
    T("qwen2.5-0.5b", batch_size=1, seq=16384, recompute=True),
    T("llama-3.2-1b", batch_size=8, seq=1024, optimizer="sgd"),
    T("llama-3.1-8b", batch_size=1, seq=8192, method="qlora", recompute=True),
    T("llama-3.2-1b", batch_size=2, seq=1024, method="qlora", recompute=False),
    T("llama-3.2-1b", batch_size=2, seq=2048, method="qlora", recompute=True, precision="bf16"),
    T("gpt2", batch_size=8, seq=1024),
    T("gpt2", batch_size=8, seq=1024, attention="eager"),
    T("gemma-2-2b", batch_size=2, seq=1024, method="lora", attention="eager"),
    I("llama-3.2-1b", batch_size=1, seq=32768),
    I("qwen2.5-7b", batch_size=1, seq=16384, logits="all"),
    I("deepseek-v2-lite", batch_size=8, seq=32768),
    I("llama-3.1-8b", batch_size=4, seq=8192, logits="all"),
)


def _is(model: str = "", mode: str = "", method: str = "", **fields):
    """A predicate on a case: model substring, mode, method and setup fields."""
    def match(case: Case) -> bool:
        setup = case.setup
        return (model in case.model and (not mode or setup["mode"] == mode)
                and (not method or setup.get("method", "full") == method)
                and all(setup.get(k, TRACE_DEFAULTS.get(k)) == v for k, v in fields.items()))
    return match


TRACE_DEFAULTS = {"precision": "bf16-mixed", "attention": "sdpa", "optimizer": "adamw", "recompute": False,
                  "load_dtype": None, "logits": "last"}
"""TraceSetup defaults of the fields the diagnoses test."""

DIAGNOSES: tuple[tuple, ...] = (
    # (predicate, why the estimate differs); shown for every case over 1 %. Found by
    # comparing the trace's components with the estimate's, per layer (traces at one and
    # two layers), and reading the modeling / peft code; the first match wins.
    (_is("gpt2", "train", "lora"),
     "activations: GPT-2 LoRA on a bf16 base (its fp32-load twin is within 0.2 %); the gap sits in the "
     "blocks under the autocast region, not yet attributed to a tensor."),
    (_is("", "train"),
     "not yet attributed (the largest differing groups are in the table's last column)."),
    (_is("", "infer"),
     "activations/layer: not yet attributed (see the table's last column)."),
)


def diagnosis(row) -> str:
    """The recorded reason for a case over 1 %, or empty."""
    for match, text in DIAGNOSES:
        if match(row.case):
            return text
    return ""


def describe(setup) -> str:
    """Short text of a TraceSetup for the table."""
    if setup.mode == "infer":
        bits = [f"b{setup.batch_size} s{setup.seq}+{setup.decode_tokens}",
                setup.load_dtype or ("fp32" if setup.precision == "fp32" else "bf16"), setup.attention,
                f"{setup.logits} logits"]
    else:
        bits = [f"b{setup.batch_size} s{setup.seq}", setup.method, setup.precision]
        if setup.load_dtype:
            bits.append(f"{setup.load_dtype} load")
        impl = {"foreach": "", "fused": "-fused", "forloop": "-forloop"}[setup.optimizer_impl]
        bits += [setup.optimizer + impl, setup.attention]
        if setup.method == "qlora":
            bits.insert(1, "nf4-dq")
        if setup.recompute:
            bits.append("recompute")
        if setup.method != "full" and setup.lora_targets == ALL_LINEAR:
            bits.append("all-linear")
    return " ".join(bits)


@dataclass(frozen=True)
class Row:
    case: Case
    setup_text: str
    arch: str
    traced_bytes: int
    traced_phase: str
    analytical_bytes: int | None
    analytical_phase: str
    diffs: tuple
    seconds: float
    notes: tuple[str, ...]

    @property
    def error(self) -> float | None:
        if self.analytical_bytes is None:
            return None
        return self.analytical_bytes / self.traced_bytes - 1


def run_case(case: Case, quick: bool) -> Row:
    from vramplan.model.hf_config import text_config
    from vramplan.trace import TraceSetup
    from vramplan.trace.compare import analytical_estimate, group_diffs, tensor_bytes
    from vramplan.trace.extrapolate import trace_extrapolated
    from vramplan.trace.run import resolve_config, run_trace

    setup = TraceSetup(**case.setup)
    config = case.config()
    started = time.perf_counter()
    try:
        result = trace_extrapolated(config, setup) if quick else run_trace(config, setup)
    except Exception as exc:  # a setup this stack cannot trace: report it, do not stop
        return Row(case=case, setup_text=describe(setup), arch="?", traced_bytes=0, traced_phase="-",
                   analytical_bytes=None, analytical_phase="", diffs=(), seconds=0.0,
                   notes=(f"trace failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}",))
    seconds = time.perf_counter() - started
    traced = result.to_estimate()
    cfg = config if isinstance(config, dict) else resolve_config(config)[1]
    if any("traced with eager" in n for n in result.notes):
        setup = replace(setup, attention="eager")  # the estimate runs what transformers ran
    try:
        analytical = analytical_estimate(case.estimate_config() if isinstance(config, dict) else case.model, setup)
        failure = ()
    except ValueError as exc:  # the estimator refused the setup: report it, do not stop
        analytical, failure = None, (f"estimate failed: {exc}",)
    return Row(case=case, setup_text=describe(setup), arch=text_config(cfg).get("model_type", "?"),
               traced_bytes=result.peak_bytes, traced_phase=result.peak_phase,
               analytical_bytes=None if analytical is None else tensor_bytes(analytical),
               analytical_phase="" if analytical is None else analytical.phase,
               diffs=() if analytical is None else tuple(group_diffs(traced, analytical)),
               seconds=seconds, notes=result.notes + failure)


def _gib(b: int | None) -> str:
    return "n/a" if b is None else f"{b / GIB:.3f}"


DIFF_SHOWN_BYTES = 2**20
"""Group differences below 1 MiB are not listed."""


def _diff_text(row: Row, limit: int = 2) -> str:
    parts = []
    for d in row.diffs[:limit]:
        if abs(d.diff_bytes) >= DIFF_SHOWN_BYTES:
            parts.append(f"{d.group} {d.diff_bytes / GIB:+.3f} GiB")
    return ", ".join(parts) or "-"


def markdown(rows: list[Row], header: str) -> str:
    lines = [header, "",
             "| # | model | arch | mode | setup | trace GiB | trace phase | estimate GiB | estimate phase | error | largest differences (estimate - trace) |",
             "|---|---|---|---|---|---:|---|---:|---|---:|---|"]
    for i, r in enumerate(rows, 1):
        err = "n/a" if r.error is None else f"{r.error:+.1%}"
        flag = " (!)" if r.error is not None and abs(r.error) > GOAL_WORST_ERROR else ""
        lines.append(f"| {i} | {r.case.model} | {r.arch} | {r.case.setup['mode']} | {r.setup_text} | "
                     f"{_gib(r.traced_bytes)} | {r.traced_phase} | {_gib(r.analytical_bytes)} | "
                     f"{r.analytical_phase} | {err}{flag} | {_diff_text(r)} |")
    notes = [(i, n) for i, r in enumerate(rows, 1) for n in r.notes]
    notes += [(i, "why: " + (diagnosis(r) or "not diagnosed")) for i, r in enumerate(rows, 1)
              if r.error is not None and abs(r.error) > LISTED_ERROR]
    notes.sort(key=lambda item: item[0])
    if notes:
        lines += ["", "Notes:", ""] + [f"- #{i}: {n}" for i, n in notes]
    return "\n".join(lines) + "\n"


def summary(rows: list[Row]) -> str:
    errors = [abs(r.error) for r in rows if r.error is not None]
    if not errors:
        return "No analytical estimator available: only traces were run.\n"
    median, worst = statistics.median(errors), max(errors)
    within = sum(e <= GOAL_WORST_ERROR for e in errors)
    within_listed = sum(e <= LISTED_ERROR for e in errors)
    archs = len({r.arch for r in rows})
    return (f"{len(errors)} cases over {archs} architectures: median |error| {median:.2%} (goal "
            f"{GOAL_MEDIAN_ERROR:.1%}: {'met' if median <= GOAL_MEDIAN_ERROR else 'not met'}), worst {worst:.2%} "
            f"(goal {GOAL_WORST_ERROR:.0%}: {'met' if worst <= GOAL_WORST_ERROR else 'not met'}); "
            f"{within} of {len(errors)} within {GOAL_WORST_ERROR:.0%}, {within_listed} within "
            f"{LISTED_ERROR:.0%}.\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="trace 2-3 layers per model and extend per layer")
    parser.add_argument("--only", default="", help="only cases whose model contains this text")
    parser.add_argument("--no-write", action="store_true", help=f"do not rewrite {DOC.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    import warnings

    warnings.filterwarnings("ignore")
    import transformers

    transformers.logging.set_verbosity_error()
    cases = [c for c in CASES if args.only in c.model]
    rows = []
    for i, case in enumerate(cases, 1):
        row = run_case(case, args.quick)
        rows.append(row)
        err = "n/a" if row.error is None else f"{row.error:+.1%}"
        for note in row.notes:
            print(f"        note: {note}")
        print(f"[{i:2d}/{len(cases)}] {case.model:18s} {case.setup['mode']:5s} {row.setup_text:42s} "
              f"trace {_gib(row.traced_bytes):>9s} GiB ({row.traced_phase:14s}) estimate "
              f"{_gib(row.analytical_bytes):>9s} GiB ({row.analytical_phase:14s}) {err:>7s}  {row.seconds:5.1f} s",
              flush=True)
    text = summary(rows)
    print(text)
    if not args.no_write and not args.only:
        write_doc(rows, quick=args.quick)
    return 0


def write_doc(rows: list[Row], *, quick: bool) -> None:
    import torch
    import transformers

    from vramplan.trace.deps import INSTALL_HINT

    command = COMMAND + (" --quick" if quick else "")
    intro = DOC_INTRO.format(command=command, torch=torch.__version__, transformers=transformers.__version__,
                             install=INSTALL_HINT)
    table = markdown(rows, "## The table")
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(intro + "\n" + summary(rows) + "\n" + table + "\n" + DOC_OUTRO, encoding="utf-8")


DOC_INTRO = """# Accuracy: analytical estimates against exact-mode traces

Regenerate this page (it is written by the command; edit the benchmark, not the page):

    {command}

Needs the exact extra (`{install}`); runs on a CPU, no GPU and no weights
(torch {torch}, transformers {transformers} when generated).

**Trace** is `vramplan trace`: the real transformers model built from the config on
PyTorch fake tensors, one real step (training: forward, loss, backward,
`optimizer.step()` in steady state; inference: prefill + 4 decode steps with a
static cache), every allocation recorded under CUDA's rules (512-byte blocks, CUDA
autocast op lists, flash / memory-efficient SDPA kernels, fused dropout, foreach
optimizer). It equals a real CPU run of the same step byte for byte (tested), and
its per-layer extrapolation equals a full trace (tested).

**Estimate** is the analytical model (`vramplan train` / `vramplan infer --engine hf`)
for the same setup, without its `overhead` category (CUDA context, library
workspaces), which the trace cannot see. Error = estimate / trace - 1, of the bytes
at each one's peak. (!) marks |error| > 3 %; every case over 1 % is listed under
the table with its diagnosis.

## Exact mode in one minute

    vramplan trace llama-3.1-8b --batch 1 --seq 2048 --svg step.svg --gpu h100   # training step
    vramplan trace qwen3-30b-a3b --infer --batch 4 --seq 4096 --decode 8           # prefill + decode
    vramplan trace llama-3.2-1b --method lora --recompute --json                   # any setup, as JSON
    vramplan validate --device cuda                                                # real GPU steps

The trace reports the peak, its phase, what is live at it (the same breakdown
table and JSON as `vramplan train` / `vramplan infer`), and draws the timeline
(SVG, stacked by category, the GPU's usable memory as a line). An 8B training step
traces in about 15 s and 0.5 GiB of host memory on 2 CPU cores; models deeper
than 48 layers are traced at two short depths and extended per layer (the
extension equals the full trace in the tests). How the CPU run is made to
allocate as CUDA does:

- autocast follows PyTorch's CUDA op lists (`aten/src/ATen/autocast_mode.h`):
  softmax, log_softmax, layer_norm, rms_norm, pow, exp, sum... run in fp32, matmuls
  in bf16, fp32 leaf weights cast once per autocast region; the CPU-only list
  entries fall through (tested op by op against PyTorch's own CUDA autocast kernels);
- SDPA runs the kernel CUDA picks: flash (saves the output and an fp32 log-sum-exp
  [b, h, s]), memory-efficient (log-sum-exp padded to 32 rows), or the math path
  (fp32 probabilities [b, h, s, s]);
- dropout saves the fused kernel's bool mask (1 byte per element);
- the optimizer defaults to `foreach=True`, as on CUDA (its step allocates a
  parameter-sized fp32 list); `--optimizer-impl fused` and `forloop` are traced too;
- every allocation is rounded up to the caching allocator's 512-byte blocks.

What the trace cannot see on a CPU: kernels' internal workspaces freed inside one
call (flash attention's dq accumulator, cuBLAS workspaces), the CUDA context, and
the allocator's reserved-but-free memory. `vramplan validate --device cuda` measures
those on a GPU.
"""

DOC_OUTRO = """## Reading a row

*largest differences* lists the comparison groups (weights incl. fp32 master
copies, gradients, optimizer, adapters, activations, kv_cache, logits+temporaries =
logits, the loss's fp32 copies and the temporaries of backward and the optimizer
step) whose bytes at the peak differ most, estimate minus trace (1 MiB and more).
The two peaks can fall in different phases; the groups are then taken at each
one's own peak.

## On a GPU

`vramplan validate --device cuda [--model M --train|--infer --batch B --seq S]` runs
the same steps on a real card and prints `torch.cuda.max_memory_allocated()` and
`max_memory_reserved()` beside the trace and the estimate. No GPU was available
when this page was generated, so no measured table is recorded yet; the trace's
CUDA-specific rules are instead checked against PyTorch's own CUDA autocast kernels
and kernel saved-tensor signatures (`tests/test_trace_rules.py`).
"""


if __name__ == "__main__":
    raise SystemExit(main())
