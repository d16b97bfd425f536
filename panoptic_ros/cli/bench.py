"""``panoptic-ros bench``: per-stage latency and frames per second of the whole pipeline."""

from __future__ import annotations

import argparse
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
    config_from_args,
    format_table,
    parse_size,
)

__all__ = ["STAGES", "register", "run"]

STAGES = ("decode", "preprocess", "inference", "fusion", "messages")

EXAMPLES = """
Examples:
  panoptic-ros bench --input-size 1024x2048              # network at full camera resolution
  panoptic-ros bench --input-size 540x960 --network-size model --encoding jpeg
  panoptic-ros bench --image ../shared/data/images/udacity_highway_1280x720.jpg --json bench.json

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


def run(args: argparse.Namespace) -> int:
    """Run ``bench``."""
    from dataclasses import replace

    from panoptic_ros.config import config_from_flat
    from panoptic_ros.errors import ConfigError
    from panoptic_ros.geometry import round_up_to_multiple

    if args.frames < 1 or args.warmup < 0:
        raise ConfigError("--frames must be >= 1 and --warmup >= 0")
    config = config_from_args(args)
    image = _load_image(args)
    height, width = image.shape[:2]
    if args.network_size == "input":
        network_hw = (round_up_to_multiple(height, 32), round_up_to_multiple(width, 32))
    elif args.network_size == "model":
        network_hw = (0, 0)
    else:
        network_hw = parse_size(args.network_size)
    config = config_from_flat(
        {"model.network_height": network_hw[0], "model.network_width": network_hw[1]}, base=config
    )

    from panoptic_ros.bags import make_typestore
    from panoptic_ros.pipeline import PanopticPipeline
    from panoptic_ros.ros_messages import MessageClasses, build_output_messages

    typestore = make_typestore()
    classes = MessageClasses.from_typestore(typestore)
    header = classes.Header(stamp=classes.Time(sec=0, nanosec=0), frame_id="bench")
    message = _frame_message(image, args.encoding)
    samples: dict[str, list[float]] = {stage: [] for stage in STAGES}
    totals: list[float] = []
    instance_counts: list[int] = []
    with PanopticPipeline.from_config(config) as pipeline:
        for index in range(args.warmup + args.frames):
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
            if index >= args.warmup:
                for stage in STAGES:
                    samples[stage].append(getattr(timings, f"{stage}_ms"))
                totals.append((end - start) / 1e6)
                instance_counts.append(len(result.instances))
        description = pipeline.describe()
        network = pipeline.network_hw

    def stats(values: list[float]) -> dict[str, float]:
        array = np.asarray(values)
        return {
            "p50_ms": float(np.percentile(array, 50)),
            "p99_ms": float(np.percentile(array, 99)),
            "mean_ms": float(array.mean()),
        }

    report: dict[str, Any] = {
        "pipeline": description,
        "input_size": [int(height), int(width)],
        "network_size": list(network),
        "encoding": args.encoding,
        "frames": args.frames,
        "warmup": args.warmup,
        "host": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": __import__("os").cpu_count(),
        },
        "stages": {stage: stats(values) for stage, values in samples.items()},
        "total": stats(totals),
        "mean_instances": float(np.mean(instance_counts)),
    }
    total_mean = report["total"]["mean_ms"]
    report["fps"] = 1000.0 / total_mean
    report["outside_network_share"] = 1.0 - report["stages"]["inference"]["mean_ms"] / total_mean
    rows = [
        [
            stage,
            f"{s['p50_ms']:.1f}",
            f"{s['p99_ms']:.1f}",
            f"{100 * s['mean_ms'] / total_mean:.1f}%",
        ]
        for stage, s in report["stages"].items()
    ]
    rows.append(
        ["total", f"{report['total']['p50_ms']:.1f}", f"{report['total']['p99_ms']:.1f}", "100%"]
    )
    print(description)
    print(
        f"input {height}x{width} ({args.encoding}), network {network[0]}x{network[1]}, "
        f"{args.frames} frames after {args.warmup} warm-up"
    )
    print(format_table(rows, header=["stage", "p50 ms", "p99 ms", "share"]))
    print(
        f"fps {report['fps']:.2f}   time outside the network "
        f"{100 * report['outside_network_share']:.1f}%"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"report written to {args.json}")
    return 0
