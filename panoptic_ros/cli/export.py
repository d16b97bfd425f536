"""``panoptic-ros export``: a training checkpoint to an ONNX model under the output contract.

By default the three heads (``heads`` contract); with --fused the panoptic fusion is folded
into the graph (``fused`` contract: semantic and instance maps plus an instance table).
The model is written to a temporary folder beside the output and checked there before it
takes the output's name: it is run with ONNX Runtime on real frames (the bundled sample
bag, or --parity-frames) and compared with PyTorch, and every operator is checked against
the set TensorRT's ONNX parser supports. The export fails (exit 1, one line, nothing
written) when a float output differs by more than ``--parity-atol + --parity-rtol *
|PyTorch|`` anywhere, when more than ``--parity-max-mismatch`` of a map's cells differ, or
when an operator is outside TensorRT's set (unless ``--allow-unsupported-ops``).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from panoptic_ros.cli.common import (
    HELP_FORMATTER,
    add_verbosity_arguments,
    check_output,
    parse_size,
    require_extra,
)

__all__ = ["register", "run"]

EXAMPLES = """
Examples:
  panoptic-ros export runs/synthetic/model.safetensors -o models/my_model.onnx
  panoptic-ros export ckpt.safetensors -o model_1024x2048.onnx --input-size 1024x2048 --static
  panoptic-ros export ckpt.safetensors -o fused.onnx --fused --parity-frames ~/bags/drive1
  panoptic-ros export ckpt.safetensors -o m.onnx --allow-unsupported-ops   # ONNX Runtime only
"""

#: Map outputs of the fused contract: compared by the fraction of differing cells.
_MAP_OUTPUTS = ("semantic", "instance")


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
    parser.add_argument(
        "--parity-atol",
        type=float,
        default=1e-3,
        help="largest absolute ONNX Runtime - PyTorch difference of a float output "
        "(plus --parity-rtol times |PyTorch|)",
    )
    parser.add_argument(
        "--parity-rtol",
        type=float,
        default=1e-3,
        help="relative part of the float tolerance",
    )
    parser.add_argument(
        "--parity-max-mismatch",
        type=float,
        default=1e-3,
        help="largest fraction of cells of a map output (--fused: semantic, instance) that "
        "may differ",
    )
    parser.add_argument(
        "--allow-unsupported-ops",
        action="store_true",
        help="keep a model with operators TensorRT's ONNX parser does not support (it will "
        "run in ONNX Runtime and PyTorch, not TensorRT)",
    )
    add_verbosity_arguments(parser)
    parser.set_defaults(run=run)


@dataclass(frozen=True, slots=True)
class ParityTolerance:
    """How far ONNX Runtime may be from PyTorch on the parity frames.

    Attributes:
        atol: Absolute part of the float tolerance.
        rtol: Relative part: a float element passes when ``|ort - torch| <= atol + rtol *
            |torch|``.
        max_mismatch: Largest fraction of differing cells of a map output.
    """

    atol: float = 1e-3
    rtol: float = 1e-3
    max_mismatch: float = 1e-3

    def describe(self) -> str:
        """One line: the tolerance in words."""
        return (
            f"|ONNX Runtime - PyTorch| <= {self.atol:g} + {self.rtol:g} * |PyTorch| on float "
            f"outputs, at most {self.max_mismatch:.2%} differing cells on maps"
        )


@dataclass(frozen=True, slots=True)
class OutputParity:
    """The parity of one output over the frames.

    Attributes:
        name: Output name.
        worst: Largest absolute difference (float outputs) or fraction of differing cells
            (map outputs).
        passed: Within the tolerance on every frame.
    """

    name: str
    worst: float
    passed: bool


def run(args: argparse.Namespace) -> int:
    """Run ``export``.

    Raises:
        ConfigError: Bad flags, a missing checkpoint or parity source, or an existing
            output without --overwrite.
        ModelFileError: The export failed, differs from PyTorch beyond the tolerance, or
            uses operators outside TensorRT's set without --allow-unsupported-ops.
    """
    from panoptic_ros.errors import ConfigError

    if args.output.suffix != ".onnx":
        raise ConfigError(f"output {str(args.output)!r} must end in .onnx")
    if not args.checkpoint.is_file():
        raise ConfigError(f"checkpoint {str(args.checkpoint)!r} does not exist")
    if args.parity_frames is not None and not args.parity_frames.exists():
        raise ConfigError(f"--parity-frames {str(args.parity_frames)!r} does not exist")
    for flag, value in (
        ("--parity-atol", args.parity_atol),
        ("--parity-rtol", args.parity_rtol),
        ("--parity-max-mismatch", args.parity_max_mismatch),
    ):
        if not value >= 0:  # also refuses NaN
            raise ConfigError(f"{flag} must be at least 0, got {value}")
    tolerance = ParityTolerance(args.parity_atol, args.parity_rtol, args.parity_max_mismatch)
    # The export runs PyTorch and checks parity with ONNX Runtime on decoded frames.
    require_extra("train", ("torch", "safetensors", "onnx", "onnxruntime", "cv2"))
    check_output(args.output, args.overwrite, [args.checkpoint])

    import shutil
    import tempfile
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
    args.output.parent.mkdir(parents=True, exist_ok=True)
    # Checked under a temporary name beside the output; renamed only if it passes, so a
    # failed check leaves the old output (with --overwrite) or nothing.
    staging = Path(tempfile.mkdtemp(prefix=".export_", dir=args.output.parent))
    try:
        staged = staging / args.output.name
        if args.fused:
            export_fused_onnx(
                network.eval(),
                staged,
                metadata=metadata,
                params=FusionParams(),
                input_hw=input_hw,
                max_instances=args.max_instances,
                dynamic=not args.static,
            )
        else:
            export_onnx(
                network.eval(),
                staged,
                metadata=metadata,
                input_hw=input_hw,
                dynamic=not args.static,
                opset=args.opset,
            )
        parity, frames = _parity(
            network,
            staged,
            input_hw,
            args.parity_frames,
            tolerance,
            fused=args.fused,
            max_instances=args.max_instances,
        )
        print(
            "ONNX Runtime vs PyTorch on real frames: "
            + ", ".join(f"{p.name} {p.worst:.2e}" for p in parity)
            + f" over {frames} frames (tolerance: {tolerance.describe()})"
        )
        missing = unsupported_tensorrt_ops(staged)
        if missing:
            print(f"operators TensorRT's ONNX parser does not support: {missing}")
        else:
            print("every operator is in TensorRT 10's ONNX parser support list")
        _check(parity, frames, tolerance, missing, allow_unsupported=args.allow_unsupported_ops)
        path = args.output
        staged_sidecar = staged.with_suffix(".json")
        staged.replace(path)
        staged_sidecar.replace(path.with_suffix(".json"))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(
        f"wrote {path} and {path.with_suffix('.json')} "
        f"({path.stat().st_size / 1e6:.1f} MB, input {input_hw[0]}x{input_hw[1]}"
        f"{' static' if args.static else ' dynamic'})"
    )
    return 0


def _check(
    parity: list[OutputParity],
    frames: int,
    tolerance: ParityTolerance,
    unsupported: dict[str, int],
    *,
    allow_unsupported: bool,
) -> None:
    """Refuse the export when parity fails or, unless allowed, operators are unsupported.

    Raises:
        ModelFileError: With the first reason, in one line.
    """
    from panoptic_ros.errors import ModelFileError

    failed = [p for p in parity if not p.passed]
    if failed:
        worst = ", ".join(f"{p.name} {p.worst:.2e}" for p in failed)
        raise ModelFileError(
            f"the exported model differs from PyTorch beyond the tolerance ({worst} over "
            f"{frames} frames; allowed: {tolerance.describe()}); nothing written"
        )
    if unsupported and not allow_unsupported:
        raise ModelFileError(
            f"the exported model uses operators TensorRT's ONNX parser does not support "
            f"{unsupported!r}; nothing written (--allow-unsupported-ops keeps it for ONNX "
            "Runtime and PyTorch)"
        )


def _parity(
    network: Any,
    path: Path,
    input_hw: tuple[int, int],
    frames_source: Path | None,
    tolerance: ParityTolerance,
    *,
    fused: bool,
    max_instances: int,
) -> tuple[list[OutputParity], int]:
    """ONNX Runtime against PyTorch on up to 4 real frames, output by output.

    Returns:
        (one :class:`OutputParity` per output, in the model's order; number of frames).
    """
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
    passed: dict[str, bool] = dict.fromkeys(names, True)
    for frame in frames:
        onnx_out = session.run(None, {"image": frame[None]})
        with torch.no_grad():
            torch_out = model(torch.from_numpy(frame[None]))
        for name, got, want in zip(names, onnx_out, torch_out, strict=True):
            reference = want.numpy().astype(np.float64)
            difference = np.abs(np.asarray(got).astype(np.float64) - reference)
            if name in _MAP_OUTPUTS:
                value = float((difference > 0).mean()) if difference.size else 0.0
                ok = value <= tolerance.max_mismatch
            else:
                value = float(difference.max()) if difference.size else 0.0
                limit = tolerance.atol + tolerance.rtol * np.abs(reference)
                ok = bool(np.all(difference <= limit))  # NaN anywhere fails
            worst[name] = max(worst[name], value)
            passed[name] = passed[name] and ok
    return [OutputParity(name, worst[name], passed[name]) for name in names], len(frames)


def network_labels(path: Path) -> Any:
    """The label space stored in an exported model."""
    from panoptic_ros.export.onnx_export import read_onnx_metadata

    return read_onnx_metadata(path).labels
