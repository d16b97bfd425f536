"""Pre- and post-processing on the GPU (torch): the frame goes to the device once.

:func:`letterbox_on_device` resizes the uploaded uint8 frame into the network input there
(bilinear, half-pixel centres like ``cv2.INTER_LINEAR``; values may differ from OpenCV's
fixed-point arithmetic by one grey level). :func:`render_overlay_on_device` draws the
panoptic overlay from the same uploaded frame and the result's maps and brings back only the
finished BGR picture; boxes and labels are then drawn on the host (a few hundred pixels of
text). Both give what :mod:`panoptic_ros.geometry` and :mod:`panoptic_ros.render` give on
the CPU (tested on CPU tensors), so the node and replay can use either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from panoptic_ros.geometry import Letterbox
from panoptic_ros.labels import IGNORE_INDEX, LabelSpace
from panoptic_ros.render import _instance_tints, draw_instance_boxes
from panoptic_ros.results import FrameResult

if TYPE_CHECKING:
    import torch

__all__ = [
    "DeviceUpsampler",
    "letterbox_on_device",
    "render_overlay_on_device",
    "upload_frame",
]


def upload_frame(image: npt.NDArray[np.uint8], device: Any) -> torch.Tensor:
    """[H, W, 3] uint8 host image -> the same on ``device`` (one copy, page-locked staging)."""
    import torch

    host = torch.from_numpy(np.ascontiguousarray(image))
    if torch.device(device).type == "cuda":
        host = host.pin_memory()
    return host.to(device, non_blocking=True)


def letterbox_on_device(
    frame: torch.Tensor, letterbox: Letterbox, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Scale a device frame into the top-left of a zero-padded network input.

    Args:
        frame: [H, W, 3] uint8 RGB on the device, H, W = ``letterbox.image_hw``.
        letterbox: The mapping.
        out: Optional [1, h_net, w_net, 3] uint8 buffer on the same device.

    Returns:
        [1, h_net, w_net, 3] uint8 RGB network input.
    """
    import torch
    import torch.nn.functional as F

    nh, nw = letterbox.network_hw
    rh, rw = letterbox.resized_hw
    if out is None:
        out = torch.zeros((1, nh, nw, 3), dtype=torch.uint8, device=frame.device)
    else:
        out[:, rh:].zero_()
        out[:, :rh, rw:].zero_()
    if (rh, rw) == letterbox.image_hw:
        out[0, :rh, :rw] = frame
        return out
    planar = frame.permute(2, 0, 1)[None].float()
    resized = F.interpolate(planar, size=(rh, rw), mode="bilinear", align_corners=False)
    out[0, :rh, :rw] = resized[0].permute(1, 2, 0).round_().clamp_(0, 255).to(torch.uint8)
    return out


def render_overlay_on_device(
    frame: torch.Tensor,
    result: FrameResult,
    labels: LabelSpace,
    *,
    alpha: float = 0.5,
    draw_boxes: bool = True,
) -> npt.NDArray[np.uint8]:
    """The overlay of :func:`panoptic_ros.render.render_overlay`, blended on the device.

    Args:
        frame: [H, W, 3] uint8 RGB camera image on the device.
        result: The frame's result (host arrays, same H, W).
        labels: Label space (colours, names).
        alpha: Weight of the panoptic colours.
        draw_boxes: Draw boxes and labels (on the host, after the download).

    Returns:
        [H, W, 3] uint8 BGR on the host.
    """
    import torch

    device = frame.device
    semantic = torch.from_numpy(result.semantic).to(device, non_blocking=True).long()
    table = torch.from_numpy(labels.color_table()).to(device)
    colours = table[semantic].to(torch.int16)
    if result.instances:
        ids = torch.from_numpy(result.instance_ids.astype(np.int32)).to(device).long()
        keys = [inst.track_id or inst.index for inst in result.instances]
        tints = np.zeros((len(result.instances) + 1, 3), dtype=np.int16)
        tints[1:] = _instance_tints(keys)
        colours = (colours + torch.from_numpy(tints).to(device)[ids]).clamp_(0, 255)
    colours = colours.to(torch.uint8)
    void = (semantic == IGNORE_INDEX)[..., None]
    colours = torch.where(void, frame, colours)
    # Same rounding as cv2.addWeighted: saturate(round(a * x + b * y)).
    blended = (frame.float() * (1.0 - alpha) + colours.float() * alpha).round_().clamp_(0, 255)
    overlay = blended.to(torch.uint8).flip(-1)  # RGB -> BGR
    if result.instances:
        edge = torch.zeros_like(ids, dtype=torch.bool)
        edge[:, :-1] |= ids[:, :-1] != ids[:, 1:]
        edge[:-1, :] |= ids[:-1, :] != ids[1:, :]
        edge &= ids > 0
        overlay[edge] = 255
    host = np.ascontiguousarray(overlay.cpu().numpy())
    if draw_boxes:
        draw_instance_boxes(host, result, labels)
    return host


class DeviceUpsampler:
    """Nearest-neighbour cell map -> camera map on the device (``cells_to_frame(upsample=)``).

    The small cell map goes up, the camera-sized map comes back: at 2 megapixels this
    replaces host gathers by one device gather and one copy.

    Args:
        letterbox: Camera-to-network mapping whose cell grid is used.
        device: torch device.
        stride: Output stride.
    """

    def __init__(self, letterbox: Letterbox, device: Any, stride: int = 4) -> None:
        import torch

        grid = letterbox.cell_grid(stride)
        self._rows = torch.from_numpy(grid.rows).to(device)
        self._cols = torch.from_numpy(grid.cols).to(device)
        self._device = device

    def __call__(self, cells: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """[h, w] cell map (uint8/uint16/int32) -> [H, W] camera map, same dtype."""
        import torch

        dtype = cells.dtype
        source = torch.from_numpy(np.ascontiguousarray(cells.astype(np.int32, copy=False)))
        on_device = source.to(self._device, non_blocking=True)
        expanded = on_device.index_select(1, self._cols).index_select(0, self._rows)
        narrow = torch.uint8 if dtype == np.uint8 else torch.int32
        return np.asarray(expanded.to(narrow).cpu().numpy(), dtype=dtype)
