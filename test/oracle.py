"""A fake network that reads the answer from its input: alignment checks without a model."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from panoptic_ros.backends.base import BackendBase
from panoptic_ros.contract import ModelMetadata
from panoptic_ros.labels import LabelSpace
from panoptic_ros.results import HeadOutputs

__all__ = ["OracleBackend", "oracle_labels"]


def oracle_labels(rgb: npt.NDArray[np.uint8], labels: LabelSpace) -> npt.NDArray[np.int64]:
    """The oracle's rule on [H, W, 3] RGB pixels: red > 127 road, green > 127 car, else building.

    A convex blend (bilinear resize) of pixels that all get one label gets that label too,
    so wherever a neighbourhood is uniform under this rule the prediction must be exact.
    """
    pixels = rgb.astype(np.int32)
    label = np.full(rgb.shape[:2], labels.index("building"), np.int64)
    label[pixels[..., 0] > 127] = labels.index("road")
    label[pixels[..., 1] > 127] = labels.index("car")
    return label


class OracleBackend(BackendBase):
    """A fake network that reads the answer from the letterboxed input it is given.

    Each stride-4 cell is labelled from the network pixel at its top-left corner: red
    > 127 -> road, green > 127 -> car, else building; the car gets one centre (the cell
    nearest the mean of its cells) and offsets pointing there. If the letterbox or the
    mapping back to camera pixels were off, the labels would land on the wrong pixels.
    """

    name = "oracle"
    device = "cpu"
    model_path = "oracle"

    def __init__(self, network_hw: tuple[int, int], labels: LabelSpace) -> None:
        self.input_hw = network_hw
        self.metadata = ModelMetadata(labels=labels, input_hw=network_hw)
        self.labels = labels
        self.calls = 0

    def infer(self, images: npt.NDArray[np.uint8]) -> HeadOutputs:
        self.calls += 1
        corner = images[0, ::4, ::4]  # [h, w, 3] network pixels
        h, w = corner.shape[:2]
        car = self.labels.index("car")
        label = oracle_labels(corner, self.labels)
        logits = np.full((1, self.labels.num_classes, h, w), -10.0, np.float32)
        np.put_along_axis(logits[0], label[None], 10.0, axis=0)
        heatmap = np.zeros((1, 1, h, w), np.float32)
        offsets = np.zeros((1, 2, h, w), np.float32)
        ys, xs = np.nonzero(label == car)
        if len(ys):
            centre = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)
            cy, cx = ys[centre], xs[centre]
            heatmap[0, 0, cy, cx] = 1.0
            grid_y, grid_x = np.mgrid[0:h, 0:w]
            offsets[0, 0] = (cy - grid_y) * 4.0
            offsets[0, 1] = (cx - grid_x) * 4.0
        return HeadOutputs(logits, heatmap, offsets)

    def close(self) -> None:
        pass
