"""Pseudo-labels out: a Cityscapes-format panoptic dataset that ``train`` and ``eval`` read.

Layout under the output folder ROOT for a split S (what ``read_cityscapes_panoptic`` reads):

* ``leftImg8bit/S/<source>/<id>_leftImg8bit.jpg`` (JPEG frames keep their original bytes)
  or ``.png`` (frames that were not JPEG, stored losslessly);
* ``gtFine/cityscapes_panoptic_S/<id>_gtFine_panoptic.png`` and
  ``gtFine/cityscapes_panoptic_S.json``;
* ``softTargets/S/<id>_probs.npy``: float16 [C, ceil(H/4), ceil(W/4)] teacher probabilities
  (when soft targets are kept);
* ``gtFine/pseudo_records_S/<id>.json``: one record per labelled frame (its image and
  annotation rows, where it came from, its counts), written last: a frame with a record
  is done, so a re-run skips it and an interrupted run loses at most the frame it was on.

The dataset JSON is assembled from the records at the end of every run and records the
sources, the teachers (file and SHA-256) and the settings. Every file is written to a
temporary name and renamed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from panoptic_ros.data.panoptic_format import (
    dataset_categories,
    panoptic_from_maps,
    write_panoptic_png,
)
from panoptic_ros.errors import ConfigError
from panoptic_ros.labels import LabelSpace
from panoptic_ros.pseudo.frames import Frame
from panoptic_ros.pseudo.labeller import PseudoLabel

__all__ = ["PseudoDatasetWriter", "frame_id"]

logger = logging.getLogger(__name__)

#: Version of the layout and record format; a resumed run must match it.
FORMAT_VERSION = 1


def frame_id(source: str, index: int) -> str:
    """Cityscapes-style id ``<source>_000000_<index:06d>`` (the source is the 'city')."""
    return f"{source}_000000_{index:06d}"


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.part")
    temporary.write_bytes(data)
    os.replace(temporary, path)


class PseudoDatasetWriter:
    """Writes frames and their labels; resumes where a run with the same settings stopped.

    Args:
        root: The dataset folder (created if missing).
        split: Split name (e.g. ``train``).
        labels: The label space of the labels.
        run_record: What makes this dataset: ``teachers`` (name, role, file, SHA-256) and
            ``settings``; a resumed run must have the same.

    Raises:
        ConfigError: ``root`` holds a split made with other teachers or settings.
    """

    def __init__(
        self, root: Path, split: str, labels: LabelSpace, run_record: Mapping[str, Any]
    ) -> None:
        if not split or "/" in split or split.startswith("."):
            raise ConfigError(f"split {split!r} must be a plain folder name, e.g. 'train'")
        self.root = root
        self.split = split
        self.labels = labels
        self.run_record = {"format": FORMAT_VERSION, **run_record}
        self.records_dir = root / "gtFine" / f"pseudo_records_{split}"
        self.png_dir = root / "gtFine" / f"cityscapes_panoptic_{split}"
        self.manifest = root / "gtFine" / f"pseudo_label_{split}.json"
        self._check_resumable()

    def _check_resumable(self) -> None:
        if not self.manifest.is_file():
            return
        try:
            previous = json.loads(self.manifest.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"cannot read {str(self.manifest)!r} to resume: {err}") from err
        wanted = json.loads(json.dumps(self.run_record))  # tuples -> lists, as stored
        if previous != wanted:
            differing = sorted(
                k for k in set(previous) | set(wanted) if previous.get(k) != wanted.get(k)
            )
            raise ConfigError(
                f"{str(self.root)!r} holds split {self.split!r} made with other "
                f"{'/'.join(differing)}; use a new output folder (nothing was changed)"
            )

    def start(self) -> None:
        """Create the folders and the run manifest (before the first frame)."""
        self.records_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.manifest, json.dumps(self.run_record, indent=1, sort_keys=True).encode())

    def is_done(self, source: str, index: int) -> bool:
        """True when this frame was labelled by an earlier (or this) run."""
        return (self.records_dir / f"{frame_id(source, index)}.json").is_file()

    def write(self, frame: Frame, label: PseudoLabel) -> str:
        """Write one frame, its panoptic PNG, soft targets and record; return its id."""
        import cv2

        image_id = frame_id(frame.source, frame.index)
        image_dir = self.root / "leftImg8bit" / self.split / frame.source
        if frame.encoded is not None:
            image_path = image_dir / f"{image_id}_leftImg8bit.jpg"
            _atomic_write(image_path, frame.encoded)
        else:
            ok, png = cv2.imencode(".png", np.ascontiguousarray(frame.image[:, :, ::-1]))
            if not ok:
                raise ConfigError(f"cannot encode frame {image_id} as PNG")
            image_path = image_dir / f"{image_id}_leftImg8bit.png"
            _atomic_write(image_path, png.tobytes())
        ids, segments = panoptic_from_maps(label.semantic, label.instances, self.labels)
        png_name = f"{image_id}_gtFine_panoptic.png"
        self.png_dir.mkdir(parents=True, exist_ok=True)
        temporary = self.png_dir / f".{png_name}.part.png"
        write_panoptic_png(temporary, ids)
        os.replace(temporary, self.png_dir / png_name)
        if label.soft is not None:
            soft_path = self.root / "softTargets" / self.split / f"{image_id}_probs.npy"
            soft_path.parent.mkdir(parents=True, exist_ok=True)
            temporary = soft_path.with_name(f".{soft_path.name}.part.npy")
            np.save(temporary, label.soft)
            os.replace(temporary, soft_path)
        height, width = label.semantic.shape
        stats = label.stats
        record = {
            "image": {
                "id": image_id,
                "file_name": str(image_path.relative_to(self.root)),
                "height": height,
                "width": width,
            },
            "annotation": {"image_id": image_id, "file_name": png_name, "segments_info": segments},
            "source": {"name": frame.source, "index": frame.index, **frame.provenance},
            "stats": {
                "void_fraction": round(float((label.semantic == 255).mean()), 4),
                "instances": stats.instances,
                "detections": stats.detections,
                "instances_per_class": stats.instances_per_class,
            },
        }
        _atomic_write(self.records_dir / f"{image_id}.json", json.dumps(record).encode())
        return image_id

    def finish(self, sources: list[dict[str, Any]]) -> Path:
        """Assemble the dataset JSON from every record of the split; return its path.

        Args:
            sources: This run's inputs (name, path, kind), merged with earlier runs'.
        """
        records = []
        for path in sorted(self.records_dir.glob("*.json")):
            records.append(json.loads(path.read_text(encoding="utf-8")))
        json_path = self.root / "gtFine" / f"cityscapes_panoptic_{self.split}.json"
        previous_sources: list[dict[str, Any]] = []
        if json_path.is_file():
            try:
                previous = json.loads(json_path.read_text(encoding="utf-8"))
                previous_sources = list(previous.get("pseudo_label", {}).get("sources", []))
            except (OSError, json.JSONDecodeError):
                previous_sources = []
        merged = {s["path"]: s for s in previous_sources}
        merged.update({s["path"]: s for s in sources})
        document: dict[str, Any] = {
            "images": [r["image"] for r in records],
            "annotations": [r["annotation"] for r in records],
            "categories": dataset_categories(self.labels),
            "pseudo_label": {
                **self.run_record,
                "sources": sorted(merged.values(), key=lambda s: s["path"]),
                "frames": [{"id": r["image"]["id"], **r["source"], **r["stats"]} for r in records],
            },
        }
        settings = self.run_record.get("settings", {})
        if settings.get("soft_stride"):
            document["soft_targets"] = {
                "folder": f"softTargets/{self.split}",
                "stride": settings["soft_stride"],
                "dtype": "float16",
                "classes": list(self.labels.names),
                "temperature": 1.0,
            }
        _atomic_write(json_path, json.dumps(document).encode())
        return json_path
