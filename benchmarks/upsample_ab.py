"""Host vs device expansion of the stride-4 maps to camera pixels (one run, same cells).

python benchmarks/upsample_ab.py        # on a CUDA machine; prints ms per frame
"""

from __future__ import annotations

import time

import numpy as np
import torch

from panoptic_ros.device_ops import DeviceUpsampler
from panoptic_ros.fusion import CellPanoptic, cells_to_frame
from panoptic_ros.geometry import Letterbox
from panoptic_ros.labels import CITYSCAPES


def main() -> None:
    """Time the host and device map expansion; print the figures."""
    labels = CITYSCAPES.with_drivable(["road"])
    rng = np.random.default_rng(0)
    for camera in ((540, 960), (1024, 2048)):
        box = Letterbox.fit(camera, (256, 512))
        rows, cols = box.valid_cells_hw(4)
        instances = np.zeros((rows, cols), np.int32)
        for k in range(1, 11):
            instances[k * 5 : k * 5 + 4, k * 10 : k * 10 + 8] = k
        cells = CellPanoptic(
            rng.integers(0, 19, (rows, cols)).astype(np.uint8),
            instances,
            np.full(10, 13, np.int64),
            np.full(10, 0.5, np.float32),
            np.zeros((10, 2), np.int64),
        )
        device = DeviceUpsampler(box, "cuda")
        for name, upsample in (("host", None), ("device", device)):
            for _ in range(5):
                cells_to_frame(cells, box, labels, upsample=upsample)
            torch.cuda.synchronize()
            times = []
            for _ in range(50):
                start = time.perf_counter()
                cells_to_frame(cells, box, labels, upsample=upsample)
                times.append((time.perf_counter() - start) * 1000)
            print(
                f"{camera[0]}x{camera[1]} {name:6s} p50 {np.median(times):.2f} ms  "
                f"p99 {np.percentile(times, 99):.2f} ms"
            )


if __name__ == "__main__":
    main()
