"""Score models on real frames with human labels, in merged class sets.

Human-labelled real frames are scarce and come in different label sets, so each set is
scored in the classes it can tell apart: Cityscapes-labelled frames (KITTI semantics,
Cityscapes samples) in the 11 merged classes the project's hidden evaluation uses (sky,
building, pole, road, pavement, tree, sign, fence, car, pedestrian, bicyclist), IDD-Lite
in its 7 level-1 classes. Frames whose thumbnail matches any frame of a training dataset
are left out and counted, so a number never scores a frame the model trained on.

Usage (from the repository root, with the `[cpu,opencv]` install):

    python benchmarks/real_eval.py --model models/panoptic_lite0_real.onnx \
        --kitti DIR --cityscapes DIR --idd DIR --exclude-train pseudo/real --json out.json

Each DIR is a folder as the sources in docs/MODEL_CARD.md lay them out (see the loaders).
CamVid is never read here: it is kept for the project's own hidden evaluation.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from panoptic_ros.config import config_from_flat
from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.pipeline import PanopticPipeline
from panoptic_ros.pseudo.frames import thumbnail

MERGED11 = (
    "sky", "building", "pole", "road", "pavement", "tree", "sign", "fence", "car",
    "pedestrian", "bicyclist",
)  # fmt: skip
# Cityscapes train class -> merged class (CamVid's 11-class convention).
TO_MERGED11 = {
    "sky": "sky", "building": "building", "wall": "building", "pole": "pole",
    "road": "road", "sidewalk": "pavement", "vegetation": "tree", "terrain": "tree",
    "traffic sign": "sign", "traffic light": "sign", "fence": "fence", "car": "car",
    "truck": "car", "bus": "car", "train": "car", "person": "pedestrian",
    "rider": "bicyclist", "bicycle": "bicyclist", "motorcycle": "bicyclist",
}  # fmt: skip
IDD7 = ("drivable", "non-drivable", "living things", "vehicles", "roadside objects",
        "far objects", "sky")  # fmt: skip
TO_IDD7 = {
    "road": "drivable", "sidewalk": "non-drivable", "terrain": "non-drivable",
    "person": "living things", "rider": "living things", "car": "vehicles",
    "truck": "vehicles", "bus": "vehicles", "train": "vehicles", "motorcycle": "vehicles",
    "bicycle": "vehicles", "pole": "roadside objects", "traffic sign": "roadside objects",
    "traffic light": "roadside objects", "fence": "roadside objects", "wall": "roadside objects",
    "building": "far objects", "vegetation": "far objects", "sky": "sky",
}  # fmt: skip
# Cityscapes labelId -> train class name (the labelIds of the 19 train classes).
LABEL_ID_TO_NAME = {info.dataset_id: info.name for info in CITYSCAPES.classes}


def _table(names: tuple[str, ...], mapping: dict[str, str]) -> npt.NDArray[np.uint8]:
    """[256] our class index -> merged index (255 void)."""
    table = np.full(256, 255, dtype=np.uint8)
    for index, name in enumerate(CITYSCAPES.names):
        if name in mapping:
            table[index] = names.index(mapping[name])
    return table


def _label_id_table(names: tuple[str, ...], mapping: dict[str, str]) -> npt.NDArray[np.uint8]:
    """[256] Cityscapes labelId -> merged index (255 void)."""
    table = np.full(256, 255, dtype=np.uint8)
    for label_id, name in LABEL_ID_TO_NAME.items():
        if name in mapping:
            table[label_id] = names.index(mapping[name])
    return table


def _rgb(path: Path) -> npt.NDArray[np.uint8]:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read {path}")
    return np.ascontiguousarray(image[:, :, ::-1])


def training_thumbnails(roots: list[Path]) -> list[npt.NDArray[np.float32]]:
    """Thumbnails of every image of the given pseudo-label datasets (all splits)."""
    thumbs = []
    for root in roots:
        for path in sorted((root / "leftImg8bit").rglob("*_leftImg8bit.*")):
            thumbs.append(thumbnail(_rgb(path)))
    return thumbs


def kitti_frames(
    folder: Path,
) -> Iterator[tuple[str, npt.NDArray[np.uint8], npt.NDArray[np.uint8]]]:
    """KITTI semantics: training/image_2/X.png + training/semantic/X.png (labelIds)."""
    table = _label_id_table(MERGED11, TO_MERGED11)
    for label_path in sorted((folder / "training" / "semantic").glob("*.png")):
        image = _rgb(folder / "training" / "image_2" / label_path.name)
        labels = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
        yield f"kitti/{label_path.stem}", image, table[labels]


def cityscapes_frames(
    folder: Path,
) -> Iterator[tuple[str, npt.NDArray[np.uint8], npt.NDArray[np.uint8]]]:
    """Cityscapes samples: train_img/X_leftImg8bit.png + train_label/X_gtFine_labelIds.png."""
    table = _label_id_table(MERGED11, TO_MERGED11)
    for image_path in sorted((folder / "train_img").glob("*_leftImg8bit.png")):
        stem = image_path.name.replace("_leftImg8bit.png", "")
        labels = cv2.imread(
            str(folder / "train_label" / f"{stem}_gtFine_labelIds.png"), cv2.IMREAD_UNCHANGED
        )
        yield f"cityscapes/{stem}", _rgb(image_path), table[labels]


def idd_frames(folder: Path) -> Iterator[tuple[str, npt.NDArray[np.uint8], npt.NDArray[np.uint8]]]:
    """IDD-Lite val: leftImg8bit/val/S/X_image.jpg + gtFine/val/S/X_label.png (level-1 ids)."""
    for label_path in sorted((folder / "gtFine" / "val").rglob("*_label.png")):
        name = label_path.name.replace("_label.png", "_image.jpg")
        image = _rgb(folder / "leftImg8bit" / "val" / label_path.parent.name / name)
        labels = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED).astype(np.uint8)
        yield f"idd/{label_path.parent.name}/{label_path.stem}", image, labels


def score(
    pipeline: PanopticPipeline,
    frames: Iterator[tuple[str, npt.NDArray[np.uint8], npt.NDArray[np.uint8]]],
    names: tuple[str, ...],
    mapping: dict[str, str],
    train_thumbs: list[npt.NDArray[np.float32]],
) -> dict[str, object]:
    """Per-class IoU and mIoU (classes present in the ground truth) over the frames."""
    table = _table(names, mapping)
    count = len(names)
    # Rows: ground truth; columns: prediction, the last one void (a miss, never a hit).
    confusion = np.zeros((count, count + 1), dtype=np.int64)
    scored, excluded = 0, []
    for name, image, truth in frames:
        thumb = thumbnail(image)
        if any(float(np.abs(thumb - t).mean()) < 2.0 for t in train_thumbs):
            excluded.append(name)
            continue
        predicted = np.minimum(table[pipeline.process(image).semantic], count)
        labelled = truth < count
        confusion += np.bincount(
            truth[labelled].astype(np.int64) * (count + 1) + predicted[labelled],
            minlength=count * (count + 1),
        ).reshape(count, count + 1)
        scored += 1
    inter = np.diag(confusion[:, :count]).astype(np.float64)
    union = confusion.sum(1) + confusion[:, :count].sum(0) - inter
    present = confusion.sum(1) > 0
    iou = {n: round(float(inter[i] / union[i]), 4) for i, n in enumerate(names) if present[i]}
    return {
        "frames": scored,
        "excluded_as_seen_in_training": excluded,
        "miou_present": round(float(np.mean(list(iou.values()))) if iou else 0.0, 4),
        "iou": iou,
    }


def main() -> int:
    """Score --model on every labelled set given; print (and write) the results."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--kitti", type=Path)
    parser.add_argument("--cityscapes", type=Path)
    parser.add_argument("--idd", type=Path)
    parser.add_argument("--exclude-train", type=Path, action="append", default=[])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    config = config_from_flat(
        {"backend.name": "onnxruntime", "model.model_file_path": str(args.model)}
    )
    thumbs = training_thumbnails(args.exclude_train)
    results: dict[str, object] = {"model": str(args.model)}
    with PanopticPipeline.from_config(config) as pipeline:
        if args.kitti:
            results["kitti_semantics_11"] = score(
                pipeline, kitti_frames(args.kitti), MERGED11, TO_MERGED11, thumbs
            )
        if args.cityscapes:
            results["cityscapes_samples_11"] = score(
                pipeline, cityscapes_frames(args.cityscapes), MERGED11, TO_MERGED11, thumbs
            )
        if args.idd:
            results["idd_lite_val_7"] = score(pipeline, idd_frames(args.idd), IDD7, TO_IDD7, thumbs)
    text = json.dumps(results, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
