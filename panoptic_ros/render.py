"""Pictures for people: the colourised panoptic overlay (RViz, videos, the demo).

Instances get their class colour shifted by a per-object tint so neighbouring cars stay
distinguishable, and a white outline; boxes carry "class id score" labels.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from panoptic_ros.labels import IGNORE_INDEX, LabelSpace
from panoptic_ros.results import FrameResult

__all__ = ["colorize_panoptic", "draw_instance_boxes", "render_overlay"]


def _instance_tints(keys: list[int]) -> npt.NDArray[np.int16]:
    """[len(keys), 3] int16 RGB tints of the given object ids.

    Deterministic, well-spread tints (golden-ratio hue steps) so colours are stable per id.
    Computed for the ids present only: track ids grow for as long as the node runs, and a
    table up to the largest id made every frame slower and bigger over hours of uptime.
    """
    steps = ((np.asarray(keys, dtype=np.float64) + 1) * 0.618033988749895) % 1.0
    tints = np.stack(
        [
            np.cos(2 * np.pi * steps),
            np.cos(2 * np.pi * (steps + 1 / 3)),
            np.cos(2 * np.pi * (steps + 2 / 3)),
        ],
        axis=1,
    )
    return (tints * 60).astype(np.int16)


def colorize_panoptic(result: FrameResult, labels: LabelSpace) -> npt.NDArray[np.uint8]:
    """Return [H, W, 3] uint8 RGB: class colours, instances tinted per object, void black."""
    colors = labels.color_table()
    image = colors[result.semantic]
    if result.instances:
        ids = result.instance_ids
        # Tint by track id when a tracker ran, so an object keeps its colour across frames.
        keys = [inst.track_id or inst.index for inst in result.instances]
        tints = np.zeros((len(result.instances) + 1, 3), dtype=np.int16)
        tints[1:] = _instance_tints(keys)
        mask = ids > 0
        image[mask] = np.clip(image[mask].astype(np.int16) + tints[ids[mask]], 0, 255).astype(
            np.uint8
        )
    return image


def render_overlay(
    image_rgb: npt.NDArray[np.uint8],
    result: FrameResult,
    labels: LabelSpace,
    *,
    alpha: float = 0.5,
    draw_boxes: bool = True,
) -> npt.NDArray[np.uint8]:
    """Blend the panoptic colours over the camera image.

    Args:
        image_rgb: [H, W, 3] uint8 RGB camera image the result belongs to.
        result: The frame's panoptic result (same H, W).
        labels: Label space of the model (colours, names).
        alpha: Weight of the panoptic colours (0 = camera only, 1 = colours only).
        draw_boxes: Draw each instance's box and "class #id score" label.

    Returns:
        [H, W, 3] uint8 **BGR** image (the ``bgr8`` overlay topic and OpenCV video writers
        take BGR).
    """
    bgr = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    # Class colours through a lookup table (cv2.LUT is several times faster than fancy
    # indexing at 2 megapixels); void gets the camera pixel itself, so it blends to itself.
    table = np.ascontiguousarray(labels.color_table()[:, ::-1]).reshape(256, 1, 3)
    colors = cv2.LUT(cv2.merge([result.semantic] * 3), table)
    if result.instances:
        ids = result.instance_ids
        keys = [inst.track_id or inst.index for inst in result.instances]
        tints = np.zeros((len(result.instances) + 1, 3), dtype=np.int16)
        tints[1:] = _instance_tints(keys)[:, ::-1]
        mask = ids > 0
        colors[mask] = np.clip(colors[mask].astype(np.int16) + tints[ids[mask]], 0, 255).astype(
            np.uint8
        )
    void = (result.semantic == IGNORE_INDEX).view(np.uint8)
    cv2.copyTo(bgr, void, colors)
    overlay = cv2.addWeighted(bgr, 1.0 - alpha, colors, alpha, 0.0)
    if result.instances:
        # Instance outlines: pixels whose right or lower neighbour belongs to another id.
        ids = result.instance_ids
        edge = np.zeros(ids.shape, dtype=bool)
        edge[:, :-1] |= ids[:, :-1] != ids[:, 1:]
        edge[:-1, :] |= ids[:-1, :] != ids[1:, :]
        edge &= ids > 0
        overlay[edge] = (255, 255, 255)
    if draw_boxes:
        draw_instance_boxes(overlay, result, labels)
    return overlay


def draw_instance_boxes(
    overlay_bgr: npt.NDArray[np.uint8], result: FrameResult, labels: LabelSpace
) -> None:
    """Draw each instance's box and "class #id score" label into a BGR image, in place."""
    scale = max(0.4, min(overlay_bgr.shape[:2]) / 900.0)
    thickness = max(1, round(scale * 2))
    for inst in result.instances:
        x0, y0, x1, y1 = inst.bbox_xyxy
        r, g, b = labels.classes[inst.class_id].color_rgb
        cv2.rectangle(overlay_bgr, (x0, y0), (x1, y1), (b, g, r), thickness)
        ident = inst.track_id or inst.index
        text = f"{inst.class_name} #{ident} {inst.score:.2f}"
        cv2.putText(
            overlay_bgr,
            text,
            (x0, max(0, y0 - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale * 0.5,
            (255, 255, 255),
            max(1, thickness - 1),
            cv2.LINE_AA,
        )
