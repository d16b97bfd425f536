"""Training data from the configuration: synthetic scenes, Cityscapes or COCO panoptic.

:func:`build_training_data` reads ``config.train`` and returns what
:func:`~panoptic_ros.training.loop.train` needs: the label space, a sample source, the
source index of every sample position, and the samples scored every ``train.eval_every``
steps. The label space comes from ``train.labels_file`` (Cityscapes' 19 classes by
default) and dataset categories reach it through ``dataset.category_map`` (by default each
class's own ``id``). Every path and name is checked here, before any training work, with a
one-line :class:`~panoptic_ros.errors.ConfigError` naming the setting.

Dataset layouts (``train.dataset_root`` = ROOT, a split = S):

* cityscapes: ``ROOT/gtFine/cityscapes_panoptic_S.json``, ``ROOT/gtFine/cityscapes_panoptic_S/``
  and ``ROOT/leftImg8bit/S/<city>/``, as cityscapesscripts' ``createPanopticImgs`` writes;
* coco: ``ROOT/annotations/panoptic_S.json``, its PNGs in ``ROOT/annotations/panoptic_S/``
  (the unzipped official archive) or ``ROOT/panoptic_S/`` (detectron2's layout), and the
  images in ``ROOT/S/``.

A Cityscapes JSON with a ``soft_targets`` entry (``panoptic-ros pseudo-label``) also gives
the teachers' class probabilities per image; they are read when ``train.distill_weight``
is above 0. ``train.synthetic_ratio`` mixes synthetic scenes (drawn at the training crop
size) into the positions of a real dataset.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from panoptic_ros.config import Config, DatasetName
from panoptic_ros.data.panoptic_format import (
    DatasetSample,
    PanopticDataset,
    PanopticDatasetSource,
    SoftTargetSpec,
    parse_category_map,
    read_cityscapes_panoptic,
    read_coco_panoptic,
)
from panoptic_ros.data.sample import PanopticSample
from panoptic_ros.errors import ConfigError, first_line
from panoptic_ros.labels import CITYSCAPES, LabelSpace
from panoptic_ros.training.data import SampleSource

__all__ = [
    "EvaluationSamples",
    "MixedSource",
    "SyntheticSource",
    "TrainingData",
    "build_training_data",
    "dataset_files",
    "load_label_space",
    "mixed_indices",
    "shuffled_indices",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TrainingData:
    """What a training run reads.

    Attributes:
        labels: The model's label space (drivable classes included).
        source: Source index -> sample (image, semantic, instances[, ignore_mask]).
        indices: Source index of every sample position of the run.
        eval_samples: Samples scored during training (crowd kept as the evaluation reads
            it), or None for no evaluation.
        description: One line for the log: what is trained on and scored with.
        soft_targets: The training split's soft-target entry when the run distils (the
            dataset has soft targets and ``train.distill_weight`` > 0), else None.
    """

    labels: LabelSpace
    source: SampleSource
    indices: Sequence[int]
    eval_samples: Sequence[PanopticSample] | None
    description: str
    soft_targets: SoftTargetSpec | None = None


class SyntheticSource:
    """Seed -> synthetic scene of a fixed size (a class, so DataLoader workers can pickle it).

    Args:
        height: Scene height in px.
        width: Scene width in px.
    """

    def __init__(self, height: int, width: int) -> None:
        self.height = height
        self.width = width

    def __call__(self, seed: int) -> PanopticSample:
        """Generate the scene of ``seed``."""
        from panoptic_ros.data.synthetic import generate_scene

        return generate_scene(seed, self.height, self.width)


class MixedSource:
    """A real dataset's samples below ``real_count``, synthetic scenes from there on.

    Source index ``real_count + k`` is the synthetic scene of seed ``k``.

    Args:
        real: The dataset source.
        real_count: Its number of samples.
        synthetic: The synthetic scenes.
    """

    def __init__(self, real: SampleSource, real_count: int, synthetic: SyntheticSource) -> None:
        self.real = real
        self.real_count = real_count
        self.synthetic = synthetic

    def __call__(self, index: int) -> PanopticSample:
        """Load the sample or generate the scene of ``index``."""
        if index < self.real_count:
            return self.real(index)
        return self.synthetic(index - self.real_count)


def _synthetic_seeds(count: int, seed: int) -> list[int]:
    """``count`` training seeds of synthetic scenes: after a per-run offset, below held-out."""
    from panoptic_ros.data.synthetic import HELD_OUT_SEED_START

    offset = (seed * 100_003) % HELD_OUT_SEED_START
    return [(offset + i) % HELD_OUT_SEED_START for i in range(count)]


def mixed_indices(real_count: int, needed: int, ratio: float, seed: int) -> tuple[list[int], int]:
    """Source indices of a real dataset mixed with synthetic scenes at ``ratio``.

    Whether position p is synthetic depends on (seed, p) only (one seeded draw per
    position), real positions take :func:`shuffled_indices` in order and synthetic ones
    ``real_count + seed``; so a resumed run sees the same samples.

    Returns:
        (indices for :class:`MixedSource`, number of synthetic positions).
    """
    synthetic = np.random.default_rng([seed, 0x5E7]).random(needed) < ratio
    count = int(synthetic.sum())
    real = iter(shuffled_indices(real_count, needed - count, seed) if count < needed else [])
    scenes = iter(_synthetic_seeds(count, seed))
    indices = [real_count + next(scenes) if flag else next(real) for flag in synthetic]
    return indices, count


class EvaluationSamples(Sequence[DatasetSample]):
    """The first ``count`` samples of a dataset source, loaded on access.

    Args:
        source: A source with ``crowd="keep"`` (crowd keeps its class, instance 0).
        count: How many of its samples.
    """

    def __init__(self, source: PanopticDatasetSource, count: int) -> None:
        self.source = source
        self.length = count  # not "count": Sequence.count is a method

    def __len__(self) -> int:
        """Number of samples."""
        return self.length

    def __getitem__(self, index: Any) -> Any:
        """Load sample ``index`` (slices give lists)."""
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.length))]
        if not -self.length <= index < self.length:
            raise IndexError(index)
        return self.source(index % self.length)


def load_label_space(path: str | Path, drivable: Sequence[str]) -> LabelSpace:
    """Read the model's label space from a JSON or YAML file, or Cityscapes' for ``""``.

    The file holds the classes in index order as ``{name, isthing, color, id}`` rows
    (``id`` = the category id in the dataset's panoptic files): a list, or a mapping with a
    ``classes`` or ``categories`` list, so a COCO panoptic ``categories`` list works as is.

    Args:
        path: ``train.labels_file``.
        drivable: ``labels.drivable_classes``.

    Raises:
        ConfigError: Unreadable or malformed file, or a drivable class it does not have.
    """
    if not str(path):
        space = CITYSCAPES
    else:
        try:
            document = yaml.safe_load(Path(path).expanduser().read_text(encoding="utf-8"))
        except OSError as err:
            raise ConfigError(f"train.labels_file={str(path)!r}: {err.strerror}") from err
        except yaml.YAMLError as err:
            raise ConfigError(
                f"train.labels_file={str(path)!r} is not JSON/YAML: {first_line(err)}"
            ) from err
        rows = document
        if isinstance(document, Mapping):
            rows = document.get("classes", document.get("categories"))
        if not isinstance(rows, list) or not rows:
            raise ConfigError(
                f"train.labels_file={str(path)!r} must hold a non-empty list of "
                "{name, isthing, color, id} rows"
            )
        try:
            space = LabelSpace.from_dict({"classes": rows})
        except ConfigError as err:
            raise ConfigError(f"train.labels_file={str(path)!r}: {err}") from err
    try:
        return space.with_drivable(drivable)
    except ConfigError as err:
        raise ConfigError(f"labels.drivable_classes={list(drivable)!r}: {err}") from err


def shuffled_indices(count: int, needed: int, seed: int) -> list[int]:
    """``needed`` indices into ``count`` samples: one seeded permutation per epoch.

    The order depends only on (count, seed), so a resumed run sees the same samples.

    Raises:
        ConfigError: ``count`` is 0.
    """
    if count < 1:
        raise ConfigError("cannot draw training samples from an empty dataset")
    order: list[int] = []
    epoch = 0
    while len(order) < needed:
        order += np.random.default_rng([seed, epoch]).permutation(count).tolist()
        epoch += 1
    return order[:needed]


def dataset_files(kind: DatasetName, root: Path, split: str, key: str) -> tuple[Path, ...]:
    """The JSON (and PNG and image folders) of one split; checked to exist.

    Args:
        kind: ``cityscapes`` or ``coco``.
        root: ``train.dataset_root``.
        split: The split.
        key: The setting naming the split (for messages), e.g. ``train.train_split``.

    Returns:
        cityscapes: (JSON,); coco: (JSON, PNG folder, image folder).

    Raises:
        ConfigError: A file or folder is missing (names it and the setting).
    """
    if kind == "cityscapes":
        json_path = root / "gtFine" / f"cityscapes_panoptic_{split}.json"
        if not json_path.is_file():
            raise ConfigError(
                f"{key}={split!r}: {str(json_path)!r} does not exist; run cityscapesscripts' "
                "createPanopticImgs for that split or fix the split name"
            )
        return (json_path,)
    json_path = root / "annotations" / f"panoptic_{split}.json"
    if not json_path.is_file():
        raise ConfigError(
            f"{key}={split!r}: {str(json_path)!r} does not exist; check train.dataset_root and "
            "the split name (COCO's are train2017, val2017)"
        )
    candidates = [root / "annotations" / f"panoptic_{split}", root / f"panoptic_{split}"]
    png_dir = next((c for c in candidates if c.is_dir()), None)
    if png_dir is None:
        raise ConfigError(
            f"{key}={split!r}: no panoptic PNG folder {str(candidates[0])!r} or "
            f"{str(candidates[1])!r}; unzip panoptic_{split}.zip into one of them"
        )
    image_dir = root / split
    if not image_dir.is_dir():
        raise ConfigError(f"{key}={split!r}: image folder {str(image_dir)!r} does not exist")
    return json_path, png_dir, image_dir


def _read_split(kind: DatasetName, root: Path, split: str, key: str) -> PanopticDataset:
    files = dataset_files(kind, root, split, key)
    if kind == "cityscapes":
        dataset = read_cityscapes_panoptic(root, split)
    else:
        dataset = read_coco_panoptic(*files)
    if not len(dataset):
        raise ConfigError(
            f"{key}={split!r}: {str(files[0])!r} lists no annotated images; is it the right file?"
        )
    return dataset


def _source(
    dataset: PanopticDataset,
    labels: LabelSpace,
    mapping: Mapping[int, int],
    explicit: bool,
    where: str,
    crowd: Any,
    soft_targets: bool = False,
) -> PanopticDatasetSource:
    """A dataset source whose categories reach the label space; else a ConfigError."""
    categories = set(dataset.categories)
    if explicit:
        unknown = sorted(set(mapping) - categories)
        if unknown:
            raise ConfigError(
                f"dataset.category_map names dataset id {unknown[0]}, which {where} does not "
                f"have (its ids: {sorted(categories)[:12]})"
            )
    if categories and not categories & set(mapping):
        raise ConfigError(
            f"no category of {where} (ids {sorted(categories)[:8]}) maps into the label space "
            f"(ids {sorted(mapping)[:8]}); set dataset.category_map or train.labels_file"
        )
    return PanopticDatasetSource(dataset, labels, mapping, crowd=crowd, soft_targets=soft_targets)


def build_training_data(config: Config, world_size: int = 1) -> TrainingData:
    """Build the training and evaluation data that ``config.train`` describes.

    Args:
        config: The run's configuration (``train`` and ``labels`` sections read).
        world_size: Processes of a torchrun job (each takes its slice of every batch).

    Returns:
        The label space, source, sample order and evaluation samples.

    Raises:
        ConfigError: A missing folder or file, an empty split, a category map naming a
            class outside the label space or an id the dataset does not have, or a
            dataset none of whose categories reaches the label space.
        EvaluationError: A malformed panoptic JSON or missing image files.
    """
    cfg = config.train
    labels = load_label_space(cfg.labels_file, config.labels.drivable_classes)
    needed = cfg.steps * cfg.batch_size * world_size
    if cfg.init_checkpoint and not Path(cfg.init_checkpoint).expanduser().is_file():
        raise ConfigError(
            f"train.init_checkpoint={cfg.init_checkpoint!r} does not exist; name a run's "
            "model.safetensors"
        )
    if cfg.dataset == "synthetic" and config.dataset.category_map:
        raise ConfigError(
            "dataset.category_map applies to cityscapes and coco; synthetic scenes are drawn "
            "in Cityscapes' 19 classes"
        )
    if cfg.dataset == "synthetic":
        from panoptic_ros.evaluation.model_eval import held_out_synthetic

        # Training seeds start after a per-run offset and stay below the held-out range.
        return TrainingData(
            labels=labels,
            source=SyntheticSource(cfg.image_height, cfg.image_width),
            indices=_synthetic_seeds(needed, cfg.seed),
            eval_samples=held_out_synthetic(cfg.eval_images, cfg.image_height, cfg.image_width),
            description=f"synthetic scenes, {cfg.eval_images} held-out scenes for evaluation",
        )

    root = Path(cfg.dataset_root).expanduser()
    if not root.is_dir():
        raise ConfigError(
            f"train.dataset_root={cfg.dataset_root!r} is not a folder; point it at the "
            f"{cfg.dataset} dataset"
        )
    mapping = parse_category_map(config.dataset.category_map, labels)
    explicit = bool(config.dataset.category_map)
    dataset = _read_split(cfg.dataset, root, cfg.train_split, "train.train_split")
    where = f"the {cfg.dataset} split {cfg.train_split!r}"
    distil = cfg.distill_weight > 0 and dataset.soft_targets is not None
    source: SampleSource = _source(dataset, labels, mapping, explicit, where, "void", distil)
    eval_samples: EvaluationSamples | None = None
    scored = "no evaluation (train.eval_split is '')"
    if cfg.eval_split:
        held_out = _read_split(cfg.dataset, root, cfg.eval_split, "train.eval_split")
        where = f"the {cfg.dataset} split {cfg.eval_split!r}"
        eval_source = _source(held_out, labels, mapping, explicit, where, "keep")
        count = len(held_out) if cfg.eval_images == 0 else min(cfg.eval_images, len(held_out))
        eval_samples = EvaluationSamples(eval_source, count)
        scored = f"{count} images of {cfg.eval_split!r} for evaluation"
    indices = shuffled_indices(len(dataset), needed, cfg.seed)
    mixed = ""
    if cfg.synthetic_ratio:
        indices, count = mixed_indices(len(dataset), needed, cfg.synthetic_ratio, cfg.seed)
        source = MixedSource(
            source, len(dataset), SyntheticSource(cfg.image_height, cfg.image_width)
        )
        mixed = f", {count} of {needed} samples synthetic scenes"
    soft = dataset.soft_targets if distil else None
    with_soft = ""
    if soft is not None:
        have = sum(record.soft_target_path is not None for record in dataset)
        with_soft = f", soft targets for {have} images (distillation)"
    return TrainingData(
        labels=labels,
        source=source,
        indices=indices,
        eval_samples=eval_samples,
        description=(
            f"{cfg.dataset} {cfg.train_split!r} ({len(dataset)} images, {labels.num_classes} "
            f"classes) from {str(root)!r}{with_soft}{mixed}, {scored}"
        ),
        soft_targets=soft,
    )
