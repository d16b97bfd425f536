"""``panoptic-ros replay``: run a rosbag2 through the pipeline, write the outputs as a bag."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from panoptic_ros.cli.common import (
    HELP_FORMATTER,
    add_config_arguments,
    add_output_arguments,
    add_verbosity_arguments,
    check_output,
    config_from_args,
    progress_enabled,
    require_extra,
)
from panoptic_ros.errors import BagError

__all__ = ["register", "replay_bag", "run"]

EXAMPLES = """
Examples:
  panoptic-ros replay ../shared/data/bags/dashcam_compressed_mcap -o out/dashcam
  panoptic-ros replay my_bag --topic /camera/front/image_raw -o out/front --backend onnxruntime
  panoptic-ros replay my_bag -o out/x --config config/panoptic.yaml \\
      --set fusion.center_threshold=0.2

Writes OUTPUT/panoptic/ (rosbag2, MCAP: drivable_mask, semantic, instance_ids, instances,
overlay, each with the input frame's header; objects and objects_markers in grid.frame_id
when the bag holds the camera's camera_info and /tf_static), OUTPUT/overlay.mp4,
OUTPUT/summary.json and OUTPUT/config.yaml. The input bag is never modified.
"""


def register(subparsers: Any) -> None:
    """Add the ``replay`` subcommand."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "replay",
        help="replay a rosbag2 through the pipeline and write the outputs",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=HELP_FORMATTER,
    )
    parser.add_argument("bag", type=Path, help="input rosbag2 folder (MCAP or sqlite3)")
    parser.add_argument("--topic", help="image topic (default: the bag's only image topic)")
    add_output_arguments(parser)
    add_config_arguments(parser)
    add_verbosity_arguments(parser)
    parser.set_defaults(run=run)


def replay_bag(args: argparse.Namespace, bag: Path, output: Path, *, overwrite: bool) -> int:
    """Check inputs, build the pipeline, replay ``bag`` into ``output``, print the summary."""
    from panoptic_ros.config import config_to_dict

    require_extra("opencv", ("cv2",))
    config = config_from_args(args)
    if not bag.exists():
        raise BagError(f"input bag {str(bag)!r} does not exist")
    check_output(output, overwrite, [bag])

    from panoptic_ros.pipeline import PanopticPipeline
    from panoptic_ros.replay import run_replay

    with PanopticPipeline.from_config(config) as pipeline:
        summary = run_replay(
            bag,
            output,
            pipeline,
            config=config.replay,
            render=config.render,
            topic=args.topic,
            overwrite=overwrite,
            progress=progress_enabled(args),
            config_dump=config_to_dict(config),
            grid=config.grid,
            objects=config.objects,
        )
    print(summary.format_table())
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``replay``."""
    return replay_bag(args, args.bag, args.output, overwrite=args.overwrite)
