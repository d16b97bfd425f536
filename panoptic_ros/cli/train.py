"""``panoptic-ros train``: train the network on synthetic scenes, Cityscapes or COCO panoptic."""

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
    require_extra,
)

__all__ = ["TRAIN_MODULES", "register", "run"]

#: What training imports from the ``[train]`` extra: network, checkpoints, export, scenes.
TRAIN_MODULES = ("torch", "safetensors", "onnx", "cv2")

EXAMPLES = """
Examples:
  # the default model, from pseudo-labelled real frames (docs/MODEL_CARD.md):
  panoptic-ros train -o runs/real --config config/train_real.yaml \\
      --set train.dataset_root=pseudo/real
  # the synthetic model the tests use (README "Training" has its run time):
  panoptic-ros train -o runs/synthetic --config config/train_synthetic.yaml
  panoptic-ros train -o runs/tiny --set train.steps=50 --set train.batch_size=2
  panoptic-ros train -o runs/synthetic --resume          # continue an interrupted run
  # Cityscapes (createPanopticImgs output under ROOT/gtFine), scored on val every 2000 steps:
  panoptic-ros train -o runs/cityscapes --set train.dataset=cityscapes \\
      --set train.dataset_root=~/data/cityscapes --set train.image_height=512 \\
      --set train.image_width=1024 --set train.steps=90000 --set train.eval_every=2000
  # COCO panoptic (ROOT/annotations/panoptic_train2017.json, ..., ROOT/train2017/) with its
  # 133 categories as the label space:
  panoptic-ros train -o runs/coco --set train.dataset=coco --set train.dataset_root=~/data/coco \\
      --set train.train_split=train2017 --set train.eval_split=val2017 \\
      --set train.labels_file=panoptic_coco_categories.json --set labels.drivable_classes=[road]
  # pseudo-labelled frames (pseudo-label's ROOT, with soft targets: distilled), fine-tuned
  # from an earlier run, for a network that will run at 512x1024, 10% synthetic scenes:
  panoptic-ros train -o runs/street --set train.dataset=cityscapes --set train.dataset_root=ROOT \\
      --set train.eval_split='' --set train.inference_height=512 \\
      --set train.inference_width=1024 --set train.init_checkpoint=runs/old/model.safetensors \\
      --set train.distill_temperature=2 --set train.synthetic_ratio=0.1
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
    import logging
    import os
    import shutil

    # Everything the run needs is imported before the data is read or --overwrite deletes
    # the old run folder (the ONNX export at the end included).
    require_extra("train", TRAIN_MODULES)
    config = config_from_args(args)
    # Under torchrun every process runs this; only the first prepares the output folder.
    first_process = os.environ.get("RANK", "0") == "0"
    if not args.resume and first_process:
        check_output(args.output, args.overwrite)

    from panoptic_ros.fusion import FusionParams
    from panoptic_ros.training.loop import train
    from panoptic_ros.training.scoring import score_network
    from panoptic_ros.training.sources import build_training_data

    # Every input (dataset folders, splits, label space, category map) is checked here,
    # before the output folder is touched.
    data = build_training_data(config, int(os.environ.get("WORLD_SIZE", "1")))
    logging.getLogger(__name__).info("training on %s", data.description)
    if not args.resume and first_process and args.output.exists():
        shutil.rmtree(args.output)
    fusion = FusionParams.from_config(config.fusion)
    eval_samples = data.eval_samples

    def evaluate(network: Any, metadata: Any) -> dict[str, Any]:
        assert eval_samples is not None  # evaluate is only passed with samples
        device = str(next(network.parameters()).device)
        return score_network(network, metadata, eval_samples, fusion, device=device)

    outcome = train(
        config,
        data.labels,
        data.source,
        data.indices,
        args.output,
        evaluate=evaluate if eval_samples is not None else None,
        resume=args.resume,
        progress=progress_enabled(args),
        device=args.device,
        soft_targets=data.soft_targets,
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
        if "pq_gt_classes" in result:
            rows.append(
                [
                    f"over the {result['n_gt_classes']} classes in its ground truth",
                    f"PQ {result['pq_gt_classes']:.3f}, mIoU {result['miou_gt_classes']:.3f}",
                ]
            )
    rows += [["wrote", str(path)] for path in outcome.files]
    if first_process:
        print(format_table(rows))
    return 0
