"""Teacher models for pseudo-labelling: ONNX files with their contract written in config.

A teacher is an ONNX file plus what it takes and gives (:class:`TeacherSpec`), read from a
YAML file (``config/teachers.yaml`` describes the open teachers of ``../shared/teachers``).
Three roles:

* ``semantic``: per-pixel class scores (logits or probabilities) over named classes; the
  names that are classes of the model's label space are kept, the others (e.g. a void
  channel) take part in the softmax only, so their mass counts as doubt.
* ``road``: per-pixel probabilities of which some channels mean "road" (road, lane mark);
  used to confirm or correct road pixels where the model is confident.
* ``detector``: boxes with class scores (the YOLOX head layout), its classes mapped to the
  thing classes of the label space.

Nothing is downloaded: the files are named by the user and hashed (SHA-256) so the
dataset records exactly which teachers made it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import yaml

from panoptic_ros.errors import ConfigError, ModelFileError, first_line
from panoptic_ros.labels import LabelSpace

__all__ = [
    "Detection",
    "DetectorTeacher",
    "RoadTeacher",
    "SemanticTeacher",
    "TeacherInput",
    "TeacherSet",
    "TeacherSpec",
    "load_teachers",
    "sha256_of",
]

logger = logging.getLogger(__name__)

Role = Literal["semantic", "road", "detector"]
_ROLES: tuple[Role, ...] = ("semantic", "road", "detector")


@dataclass(frozen=True, slots=True)
class TeacherInput:
    """How a frame becomes the teacher's input tensor.

    Attributes:
        layout: ``NHWC`` or ``NCHW``.
        dtype: ``uint8`` or ``float32`` (values 0..255 before ``mean``/``std``).
        color: ``RGB`` or ``BGR`` channel order.
        height: Input height in px (the ONNX input is static).
        width: Input width in px.
        resize: ``stretch`` (the whole frame to height x width) or ``letterbox`` (one
            scale, top-left, the rest ``pad_value``).
        pad_value: Grey level of letterbox padding.
        mean: Subtracted from every channel value (after the 0..255 cast).
        std: Divides every channel value.
    """

    layout: Literal["NHWC", "NCHW"]
    dtype: Literal["uint8", "float32"]
    color: Literal["RGB", "BGR"]
    height: int
    width: int
    resize: Literal["stretch", "letterbox"] = "stretch"
    pad_value: int = 114
    mean: float = 0.0
    std: float = 1.0


@dataclass(frozen=True, slots=True)
class TeacherSpec:
    """One teacher as the YAML file describes it.

    Attributes:
        name: Short name for logs and the dataset record.
        role: ``semantic``, ``road`` or ``detector``.
        path: The ONNX file.
        input: The input contract.
        classes: Output channel (or detector class) names in order; ``None`` entries are
            channels with no class of their own (void/background).
        output_kind: ``logits`` (softmax applied here) or ``probabilities``.
        output_layout: ``NCHW`` or ``NHWC`` of the dense output (semantic and road roles).
        weight: Weight in the ensemble average (semantic role).
        road_channels: Names of the channels that mean drivable road (road role).
        class_map: Detector class name -> the label-space classes its pixels may have
            (e.g. ``person: [person, rider]``); unmapped classes are ignored.
        strides: Detector head strides, in the order of its anchor points.
        sha256: Expected SHA-256 of the file, checked when given.
    """

    name: str
    role: Role
    path: Path
    input: TeacherInput
    classes: tuple[str | None, ...]
    output_kind: Literal["logits", "probabilities"] = "logits"
    output_layout: Literal["NCHW", "NHWC"] = "NCHW"
    weight: float = 1.0
    road_channels: tuple[str, ...] = ()
    class_map: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    strides: tuple[int, ...] = (8, 16, 32)
    sha256: str = ""


def sha256_of(path: Path) -> str:
    """Return the hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _need(row: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in row:
        raise ConfigError(f"{where} needs '{key}'")
    return row[key]


def _choice(value: Any, allowed: Sequence[str], where: str) -> Any:
    if value not in allowed:
        raise ConfigError(f"{where}={value!r} must be one of {', '.join(allowed)}")
    return value


def _parse_input(row: Mapping[str, Any], where: str) -> TeacherInput:
    if not isinstance(row, Mapping):
        raise ConfigError(f"{where} must be a mapping (layout, dtype, color, height, width)")
    known = set(TeacherInput.__dataclass_fields__)
    unknown = sorted(set(row) - known)
    if unknown:
        raise ConfigError(f"{where} has unknown keys {unknown}; known: {sorted(known)}")
    try:
        spec = TeacherInput(
            layout=_choice(_need(row, "layout", where), ("NHWC", "NCHW"), f"{where}.layout"),
            dtype=_choice(_need(row, "dtype", where), ("uint8", "float32"), f"{where}.dtype"),
            color=_choice(_need(row, "color", where), ("RGB", "BGR"), f"{where}.color"),
            height=int(_need(row, "height", where)),
            width=int(_need(row, "width", where)),
            resize=_choice(
                row.get("resize", "stretch"), ("stretch", "letterbox"), f"{where}.resize"
            ),
            pad_value=int(row.get("pad_value", 114)),
            mean=float(row.get("mean", 0.0)),
            std=float(row.get("std", 1.0)),
        )
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {first_line(err)}") from err
    if spec.height <= 0 or spec.width <= 0 or spec.std == 0:
        raise ConfigError(f"{where}: height and width must be positive and std non-zero")
    return spec


def _parse_classes(row: Mapping[str, Any], where: str, base: Path) -> tuple[str | None, ...]:
    if "classes_file" in row:
        path = base / str(row["classes_file"])
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise ConfigError(f"{where}.classes_file {str(path)!r}: {first_line(err)}") from err
        return tuple(line.strip() for line in lines if line.strip())
    classes = _need(row, "classes", where)
    if not isinstance(classes, list) or not classes:
        raise ConfigError(f"{where}.classes must be a non-empty list (null for void channels)")
    return tuple(None if c is None else str(c) for c in classes)


def _parse_teacher(
    row: Mapping[str, Any], index: int, base: Path, labels: LabelSpace
) -> TeacherSpec:
    where = f"teachers[{index}]"
    if not isinstance(row, Mapping):
        raise ConfigError(f"{where} must be a mapping")
    name = str(row.get("name", f"teacher{index}"))
    where = f"teacher {name!r}"
    role: Role = _choice(_need(row, "role", where), _ROLES, f"{where}.role")
    path = base / str(_need(row, "file", where))
    classes = _parse_classes(row, where, base)
    output = row.get("output", {}) or {}
    names = set(labels.names)
    class_map: dict[str, tuple[str, ...]] = {}
    road_channels: tuple[str, ...] = ()
    if role == "semantic" and not names.intersection(c for c in classes if c):
        raise ConfigError(f"{where}.classes name no class of the label space {labels.names}")
    if role == "road":
        road_channels = tuple(str(c) for c in _need(row, "road", where))
        missing = [c for c in road_channels if c not in classes]
        if missing:
            raise ConfigError(f"{where}.road names {missing}, not among its classes {classes}")
    if role == "detector":
        raw_map = _need(row, "class_map", where)
        if not isinstance(raw_map, Mapping) or not raw_map:
            raise ConfigError(f"{where}.class_map must map detector classes to label classes")
        for source, targets in raw_map.items():
            targets_list = [targets] if isinstance(targets, str) else list(targets)
            bad = [t for t in targets_list if t not in names]
            if str(source) not in classes:
                raise ConfigError(f"{where}.class_map names {source!r}, not a detector class")
            if bad or not targets_list:
                raise ConfigError(
                    f"{where}.class_map[{source!r}] names {bad or 'nothing'}; "
                    f"label classes: {labels.names}"
                )
            not_things = [t for t in targets_list if not labels.classes[labels.index(t)].is_thing]
            if not_things:
                raise ConfigError(f"{where}.class_map[{source!r}]: {not_things} are not things")
            class_map[str(source)] = tuple(targets_list)
    try:
        weight = float(row.get("weight", 1.0))
        strides = tuple(int(s) for s in output.get("strides", (8, 16, 32)))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {first_line(err)}") from err
    if weight <= 0:
        raise ConfigError(f"{where}.weight={weight} must be positive")
    return TeacherSpec(
        name=name,
        role=role,
        path=path,
        input=_parse_input(_need(row, "input", where), f"{where}.input"),
        classes=classes,
        output_kind=_choice(
            output.get("kind", "logits"), ("logits", "probabilities"), f"{where}.output.kind"
        ),
        output_layout=_choice(
            output.get("layout", "NCHW"), ("NCHW", "NHWC"), f"{where}.output.layout"
        ),
        weight=weight,
        road_channels=road_channels,
        class_map=class_map,
        strides=strides,
        sha256=str(row.get("sha256", "")),
    )


def read_teacher_specs(
    path: Path, labels: LabelSpace, teachers_dir: Path | None = None
) -> list[TeacherSpec]:
    """Read and check a teachers YAML file (files are not opened yet).

    Args:
        path: The YAML file with a ``teachers:`` list.
        labels: The label space the pseudo-labels are made in.
        teachers_dir: Folder the relative ``file`` entries are read from; default the
            YAML file's folder.

    Raises:
        ConfigError: The file is unreadable or a teacher entry is wrong (the message names
            the teacher and key); no semantic teacher is given; a file does not exist.
    """
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read teachers file {str(path)!r}: {first_line(err)}") from err
    rows = document.get("teachers") if isinstance(document, Mapping) else None
    if not isinstance(rows, list) or not rows:
        raise ConfigError(f"teachers file {str(path)!r} needs a non-empty 'teachers:' list")
    base = teachers_dir if teachers_dir is not None else path.parent
    specs = [_parse_teacher(row, i, base, labels) for i, row in enumerate(rows)]
    if not any(s.role == "semantic" for s in specs):
        raise ConfigError(f"teachers file {str(path)!r} has no teacher with role 'semantic'")
    if sum(s.role == "detector" for s in specs) > 1:
        raise ConfigError(f"teachers file {str(path)!r}: at most one detector is supported")
    for spec in specs:
        if not spec.path.is_file():
            raise ConfigError(
                f"teacher {spec.name!r}: file {str(spec.path)!r} does not exist; the open "
                "teachers are listed in config/teachers.yaml with their sources "
                "(pass --teachers-dir to the folder that holds them)"
            )
    return specs


# --- running teachers ----------------------------------------------------------------


class _OnnxTeacher:
    """An ONNX Runtime session with one input, fed by :class:`TeacherInput`."""

    def __init__(self, spec: TeacherSpec, threads: int) -> None:
        import onnxruntime as ort

        self.spec = spec
        self.sha256 = sha256_of(spec.path)
        if spec.sha256 and spec.sha256.lower() != self.sha256:
            raise ModelFileError(
                f"teacher {spec.name!r}: {str(spec.path)!r} has SHA-256 {self.sha256[:12]}..., "
                f"the teachers file expects {spec.sha256[:12]}...; is it another model?"
            )
        options = ort.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = threads
        try:
            self._session = ort.InferenceSession(
                str(spec.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own untyped errors
            raise ModelFileError(
                f"teacher {spec.name!r}: cannot load {str(spec.path)!r}: {first_line(err)}"
            ) from err
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ModelFileError(f"teacher {spec.name!r} has {len(inputs)} inputs; one is needed")
        self._input_name = str(inputs[0].name)

    def prepare(self, frame: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[Any], float]:
        """Frame [H, W, 3] uint8 RGB -> the input tensor and the letterbox scale (or 0)."""
        import cv2

        spec = self.spec.input
        height, width = frame.shape[:2]
        image = frame if spec.color == "RGB" else frame[:, :, ::-1]
        scale = 0.0
        if spec.resize == "stretch":
            resized = cv2.resize(image, (spec.width, spec.height), interpolation=cv2.INTER_LINEAR)
        else:
            scale = min(spec.height / height, spec.width / width)
            inner = (max(1, round(width * scale)), max(1, round(height * scale)))
            resized = np.full((spec.height, spec.width, 3), spec.pad_value, dtype=np.uint8)
            resized[: inner[1], : inner[0]] = cv2.resize(
                image, inner, interpolation=cv2.INTER_LINEAR
            )
        tensor: npt.NDArray[Any] = np.ascontiguousarray(resized)[None]  # [1, h, w, 3]
        if spec.dtype == "float32":
            tensor = (tensor.astype(np.float32) - spec.mean) / spec.std
        if spec.layout == "NCHW":
            tensor = np.ascontiguousarray(tensor.transpose(0, 3, 1, 2))  # [1, 3, h, w]
        return tensor, scale

    def run(self, tensor: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """Run the session; return its first output as float32."""
        try:
            output = self._session.run(None, {self._input_name: tensor})[0]
        except Exception as err:  # onnxruntime raises its own untyped errors
            raise ModelFileError(
                f"teacher {self.spec.name!r} failed on a frame: {first_line(err)}; does the "
                "input contract in the teachers file match the model?"
            ) from err
        return np.asarray(output, dtype=np.float32)


def _dense_hwc(output: npt.NDArray[np.float32], layout: str) -> npt.NDArray[np.float32]:
    """[1, C, h, w] or [1, h, w, C] -> [h, w, C]."""
    if output.ndim != 4:
        raise ModelFileError(f"dense teacher output has shape {output.shape}, not 4-D")
    dense = output[0] if layout == "NHWC" else output[0].transpose(1, 2, 0)
    return np.ascontiguousarray(dense)


def _softmax_last(scores: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    shifted: npt.NDArray[np.float32] = scores - scores.max(axis=-1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=-1, keepdims=True)
    return shifted


class SemanticTeacher(_OnnxTeacher):
    """Per-pixel class probabilities in the label space's order."""

    def __init__(self, spec: TeacherSpec, labels: LabelSpace, threads: int = 0) -> None:
        super().__init__(spec, threads)
        # Output channel -> label class index, or -1 (void: doubt mass).
        self._channel_class = np.array(
            [labels.index(c) if c in labels.names else -1 for c in spec.classes], dtype=np.int64
        )
        self._num_classes = labels.num_classes

    def probabilities(
        self, frame: npt.NDArray[np.uint8], *, flip: bool = False
    ) -> npt.NDArray[np.float32]:
        """Class probabilities at the teacher's resolution.

        Args:
            frame: [H, W, 3] uint8 RGB.
            flip: Also run the mirrored frame and average (test-time augmentation).

        Returns:
            [h, w, C] float32 probabilities over the label space's C classes; per pixel they
            sum to 1 minus the teacher's void/unknown mass.
        """
        probs = self._once(frame)
        if flip:
            mirrored = self._once(np.ascontiguousarray(frame[:, ::-1]))
            probs = 0.5 * (probs + mirrored[:, ::-1])
        return probs

    def _once(self, frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        tensor, _ = self.prepare(frame)
        dense = _dense_hwc(self.run(tensor), self.spec.output_layout)  # [h, w, K]
        if dense.shape[-1] != len(self.spec.classes):
            raise ModelFileError(
                f"teacher {self.spec.name!r} gives {dense.shape[-1]} channels, its classes list "
                f"{len(self.spec.classes)}"
            )
        if self.spec.output_kind == "logits":
            dense = _softmax_last(dense)
        out = np.zeros((*dense.shape[:2], self._num_classes), dtype=np.float32)
        for channel, target in enumerate(self._channel_class.tolist()):
            if target >= 0:
                out[:, :, target] += dense[:, :, channel]
        return out


class RoadTeacher(_OnnxTeacher):
    """Probability that a pixel is drivable road (road model, e.g. road/curb/mark)."""

    def __init__(self, spec: TeacherSpec, threads: int = 0) -> None:
        super().__init__(spec, threads)
        self._road = [spec.classes.index(c) for c in spec.road_channels]

    def road_probability(self, frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """[H, W, 3] uint8 RGB -> [h, w] float32 P(road) at the teacher's resolution."""
        tensor, _ = self.prepare(frame)
        dense = _dense_hwc(self.run(tensor), self.spec.output_layout)
        if self.spec.output_kind == "logits":
            dense = _softmax_last(dense)
        return np.ascontiguousarray(dense[:, :, self._road].sum(axis=-1))


@dataclass(frozen=True, slots=True)
class Detection:
    """One detector box in frame pixels.

    Attributes:
        box_xyxy: (x0, y0, x1, y1) float, exclusive right/bottom edges.
        score: Objectness x class score, 0..1.
        detector_class: The detector's class name (e.g. COCO ``car``).
        label_classes: Label-space class indices its pixels may have.
    """

    box_xyxy: tuple[float, float, float, float]
    score: float
    detector_class: str
    label_classes: tuple[int, ...]


class DetectorTeacher(_OnnxTeacher):
    """A YOLOX-style head: per anchor point (dx, dy, log w, log h, objectness, classes)."""

    def __init__(self, spec: TeacherSpec, labels: LabelSpace, threads: int = 0) -> None:
        super().__init__(spec, threads)
        if spec.input.resize != "letterbox":
            raise ConfigError(f"teacher {spec.name!r}: a detector's input.resize must be letterbox")
        self._mapped = {
            spec.classes.index(name): tuple(labels.index(t) for t in targets)
            for name, targets in spec.class_map.items()
        }
        grids, strides = [], []
        for stride in spec.strides:
            rows, cols = spec.input.height // stride, spec.input.width // stride
            ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
            grids.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
            strides.append(np.full(rows * cols, stride))
        self._grid = np.concatenate(grids).astype(np.float32)  # [A, 2] (x, y) cells
        self._stride = np.concatenate(strides).astype(np.float32)[:, None]  # [A, 1]

    def detect(self, frame: npt.NDArray[np.uint8], min_score: float) -> list[Detection]:
        """Boxes of mapped classes with score >= ``min_score`` in one frame (or tile).

        Args:
            frame: [H, W, 3] uint8 RGB.
            min_score: Smallest objectness x class score kept.

        Returns:
            Detections in ``frame``'s pixels, not yet suppressed (NMS is the caller's).
        """
        tensor, scale = self.prepare(frame)
        raw = self.run(tensor)
        if raw.ndim != 3 or raw.shape[1] != len(self._grid):
            raise ModelFileError(
                f"teacher {self.spec.name!r} gives {raw.shape}, expected [1, {len(self._grid)}, "
                f"{5 + len(self.spec.classes)}] for strides {self.spec.strides}"
            )
        head = raw[0]  # [A, 5 + K]
        centres = (head[:, :2] + self._grid) * self._stride
        sizes = np.exp(np.minimum(head[:, 2:4], 10.0)) * self._stride
        found: list[Detection] = []
        for channel, targets in self._mapped.items():
            scores = head[:, 4] * head[:, 5 + channel]
            for anchor in np.flatnonzero(scores >= min_score).tolist():
                cx, cy = centres[anchor] / scale
                w, h = sizes[anchor] / scale
                box = (
                    max(0.0, float(cx - w / 2)),
                    max(0.0, float(cy - h / 2)),
                    min(float(frame.shape[1]), float(cx + w / 2)),
                    min(float(frame.shape[0]), float(cy + h / 2)),
                )
                if box[2] > box[0] and box[3] > box[1]:
                    found.append(
                        Detection(
                            box, float(scores[anchor]), self.spec.classes[channel] or "", targets
                        )
                    )
        return found


@dataclass(frozen=True, slots=True)
class TeacherSet:
    """The loaded teachers of one pseudo-labelling run.

    Attributes:
        semantic: The segmentation ensemble (at least one).
        road: Road models (may be empty).
        detector: The detector, or None (then no instances: thing pixels become void).
    """

    semantic: tuple[SemanticTeacher, ...]
    road: tuple[RoadTeacher, ...]
    detector: DetectorTeacher | None

    def record(self) -> list[dict[str, Any]]:
        """Return what the dataset JSON records of each teacher: name, role, file, SHA-256."""
        teachers: list[_OnnxTeacher] = [*self.semantic, *self.road]
        if self.detector is not None:
            teachers.append(self.detector)
        return [
            {
                "name": t.spec.name,
                "role": t.spec.role,
                "file": str(t.spec.path),
                "sha256": t.sha256,
                "weight": t.spec.weight,
            }
            for t in teachers
        ]


def load_teachers(specs: Sequence[TeacherSpec], labels: LabelSpace, threads: int = 0) -> TeacherSet:
    """Open every teacher's ONNX session (onnxruntime is imported here).

    Raises:
        ModelFileError: A file cannot be loaded or has the wrong SHA-256.
    """
    semantic = tuple(SemanticTeacher(s, labels, threads) for s in specs if s.role == "semantic")
    road = tuple(RoadTeacher(s, threads) for s in specs if s.role == "road")
    detectors = [DetectorTeacher(s, labels, threads) for s in specs if s.role == "detector"]
    return TeacherSet(semantic, road, detectors[0] if detectors else None)
