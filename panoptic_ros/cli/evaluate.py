"""``panoptic-ros eval``: panoptic quality (PQ, SQ, RQ) and mIoU of a model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from panoptic_ros.cli.common import (
    HELP_FORMATTER,
    add_config_arguments,
    add_verbosity_arguments,
    config_from_args,
    parse_size,
    progress_enabled,
)

__all__ = ["register", "run"]

EXAMPLES = """
Examples:
  panoptic-ros eval --synthetic 50                      # bundled model, held-out scenes
  panoptic-ros eval --synthetic 200 --size 288x512 --model runs/synthetic/model.onnx --json pq.json
"""


def register(subparsers: Any) -> None:
    """Add the ``eval`` subcommand."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "eval",
        help="evaluate panoptic quality",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=HELP_FORMATTER,
    )
    parser.add_argument(
        "--synthetic",
        type=int,
        metavar="N",
        default=50,
        help="evaluate on N held-out synthetic scenes (seeds never used in training)",
    )
    parser.add_argument(
        "--size", type=parse_size, default=(288, 512), help="image size HxW of the synthetic scenes"
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    add_config_arguments(parser)
    add_verbosity_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``eval``."""
    from panoptic_ros.errors import ConfigError

    if args.synthetic < 1:
        raise ConfigError("--synthetic must be at least 1")
    config = config_from_args(args)

    from panoptic_ros.evaluation.model_eval import evaluate_pipeline, held_out_synthetic
    from panoptic_ros.pipeline import PanopticPipeline

    scenes = held_out_synthetic(args.synthetic, *args.size)
    with PanopticPipeline.from_config(config) as pipeline:
        print(pipeline.describe())
        result = evaluate_pipeline(pipeline, scenes, progress=progress_enabled(args))
    print(result.format_table())
    if args.json:
        args.json.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
        print(f"results written to {args.json}")
    return 0
