"""The bundled sample bag: short synthetic drives as a JPEG camera topic.

``samples/synthetic_street`` is what :func:`write_sample_bag` writes (run
``python -m panoptic_ros.data.sample_bag samples/synthetic_street`` to rebuild it). Each
drive renders one synthetic scene at twice the camera size and zooms towards the vanishing
area frame by frame, so objects persist and grow as if the car drove forward: the object
ids of the replay then have something to follow. Seeds are from the held-out range, so the
bundled models (the default and the synthetic one) have never seen these scenes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import cv2
import numpy as np
import numpy.typing as npt

from panoptic_ros.data.synthetic import HELD_OUT_SEED_START, generate_scene

__all__ = ["SAMPLE_FRAME_HW", "SAMPLE_TOPIC", "sample_frames", "write_sample_bag"]

SAMPLE_TOPIC: Final = "/camera/image_raw/compressed"
SAMPLE_FRAME_HW: Final = (540, 960)
SAMPLE_FRAME_ID: Final = "camera_front_optical_frame"
DRIVE_SEEDS: Final = (HELD_OUT_SEED_START + 500, HELD_OUT_SEED_START + 501)
FRAMES_PER_DRIVE: Final = 8


def sample_frames(
    frame_hw: tuple[int, int] = SAMPLE_FRAME_HW, frames_per_drive: int = FRAMES_PER_DRIVE
) -> Iterator[npt.NDArray[np.uint8]]:
    """Yield [H, W, 3] uint8 RGB frames of the sample drives."""
    height, width = frame_hw
    for seed in DRIVE_SEEDS:
        scene = generate_scene(seed, 2 * height, 2 * width).image
        for step in range(frames_per_drive):
            # Crop shrinks from the full frame to 70% around a point near the horizon.
            scale = 1.0 - 0.3 * step / max(frames_per_drive - 1, 1)
            crop_h, crop_w = int(2 * height * scale), int(2 * width * scale)
            top = int((2 * height - crop_h) * 0.55)
            left = (2 * width - crop_w) // 2
            crop = scene[top : top + crop_h, left : left + crop_w]
            yield cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)


def write_sample_bag(path: Path) -> Path:
    """Write the sample bag (MCAP, CompressedImage JPEG q85, 10 Hz) to ``path``."""
    from panoptic_ros.bags import write_image_bag

    return write_image_bag(
        path,
        sample_frames(),
        topic=SAMPLE_TOPIC,
        compressed="jpeg",
        quality=85,
        frame_id=SAMPLE_FRAME_ID,
        period_ns=100_000_000,
    )


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "samples/synthetic_street")
    print(f"wrote {write_sample_bag(target)}")
