"""Panoptic datasets on disk: Cityscapes and COCO panoptic PNG + JSON, read and written.

Both formats store one RGB PNG per image whose colour is the segment id,
``id = R + 256 * G + 256**2 * B`` (0 = void), and a JSON with ``images``, ``annotations``
(``image_id``, ``file_name``, ``segments_info``) and ``categories`` (``id``, ``name``,
``isthing``, ``color``). A segment is ``{"id", "category_id", "iscrowd", "area", "bbox"}``.

Cityscapes' ground truth is made by cityscapesscripts' ``createPanopticImgs.py``:

* ids are the labelIds: a stuff segment's id is its labelId, a thing instance's is
  ``labelId * 1000 + n`` (n from 0, per class), a thing group region without instances
  ("cargroup") is a crowd segment with id = labelId and ``iscrowd = 1``;
* classes ignored in evaluation are left void (id 0) and are not listed;
* files: ``leftImg8bit/<split>/<city>/<image_id>_leftImg8bit.png`` for images,
  ``gtFine/cityscapes_panoptic_<split>/<image_id>_gtFine_panoptic.png`` for the ids and
  ``gtFine/cityscapes_panoptic_<split>.json``. Its ``images`` entries name
  ``<image_id>_gtFine_leftImg8bit.png``, a file that does not exist; readers (this one,
  detectron2's) find the image from the image id instead, and the writer repeats the quirk
  so its output is byte-for-byte in the official layout.

Our maps are a semantic map (class index of a :class:`~panoptic_ros.labels.LabelSpace`,
255 void) and an instance map (0 none). :func:`panoptic_from_maps` turns them into
Cityscapes ids (thing pixels without an instance become the crowd segment of their class)
and :func:`maps_from_panoptic` maps dataset category ids back into a label space through
:func:`category_mapping` (built from :attr:`ClassInfo.dataset_id`): categories outside the
label space become void; crowd regions stay their class with instance 0 (how our maps
express crowd, for evaluation) or become void (for training), and are always returned as a
mask so training can ignore them.

PNGs are read with OpenCV (the one image library the package needs; Pillow, which the
official tools use, gives the same ids) and must be 8-bit RGB (or RGBA: the alpha is
ignored, as the official tools ignore it). OpenCV expands palette PNGs to colours;
panoptic PNGs are never palette images.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from panoptic_ros.config import parse_category_entries
from panoptic_ros.errors import ConfigError, EvaluationError
from panoptic_ros.labels import IGNORE_INDEX, LabelSpace

__all__ = [
    "LABEL_DIVISOR",
    "MAX_PANOPTIC_ID",
    "CrowdMode",
    "DatasetSample",
    "PanopticDataset",
    "PanopticDatasetSource",
    "PanopticMaps",
    "PanopticRecord",
    "SoftTargetSpec",
    "category_mapping",
    "dataset_categories",
    "dataset_mapping",
    "id2rgb",
    "maps_from_panoptic",
    "panoptic_from_maps",
    "parse_category_map",
    "read_cityscapes_panoptic",
    "read_coco_panoptic",
    "read_image_rgb",
    "read_panoptic_png",
    "read_soft_targets",
    "rgb2id",
    "write_cityscapes_panoptic",
    "write_coco_panoptic",
    "write_panoptic_png",
]

_LOG = logging.getLogger(__name__)

#: Cityscapes thing ids are ``labelId * LABEL_DIVISOR + n``.
LABEL_DIVISOR = 1000
#: Largest id a panoptic PNG can hold (24 bits).
MAX_PANOPTIC_ID = 256**3 - 1
_VOID = 0

#: What becomes of crowd regions in our maps: "keep" (class, instance 0: evaluation reads it
#: back as crowd) or "void" (255: training).
CrowdMode = Literal["keep", "void"]


def rgb2id(rgb: npt.NDArray[np.integer[Any]]) -> npt.NDArray[np.uint32]:
    """Colours to segment ids, as panopticapi's ``rgb2id``.

    Args:
        rgb: [H, W, 3] integer RGB (uint8 as stored in the PNG).

    Returns:
        [H, W] uint32 ``R + 256 * G + 256**2 * B``.

    Raises:
        EvaluationError: The array is not [H, W, 3].
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise EvaluationError(f"panoptic colours must be [H, W, 3], got shape {rgb.shape!r}")
    if rgb.dtype == np.uint8:
        return _ids_from_rgb(rgb.view(np.uint8))
    # Wider integers (panopticapi passes uint32): uint32 sums, never int64 temporaries.
    ids = rgb[..., 2].astype(np.uint32)
    ids <<= np.uint32(8)
    ids += rgb[..., 1].astype(np.uint32)
    ids <<= np.uint32(8)
    ids += rgb[..., 0].astype(np.uint32)
    return ids


def id2rgb(ids: npt.NDArray[np.integer[Any]]) -> npt.NDArray[np.uint8]:
    """Segment ids to colours, the inverse of :func:`rgb2id`.

    Args:
        ids: [H, W] integer ids in 0..2**24-1.

    Returns:
        [H, W, 3] uint8 RGB.

    Raises:
        EvaluationError: An id is negative or does not fit in 24 bits.
    """
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) > MAX_PANOPTIC_ID):
        raise EvaluationError(
            f"panoptic ids span {int(ids.min())}..{int(ids.max())}, outside "
            f"0..{MAX_PANOPTIC_ID}; a PNG holds 24-bit ids"
        )
    values = ids.astype(np.uint32)
    rgb = np.empty((*ids.shape, 3), dtype=np.uint8)
    rgb[..., 0] = values & 0xFF
    rgb[..., 1] = (values >> 8) & 0xFF
    rgb[..., 2] = values >> 16
    return rgb


def _ids_from_rgba(rgba: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint32]:
    """[H, W, 4] C-contiguous, writable uint8 RGBA -> [H, W] uint32 ids, in place.

    R, G, B, A bytes read as one little-endian uint32 are R + 256 G + 65536 B + 2**24 A: the
    id plus the alpha byte, which one in-place AND clears. No copy, no wider temporaries.
    """
    ids: npt.NDArray[np.uint32] = rgba.view(np.uint32).reshape(rgba.shape[:2])
    np.bitwise_and(ids, np.uint32(0xFFFFFF), out=ids)
    return ids


def _ids_from_rgb(pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint32]:
    """[H, W, 3 | 4] uint8 RGB(A) -> [H, W] uint32 ids (the alpha byte is ignored)."""
    if sys.byteorder != "little":  # the uint32 view assumes the first byte is the lowest
        rgb = pixels[..., :3].astype(np.uint32)
        return np.asarray(rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2], np.uint32)
    if pixels.shape[2] == 3:
        return _ids_from_rgba(cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2RGBA))
    return _ids_from_rgba(np.array(pixels, dtype=np.uint8, order="C"))  # a writable copy


def _not_rgb(path: str | Path, what: str) -> EvaluationError:
    return EvaluationError(
        f"panoptic PNG {str(path)!r} is {what}; expected 8-bit RGB whose colours encode the "
        "segment ids"
    )


def read_panoptic_png(path: str | Path) -> npt.NDArray[np.uint32]:
    """Read a panoptic PNG into segment ids (with OpenCV).

    Args:
        path: An 8-bit RGB (or RGBA) PNG.

    Returns:
        [H, W] uint32 segment ids, 0 void.

    Raises:
        EvaluationError: The file is missing, unreadable or not 8-bit colour.
    """
    try:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    except cv2.error as err:
        raise EvaluationError(f"cannot read panoptic PNG {str(path)!r}: {err}") from err
    if image is None:
        raise EvaluationError(f"cannot read panoptic PNG {str(path)!r}; check that it exists")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
        raise _not_rgb(path, f"{image.dtype} with shape {image.shape!r}")
    if sys.byteorder != "little":
        return _ids_from_rgb(np.ascontiguousarray(image[..., 2::-1]))
    # One SIMD pass BGR(A) -> RGBA into a fresh array, which becomes the ids in place.
    code = cv2.COLOR_BGR2RGBA if image.shape[2] == 3 else cv2.COLOR_BGRA2RGBA
    return _ids_from_rgba(cv2.cvtColor(image, code))


def write_panoptic_png(path: str | Path, ids: npt.NDArray[np.integer[Any]]) -> None:
    """Write segment ids as a panoptic PNG (8-bit RGB).

    Args:
        path: Output file; its folder must exist.
        ids: [H, W] integer ids in 0..2**24-1.

    Raises:
        EvaluationError: An id does not fit, or OpenCV cannot write the file.
    """
    bgr = id2rgb(ids)[..., ::-1]
    try:
        written = cv2.imwrite(str(path), np.ascontiguousarray(bgr))
    except cv2.error as err:
        raise EvaluationError(f"cannot write panoptic PNG {str(path)!r}: {err}") from err
    if not written:
        raise EvaluationError(f"cannot write panoptic PNG {str(path)!r}; check the folder")


def read_image_rgb(path: str | Path) -> npt.NDArray[np.uint8]:
    """Read a camera image.

    Returns:
        [H, W, 3] uint8 RGB.

    Raises:
        EvaluationError: The file is missing or unreadable.
    """
    try:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    except cv2.error as err:
        raise EvaluationError(f"cannot read image {str(path)!r}: {err}") from err
    if bgr is None:
        raise EvaluationError(f"cannot read image {str(path)!r}; check that it exists")
    return np.ascontiguousarray(bgr[..., ::-1])


# --- label spaces <-> dataset categories ---------------------------------------------------


def category_mapping(labels: LabelSpace) -> dict[int, int]:
    """Dataset category id -> class index, from each class's ``dataset_id``.

    Raises:
        ConfigError: Two classes share a dataset id.
    """
    mapping: dict[int, int] = {}
    for index, info in enumerate(labels.classes):
        if info.dataset_id in mapping:
            other = labels.classes[mapping[info.dataset_id]].name
            raise ConfigError(
                f"classes {other!r} and {info.name!r} share dataset id {info.dataset_id}; "
                "give every class its own id"
            )
        mapping[info.dataset_id] = index
    return mapping


def parse_category_map(entries: Sequence[str], labels: LabelSpace) -> dict[int, int]:
    """Dataset category id -> class index from ``'ID=NAME'`` entries (``dataset.category_map``).

    Several ids may name one class (e.g. COCO's ``road`` and ``railroad`` both to
    ``road``); categories without an entry become void. No entries: the classes' own
    dataset ids (:func:`category_mapping`).

    Args:
        entries: ``'ID=NAME'`` strings, ``NAME`` a class of ``labels``.
        labels: The model's label space.

    Raises:
        ConfigError: An entry is malformed, repeats an id or names an unknown class.
    """
    if not entries:
        return category_mapping(labels)
    mapping: dict[int, int] = {}
    for category, name in parse_category_entries(entries):
        if name not in labels.names:
            raise ConfigError(
                f"dataset.category_map entry '{category}={name}' names no class of the "
                f"label space; classes: {', '.join(labels.names)}"
            )
        mapping[category] = labels.index(name)
    return mapping


def dataset_mapping(
    categories: Mapping[int, Mapping[str, Any]], labels: LabelSpace, entries: Sequence[str] = ()
) -> dict[int, int]:
    """Dataset category id -> class index for a dataset: configured, or by id and checked.

    With ``entries`` (``dataset.category_map``) they decide (:func:`parse_category_map`).
    Without, categories map by the classes' dataset ids, which is only right when the
    dataset uses the ids the model was trained with: a category whose name differs from the
    class with its id (COCO's truck is 8, Cityscapes' sidewalk too) is refused rather than
    read as that class.

    Args:
        categories: The dataset's ``categories`` rows by id (``name`` read when present).
        labels: The model's label space.
        entries: ``'ID=NAME'`` strings; empty for the classes' dataset ids.

    Raises:
        ConfigError: A bad entry, or without entries a category whose name is not that of
            the class with its id.
    """
    mapping = parse_category_map(entries, labels)
    if entries:
        return mapping
    for category, row in categories.items():
        name = row.get("name")
        if category in mapping and name is not None and name != labels.names[mapping[category]]:
            raise ConfigError(
                f"dataset category {category} {name!r} would be read as class "
                f"{labels.names[mapping[category]]!r} (the same dataset id); map the dataset's "
                "categories with dataset.category_map, e.g. "
                "--set 'dataset.category_map=[\"3=car\"]'"
            )
    return mapping


def dataset_categories(labels: LabelSpace) -> list[dict[str, Any]]:
    """The ``categories`` rows of a panoptic JSON for ``labels`` (ids = dataset ids).

    ``supercategory`` is ``"thing"`` or ``"stuff"``: a label space does not know Cityscapes'
    groups (flat, vehicle, ...), and no evaluation reads it.
    """
    return [
        {
            "id": info.dataset_id,
            "name": info.name,
            "color": list(info.color_rgb),
            "supercategory": "thing" if info.is_thing else "stuff",
            "isthing": int(info.is_thing),
        }
        for info in labels.classes
    ]


def _check_dataset_ids(labels: LabelSpace) -> None:
    for info in labels.classes:
        if not 1 <= info.dataset_id <= MAX_PANOPTIC_ID // LABEL_DIVISOR - 1:
            raise ConfigError(
                f"class {info.name!r} has dataset id {info.dataset_id}, outside "
                f"1..{MAX_PANOPTIC_ID // LABEL_DIVISOR - 1}; 0 is void and ids x 1000 must "
                "fit in 24 bits"
            )


def _bounding_boxes(
    inverse: npt.NDArray[np.intp], count: int, height: int, width: int
) -> npt.NDArray[np.int64]:
    """[count, 4] (x, y, w, h) of each label of ``inverse`` ([H*W] label per pixel)."""
    flat = inverse.reshape(height, width)
    # Which rows / columns each label occupies, from one bincount each (no per-label pass).
    rows = np.bincount(
        (flat * height + np.arange(height)[:, None]).ravel(), minlength=count * height
    ).reshape(count, height)
    cols = np.bincount(
        (flat * width + np.arange(width)[None, :]).ravel(), minlength=count * width
    ).reshape(count, width)
    boxes = np.zeros((count, 4), dtype=np.int64)
    for boxes_col, occupied, size in ((0, cols > 0, width), (1, rows > 0, height)):
        first = occupied.argmax(axis=1)
        last = size - 1 - occupied[:, ::-1].argmax(axis=1)
        boxes[:, boxes_col] = first
        boxes[:, boxes_col + 2] = last - first + 1
    return boxes


def panoptic_from_maps(
    semantic: npt.NDArray[np.uint8],
    instances: npt.NDArray[np.integer[Any]],
    labels: LabelSpace,
) -> tuple[npt.NDArray[np.uint32], list[dict[str, Any]]]:
    """Our semantic + instance maps -> Cityscapes panoptic ids and ``segments_info``.

    As ``createPanopticImgs.py``: stuff id = dataset id, thing instance id =
    ``dataset_id * 1000 + n`` with n = 0, 1, ... per class in the order of the instance
    numbers, thing pixels without an instance = one crowd segment per class (id = dataset
    id, ``iscrowd`` 1), void = 0; segments in ascending id order with ``area`` and ``bbox``.

    Args:
        semantic: [H, W] uint8 class index, 255 void.
        instances: [H, W] integer instance number, 0 none (read on thing pixels only).
        labels: The label space of ``semantic``; its dataset ids become the category ids.

    Returns:
        ([H, W] uint32 ids, segments ``{"id", "category_id", "area", "bbox", "iscrowd"}``).

    Raises:
        EvaluationError: Shapes differ, a class is outside the label space, an instance
            number is negative, or a class has more than 1000 instances.
        ConfigError: A dataset id is 0 or too large for 24-bit ids.
    """
    if semantic.shape != instances.shape or semantic.ndim != 2:
        raise EvaluationError(
            f"semantic shape {semantic.shape!r} and instance shape {instances.shape!r} must "
            "be the same [H, W]"
        )
    _check_dataset_ids(labels)
    known = semantic[semantic != IGNORE_INDEX]
    if known.size and int(known.max()) >= labels.num_classes:
        raise EvaluationError(
            f"semantic map holds class {int(known.max())} but the label space has "
            f"{labels.num_classes} classes; use the labels the map was made with"
        )
    thing = labels.is_thing_table()[semantic]
    instance = np.where(thing, instances, 0).astype(np.int64)
    if instance.size and int(instance.min()) < 0:
        raise EvaluationError(f"instance numbers must be >= 0, found {int(instance.min())}")
    span = int(instance.max()) + 1 if instance.size else 1
    # One key per (class, instance); void sorts last (class 255).
    key = semantic.astype(np.int64) * span + instance
    keys, inverse, areas = np.unique(key.ravel(), return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    height, width = semantic.shape
    boxes = _bounding_boxes(inverse, len(keys), height, width)

    segment_of_key = np.zeros(len(keys), dtype=np.uint32)
    segments: list[dict[str, Any]] = []
    ordinal: dict[int, int] = {}
    for position, (key_value, area) in enumerate(zip(keys.tolist(), areas.tolist(), strict=True)):
        class_index, number = divmod(key_value, span)
        if class_index == IGNORE_INDEX:
            continue
        info = labels.classes[class_index]
        crowd = info.is_thing and number == 0
        if info.is_thing and not crowd:
            n = ordinal.get(class_index, 0)
            if n >= LABEL_DIVISOR:
                raise EvaluationError(
                    f"class {info.name!r} has more than {LABEL_DIVISOR} instances in one image; "
                    "Cityscapes ids hold at most 1000"
                )
            ordinal[class_index] = n + 1
            segment_id = info.dataset_id * LABEL_DIVISOR + n
        else:
            segment_id = info.dataset_id
        segment_of_key[position] = segment_id
        segments.append(
            {
                "id": segment_id,
                "category_id": info.dataset_id,
                "area": int(area),
                "bbox": [int(v) for v in boxes[position]],
                "iscrowd": int(crowd),
            }
        )
    ids = segment_of_key[inverse].reshape(height, width)
    segments.sort(key=lambda s: int(s["id"]))
    return ids, segments


@dataclass(frozen=True, slots=True)
class PanopticMaps:
    """Panoptic ids mapped into a label space.

    Attributes:
        semantic: [H, W] uint8 class index, 255 void.
        instances: [H, W] int32 instance number 1..N, 0 none; numbered in the order of
            ``segments_info``.
        crowd: [H, W] bool, True on crowd regions of classes in the label space.
    """

    semantic: npt.NDArray[np.uint8]
    instances: npt.NDArray[np.int32]
    crowd: npt.NDArray[np.bool_]


def maps_from_panoptic(
    ids: npt.NDArray[np.integer[Any]],
    segments_info: Sequence[Mapping[str, Any]],
    labels: LabelSpace,
    mapping: Mapping[int, int] | None = None,
    *,
    crowd: CrowdMode = "keep",
) -> PanopticMaps:
    """Panoptic ids + segments -> our semantic and instance maps in ``labels``.

    Args:
        ids: [H, W] integer segment ids (0 void).
        segments_info: ``{"id", "category_id"[, "iscrowd"]}`` per segment; ids in the map
            without a segment are void.
        labels: The target label space.
        mapping: Dataset category id -> class index; default :func:`category_mapping`.
            Categories without an entry become void.
        crowd: ``"keep"``: crowd regions keep their class with instance 0 (our maps' crowd,
            as evaluation reads it); ``"void"``: they become 255 (training). Either way
            they are in :attr:`PanopticMaps.crowd`.

    Returns:
        The maps.

    Raises:
        EvaluationError: ``ids`` is not 2-D, or a segment is malformed.
        ConfigError: ``mapping`` names a class index outside the label space.
    """
    if ids.ndim != 2:
        raise EvaluationError(f"panoptic ids must be [H, W], got shape {ids.shape!r}")
    if mapping is None:
        mapping = category_mapping(labels)
    bad = sorted(v for v in mapping.values() if not 0 <= v < labels.num_classes)
    if bad:
        raise ConfigError(
            f"category mapping names class indices {bad[:5]!r} outside 0..{labels.num_classes - 1}"
        )
    is_thing = labels.is_thing_table()
    by_id: dict[int, tuple[int, int, bool]] = {}  # id -> (class, instance, crowd)
    next_instance = 1
    try:
        for segment in segments_info:
            segment_id = int(segment["id"])
            class_index = mapping.get(int(segment["category_id"]))
            is_crowd = int(segment.get("iscrowd", 0)) == 1
            if class_index is None or segment_id == _VOID:
                continue
            if is_crowd:
                by_id[segment_id] = (IGNORE_INDEX if crowd == "void" else class_index, 0, True)
            elif is_thing[class_index]:
                by_id[segment_id] = (class_index, next_instance, False)
                next_instance += 1
            else:
                by_id[segment_id] = (class_index, 0, False)
    except (KeyError, TypeError, ValueError) as err:
        raise EvaluationError(f"malformed segment in segments_info: {err!r}") from err

    semantic_table = np.full(len(by_id) + 1, IGNORE_INDEX, dtype=np.uint8)
    instance_table = np.zeros(len(by_id) + 1, dtype=np.int32)
    crowd_table = np.zeros(len(by_id) + 1, dtype=np.bool_)
    listed = np.array(sorted(by_id), dtype=np.int64)
    for row, segment_id in enumerate(listed.tolist()):
        semantic_table[row], instance_table[row], crowd_table[row] = by_id[segment_id]
    # Row of each pixel's id among the listed ids; unlisted ids land on the last row of the
    # tables, which is void.
    flat = ids.astype(np.int64).ravel()
    rows = np.searchsorted(listed, flat)
    found = rows < len(listed)
    found[found] = listed[rows[found]] == flat[found]
    rows[~found] = len(by_id)
    shape = ids.shape
    return PanopticMaps(
        semantic=semantic_table[rows].reshape(shape),
        instances=instance_table[rows].reshape(shape),
        crowd=crowd_table[rows].reshape(shape),
    )


# --- datasets --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PanopticRecord:
    """One annotated image of a panoptic dataset.

    Attributes:
        image_id: The id that pairs ground truth and predictions.
        image_path: The camera image.
        panoptic_path: The panoptic PNG.
        segments_info: Its segments (``id``, ``category_id``, ``iscrowd``, ``area``, ...).
        soft_target_path: The teachers' class probabilities of the image
            (:class:`SoftTargetSpec`), when the dataset has soft targets and this image's
            file exists; else None.
    """

    image_id: str | int
    image_path: Path
    panoptic_path: Path
    segments_info: tuple[Mapping[str, Any], ...]
    soft_target_path: Path | None = None

    def read_ids(self) -> npt.NDArray[np.uint32]:
        """Read the panoptic PNG: [H, W] uint32 segment ids, 0 void."""
        return read_panoptic_png(self.panoptic_path)

    def read_image(self) -> npt.NDArray[np.uint8]:
        """Read the camera image: [H, W, 3] uint8 RGB."""
        return read_image_rgb(self.image_path)


@dataclass(frozen=True, slots=True)
class SoftTargetSpec:
    """The ``soft_targets`` entry of a pseudo-labelled dataset's JSON.

    For image ``X`` of the split, ``<folder>/X_probs.npy`` holds the teachers' class
    probabilities as a [C, ceil(H / stride), ceil(W / stride)] array (C = ``len(classes)``,
    summing to about 1 over C; H, W the stored image size); cell (i, j) is the mean over
    image pixels [stride*i, stride*i + stride) x [stride*j, stride*j + stride). An image
    without the file gets no distillation.

    Attributes:
        folder: Folder of the ``*_probs.npy`` files (absolute).
        stride: Image pixels per cell side.
        dtype: NumPy dtype name of the arrays (``float16`` or ``float32``).
        classes: Class names of the C channels, in order.
        temperature: Temperature of the teachers' softmax that made the probabilities.
    """

    folder: Path
    stride: int
    dtype: str
    classes: tuple[str, ...]
    temperature: float = 1.0

    @classmethod
    def from_json(cls, entry: Any, root: Path, where: Path) -> SoftTargetSpec:
        """Read the entry (``folder`` relative to the dataset ``root``).

        Raises:
            EvaluationError: A field is missing or has the wrong type (names the JSON).
        """
        try:
            spec = cls(
                folder=root / str(entry["folder"]),
                stride=int(entry["stride"]),
                dtype=str(entry.get("dtype", "float16")),
                classes=tuple(str(name) for name in entry["classes"]),
                temperature=float(entry.get("temperature", 1.0)),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise EvaluationError(
                f"panoptic JSON {str(where)!r}: 'soft_targets' needs folder, stride and "
                f"classes: {err!r}"
            ) from err
        if spec.stride < 1 or not spec.classes or spec.temperature <= 0:
            raise EvaluationError(
                f"panoptic JSON {str(where)!r}: 'soft_targets' needs stride >= 1, a non-empty "
                "classes list and a positive temperature"
            )
        if spec.dtype not in ("float16", "float32"):
            raise EvaluationError(
                f"panoptic JSON {str(where)!r}: soft_targets dtype {spec.dtype!r} must be "
                "float16 or float32"
            )
        return spec

    def path_of(self, image_id: str | int) -> Path:
        """The probabilities file of one image."""
        return self.folder / f"{image_id}_probs.npy"


def read_soft_targets(
    path: Path, spec: SoftTargetSpec, image_hw: tuple[int, int]
) -> npt.NDArray[np.float16]:
    """Read one image's soft targets and check their shape.

    Args:
        path: The ``*_probs.npy`` file.
        spec: The dataset's soft-target entry.
        image_hw: (H, W) of the stored image.

    Returns:
        [C, ceil(H / stride), ceil(W / stride)] probabilities in the file's dtype.

    Raises:
        EvaluationError: Unreadable file, or a shape that does not fit the image.
    """
    try:
        probs = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise EvaluationError(f"cannot read soft targets {str(path)!r}: {err}") from err
    stride = spec.stride
    expected = (
        len(spec.classes),
        -(-image_hw[0] // stride),
        -(-image_hw[1] // stride),
    )
    if probs.shape != expected:
        raise EvaluationError(
            f"soft targets {str(path)!r} are {probs.shape!r}; the image needs {expected!r} "
            f"(classes, ceil(H/{stride}), ceil(W/{stride}))"
        )
    return probs


@dataclass(frozen=True, slots=True)
class PanopticDataset:
    """The records of a panoptic JSON and its categories (a sequence of records).

    Attributes:
        records: One per annotation, in the JSON's order.
        categories: Category id -> its JSON row (``id``, ``name``, ``isthing``, ...), in
            the JSON's order (the order evaluation averages in).
        soft_targets: The JSON's ``soft_targets`` entry, if it has one.
    """

    records: tuple[PanopticRecord, ...]
    categories: Mapping[int, Mapping[str, Any]]
    soft_targets: SoftTargetSpec | None = None

    def __len__(self) -> int:
        """Number of records."""
        return len(self.records)

    def __getitem__(self, index: int) -> PanopticRecord:
        """Return record ``index``."""
        return self.records[index]

    def __iter__(self) -> Iterator[PanopticRecord]:
        """Iterate over the records."""
        return iter(self.records)


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise EvaluationError(f"cannot read panoptic JSON {str(path)!r}: {err}") from err
    except json.JSONDecodeError as err:
        raise EvaluationError(f"panoptic JSON {str(path)!r} is not valid JSON: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise EvaluationError(
            f"panoptic JSON {str(path)!r} has no 'annotations' list; is it a panoptic file?"
        )
    return data


def _categories(data: Mapping[str, Any], path: Path) -> dict[int, dict[str, Any]]:
    try:
        return {int(row["id"]): dict(row) for row in data["categories"]}
    except (KeyError, TypeError, ValueError) as err:
        raise EvaluationError(
            f"panoptic JSON {str(path)!r} needs 'categories' rows with an 'id': {err!r}"
        ) from err


def _check_exist(paths: Iterable[Path], what: str) -> None:
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise EvaluationError(
            f"{len(missing)} {what} missing, first {str(missing[0])!r}; check the dataset folder"
        )


def read_cityscapes_panoptic(root: str | Path, split: str = "val") -> PanopticDataset:
    """Read Cityscapes panoptic ground truth as ``createPanopticImgs.py`` writes it.

    Args:
        root: The dataset folder holding ``leftImg8bit/`` and ``gtFine/``.
        split: ``train``, ``val`` or ``test``.

    Returns:
        The dataset; images are found from the image id
        (``leftImg8bit/<split>/<city>/<image_id>_leftImg8bit.png``, or ``.jpg`` where no
        PNG exists). A JSON with a ``soft_targets`` entry (pseudo-labelled data, see
        :class:`SoftTargetSpec`) gives the dataset that spec and each record its
        probabilities file, where it exists.

    Raises:
        EvaluationError: The JSON is missing or malformed, or a file is missing.
    """
    root = Path(root)
    json_path = root / "gtFine" / f"cityscapes_panoptic_{split}.json"
    png_dir = root / "gtFine" / f"cityscapes_panoptic_{split}"
    data = _load_json(json_path)
    soft = None
    if data.get("soft_targets") is not None:
        soft = SoftTargetSpec.from_json(data["soft_targets"], root, json_path)
    records = []
    try:
        for annotation in data["annotations"]:
            image_id = str(annotation["image_id"])
            city = image_id.split("_", 1)[0]
            image_path = root / "leftImg8bit" / split / city / f"{image_id}_leftImg8bit.png"
            if not image_path.is_file() and image_path.with_suffix(".jpg").is_file():
                image_path = image_path.with_suffix(".jpg")
            soft_path = soft.path_of(image_id) if soft is not None else None
            records.append(
                PanopticRecord(
                    image_id=image_id,
                    image_path=image_path,
                    panoptic_path=png_dir / str(annotation["file_name"]),
                    segments_info=tuple(annotation["segments_info"]),
                    soft_target_path=soft_path if soft_path and soft_path.is_file() else None,
                )
            )
    except (KeyError, TypeError) as err:
        raise EvaluationError(
            f"panoptic JSON {str(json_path)!r} has a malformed annotation: {err!r}"
        ) from err
    _check_exist((r.panoptic_path for r in records), "panoptic PNGs")
    _check_exist((r.image_path for r in records), "images")
    _LOG.info("read %d Cityscapes %s records from %s", len(records), split, json_path)
    if soft is not None:
        _LOG.info(
            "%d of %d records have soft targets in %s",
            sum(r.soft_target_path is not None for r in records),
            len(records),
            soft.folder,
        )
    return PanopticDataset(tuple(records), _categories(data, json_path), soft)


def read_coco_panoptic(
    json_path: str | Path, png_dir: str | Path, image_dir: str | Path
) -> PanopticDataset:
    """Read a COCO panoptic dataset (``panoptic_<split>.json`` + PNG folder + images).

    Args:
        json_path: The panoptic JSON.
        png_dir: The folder of its panoptic PNGs (annotation ``file_name``).
        image_dir: The folder of its images (image ``file_name``).

    Returns:
        The dataset.

    Raises:
        EvaluationError: The JSON is malformed, an annotation has no image entry, or a
            file is missing.
    """
    json_path, png_dir, image_dir = Path(json_path), Path(png_dir), Path(image_dir)
    data = _load_json(json_path)
    try:
        image_files = {row["id"]: str(row["file_name"]) for row in data.get("images", [])}
        records = []
        for annotation in data["annotations"]:
            image_id = annotation["image_id"]
            if image_id not in image_files:
                raise EvaluationError(
                    f"annotation of image {image_id!r} in {str(json_path)!r} has no 'images' "
                    "entry; the JSON is incomplete"
                )
            records.append(
                PanopticRecord(
                    image_id=image_id,
                    image_path=image_dir / image_files[image_id],
                    panoptic_path=png_dir / str(annotation["file_name"]),
                    segments_info=tuple(annotation["segments_info"]),
                )
            )
    except (KeyError, TypeError) as err:
        raise EvaluationError(
            f"panoptic JSON {str(json_path)!r} has a malformed entry: {err!r}"
        ) from err
    _check_exist((r.panoptic_path for r in records), "panoptic PNGs")
    _check_exist((r.image_path for r in records), "images")
    _LOG.info("read %d COCO panoptic records from %s", len(records), json_path)
    return PanopticDataset(tuple(records), _categories(data, json_path))


@dataclass(frozen=True, slots=True)
class DatasetSample:
    """One image of a panoptic dataset in a label space (training's ``PanopticSample``).

    Attributes:
        image: [H, W, 3] uint8 RGB.
        semantic: [H, W] uint8 class index, 255 void.
        instances: [H, W] int32 instance number, 0 none.
        ignore_mask: [H, W] bool, True on crowd regions (``make_targets``' ignore mask).
        image_id: The dataset's image id.
        soft_targets: [C, ceil(H / s), ceil(W / s)] float16/32 teacher probabilities in the
            label space's class order (s = ``soft_stride``), or None.
        soft_stride: Image pixels per soft-target cell side.
    """

    image: npt.NDArray[np.uint8]
    semantic: npt.NDArray[np.uint8]
    instances: npt.NDArray[np.int32]
    ignore_mask: npt.NDArray[np.bool_]
    image_id: str | int
    soft_targets: npt.NDArray[np.floating[Any]] | None = None
    soft_stride: int = 4


class PanopticDatasetSource:
    """A training (or evaluation) source over a panoptic dataset: index -> sample.

    Args:
        dataset: From :func:`read_cityscapes_panoptic` or :func:`read_coco_panoptic`.
        labels: The model's label space.
        mapping: Dataset category id -> class index; default from the classes' dataset ids.
        crowd: ``"void"`` (training: crowd pixels are void and in ``ignore_mask``) or
            ``"keep"`` (evaluation: crowd keeps its class with instance 0).
        soft_targets: Read the dataset's soft targets (when it has them) into the samples,
            reordered into the label space's classes by name (teacher classes outside it
            are dropped and the rest renormalised).

    Raises:
        ConfigError: No category of the dataset maps into the label space, or a class of
            the label space has no soft-target channel.
    """

    def __init__(
        self,
        dataset: PanopticDataset,
        labels: LabelSpace,
        mapping: Mapping[int, int] | None = None,
        *,
        crowd: CrowdMode = "void",
        soft_targets: bool = False,
    ) -> None:
        self.dataset = dataset
        self.labels = labels
        self.mapping = dict(category_mapping(labels) if mapping is None else mapping)
        self.crowd: CrowdMode = crowd
        self.soft_spec = dataset.soft_targets if soft_targets else None
        self.soft_order: npt.NDArray[np.intp] | None = None
        if self.soft_spec is not None:
            channels = {name: k for k, name in enumerate(self.soft_spec.classes)}
            missing = [name for name in labels.names if name not in channels]
            if missing:
                raise ConfigError(
                    f"the dataset's soft targets have no class {missing[0]!r} of the label "
                    f"space (they have {list(self.soft_spec.classes)[:8]}); set "
                    "train.distill_weight=0 or use a matching train.labels_file"
                )
            order = np.array([channels[name] for name in labels.names], np.intp)
            if not np.array_equal(order, np.arange(len(self.soft_spec.classes))):
                self.soft_order = order
        used = set(self.mapping) & set(dataset.categories)
        if dataset.categories and not used:
            raise ConfigError(
                f"no dataset category {sorted(dataset.categories)[:8]!r} maps into the label "
                f"space (dataset ids {sorted(self.mapping)[:8]!r}); check the class dataset_id"
            )
        unmapped = [
            str(row.get("name", cid)) for cid, row in dataset.categories.items() if cid not in used
        ]
        if unmapped:
            _LOG.info("dataset categories outside the label space become void: %s", unmapped)

    def __len__(self) -> int:
        """Number of samples."""
        return len(self.dataset)

    def __call__(self, index: int) -> DatasetSample:
        """Load sample ``index``.

        Raises:
            EvaluationError: A file is unreadable or image and PNG sizes differ.
        """
        record = self.dataset[index]
        image = record.read_image()
        ids = record.read_ids()
        if image.shape[:2] != ids.shape:
            raise EvaluationError(
                f"image {str(record.image_path)!r} is {image.shape[:2]!r} but its panoptic PNG "
                f"is {ids.shape!r}; they must be the same size"
            )
        maps = maps_from_panoptic(
            ids, record.segments_info, self.labels, self.mapping, crowd=self.crowd
        )
        soft = None
        spec = self.soft_spec
        if spec is not None and record.soft_target_path is not None:
            soft = read_soft_targets(
                record.soft_target_path, spec, (int(ids.shape[0]), int(ids.shape[1]))
            )
            if self.soft_order is not None:  # the label space's classes, in its order
                soft = soft[self.soft_order].astype(np.float32)
                soft /= np.maximum(soft.sum(axis=0, keepdims=True), 1e-6)
        return DatasetSample(
            image,
            maps.semantic,
            maps.instances,
            maps.crowd,
            record.image_id,
            soft,
            spec.stride if spec is not None else 4,
        )


# --- writers ---------------------------------------------------------------------------------


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # sort_keys and indent as createPanopticImgs.py, so files diff cleanly against it.
    path.write_text(json.dumps(data, sort_keys=True, indent=4), encoding="utf-8")


def write_cityscapes_panoptic(
    out_dir: str | Path,
    scenes: Iterable[Any],
    labels: LabelSpace,
    split: str = "val",
    *,
    city: str = "synthetic",
) -> Path:
    """Write scenes as a Cityscapes panoptic dataset (the layout of ``createPanopticImgs``).

    Image ``k`` is ``<city>_000000_<k:06d>``: ``leftImg8bit/<split>/<city>/<id>_leftImg8bit.png``,
    ``gtFine/cityscapes_panoptic_<split>/<id>_gtFine_panoptic.png`` and an entry in
    ``gtFine/cityscapes_panoptic_<split>.json`` (categories from ``labels``' dataset ids).

    Args:
        out_dir: The dataset root (created; existing files of the same names are replaced).
        scenes: Items with ``image`` [H, W, 3] uint8 RGB, ``semantic`` [H, W] uint8 (255
            void) and ``instances`` [H, W] integer (0 none), e.g. synthetic scenes.
        labels: The label space of the scenes' semantic maps.
        split: The split name.
        city: The city part of the image ids (no underscore).

    Returns:
        The path of the JSON.

    Raises:
        ConfigError: ``city`` contains an underscore, or a dataset id is unusable.
        EvaluationError: A scene's maps are inconsistent or a file cannot be written.
    """
    if "_" in city or not city:
        raise ConfigError(f"city {city!r} must be non-empty without '_' (image ids split on it)")
    root = Path(out_dir)
    image_dir = root / "leftImg8bit" / split / city
    png_dir = root / "gtFine" / f"cityscapes_panoptic_{split}"
    image_dir.mkdir(parents=True, exist_ok=True)
    png_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index, scene in enumerate(scenes):
        image_id = f"{city}_000000_{index:06d}"
        ids, segments = panoptic_from_maps(scene.semantic, scene.instances, labels)
        image = np.asarray(scene.image)
        if image.shape[:2] != ids.shape:
            raise EvaluationError(
                f"scene {index}: image {image.shape[:2]!r} and maps {ids.shape!r} differ in size"
            )
        image_path = image_dir / f"{image_id}_leftImg8bit.png"
        if not cv2.imwrite(str(image_path), np.ascontiguousarray(image[..., ::-1])):
            raise EvaluationError(f"cannot write image {str(image_path)!r}")
        png_name = f"{image_id}_gtFine_panoptic.png"
        write_panoptic_png(png_dir / png_name, ids)
        images.append(
            {
                "id": image_id,
                "width": int(ids.shape[1]),
                "height": int(ids.shape[0]),
                "file_name": f"{image_id}_gtFine_leftImg8bit.png",  # sic, as the official tool
            }
        )
        annotations.append({"image_id": image_id, "file_name": png_name, "segments_info": segments})
    json_path = root / "gtFine" / f"cityscapes_panoptic_{split}.json"
    _write_json(
        json_path,
        {"images": images, "annotations": annotations, "categories": dataset_categories(labels)},
    )
    _LOG.info("wrote %d Cityscapes panoptic images to %s", len(images), root)
    return json_path


def write_coco_panoptic(
    json_path: str | Path,
    png_dir: str | Path,
    entries: Iterable[tuple[str | int, npt.NDArray[np.integer[Any]], Sequence[Mapping[str, Any]]]],
    categories: Sequence[Mapping[str, Any]],
) -> Path:
    """Write panoptic predictions (or ground truth) as a COCO panoptic JSON + PNG folder.

    Each entry becomes ``<png_dir>/<image_id>.png`` and an annotation ``{"image_id",
    "file_name", "segments_info"}``; ``images`` lists the ids and sizes. This is the format
    ``pq_compute`` and ``evalPanopticSemanticLabeling`` read for predictions.

    Args:
        json_path: Output JSON (its folder is created).
        png_dir: Output PNG folder (created).
        entries: ``(image_id, [H, W] ids, segments_info)`` per image.
        categories: The ``categories`` rows.

    Returns:
        ``json_path``.

    Raises:
        EvaluationError: An id does not fit in 24 bits or a file cannot be written.
    """
    json_path, png_dir = Path(json_path), Path(png_dir)
    png_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id, ids, segments in entries:
        name = f"{image_id}.png"
        write_panoptic_png(png_dir / name, ids)
        images.append(
            {
                "id": image_id,
                "width": int(ids.shape[1]),
                "height": int(ids.shape[0]),
                "file_name": name,
            }
        )
        annotations.append(
            {"image_id": image_id, "file_name": name, "segments_info": [dict(s) for s in segments]}
        )
    _write_json(
        json_path,
        {"images": images, "annotations": annotations, "categories": [dict(c) for c in categories]},
    )
    return json_path
