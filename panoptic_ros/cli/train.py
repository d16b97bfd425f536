"""``panoptic-ros train``: train the network (synthetic street scenes by default)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from panoptic_ros.cli.common import (
    HELP_FORMATTER,
    add_config_arguments,
    add_verbosity_arguments,
    check_output,
    config_from_args,
    format_table,
    progress_enabled,
)

__all__ = ["register", "run"]

EXAMPLES = """
Examples:
  # the bundled demo model (see README "Default model" for its run time):
  panoptic-ros train -o runs/synthetic --config config/train_synthetic.yaml
  panoptic-ros train -o runs/tiny --set train.steps=50 --set train.batch_size=2
  panoptic-ros train -o runs/synthetic --resume          # continue an interrupted run
  torchrun --nproc_per_node=4 -m panoptic_ros train -o runs/ddp --config cfg.yaml  # 4 GPUs
      (train.batch_size is per process; several nodes: torchrun's --nnodes/--rdzv-endpoint)

Writes OUTPUT/checkpoint_last.safetensors (resumable), model.safetensors, model.onnx (+ .json
metadata), metrics.jsonl, config.yaml and environment.json.
"""


def register(subparsers: Any) -> None:
    """Add the ``train`` subcommand."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "train",
        help="train the panoptic network",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=HELP_FORMATTER,
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="run folder")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT's checkpoint")
    parser.add_argument(
        "--overwrite", action="store_true", help="start afresh in an existing folder"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add_config_arguments(parser, backend=False)
    add_verbosity_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``train``."""
    import os
    import shutil

    config = config_from_args(args)
    # Under torchrun every process runs this; only the first prepares the output folder.
    first_process = os.environ.get("RANK", "0") == "0"
    if not args.resume and first_process:
        check_output(args.output, args.overwrite)
        if args.output.exists():
            shutil.rmtree(args.output)

    from panoptic_ros.data.synthetic import HELD_OUT_SEED_START, generate_scene
    from panoptic_ros.evaluation.model_eval import evaluate_torch_network, held_out_synthetic
    from panoptic_ros.fusion import FusionParams
    from panoptic_ros.labels import CITYSCAPES
    from panoptic_ros.training.loop import train

    cfg = config.train
    labels = CITYSCAPES.with_drivable(config.labels.drivable_classes)
    height, width = cfg.image_height, cfg.image_width
    held_out = held_out_synthetic(cfg.eval_images, height, width)
    fusion = FusionParams.from_config(config.fusion)

    def source(seed: int) -> Any:
        return generate_scene(seed, height, width)

    def evaluate(network: Any, metadata: Any) -> dict[str, Any]:
        device = str(next(network.parameters()).device)
        return evaluate_torch_network(network, metadata, held_out, fusion, device=device).to_dict()

    # Training seeds start after a per-run offset and stay below the held-out range.
    offset = (cfg.seed * 100_003) % HELD_OUT_SEED_START
    needed = cfg.steps * cfg.batch_size * int(os.environ.get("WORLD_SIZE", "1"))
    indices = [(offset + i) % HELD_OUT_SEED_START for i in range(needed)]
    outcome = train(
        config,
        labels,
        source,
        indices,
        args.output,
        evaluate=evaluate,
        resume=args.resume,
        progress=progress_enabled(args),
        device=args.device,
    )
    rows: list[list[object]] = [
        ["steps", outcome.steps],
        ["minutes", f"{outcome.seconds / 60:.1f}"],
        [
            "loss first -> last",
            f"{outcome.losses.get('first', float('nan')):.3f} -> "
            f"{outcome.losses.get('last', float('nan')):.3f}",
        ],
    ]
    if outcome.evaluations:
        step, result = outcome.evaluations[-1]
        rows.append(
            [
                f"PQ at step {step}",
                f"{result['all']['pq']:.3f} (things "
                f"{result['things']['pq']:.3f}, stuff {result['stuff']['pq']:.3f})",
            ]
        )
    rows += [["wrote", str(path)] for path in outcome.files]
    if first_process:
        print(format_table(rows))
    return 0
