"""The stages of a frame, their clock and their statistics: one vocabulary for every report.

The node's diagnostics, ``replay``'s ``summary.json`` and ``bench``'s tables all name the
stages of :data:`STAGES` and mean the same work by each name:

* ``decode``: the image message to [H, W, 3] uint8 RGB;
* ``preprocess``: the letterbox into the network input (on CUDA: the upload and the
  letterbox on the device);
* ``inference``: the network (on CUDA including the wait for the device);
* ``fusion``: the heads to the panoptic result at camera resolution;
* ``tracking``: persistent object ids;
* ``overlay``: the BGR picture of the result (only when the overlay is wanted);
* ``messages``: building the output messages (only those wanted).

What a tool does with the messages afterwards (the node publishes them, ``replay``
serialises and writes them) is outside these stages and reported under its own name.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

__all__ = ["STAGES", "StageStats", "ms_since"]

#: The timed stages of one frame, in the order they run.
STAGES: Final = (
    "decode",
    "preprocess",
    "inference",
    "fusion",
    "tracking",
    "overlay",
    "messages",
)


def ms_since(start_ns: int) -> float:
    """Milliseconds on the monotonic performance clock since ``start_ns``.

    Args:
        start_ns: A ``time.perf_counter_ns()`` reading.
    """
    return (time.perf_counter_ns() - start_ns) / 1e6


@dataclass(frozen=True, slots=True)
class StageStats:
    """Milliseconds of one stage over many frames: median, 99th percentile and mean."""

    p50_ms: float
    p99_ms: float
    mean_ms: float

    @classmethod
    def of(cls, values_ms: Sequence[float]) -> StageStats:
        """Summarise per-frame milliseconds (all zero when there are none)."""
        if not values_ms:
            return cls(0.0, 0.0, 0.0)
        values = np.asarray(values_ms, dtype=np.float64)
        p50, p99 = np.percentile(values, [50.0, 99.0])
        return cls(float(p50), float(p99), float(values.mean()))
