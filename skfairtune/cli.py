"""The ``skfairtune`` command: ``skfairtune demo``, ``skfairtune worker`` and ``skfairtune refit``."""

from __future__ import annotations

import argparse
import importlib

__all__ = ["main"]

# Each subcommand lives in a module exposing ``configure_parser(parser)`` (``refit``:
# ``configure_refit_parser``) setting ``func`` (called with the parsed namespace,
# returning an exit code).
_COMMANDS = {
    "demo": ("skfairtune.demo", "run the FairTune story end to end on an embedded dataset (or HAM10000)"),
    "worker": ("skfairtune.worker", "join a stored search as one more worker (multi-process / multi-machine)"),
    "refit": ("skfairtune.worker", "refit the best of a finished stored search once, after its workers"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skfairtune",
        description="FairTune: search which parts of a pre-trained ViT to fine-tune for fairness.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in _COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        configure = "configure_refit_parser" if name == "refit" else "configure_parser"
        getattr(importlib.import_module(module), configure)(sub)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``skfairtune`` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
