"""``panoptic-ros pseudo-label``: label real frames with open teachers, for ``train``."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from panoptic_ros.cli.common import (
    HELP_FORMATTER,
    add_verbosity_arguments,
    check_output,
    format_table,
    progress_enabled,
    require_extra,
)
from panoptic_ros.errors import BagError, ConfigError, first_line

__all__ = ["register", "run"]

logger = logging.getLogger(__name__)

EXAMPLES = """
Examples:
  panoptic-ros pseudo-label ../shared/data/bags/dashcam_compressed_mcap \\
      --teachers config/teachers.yaml --teachers-dir ../shared/teachers -o pseudo/dashcam \\
      --min-interval 1.0
  panoptic-ros pseudo-label drive.mp4 my_bag/ frames_folder/ -o pseudo/mine \\
      --teachers config/teachers.yaml --teachers-dir ~/teachers --dedup 3 --flip

Writes a Cityscapes-format panoptic dataset to OUTPUT (leftImg8bit/, gtFine/ with the
panoptic PNGs and cityscapes_panoptic_<split>.json, softTargets/ with the teachers'
float16 probabilities at stride 4 unless --no-soft). Re-running with the same teachers
and settings skips frames already labelled and adds new inputs; a frame that does not
decode is counted and skipped. Train on it with
  panoptic-ros train --set train.dataset=cityscapes --set train.dataset_root=OUTPUT ...
"""


def register(subparsers: Any) -> None:
    """Add the ``pseudo-label`` subcommand."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "pseudo-label",
        help="label real frames (bags, image folders, videos) with teacher models",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=HELP_FORMATTER,
    )
    parser.add_argument(
        "inputs", nargs="+", type=Path, help="rosbag2 folders/files, image folders or videos"
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="dataset folder")
    parser.add_argument(
        "--teachers", type=Path, required=True, help="teachers YAML (e.g. config/teachers.yaml)"
    )
    parser.add_argument(
        "--teachers-dir",
        type=Path,
        help="folder of the teachers' ONNX files (default: the teachers YAML's folder)",
    )
    parser.add_argument("--split", default="train", help="split name (default: train)")
    parser.add_argument("--topic", help="image topic of bags with several")
    sampling = parser.add_argument_group("which frames")
    sampling.add_argument("--every", type=int, default=1, help="keep every Nth frame")
    sampling.add_argument(
        "--min-interval",
        type=float,
        default=0.0,
        metavar="S",
        help="at least S seconds between kept frames (bags, videos); 1.0 suits driving video",
    )
    sampling.add_argument(
        "--dedup",
        type=float,
        default=0.0,
        help="skip frames whose thumbnail differs from the last kept one by less than this "
        "mean grey level (about 3 skips a standing car; 0 = off)",
    )
    sampling.add_argument("--limit", type=int, default=0, help="at most N frames per input")
    labelling = parser.add_argument_group("labels")
    labelling.add_argument(
        "--min-confidence", type=float, default=0.5, help="void below this ensemble probability"
    )
    labelling.add_argument(
        "--road-confidence", type=float, default=0.8, help="road model probability to overrule"
    )
    labelling.add_argument("--flip", action="store_true", help="also label the mirrored frame")
    labelling.add_argument(
        "--detector-score", type=float, default=0.3, help="smallest detector score kept"
    )
    labelling.add_argument(
        "--tiles",
        default="2x3",
        help="detector tiles ROWSxCOLS besides the whole frame; 1x1 = whole frame only",
    )
    labelling.add_argument(
        "--min-instance-px",
        type=int,
        default=48,
        help="an instance needs at least this many pixels (smaller ones become void)",
    )
    labelling.add_argument(
        "--no-soft", action="store_true", help="keep no soft targets (no distillation)"
    )
    labelling.add_argument(
        "--threads", type=int, default=0, help="ONNX Runtime threads (0 = its default)"
    )
    add_verbosity_arguments(parser)
    parser.set_defaults(run=run)


def _parse_tiles(text: str) -> tuple[int, int]:
    try:
        rows, cols = (int(v) for v in text.lower().split("x"))
    except ValueError as err:
        raise ConfigError(f"--tiles {text!r} must look like ROWSxCOLS, e.g. 2x3") from err
    return rows, cols


def run(args: argparse.Namespace) -> int:
    """Label every kept frame of every input; print a summary table."""
    from panoptic_ros.labels import CITYSCAPES
    from panoptic_ros.pseudo.frames import BadFrame, Subsampling, open_sources
    from panoptic_ros.pseudo.labeller import LabelSettings, LabelStats, PseudoLabeller
    from panoptic_ros.pseudo.teachers import read_teacher_specs
    from panoptic_ros.pseudo.writer import PseudoDatasetWriter

    # Everything the user gave is checked before a teacher is loaded or a file written.
    require_extra("cpu", ("onnxruntime",))  # the teachers run in ONNX Runtime
    require_extra("opencv", ("cv2",))
    labels = CITYSCAPES
    specs = read_teacher_specs(args.teachers, labels, args.teachers_dir)
    settings = LabelSettings(
        min_confidence=args.min_confidence,
        road_confidence=args.road_confidence,
        flip=args.flip,
        detector_score=args.detector_score,
        tile_grid=_parse_tiles(args.tiles),
        min_instance_px=args.min_instance_px,
        soft_stride=0 if args.no_soft else 4,
    )
    subsampling = Subsampling(args.every, args.min_interval, args.dedup, args.limit)
    sources = open_sources(list(args.inputs), subsampling, args.topic)
    # Resuming into OUTPUT is the point; only an output overlapping an input is refused.
    check_output(args.output, overwrite=True, inputs=list(args.inputs))
    from panoptic_ros.pseudo.teachers import load_teachers

    teachers = load_teachers(specs, labels, args.threads)
    run_record = {
        "teachers": teachers.record(),
        "settings": {
            "min_confidence": settings.min_confidence,
            "road_confidence": settings.road_confidence,
            "flip": settings.flip,
            "detector_score": settings.detector_score,
            "nms_iou": settings.nms_iou,
            "tile_grid": list(settings.tile_grid),
            "tile_overlap": settings.tile_overlap,
            "min_instance_px": settings.min_instance_px,
            "min_box_fill": settings.min_box_fill,
            "soft_stride": settings.soft_stride,
        },
        "labels": list(labels.names),
    }
    writer = PseudoDatasetWriter(args.output, args.split, labels, run_record)
    labeller = PseudoLabeller(teachers, labels, settings)
    writer.start()

    from tqdm import tqdm

    totals = LabelStats()
    counts = {"labelled": 0, "skipped (done before)": 0, "bad frames": 0, "bad sources": 0}
    started = time.monotonic()
    source_rows = []
    progress = tqdm(desc="pseudo-label", unit="frame", disable=not progress_enabled(args))
    try:
        for source in sources:
            source_rows.append({"name": source.name, "path": str(source.path), "kind": source.kind})
            try:
                for item in source:
                    if writer.is_done(item.source, item.index):
                        counts["skipped (done before)"] += 1
                        continue
                    if isinstance(item, BadFrame):
                        counts["bad frames"] += 1
                        logger.warning(
                            "skipped frame %d of %s: %s", item.index, source.path, item.reason
                        )
                        continue
                    label = labeller.label(item.image)
                    writer.write(item, label)
                    totals.add(label.stats)
                    counts["labelled"] += 1
                    progress.update(1)
            except BagError as err:
                # A corrupt bag ends that source; what was labelled from it stays.
                counts["bad sources"] += 1
                logger.warning("stopped reading %s: %s", source.path, first_line(err))
    finally:
        progress.close()
        json_path = writer.finish(source_rows)
    elapsed = time.monotonic() - started
    rate = counts["labelled"] / elapsed if elapsed > 0 else 0.0
    rows: list[list[object]] = [[k, v] for k, v in counts.items()]
    pixels = max(totals.pixels, 1)
    rows += [
        ["instances", totals.instances],
        [
            "  per class",
            ", ".join(f"{k} {v}" for k, v in sorted(totals.instances_per_class.items())),
        ],
        ["void: teachers unsure", f"{100 * totals.void_doubt_px / pixels:.1f}% of pixels"],
        ["void: thing without box", f"{100 * totals.void_unexplained_px / pixels:.1f}% of pixels"],
        ["road set by road model", f"{100 * totals.road_added_px / pixels:.1f}% of pixels"],
        ["time", f"{elapsed:.0f} s ({rate:.2f} frames/s)"],
        ["dataset", str(json_path)],
    ]
    print(format_table(rows, header=["pseudo-label", "value"]))
    return 0
