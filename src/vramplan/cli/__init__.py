"""The ``vramplan`` command line: a thin shell over the core.

Each subcommand lives in its own module and is imported only when it runs, so
``vramplan params ... --json`` starts fast. Errors from the core
(:class:`~vramplan.errors.VramplanError`) print as one line on stderr with the
error's exit code (2 for bad input); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import importlib
import sys

import click

from vramplan import __version__
from vramplan.errors import VramplanError

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module, one-line help)
    "models": ("vramplan.cli.models", "List the built-in models."),
    "params": ("vramplan.cli.params", "Count a model's parameters by component."),
    "gpus": ("vramplan.cli.gpus", "List the built-in GPUs and accelerators."),
    "infer": ("vramplan.cli.infer", "Memory to serve a model (weights, KV cache, activations, overheads)."),
    "train": ("vramplan.cli.train", "Memory to train or fine-tune a model."),
    "plan": ("vramplan.cli.plan", "Find GPU counts and parallel layouts that fit."),
    "rl": ("vramplan.cli.rl", "Memory of a post-training job (GRPO, PPO, DPO) with a rollout engine."),
    "trace": ("vramplan.cli.trace", "Exact mode: trace one real step on PyTorch fake tensors."),
    "validate": ("vramplan.cli.validate", "Measure real CUDA steps against the estimate."),
    "serve": ("vramplan.cli.serve", "Open the local web app."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name, (module, _) in COMMANDS.items() if _module_exists(module)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS or not _module_exists(COMMANDS[name][0]):
            return None
        return importlib.import_module(COMMANDS[name][0]).command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _module_exists(module: str) -> bool:
    from importlib.util import find_spec

    return find_spec(module) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vramplan")
@click.option("--debug", is_flag=True, help="Show a traceback on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """How much GPU memory a large language model needs to train, fine-tune or
    serve, and which GPUs and settings make it fit."""
    ctx.obj = {"debug": debug}


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning core errors into one-line messages."""
    args = argv if argv is not None else sys.argv[1:]
    debug = "--debug" in args
    try:
        cli.main(args=argv, prog_name="vramplan", standalone_mode=False)
    except VramplanError as exc:
        if debug:
            raise
        from vramplan.cli.common import flag_message

        command = next((a for a in args if not a.startswith("-")), "")
        click.echo(f"error: {flag_message(exc, command_flags(command))}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 1
    except click.UsageError as exc:
        if debug:
            raise
        command = exc.ctx.command_path if exc.ctx else "vramplan"
        click.echo(f"error: {exc.format_message().rstrip('.')} (see '{command} --help')", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        if debug:
            raise
        click.echo(f"error: {exc.format_message()}", err=True)
        return exc.exit_code
    except BrokenPipeError:
        return 0
    return 0


def command_flags(command: str) -> dict[str, str]:
    """Field -> flag for ``command``: from the option declarations
    (:func:`vramplan.options.flags_by_field`), or for a command declaring its own click
    options (trace, validate, serve), from those; an argument shows as its metavar
    (``model`` -> ``MODEL``)."""
    from vramplan.options import QUESTION_OPTIONS, flags_by_field

    if command not in COMMANDS or not _module_exists(COMMANDS[command][0]):
        return {}
    params = importlib.import_module(COMMANDS[command][0]).command.params
    flags = {p.name: p.name.upper() for p in params if isinstance(p, click.Argument) and p.name}
    if command in (*QUESTION_OPTIONS, "params", "models", "gpus", "rl"):
        return {**flags, **flags_by_field(command)}
    return {**flags, **{p.name: p.opts[0] for p in params if isinstance(p, click.Option) and p.name}}


def run() -> None:
    """Console-script wrapper."""
    sys.exit(main())
