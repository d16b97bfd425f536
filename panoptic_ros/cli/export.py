"""``panoptic-ros export``: a training checkpoint to an ONNX model under the heads contract."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from panoptic_ros.cli.common import (
    HELP_FORMATTER,
    add_verbosity_arguments,
    check_output,
    parse_size,
)

__all__ = ["register", "run"]

EXAMPLES = """
Examples:
  panoptic-ros export runs/synthetic/model.safetensors -o models/my_model.onnx
  panoptic-ros export ckpt.safetensors -o model_1024x2048.onnx --input-size 1024x2048 --static
"""


def register(subparsers: Any) -> None:
    """Add the ``export`` subcommand."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=HELP_FORMATTER,
    )
    parser.add_argument("checkpoint", type=Path, help=".safetensors checkpoint from train")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output .onnx file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--input-size", type=parse_size, help="HxW (default: the model's own)")
    parser.add_argument(
        "--static", action="store_true", help="fixed input size (TensorRT likes it)"
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset")
    add_verbosity_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``export``."""
    from panoptic_ros.errors import ConfigError

    if args.output.suffix != ".onnx":
        raise ConfigError(f"output {str(args.output)!r} must end in .onnx")
    if not args.checkpoint.is_file():
        raise ConfigError(f"checkpoint {str(args.checkpoint)!r} does not exist")
    check_output(args.output, args.overwrite, [args.checkpoint])

    from dataclasses import replace

    from panoptic_ros.export.onnx_export import export_onnx
    from panoptic_ros.modeling.checkpoint import load_checkpoint

    network, metadata, _ = load_checkpoint(args.checkpoint)
    input_hw = args.input_size or metadata.input_hw
    if input_hw[0] % 32 or input_hw[1] % 32:
        raise ConfigError(f"--input-size {input_hw} must be multiples of 32")
    metadata = replace(metadata, input_hw=tuple(input_hw), dynamic_input=not args.static)
    path = export_onnx(
        network.eval(),
        args.output,
        metadata=metadata,
        input_hw=input_hw,
        dynamic=not args.static,
        opset=args.opset,
    )
    print(
        f"wrote {path} and {path.with_suffix('.json')} "
        f"({path.stat().st_size / 1e6:.1f} MB, input {input_hw[0]}x{input_hw[1]}"
        f"{' static' if args.static else ' dynamic'})"
    )
    return 0
