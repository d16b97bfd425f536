"""``panoptic-ros quantize``: FP16 and INT8 (Q/DQ) models from an FP32 ONNX model.

Writes next to the output folder MODEL.fp16.onnx, MODEL.int8.onnx and, with --dla,
MODEL.fp16-dla.onnx (static batch 1 and input size for Jetson DLA cores), each with its
.json metadata, then measures every variant on held-out synthetic scenes with ONNX Runtime
on the CPU (PQ and agreement with FP32). TensorRT 10 and 11 build all of them; TensorRT 11
needs precision in the model file (no builder flags), which is what this produces.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from panoptic_ros.cli.common import (
    HELP_FORMATTER,
    add_output_arguments,
    add_verbosity_arguments,
    check_output,
    format_table,
    parse_size,
    require_extra,
)

__all__ = ["QUANTIZE_MODULES", "register", "run"]

#: What quantize imports: ONNX, ONNX Runtime's quantisation (which needs sympy), OpenCV for
#: the calibration frames; all in the ``[train]`` extra. It never imports torch.
QUANTIZE_MODULES = ("onnx", "onnxruntime", "sympy", "cv2")

EXAMPLES = """
Examples:
  panoptic-ros quantize models/panoptic_lite0_synthetic.onnx \\
      --calibration samples/synthetic_street -o quantized
  panoptic-ros quantize city.onnx --calibration /data/calib --frames 256 --dla -o city_q --eval 50
  panoptic-ros quantize city.onnx --calibration /data/calib --keep-float /backbone/stem/ \\
      --keep-float /backbone/stages.0/ -o city_q
"""


def register(subparsers: Any) -> None:
    """Add the ``quantize`` subcommand."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "quantize",
        help="make FP16 and INT8 (Q/DQ) variants of an ONNX model",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=HELP_FORMATTER,
    )
    parser.add_argument("model", type=Path, help="FP32 ONNX model under the output contract")
    parser.add_argument(
        "--calibration",
        type=Path,
        required=True,
        help="folder of JPEG/PNG images or a rosbag2 with an image topic",
    )
    parser.add_argument("--frames", type=int, default=64, help="calibration frames (default 64)")
    parser.add_argument(
        "--method",
        choices=["percentile", "minmax", "entropy"],
        default="percentile",
        help="activation range calibration (default percentile 99.999)",
    )
    parser.add_argument(
        "--keep-float",
        action="append",
        metavar="PATTERN",
        help="leave nodes whose name contains PATTERN in float (repeatable; default: the"
        " backbone's first block, '/backbone/stages.0/', which costs 7 PQ points in INT8)",
    )
    parser.add_argument(
        "--quantize-all",
        action="store_true",
        help="quantise every node but the three output convolutions",
    )
    parser.add_argument(
        "--input-size",
        type=parse_size,
        help="network input HxW for calibration and --dla (default: the model's)",
    )
    parser.add_argument(
        "--dla", action="store_true", help="also write a static-shape FP16 model for DLA"
    )
    parser.add_argument(
        "--eval",
        type=int,
        default=16,
        metavar="N",
        help="held-out synthetic scenes to measure each variant on (0 = skip)",
    )
    add_output_arguments(parser)
    add_verbosity_arguments(parser)
    parser.set_defaults(run=run)


def _measure(model: Path, scenes: list[Any], reference: list[Any] | None) -> dict[str, Any]:
    import numpy as np

    from panoptic_ros.config import config_from_flat
    from panoptic_ros.evaluation.model_eval import evaluate_pipeline
    from panoptic_ros.pipeline import PanopticPipeline

    config = config_from_flat({"model.model_file_path": str(model), "backend.name": "onnxruntime"})
    with PanopticPipeline.from_config(config) as pipeline:
        started = time.perf_counter()
        maps = [pipeline.process(np.ascontiguousarray(s.image)).semantic for s in scenes]
        ms = 1000 * (time.perf_counter() - started) / max(len(scenes), 1)
        quality = evaluate_pipeline(pipeline, scenes)
    agreement = (
        float(np.mean([np.mean(a == b) for a, b in zip(maps, reference, strict=True)]))
        if reference is not None
        else 1.0
    )
    return {
        "pq": quality.summary["all"]["pq"],
        "miou": quality.miou,
        "ms": ms,
        "agreement": agreement,
        "maps": maps,
    }


def run(args: argparse.Namespace) -> int:
    """Run ``quantize``.

    Every flag, the packages, the model, the output and the calibration frames are checked
    before the first file is written.
    """
    from panoptic_ros.errors import ConfigError

    if args.frames < 1:
        raise ConfigError("--frames must be at least 1")
    if args.eval < 0:
        raise ConfigError(f"--eval must be at least 0, got {args.eval}")
    if args.quantize_all and args.keep_float:
        raise ConfigError("--quantize-all and --keep-float exclude each other")
    require_extra("train", QUANTIZE_MODULES)

    from panoptic_ros.export.onnx_export import check_onnx_contract
    from panoptic_ros.export.quantize import (
        DEFAULT_FLOAT_PATTERNS,
        calibration_frames,
        convert_fp16,
        quantize_int8,
    )

    metadata = check_onnx_contract(args.model)
    check_output(args.output, args.overwrite, [args.model, args.calibration])
    input_hw = tuple(args.input_size or metadata.input_hw)
    frames = calibration_frames(args.calibration, input_hw, args.frames)
    keep_float = () if args.quantize_all else tuple(args.keep_float or DEFAULT_FLOAT_PATTERNS)
    args.output.mkdir(parents=True, exist_ok=True)
    stem = args.model.stem
    outputs = {"fp32": args.model}

    started = time.monotonic()
    outputs["fp16"] = args.output / f"{stem}.fp16.onnx"
    convert_fp16(args.model, outputs["fp16"])
    if args.dla:
        outputs["fp16-dla"] = args.output / f"{stem}.fp16-dla.onnx"
        convert_fp16(args.model, outputs["fp16-dla"], static_hw=input_hw)
    print(f"calibrating INT8 on {len(frames)} frames of {args.calibration} ({args.method})")
    outputs["int8"] = args.output / f"{stem}.int8.onnx"
    quantize_int8(
        args.model, outputs["int8"], frames, method=args.method, exclude_patterns=keep_float
    )
    print(f"wrote {len(outputs) - 1} models in {time.monotonic() - started:.0f} s")

    rows: list[list[object]] = []
    if args.eval:
        from panoptic_ros.evaluation.model_eval import held_out_synthetic

        scenes = held_out_synthetic(args.eval, *input_hw)
        reference = None
        for name, path in outputs.items():
            if name == "fp16-dla":
                continue  # same arithmetic as fp16 here; differs only in shapes
            measured = _measure(path, scenes, reference)
            reference = reference or measured["maps"]
            rows.append(
                [
                    name,
                    f"{path.stat().st_size / 1e6:.1f}",
                    f"{100 * measured['pq']:.1f}",
                    f"{100 * measured['miou']:.1f}",
                    f"{100 * measured['agreement']:.2f}",
                    f"{measured['ms']:.0f}",
                ]
            )
        print(
            format_table(
                rows, header=["model", "MB", "PQ %", "mIoU %", "same class %", "ms/frame (ORT CPU)"]
            )
        )
    for name, path in outputs.items():
        print(f"{name:9s} {path}")
    return 0
