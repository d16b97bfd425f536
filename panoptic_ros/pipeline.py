"""The one object shared by the node, replay, demo and bench: message -> FrameResult.

decode (codec) -> letterbox (geometry) -> backend (network heads) -> fusion (panoptic
result at camera resolution). Every stage is timed on a monotonic clock.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt

from panoptic_ros.backends.base import Backend, DeviceBackend, FusedBackend, create_backend
from panoptic_ros.codec import decode_image
from panoptic_ros.config import Config
from panoptic_ros.errors import BackendError
from panoptic_ros.fusion import FusionParams, cells_to_frame, fuse_panoptic
from panoptic_ros.geometry import Letterbox
from panoptic_ros.labels import LabelSpace
from panoptic_ros.render import render_overlay
from panoptic_ros.results import FrameResult, StageTimings
from panoptic_ros.timing import ms_since

__all__ = ["PanopticPipeline"]

logger = logging.getLogger(__name__)

#: Camera size from which the stride-4 maps are expanded on the device rather than the host
#: (below it the copies cost more than the host expansion; measured in docs/BENCHMARKS.md,
#: "NVIDIA H100", ``benchmarks/upsample_ab.py``).
DEVICE_UPSAMPLE_MIN_PIXELS = 1_000_000


class _DeviceClock:
    """Device-side time of a stage from CUDA events; nothing to wait for off CUDA.

    Host stages keep the monotonic clock; on CUDA, the wait at the end of a stage makes
    that clock include the queued device work, and the events say how much of it was the
    device's own time.
    """

    def __init__(self, device: Any) -> None:
        import torch

        self._torch = torch
        self._device = torch.device(device)
        self._cuda = self._device.type == "cuda"
        self._events: Any = None

    def start(self) -> None:
        """Mark the start of the stage on the current stream."""
        if self._cuda:
            event = self._torch.cuda.Event
            begin = event(enable_timing=True)  # type: ignore[no-untyped-call]
            begin.record()
            self._events = (begin, event(enable_timing=True))  # type: ignore[no-untyped-call]

    def stop(self) -> float:
        """Wait for the device; return its time since :meth:`start` in ms (0 off CUDA)."""
        if not self._cuda:
            return 0.0
        begin, end = self._events
        end.record()
        end.synchronize()
        return float(begin.elapsed_time(end))

    def synchronize(self) -> None:
        """Wait for the work queued on the device."""
        if self._cuda:
            self._torch.cuda.synchronize(self._device)


class PanopticPipeline:
    """Runs one camera frame through decode, letterbox, network and fusion.

    Args:
        backend: A ready inference backend (owned by the pipeline: closed with it).
        labels: The label space with the drivable classes chosen.
        fusion: Fusion thresholds.
    """

    def __init__(
        self, backend: Backend, labels: LabelSpace, fusion: FusionParams, *, gpu_fusion: bool = True
    ) -> None:
        self.backend = backend
        self.labels = labels
        self.fusion = fusion
        # Fuse on the device when the backend hands its heads over as device tensors (torch
        # on CUDA; TensorRT with torch-owned buffers): only the stride-4 maps then cross to
        # the host. A fused-contract model has no heads to hand over.
        self._fused_backend: FusedBackend | None = None
        self._device_backend: DeviceBackend | None = None
        if backend.fused:
            if not isinstance(backend, FusedBackend):
                raise BackendError(f"backend {backend.name} says fused but has no infer_fused")
            self._fused_backend = backend
        elif gpu_fusion and backend.device_outputs:
            if not isinstance(backend, DeviceBackend):
                raise BackendError(
                    f"backend {backend.name} says device_outputs but has no infer_tensors"
                )
            self._device_backend = backend
        self.device_fusion = self._device_backend is not None
        self.network_hw = backend.input_hw
        self.stride = backend.metadata.output_stride
        self._letterboxes: dict[tuple[int, int], Letterbox] = {}
        # One reusable network-input buffer: letterboxing writes into it in place.
        self._input = np.zeros((1, *self.network_hw, 3), dtype=np.uint8)
        self._device_input: Any = None
        self._device_frame: tuple[npt.NDArray[np.uint8], Any] | None = None
        self._device_upsamplers: dict[Letterbox, Any] = {}

    @classmethod
    def from_config(cls, config: Config) -> PanopticPipeline:
        """Build the backend named by ``config`` and the pipeline around it.

        Raises:
            ConfigError: A drivable class the model does not have, or a bad network size.
            ModelFileError: The model file is missing or invalid.
            BackendError: No backend could start.
        """
        backend = create_backend(config.model, config.backend)
        try:
            labels = backend.metadata.labels.with_drivable(config.labels.drivable_classes)
        except Exception:
            backend.close()
            raise
        return cls(
            backend,
            labels,
            FusionParams.from_config(config.fusion),
            gpu_fusion=config.backend.gpu_fusion,
        )

    def describe(self) -> str:
        """One line for logs: backend, device, precision, model, network size."""
        meta = self.backend.metadata
        path = self.backend.model_path
        upsample = "nearest" if self.backend.fused else self.fusion.upsample
        return (
            f"backend={self.backend.name} device={self.backend.device} precision={meta.precision} "
            f"model={path} network={self.network_hw[0]}x{self.network_hw[1]} "
            f"fusion={'device' if self.device_fusion else 'host'} "
            f"upsample={upsample} "
            f"classes={meta.labels.num_classes} drivable="
            f"{','.join(self.labels.names[i] for i in self.labels.drivable) or '-'}"
        )

    def letterbox_for(self, image_hw: tuple[int, int]) -> Letterbox:
        """Return the (cached) letterbox of a camera size onto the network input."""
        box = self._letterboxes.get(image_hw)
        if box is None:
            box = Letterbox.fit(image_hw, self.network_hw)
            self._letterboxes[image_hw] = box
        return box

    def process(self, image: npt.NDArray[np.uint8], *, decode_ms: float = 0.0) -> FrameResult:
        """Segment one [H, W, 3] uint8 RGB camera image.

        Returns:
            The panoptic result at the image's resolution with per-stage timings.
        """
        timings = StageTimings(decode_ms=decode_ms)
        start = time.perf_counter_ns()
        letterbox = self.letterbox_for((int(image.shape[0]), int(image.shape[1])))
        if self._device_backend is not None:
            return self._process_on_device(self._device_backend, image, letterbox, timings)
        letterbox.apply(image, out=self._input[0])
        timings.preprocess_ms = ms_since(start)
        if self._fused_backend is not None:
            return self._process_fused(self._fused_backend, letterbox, timings)

        start = time.perf_counter_ns()
        heads = self.backend.infer(self._input)
        timings.inference_ms = ms_since(start)

        start = time.perf_counter_ns()
        result = fuse_panoptic(heads, letterbox, self.labels, self.fusion, stride=self.stride)
        non_finite = sum(
            int(np.count_nonzero(~np.isfinite(head[:1])))
            for head in (heads.semantic_logits, heads.center_heatmap, heads.offsets)
        )
        timings.fusion_ms = ms_since(start)
        return replace(result, timings=timings, non_finite_outputs=non_finite)

    def _process_on_device(
        self,
        backend: DeviceBackend,
        image: npt.NDArray[np.uint8],
        letterbox: Letterbox,
        timings: StageTimings,
    ) -> FrameResult:
        """The frame goes to the device once: letterbox, network and fusion run there."""
        import torch

        from panoptic_ros.device_ops import DeviceUpsampler, letterbox_on_device, upload_frame
        from panoptic_ros.fusion.torch_fusion import fuse_cells_torch, refine_pixels_torch

        start = time.perf_counter_ns()
        device = self.backend.device
        frame = upload_frame(image, device)
        if self._device_input is None or self._device_input.device != frame.device:
            self._device_input = torch.zeros(
                (1, *self.network_hw, 3), dtype=torch.uint8, device=frame.device
            )
        letterbox_on_device(frame, letterbox, self._device_input)
        self._device_frame = (image, frame)  # reused by render() for the overlay
        clock = _DeviceClock(frame.device)
        clock.synchronize()
        timings.preprocess_ms = ms_since(start)

        start = time.perf_counter_ns()
        clock.start()
        logits, heatmap, offsets = backend.infer_tensors(self._device_input)
        # Waiting here keeps the network's device time in inference, not fusion.
        timings.inference_device_ms = clock.stop()
        timings.inference_ms = ms_since(start)
        start = time.perf_counter_ns()
        cells = fuse_cells_torch(
            logits[:1],
            heatmap[:1],
            offsets[:1],
            self.labels,
            self.fusion,
            valid_hw=letterbox.valid_cells_hw(self.stride),
            stride=self.stride,
        )
        upsampler = self._device_upsamplers.get(letterbox)
        if upsampler is None and image.shape[0] * image.shape[1] >= DEVICE_UPSAMPLE_MIN_PIXELS:
            upsampler = DeviceUpsampler(letterbox, frame.device, self.stride)
            self._device_upsamplers[letterbox] = upsampler
        refined = None
        if self.fusion.upsample == "bilinear":
            refined = refine_pixels_torch(
                logits[:1], cells, letterbox, self.labels, stride=self.stride
            )
        result = cells_to_frame(
            cells, letterbox, self.labels, stride=self.stride, upsample=upsampler, refined=refined
        )
        non_finite = int(
            torch.stack([(~torch.isfinite(h[:1])).sum() for h in (logits, heatmap, offsets)])
            .sum()
            .item()
        )
        timings.fusion_ms = ms_since(start)
        return replace(result, timings=timings, non_finite_outputs=non_finite)

    def _process_fused(
        self, backend: FusedBackend, letterbox: Letterbox, timings: StageTimings
    ) -> FrameResult:
        """A model with the fusion folded in: only the mapping to camera pixels is left.

        Such a model outputs stride-4 maps and no class scores, so its maps are always
        expanded by nearest neighbour (``fusion.upsample`` does not apply).
        """
        from panoptic_ros.fusion.fused_outputs import cells_from_fused

        start = time.perf_counter_ns()
        semantic, instance, table, count = backend.infer_fused(self._input)
        timings.inference_ms = ms_since(start)
        start = time.perf_counter_ns()
        cells = cells_from_fused(
            semantic[0],
            instance[0],
            table[0],
            count[0],
            valid_hw=letterbox.valid_cells_hw(self.stride),
        )
        result = cells_to_frame(cells, letterbox, self.labels, stride=self.stride)
        timings.fusion_ms = ms_since(start)
        return replace(result, timings=timings)

    def render(
        self,
        image: npt.NDArray[np.uint8],
        result: FrameResult,
        *,
        alpha: float = 0.5,
        draw_boxes: bool = True,
    ) -> npt.NDArray[np.uint8]:
        """The BGR overlay of ``result`` over ``image``; on the device when the frame is there.

        Returns:
            [H, W, 3] uint8 BGR.
        """
        cached = self._device_frame
        if cached is not None and cached[0] is image:
            from panoptic_ros.device_ops import render_overlay_on_device

            return render_overlay_on_device(
                cached[1], result, self.labels, alpha=alpha, draw_boxes=draw_boxes
            )
        return render_overlay(image, result, self.labels, alpha=alpha, draw_boxes=draw_boxes)

    def decode(self, msg: Any) -> tuple[npt.NDArray[np.uint8], float]:
        """Decode an Image or CompressedImage message; returns (RGB image, milliseconds).

        Raises:
            CodecError: The message cannot be decoded.
        """
        start = time.perf_counter_ns()
        image = decode_image(msg)
        return image, ms_since(start)

    def process_message(self, msg: Any) -> tuple[npt.NDArray[np.uint8], FrameResult]:
        """Decode and segment one message; returns (RGB image, result).

        Raises:
            CodecError: The message cannot be decoded.
            BackendError: Inference failed.
        """
        image, decode_ms = self.decode(msg)
        return image, self.process(image, decode_ms=decode_ms)

    def close(self) -> None:
        """Close the backend."""
        self.backend.close()

    def __enter__(self) -> PanopticPipeline:
        """Return self."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the pipeline."""
        self.close()
