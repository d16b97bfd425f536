"""``panoptic-ros build-engine``: a TensorRT plan from an ONNX model (TensorRT 10.x or 11.x).

The engine goes into the engine cache (default $ROS_HOME/panoptic_ros/engines, where the
node looks) with a JSON record of what it was built from and for; a fresh cached engine is
reused, a stale one rebuilt. Precision comes from the model file (panoptic-ros quantize);
--fp16-flag uses TensorRT 10's legacy FP16 flag on an FP32 model. Building takes minutes on
a Jetson: progress is logged with the elapsed time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from panoptic_ros.cli.common import (
    HELP_FORMATTER,
    add_verbosity_arguments,
    format_table,
    parse_size,
    require_extra,
)
from panoptic_ros.config import ModelConfig

__all__ = ["register", "run"]

EXAMPLES = """
Examples:
  panoptic-ros build-engine models/panoptic_lite0_synthetic.onnx
  panoptic-ros build-engine city.int8.onnx --input-size 544x960 --dla-core 0    # Jetson DLA
  panoptic-ros build-engine city.onnx --fp16-flag --build-only   # installers, TensorRT 10
"""


def register(subparsers: Any) -> None:
    """Add the ``build-engine`` subcommand."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "build-engine",
        help="build (or refresh) the TensorRT engine of a model",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=HELP_FORMATTER,
    )
    parser.add_argument("model", type=Path, help="ONNX model under the output contract")
    parser.add_argument(
        "--input-size", type=parse_size, help="network input HxW (default: the model's)"
    )
    parser.add_argument(
        "--cache-dir", type=Path, help="engine cache (default $ROS_HOME/panoptic_ros/engines)"
    )
    parser.add_argument(
        "--engine", type=Path, help="write this plan path instead of the cache entry"
    )
    defaults = ModelConfig()
    parser.add_argument(
        "--workspace-mb",
        type=int,
        default=defaults.workspace_mb,
        help="builder workspace limit in MiB (the node's model.workspace_mb)",
    )
    parser.add_argument(
        "--dla-core",
        type=int,
        default=defaults.dla_core,
        help="DLA core (Jetson), -1 = GPU; the node needs the same model.dla_core to use the "
        "engine",
    )
    parser.add_argument(
        "--fp16-flag",
        action="store_true",
        help="TensorRT 10 only: legacy FP16 builder flag for an FP32 model",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even a fresh engine")
    parser.add_argument(
        "--build-only",
        action="store_true",
        help="build and exit without a test inference (for installers)",
    )
    add_verbosity_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``build-engine``."""
    require_extra("tensorrt", ("tensorrt", "onnx"))

    from panoptic_ros.export.engine import current_device, ensure_engine
    from panoptic_ros.export.onnx_export import check_onnx_contract
    from panoptic_ros.resources import default_engine_cache_dir

    metadata = check_onnx_contract(args.model)
    input_hw = tuple(args.input_size or metadata.input_hw)
    device = current_device()
    started = time.monotonic()
    path, record = ensure_engine(
        args.model,
        metadata=metadata,
        input_hw=input_hw,
        cache_dir=args.cache_dir or default_engine_cache_dir(),
        engine_path=args.engine,
        force=args.force,
        fp16_flag=args.fp16_flag,
        dla_core=args.dla_core,
        workspace_mb=args.workspace_mb,
        device=device,
    )
    rows: list[list[object]] = [
        ["engine", path],
        ["TensorRT", record.tensorrt_version],
        ["GPU", f"{record.gpu_name} (sm {record.compute_capability}, {record.sm_count} SMs)"],
        [
            "precision",
            record.precision + (" + FP16 flag" if "FP16" in record.builder_flags else ""),
        ],
        ["DLA core", record.dla_core if record.dla_core >= 0 else "none"],
        ["input", "x".join(str(v) for v in record.opt_shape)],
        ["time", f"{time.monotonic() - started:.0f} s (build {record.build_seconds:.0f} s)"],
    ]
    if not args.build_only:
        import numpy as np

        from panoptic_ros.backends.trt_backend import TensorRTBackend

        with TensorRTBackend(
            path, metadata, input_hw, dla_core=record.dla_core, plan_sha256=record.plan_sha256
        ) as backend:
            image = np.zeros((1, *input_hw, 3), np.uint8)
            run_once = backend.infer_fused if backend.fused else backend.infer
            run_once(image)
            started = time.perf_counter()
            for _ in range(20):
                run_once(image)
            rows.append(
                [
                    "latency",
                    f"{(time.perf_counter() - started) / 20 * 1000:.2f} ms/frame "
                    "(network only, host copies included)",
                ]
            )
    print(format_table(rows))
    return 0
