"""``panoptic-ros eval``: panoptic quality (PQ, SQ, RQ) and mIoU.

Four modes: a model on held-out synthetic scenes (``--synthetic``, the default); a model run
over a Cityscapes panoptic dataset (``--cityscapes``) or a COCO panoptic dataset
(``--coco``), whose category ids are mapped into the model's label space by
``dataset.category_map`` in the config (default: each class's own dataset id); or a folder
of panoptic predictions against a folder of ground truth (``--gt-json``/``--pred-json``,
Cityscapes or COCO files as panopticapi's ``pq_compute`` and cityscapesscripts'
``evalPanopticSemanticLabeling`` read them, with the same results, scored in parallel, in
the ground truth's own category ids).

Model runs score each image as it comes and keep only the counts, so a whole dataset needs
the memory of a few images; ``--workers`` threads read and decode the next images meanwhile.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from panoptic_ros.cli.common import (
    HELP_FORMATTER,
    add_config_arguments,
    add_verbosity_arguments,
    check_file_output,
    config_from_args,
    parse_size,
    progress_enabled,
    require_extra,
)

__all__ = ["register", "run"]

EXAMPLES = """
Examples:
  panoptic-ros eval --synthetic 50                      # bundled model, held-out scenes
  panoptic-ros eval --synthetic 200 --size 288x512 --model runs/synthetic/model.onnx --json pq.json
  panoptic-ros eval --cityscapes ~/data/cityscapes --split val --model model.onnx
  panoptic-ros eval --coco panoptic_val2017.json panoptic_val2017 val2017 --model coco.onnx \\
      --set 'dataset.category_map=["1=person", "3=car", "149=road"]'
  panoptic-ros eval --gt-json gtFine/cityscapes_panoptic_val.json \\
      --gt-dir gtFine/cityscapes_panoptic_val --pred-json results/cityscapes_panoptic_val.json \\
      --pred-dir results/cityscapes_panoptic_val --workers 8 --json pq.json
  panoptic-ros eval --gt-json annotations/panoptic_val2017.json --pred-json ours.json
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
        help="evaluate on N held-out synthetic scenes (seeds never used in training); the "
        "default mode, with N=50",
    )
    parser.add_argument(
        "--cityscapes",
        type=Path,
        metavar="ROOT",
        help="run the model over a Cityscapes panoptic dataset (ROOT holds leftImg8bit/ and "
        "gtFine/ with cityscapes_panoptic_<split>.json, as createPanopticImgs writes)",
    )
    parser.add_argument("--split", default="val", help="the --cityscapes split")
    parser.add_argument(
        "--coco",
        type=Path,
        nargs=3,
        metavar=("JSON", "PNG_DIR", "IMAGE_DIR"),
        help="run the model over a COCO panoptic dataset: its panoptic JSON, the folder of "
        "its panoptic PNGs and the folder of its images (categories mapped by "
        "dataset.category_map)",
    )
    parser.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help="only the first N images of --cityscapes or --coco",
    )
    folders = parser.add_argument_group(
        "prediction folders (no model: score panoptic PNG + JSON predictions)"
    )
    folders.add_argument("--gt-json", type=Path, help="ground truth panoptic JSON")
    folders.add_argument(
        "--gt-dir", type=Path, help="ground truth PNG folder (default: --gt-json without .json)"
    )
    folders.add_argument("--pred-json", type=Path, help="prediction panoptic JSON")
    folders.add_argument(
        "--pred-dir", type=Path, help="prediction PNG folder (default: --pred-json without .json)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="folder mode: scoring processes (default: every CPU); --cityscapes/--coco: "
        "threads reading and decoding the next images (default: 2; 0 reads in turn)",
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

    folder_flags = [args.gt_json, args.gt_dir, args.pred_json, args.pred_dir]
    modes = [
        args.synthetic is not None,
        args.cityscapes is not None,
        args.coco is not None,
        any(folder_flags),
    ]
    if sum(modes) > 1:
        raise ConfigError("use one of --synthetic, --cityscapes, --coco or --gt-json/--pred-json")
    if args.workers is not None and args.workers < 0:
        raise ConfigError(f"--workers must be at least 0, got {args.workers}")
    check_file_output(args.json, "--json")
    require_extra("opencv", ("cv2",))  # every mode decodes images or panoptic PNGs
    if any(folder_flags):
        return _run_folders(args)
    if args.cityscapes is not None or args.coco is not None:
        return _run_model(args, _dataset_samples(args))
    if args.workers is not None:
        raise ConfigError("--workers applies to --cityscapes, --coco and the folder mode")
    if args.limit is not None:
        raise ConfigError("--limit applies to --cityscapes and --coco; use --synthetic N")
    if args.synthetic is None:
        args.synthetic = 50
    if args.synthetic < 1:
        raise ConfigError("--synthetic must be at least 1")
    from panoptic_ros.evaluation.model_eval import held_out_synthetic

    return _run_model(args, held_out_synthetic(args.synthetic, *args.size))


def _dataset_samples(args: argparse.Namespace) -> _DatasetSamples:
    """Check the --cityscapes/--coco flags and read the dataset's index (no pixels yet)."""
    from panoptic_ros.errors import ConfigError

    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {args.limit}")
    from panoptic_ros.data import panoptic_format

    if args.cityscapes is not None:
        if not args.cityscapes.is_dir():
            raise ConfigError(f"--cityscapes {str(args.cityscapes)!r} is not a folder")
        dataset = panoptic_format.read_cityscapes_panoptic(args.cityscapes, args.split)
    else:
        json_path, png_dir, image_dir = args.coco
        if not json_path.is_file():
            raise ConfigError(f"--coco JSON {str(json_path)!r} is not a file")
        for path, what in ((png_dir, "PNG_DIR"), (image_dir, "IMAGE_DIR")):
            if not path.is_dir():
                raise ConfigError(f"--coco {what} {str(path)!r} is not a folder")
        dataset = panoptic_format.read_coco_panoptic(json_path, png_dir, image_dir)
    count = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    threads = 2 if args.workers is None else args.workers
    return _DatasetSamples(dataset, count, threads)


class _DatasetSamples:
    """A panoptic dataset's samples in the model's label space (crowd kept), read lazily."""

    def __init__(self, dataset: Any, count: int, threads: int) -> None:
        self.dataset = dataset
        self.count = count
        self.threads = threads
        self.source: Any = None

    def bind(self, labels: Any, category_map: tuple[str, ...]) -> None:
        """Map the dataset's categories into ``labels`` (``dataset.category_map``)."""
        from panoptic_ros.data.panoptic_format import PanopticDatasetSource, dataset_mapping

        mapping = dataset_mapping(self.dataset.categories, labels, category_map)
        self.source = PanopticDatasetSource(self.dataset, labels, mapping, crowd="keep")

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Any:
        from panoptic_ros.evaluation.model_eval import prefetch

        return prefetch(self.source, self.count, self.threads)


def _run_model(args: argparse.Namespace, samples: Any) -> int:
    """Run the configured model over ``samples``; print (and save) the scores and a summary."""
    import time

    config = config_from_args(args)

    from panoptic_ros.evaluation.model_eval import evaluate_pipeline
    from panoptic_ros.pipeline import PanopticPipeline

    with PanopticPipeline.from_config(config) as pipeline:
        print(pipeline.describe())
        if isinstance(samples, _DatasetSamples):
            samples.bind(pipeline.labels, config.dataset.category_map)
        start = time.perf_counter()
        result = evaluate_pipeline(pipeline, samples, progress=progress_enabled(args))
        seconds = time.perf_counter() - start
    print(
        f"evaluated {len(samples)} images in {seconds:.1f} s "
        f"({len(samples) / seconds if seconds > 0 else float('nan'):.2f} images/s)"
    )
    return _report(args, result)


def _run_folders(args: argparse.Namespace) -> int:
    """Score a prediction folder against a ground truth folder."""
    import time

    from panoptic_ros.errors import ConfigError

    if args.gt_json is None or args.pred_json is None:
        raise ConfigError("the folder mode needs both --gt-json and --pred-json")
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be at least 1 in the folder mode, got {args.workers}")
    if args.limit is not None:
        raise ConfigError("--limit applies to --cityscapes and --coco")
    gt_dir = args.gt_dir if args.gt_dir is not None else args.gt_json.with_suffix("")
    pred_dir = args.pred_dir if args.pred_dir is not None else args.pred_json.with_suffix("")
    for path, flag in ((args.gt_json, "--gt-json"), (args.pred_json, "--pred-json")):
        if not path.is_file():
            raise ConfigError(f"{flag} {str(path)!r} is not a file")
    for path, flag in ((gt_dir, "--gt-dir"), (pred_dir, "--pred-dir")):
        if not path.is_dir():
            raise ConfigError(f"{flag} {str(path)!r} is not a folder")

    from panoptic_ros.evaluation.panoptic_quality import evaluate_folders

    start = time.perf_counter()
    result = evaluate_folders(
        args.gt_json,
        gt_dir,
        args.pred_json,
        pred_dir,
        workers=args.workers,
        progress=progress_enabled(args),
    )
    seconds = time.perf_counter() - start
    print(f"scored {args.gt_json} against {args.pred_json} in {seconds:.1f} s")
    return _report(args, result)


def _report(args: argparse.Namespace, result: Any) -> int:
    print(result.format_table())
    if args.json:
        args.json.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
        print(f"results written to {args.json}")
    return 0
