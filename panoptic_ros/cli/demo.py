"""``panoptic-ros demo``: replay the bundled sample bag through the bundled default model (CPU)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from panoptic_ros.cli.common import HELP_FORMATTER, add_config_arguments, add_verbosity_arguments
from panoptic_ros.errors import ConfigError

__all__ = ["DEMO_MARKER", "register", "run"]

DEMO_MARKER = ".panoptic_demo_output"

EXAMPLES = """
Examples:
  panoptic-ros demo                       # writes ./panoptic_demo_output
  panoptic-ros demo -o /tmp/demo --set render.overlay_alpha=0.7

The demo model is trained on synthetic street scenes only: it shows the pipeline working,
it is not a perception model for vehicles.
"""


def register(subparsers: Any) -> None:
    """Add the ``demo`` subcommand."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="replay the bundled sample bag through the bundled model",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=HELP_FORMATTER,
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("panoptic_demo_output"),
        help="output folder (a previous demo output there is replaced)",
    )
    add_config_arguments(parser)
    add_verbosity_arguments(parser)
    parser.set_defaults(run=run, topic=None)


def run(args: argparse.Namespace) -> int:
    """Run ``demo``."""
    from panoptic_ros.cli.replay import replay_bag
    from panoptic_ros.resources import sample_bag_path

    output: Path = args.output
    # Re-running the demo replaces its own earlier output, never a folder it did not write.
    overwrite = (output / DEMO_MARKER).is_file()
    if output.exists() and not overwrite:
        raise ConfigError(
            f"{str(output)!r} exists and is not a demo output; choose another folder with -o"
        )
    bag = sample_bag_path()
    print(f"Replaying the bundled sample bag {bag} through the demo model...")
    code = replay_bag(args, bag, output, overwrite=overwrite)
    (output / DEMO_MARKER).write_text("written by panoptic-ros demo\n", encoding="utf-8")
    print(
        f"\nOutputs are in {output.resolve()}:\n"
        f"  overlay.mp4    the panoptic overlay video (open it with any player)\n"
        f"  panoptic/      rosbag2 with the topics the node publishes "
        f"(ros2 bag play {output / 'panoptic'})\n"
        f"  summary.json   frames, timings, topics;  config.yaml: the settings used"
    )
    return code
