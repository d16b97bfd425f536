"""``panoptic-ros``: one entry point, one subcommand per job.

Each subcommand module has ``register(subparsers)`` and ``run(args) -> int`` and imports
torch, onnxruntime or tensorrt only inside ``run``, so ``--help`` is instant and works with
any install. A command whose optional packages are missing stops with one line naming the
pip extra to install. Exit codes: 0 ok, 1 bad input or a missing package (one line
``panoptic-ros <cmd>: error: ...``), 2 usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from panoptic_ros import __version__
from panoptic_ros.cli.common import missing_module_error
from panoptic_ros.errors import DependencyError, PanopticError, first_line

__all__ = ["COMMANDS", "build_parser", "main"]

#: Subcommand name -> module under panoptic_ros.cli.
COMMANDS = {
    "demo": "demo",
    "replay": "replay",
    "bench": "bench",
    "eval": "evaluate",
    "train": "train",
    "export": "export",
    "quantize": "quantize",
    "build-engine": "build_engine",
    "pseudo-label": "pseudo_label",
}


def build_parser() -> argparse.ArgumentParser:
    """Return the parser with every subcommand registered.

    Raises:
        DependencyError: A subcommand's module cannot be imported (a broken installation:
            the modules import only the standard library, NumPy and the package).
    """
    parser = argparse.ArgumentParser(
        prog="panoptic-ros",
        description="Panoptic segmentation for ROS 2: replay bags, benchmark, train, export.",
        epilog="Run 'panoptic-ros <command> --help' for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"panoptic-ros {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="command", required=True)
    for name, module in COMMANDS.items():
        try:
            mod = importlib.import_module(f"panoptic_ros.cli.{module}")
        except ImportError as err:
            raise DependencyError(
                f"subcommand {name!r} cannot be loaded ({first_line(err)}); the installation "
                "is incomplete: reinstall panoptic_ros"
            ) from err
        mod.register(subparsers)
    return parser


def _configure_logging(verbosity: int) -> None:
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # Third-party chatter stays at WARNING unless -vv.
    for noisy in ("PIL", "matplotlib", "urllib3"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    try:
        parser = build_parser()
    except DependencyError as err:
        print(f"panoptic-ros: error: {err}", file=sys.stderr)
        return 1
    args = parser.parse_args(argv)
    _configure_logging(-1 if getattr(args, "quiet", False) else getattr(args, "verbose", 0))
    try:
        return int(args.run(args))
    except PanopticError as err:
        print(f"panoptic-ros {args.command}: error: {err}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as err:
        # An optional package a command reached without checking for it first.
        missing = missing_module_error(err)
        if missing is None:
            raise
        print(f"panoptic-ros {args.command}: error: {missing}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"panoptic-ros {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
