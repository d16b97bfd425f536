"""``panoptic-ros bench``: per-stage latency and frames per second of the whole pipeline.

Host stages are timed on the monotonic clock; on CUDA the network's own device time is also
measured with CUDA events (``inference_device``). ``--matrix`` runs every available
backend (ONNX Runtime; TensorRT when it imports; torch on CUDA) on every model precision
found (the model, and the ``.fp16.onnx`` / ``.int8.onnx`` files that ``quantize`` writes)
at each camera size, and records the machine (CPU, GPU, library versions) with the runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from panoptic_ros.cli.common import (
    HELP_FORMATTER,
    add_config_arguments,
    add_verbosity_arguments,
    check_file_output,
    config_from_args,
    format_table,
    parse_size,
    require_extra,
)

__all__ = ["STAGES", "environment", "matrix_entries", "register", "run"]

STAGES = ("decode", "preprocess", "inference", "fusion", "messages")

EXAMPLES = """
Examples:
  panoptic-ros bench --input-size 1024x2048              # network at full camera resolution
  panoptic-ros bench --input-size 540x960 --network-size model --encoding jpeg
  panoptic-ros bench --image ../shared/data/images/udacity_highway_1280x720.jpg --json bench.json
  panoptic-ros bench --matrix --variants q/ --json matrix.json   # backends x precisions x sizes
  panoptic-ros bench --matrix --network-size model --matrix-sizes 1024x2048

Stages: decode (message -> RGB), preprocess (letterbox), inference (network), fusion
(panoptic grouping and mapping back to camera pixels), messages (overlay + output messages).
"""


def register(subparsers: Any) -> None:
    """Add the ``bench`` subcommand."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bench",
        help="measure per-stage latency and throughput",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=HELP_FORMATTER,
    )
    parser.add_argument(
        "--input-size",
        type=parse_size,
        default=(1024, 2048),
        help="camera image size HxW (ignored with --image)",
    )
    parser.add_argument(
        "--network-size",
        default="input",
        help="network input HxW, 'input' (camera size rounded up to 32) or 'model'",
    )
    parser.add_argument("--image", type=Path, help="a JPEG/PNG to use instead of a synthetic scene")
    parser.add_argument(
        "--encoding",
        choices=["rgb8", "bgr8", "jpeg"],
        default="rgb8",
        help="how the frame arrives (decode cost differs)",
    )
    parser.add_argument("--frames", type=int, default=10, help="timed frames")
    parser.add_argument("--warmup", type=int, default=2, help="untimed frames first")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    parser.add_argument(
        "--matrix",
        action="store_true",
        help="run every available backend and model precision at each --matrix-sizes",
    )
    parser.add_argument(
        "--matrix-sizes",
        type=lambda text: [parse_size(part) for part in text.split(",")],
        default=[(512, 1024), (1024, 2048)],
        help="camera sizes HxW,HxW of the matrix",
    )
    parser.add_argument(
        "--variants",
        type=Path,
        help="folder with MODEL.fp16.onnx / MODEL.int8.onnx from quantize (default: the "
        "model's folder)",
    )
    add_config_arguments(parser)
    add_verbosity_arguments(parser)
    parser.set_defaults(run=run)


def _frame_message(image: npt.NDArray[np.uint8], encoding: str) -> Any:
    from types import SimpleNamespace

    from panoptic_ros.codec import encode_compressed, encode_raw

    if encoding == "jpeg":
        fields = encode_compressed(image, "jpeg", quality=90)
        return SimpleNamespace(format=fields.format, data=fields.data)
    raw = encode_raw(image, encoding)
    return SimpleNamespace(
        height=raw.height,
        width=raw.width,
        encoding=raw.encoding,
        is_bigendian=raw.is_bigendian,
        step=raw.step,
        data=raw.data,
    )


def _load_image(args: argparse.Namespace) -> npt.NDArray[np.uint8]:
    from panoptic_ros.codec import decode_compressed

    if args.image is not None:
        from panoptic_ros.errors import ConfigError

        try:
            data = args.image.read_bytes()
        except OSError as err:
            raise ConfigError(f"cannot read --image {str(args.image)!r}: {err.strerror}") from err
        return decode_compressed(format=args.image.suffix.lstrip("."), data=data)
    from panoptic_ros.data.synthetic import HELD_OUT_SEED_START, generate_scene

    height, width = args.input_size
    return generate_scene(HELD_OUT_SEED_START, height, width).image


def environment() -> dict[str, Any]:
    """The machine a report was measured on: CPU, GPU, library versions."""
    import os
    import sys
    from importlib import metadata

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name, distributions in {
        "numpy": ("numpy",),
        "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
        "onnx": ("onnx",),
        "opencv": ("opencv-python-headless", "opencv-python"),
        "torch": ("torch",),
        "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-cu13"),
        "pycuda": ("pycuda",),
    }.items():
        versions[name] = None
        for distribution in distributions:
            with contextlib.suppress(metadata.PackageNotFoundError):
                versions[name] = metadata.version(distribution)
                break
    gpu = None
    if versions["torch"]:
        try:
            import torch
        except ImportError:  # installed metadata, unimportable package: report no torch
            versions["torch"] = None
        else:
            if torch.cuda.is_available():
                gpu = torch.cuda.get_device_name(0)
                versions["cuda"] = torch.version.cuda
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "gpu": gpu,
        "platform": platform.platform(),
        "load_average": list(os.getloadavg()),
        "versions": versions,
    }


def _stats(values: list[float]) -> dict[str, float]:
    array = np.asarray(values)
    return {
        "p50_ms": float(np.percentile(array, 50)),
        "p99_ms": float(np.percentile(array, 99)),
        "mean_ms": float(array.mean()),
    }


def _bench_once(
    config: Any, image: npt.NDArray[np.uint8], encoding: str, frames: int, warmup: int
) -> dict[str, Any]:
    """Time ``frames`` frames of the pipeline ``config`` describes after ``warmup`` frames."""
    from dataclasses import replace

    from panoptic_ros.bags import make_typestore
    from panoptic_ros.pipeline import PanopticPipeline
    from panoptic_ros.ros_messages import MessageClasses, build_output_messages

    typestore = make_typestore()
    classes = MessageClasses.from_typestore(typestore)
    header = classes.Header(stamp=classes.Time(sec=0, nanosec=0), frame_id="bench")
    message = _frame_message(image, encoding)
    samples: dict[str, list[float]] = {stage: [] for stage in STAGES}
    device_ms: list[float] = []
    totals: list[float] = []
    instance_counts: list[int] = []
    with PanopticPipeline.from_config(config) as pipeline:
        for index in range(warmup + frames):
            start = time.perf_counter_ns()
            decoded, result = pipeline.process_message(message)
            messages_start = time.perf_counter_ns()
            overlay = pipeline.render(
                decoded,
                result,
                alpha=config.render.overlay_alpha,
                draw_boxes=config.render.draw_boxes,
            )
            build_output_messages(classes, header, result, overlay_bgr=overlay)
            end = time.perf_counter_ns()
            timings = replace(result.timings, messages_ms=(end - messages_start) / 1e6)
            if index >= warmup:
                for stage in STAGES:
                    samples[stage].append(getattr(timings, f"{stage}_ms"))
                device_ms.append(timings.inference_device_ms)
                totals.append((end - start) / 1e6)
                instance_counts.append(len(result.instances))
        backend = pipeline.backend
        report: dict[str, Any] = {
            "pipeline": pipeline.describe(),
            "backend": backend.name,
            "device": backend.device,
            "precision": backend.metadata.precision,
            "model": str(getattr(backend, "model_path", "")),
            "network_size": list(pipeline.network_hw),
        }
    height, width = image.shape[:2]
    report.update(
        {
            "input_size": [int(height), int(width)],
            "encoding": encoding,
            "frames": frames,
            "warmup": warmup,
            "stages": {stage: _stats(values) for stage, values in samples.items()},
            "total": _stats(totals),
            "mean_instances": float(np.mean(instance_counts)),
        }
    )
    if any(device_ms):  # CUDA events: the network's own device time
        report["inference_device"] = _stats(device_ms)
    total_mean = report["total"]["mean_ms"]
    report["fps"] = 1000.0 / total_mean
    report["outside_network_share"] = 1.0 - report["stages"]["inference"]["mean_ms"] / total_mean
    return report


def _tensorrt_importable() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def matrix_entries(
    model: Path, variants: Path, *, tensorrt: bool, cuda: bool
) -> list[dict[str, Any]]:
    """The runs of ``--matrix``: backend, config overrides and a label, in order.

    Args:
        model: The FP32 ONNX model.
        variants: Folder holding ``<stem>.fp16.onnx`` / ``<stem>.int8.onnx`` (from quantize).
        tensorrt: TensorRT imports here.
        cuda: torch sees a CUDA device.

    Returns:
        One dict per run: ``label``, ``backend``, ``model``, ``precision`` (of the run).
    """
    files = {"fp32": model}
    for precision in ("fp16", "int8"):
        candidate = variants / f"{model.stem}.{precision}.onnx"
        if candidate.is_file():
            files[precision] = candidate
    entries: list[dict[str, Any]] = []
    backends = ["onnxruntime"] + (["tensorrt"] if tensorrt and cuda else [])
    for backend in backends:
        for precision, path in files.items():
            entries.append({"backend": backend, "model": path, "precision": precision})
    checkpoint = model.with_suffix(".safetensors")
    if cuda and checkpoint.is_file():
        for precision in ("fp32", "fp16"):  # FP16 by autocast
            entries.append({"backend": "torch", "model": checkpoint, "precision": precision})
    for entry in entries:
        entry["label"] = f"{entry['backend']} {entry['precision']}"
    return entries


def _network_hw(args: argparse.Namespace, image_hw: tuple[int, int]) -> tuple[int, int]:
    from panoptic_ros.geometry import round_up_to_multiple

    if args.network_size == "input":
        return (round_up_to_multiple(image_hw[0], 32), round_up_to_multiple(image_hw[1], 32))
    if args.network_size == "model":
        return (0, 0)
    return parse_size(args.network_size)


def _run_matrix(args: argparse.Namespace, config: Any) -> dict[str, Any]:
    from panoptic_ros.backends.base import cuda_available, resolve_model_path
    from panoptic_ros.config import config_from_flat
    from panoptic_ros.data.synthetic import HELD_OUT_SEED_START, generate_scene
    from panoptic_ros.errors import PanopticError

    model = resolve_model_path(config.model)
    entries = matrix_entries(
        model,
        args.variants or model.parent,
        tensorrt=_tensorrt_importable(),
        cuda=cuda_available(),
    )
    runs: list[dict[str, Any]] = []
    for height, width in args.matrix_sizes:
        image = generate_scene(HELD_OUT_SEED_START, height, width).image
        network_hw = _network_hw(args, (height, width))
        for entry in entries:
            settings: dict[str, Any] = {
                "model.model_file_path": str(entry["model"]),
                "model.network_height": network_hw[0],
                "model.network_width": network_hw[1],
                "backend.name": entry["backend"],
                "backend.allow_fallback": False,
                "backend.precision": entry["precision"] if entry["backend"] == "torch" else "fp32",
            }
            label = f"{entry['label']} {height}x{width}"
            try:
                report = _bench_once(
                    config_from_flat(settings, base=config),
                    image,
                    args.encoding,
                    args.frames,
                    args.warmup,
                )
            except PanopticError as err:  # one run that cannot start does not end the matrix
                runs.append({"label": label, "error": str(err)})
                continue
            runs.append({"label": label, **report})
    return {"matrix": True, "runs": runs}


def _print_run(report: dict[str, Any]) -> None:
    total_mean = report["total"]["mean_ms"]
    rows = [
        [
            stage,
            f"{s['p50_ms']:.1f}",
            f"{s['p99_ms']:.1f}",
            f"{100 * s['mean_ms'] / total_mean:.1f}%",
        ]
        for stage, s in report["stages"].items()
    ]
    if "inference_device" in report:
        device = report["inference_device"]
        rows.append(
            ["  (device)", f"{device['p50_ms']:.1f}", f"{device['p99_ms']:.1f}", "in inference"]
        )
    rows.append(
        ["total", f"{report['total']['p50_ms']:.1f}", f"{report['total']['p99_ms']:.1f}", "100%"]
    )
    height, width = report["input_size"]
    network = report["network_size"]
    print(report["pipeline"])
    print(
        f"input {height}x{width} ({report['encoding']}), network {network[0]}x{network[1]}, "
        f"{report['frames']} frames after {report['warmup']} warm-up"
    )
    print(format_table(rows, header=["stage", "p50 ms", "p99 ms", "share"]))
    print(
        f"fps {report['fps']:.2f}   time outside the network "
        f"{100 * report['outside_network_share']:.1f}%"
    )


def _print_matrix(report: dict[str, Any]) -> None:
    rows: list[list[object]] = []
    for run in report["runs"]:
        if "error" in run:
            rows.append([run["label"], "-", "-", "-", "-", "-", run["error"][:60]])
            continue
        network = "x".join(str(v) for v in run["network_size"])
        rows.append(
            [
                run["label"],
                network,
                f"{run['fps']:.2f}",
                f"{run['total']['p50_ms']:.1f}",
                f"{run['total']['p99_ms']:.1f}",
                f"{run['stages']['inference']['p50_ms']:.1f}",
                f"{100 * run['outside_network_share']:.1f}%",
            ]
        )
    header = ["run", "network", "fps", "p50 ms", "p99 ms", "network ms", "outside"]
    print(format_table(rows, header=header))


def run(args: argparse.Namespace) -> int:
    """Run ``bench``."""
    from panoptic_ros.config import config_from_flat
    from panoptic_ros.errors import ConfigError

    if args.frames < 1 or args.warmup < 0:
        raise ConfigError("--frames must be >= 1 and --warmup >= 0")
    if args.matrix and args.image is not None:
        raise ConfigError("--matrix uses synthetic scenes of --matrix-sizes; drop --image")
    if args.variants is not None and not args.variants.is_dir():
        raise ConfigError(f"--variants {str(args.variants)!r} is not a folder")
    check_file_output(args.json, "--json")
    require_extra("opencv", ("cv2",))
    config = config_from_args(args)
    if args.matrix:
        report = _run_matrix(args, config)
        _print_matrix(report)
    else:
        image = _load_image(args)
        network_hw = _network_hw(args, (int(image.shape[0]), int(image.shape[1])))
        config = config_from_flat(
            {"model.network_height": network_hw[0], "model.network_width": network_hw[1]},
            base=config,
        )
        report = _bench_once(config, image, args.encoding, args.frames, args.warmup)
        _print_run(report)
    report["environment"] = environment()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"report written to {args.json}")
    return 0
