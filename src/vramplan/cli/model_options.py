"""The MODEL argument and the custom-architecture flags, declared once for every
command that takes a model (params, infer, train, plan, trace)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from vramplan.errors import InputError

ARCH_FLAGS: tuple[tuple[str, str, str], ...] = (
    # (flag, keyword of custom_spec, help)
    ("--layers", "layers", "Decoder layers (custom architecture)."),
    ("--hidden", "hidden", "Hidden size (custom architecture)."),
    ("--heads", "heads", "Attention heads (custom architecture)."),
    ("--kv-heads", "kv_heads", "Key/value heads (default: --heads)."),
    ("--head-dim", "head_dim", "Per-head dims (default: hidden / heads)."),
    ("--intermediate", "intermediate", "MLP hidden size (default: Llama's 8h/3 rounded to 256)."),
    ("--vocab", "vocab", "Vocabulary size (default 32000)."),
    ("--experts", "experts", "Routed experts per layer (MoE)."),
    ("--experts-per-token", "experts_per_token", "Experts each token is routed to (MoE, default 2)."),
)
STRUCTURE_FLAGS: tuple[tuple[str, str, Any, str], ...] = (
    # (flag, keyword of custom_spec, click type, help): the block's structure
    ("--mlp", "gated", click.Choice(["gated", "plain"]),
     "MLP: gated (SwiGLU: gate, up, down; default) or plain (up, down: GPT-2, Falcon, BLOOM)."),
    ("--norm", "norm", click.Choice(["rmsnorm", "layernorm"]), "Norm layers (default rmsnorm)."),
    ("--bias", "bias", click.Choice(["none", "qkv", "attention", "all"]),
     "Linear biases: none (default), qkv (Qwen2), attention (q/k/v/o), all (every linear)."),
    ("--position", "position", click.Choice(["rotary", "alibi", "learned"]),
     "Positions: rotary (default), alibi (no parameters), learned (a table of --max-positions rows)."),
    ("--max-positions", "max_positions", click.IntRange(min=1), "Context the model was built for (default 4096)."),
    ("--activation", "activation", str, "Activation name (default silu for gated, gelu for plain)."),
)
SWITCH_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("--tie-embeddings", "tied", "The output head shares the embedding matrix."),
    ("--parallel-block", "parallel_block",
     "Attention and MLP read the same norm and add their outputs (GPT-J, Falcon-7B, Cohere)."),
)
_REQUIRED = ("layers", "hidden", "heads")


def model_argument(func: Callable) -> Callable:
    """Add an optional MODEL argument and the custom-architecture flags."""
    for flag, dest, help_text in reversed(SWITCH_FLAGS):
        func = click.option(flag, dest, is_flag=True, default=None, help=help_text)(func)
    for flag, dest, kind, help_text in reversed(STRUCTURE_FLAGS):
        func = click.option(flag, dest, type=kind, default=None, help=help_text)(func)
    for flag, dest, help_text in reversed(ARCH_FLAGS):
        func = click.option(flag, dest, type=click.IntRange(min=1), default=None, help=help_text)(func)
    return click.argument("model", required=False)(func)


def pop_arch_flags(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Remove the architecture flags from a command's kwargs; return those given
    (``--mlp plain`` as ``gated=False``)."""
    dests = [d for _, d, _ in ARCH_FLAGS] + [d for _, d, _, _ in STRUCTURE_FLAGS] + [d for _, d, _ in SWITCH_FLAGS]
    given = {dest: v for dest in dests if (v := kwargs.pop(dest, None)) not in (None, False)}
    if "gated" in given:
        given["gated"] = given["gated"] == "gated"
    return given


def model_from_cli(model: str | None, arch: dict[str, Any]):
    """Resolve MODEL, or build a custom architecture from flags (not both)."""
    from vramplan.model import custom_spec, resolve_model

    if arch:
        if model:
            flag_of = {d: f for f, d, *_ in (*ARCH_FLAGS, *STRUCTURE_FLAGS, *SWITCH_FLAGS)}
            raise InputError(f"MODEL {model!r} and architecture flags ({', '.join(flag_of.get(k, k) for k in arch)}) "
                             "given together: pass one or the other")
        missing = [f"--{k}" for k in _REQUIRED if k not in arch]
        if missing:
            raise InputError(f"custom architecture: missing {', '.join(missing)} "
                             "(needed with any of --layers --hidden --heads --kv-heads --intermediate --vocab)")
        return custom_spec(**arch)
    if not model:
        raise InputError("MODEL: expected a catalog name (see `vramplan models`), a Hub id (org/name), a checkpoint "
                         "directory, a .gguf file, a config.json path, a parameter count like 7B, "
                         "or --layers/--hidden/--heads")
    spec = resolve_model(model)
    remember_source(spec)
    return spec


SOURCE_META_KEY = "vramplan.model_source"
"""Where :func:`model_from_cli` leaves the model's source for ``--json`` output."""


def remember_source(spec) -> None:
    """Keep the source and stored inventory of a model read from files, so the command's
    JSON names them (``"source": {"kind", "repo", "revision", "files"}``)."""
    stored = getattr(spec, "checkpoint", None)
    ctx = click.get_current_context(silent=True)
    if stored is not None and ctx is not None:
        ctx.meta[SOURCE_META_KEY] = {"source": stored.source.to_dict(), "checkpoint": stored.to_dict()}
