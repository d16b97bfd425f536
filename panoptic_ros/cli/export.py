"""``panoptic-ros export``: a training checkpoint to an ONNX model under the output contract.

By default the three heads (``heads`` contract); with --fused the panoptic fusion is folded
into the graph (``fused`` contract: semantic and instance maps plus an instance table).
After writing, the ONNX model is run with ONNX Runtime on real frames (the bundled sample
bag, or --parity-frames) and compared with PyTorch, and every operator is checked against
the set TensorRT's ONNX parser supports; both are reported.
"""

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
    parser.add_argument(
        "--fused",
        action="store_true",
        help="fold the panoptic fusion into the graph (fused contract)",
    )
    parser.add_argument(
        "--max-instances",
        type=int,
        default=64,
        help="K rows of the fused instance table (with --fused)",
    )
    parser.add_argument(
        "--parity-frames",
        type=Path,
        help="image folder or bag for the PyTorch parity check (default: the bundled sample bag)",
    )
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

    from panoptic_ros.export.fused import export_fused_onnx
    from panoptic_ros.export.onnx_export import export_onnx
    from panoptic_ros.export.tensorrt_ops import unsupported_tensorrt_ops
    from panoptic_ros.fusion import FusionParams
    from panoptic_ros.modeling.checkpoint import load_checkpoint

    network, metadata, _ = load_checkpoint(args.checkpoint)
    input_hw = args.input_size or metadata.input_hw
    if input_hw[0] % 32 or input_hw[1] % 32:
        raise ConfigError(f"--input-size {input_hw} must be multiples of 32")
    metadata = replace(metadata, input_hw=tuple(input_hw), dynamic_input=not args.static)
    if args.fused:
        path = export_fused_onnx(
            network.eval(),
            args.output,
            metadata=metadata,
            params=FusionParams(),
            input_hw=input_hw,
            max_instances=args.max_instances,
            dynamic=not args.static,
        )
    else:
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
    worst = _parity(
        network,
        path,
        input_hw,
        args.parity_frames,
        fused=args.fused,
        max_instances=args.max_instances,
    )
    print(f"ONNX Runtime vs PyTorch on real frames: {worst}")
    missing = unsupported_tensorrt_ops(path)
    if missing:
        print(f"operators TensorRT's ONNX parser does not support: {missing}")
    else:
        print("every operator is in TensorRT 10's ONNX parser support list")
    return 0


def _parity(
    network: Any,
    path: Path,
    input_hw: tuple[int, int],
    frames_source: Path | None,
    *,
    fused: bool,
    max_instances: int,
) -> str:
    """Largest |ONNX Runtime - PyTorch| per output on up to 4 frames (maps: mismatching cells)."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from panoptic_ros.export.fused import FusedPanopticNet
    from panoptic_ros.export.quantize import calibration_frames
    from panoptic_ros.fusion import FusionParams
    from panoptic_ros.resources import sample_bag_path

    frames = calibration_frames(frames_source or sample_bag_path(), input_hw, count=4)
    model = (
        FusedPanopticNet(network, network_labels(path), FusionParams(), max_instances=max_instances)
        if fused
        else network
    ).eval()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    worst: dict[str, float] = dict.fromkeys(names, 0.0)
    for frame in frames:
        onnx_out = session.run(None, {"image": frame[None]})
        with torch.no_grad():
            torch_out = model(torch.from_numpy(frame[None]))
        for name, got, want in zip(names, onnx_out, torch_out, strict=True):
            difference = np.abs(got.astype(np.float64) - want.numpy().astype(np.float64))
            if name in ("semantic", "instance"):
                worst[name] = max(worst[name], float((difference > 0).mean()))
            else:
                worst[name] = max(worst[name], float(difference.max()))
    return ", ".join(f"{name} {value:.2e}" for name, value in worst.items()) + (
        f" over {len(frames)} frames"
    )


def network_labels(path: Path) -> Any:
    """The label space stored in an exported model."""
    from panoptic_ros.export.onnx_export import read_onnx_metadata

    return read_onnx_metadata(path).labels
