"""Per-camera health for /diagnostics: rates, drops, latency percentiles, stages, levels.

All times are monotonic nanoseconds (``time.monotonic_ns``) so the figures stay right under
sim time and clock jumps. Latency runs from the message's receipt to the publication of
its outputs; the age of the header stamp is reported separately, because under sim time
without /clock it says nothing about the node. The median time of each stage of a frame
is reported under the stage names of every report (:data:`panoptic_ros.timing.STAGES`).
"""

from __future__ import annotations

import collections
import enum
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from panoptic_ros.timing import STAGES, StageStats

__all__ = ["CameraHealth", "CameraStats", "HealthLevel", "HealthThresholds", "LogThrottle"]

_NS_PER_S = 1_000_000_000


class HealthLevel(enum.IntEnum):
    """diagnostic_msgs/DiagnosticStatus levels."""

    OK = 0
    WARN = 1
    ERROR = 2
    STALE = 3


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    """When a camera's status turns WARN or ERROR (from ``node.*`` parameters)."""

    latency_warn_ms: float = 250.0
    latency_error_ms: float = 1000.0
    input_timeout_s: float = 2.0
    drop_ratio_warn: float = 0.5


@dataclass(frozen=True, slots=True)
class CameraHealth:
    """One camera's status over the last window, ready for a DiagnosticStatus.

    Attributes:
        level: Worst condition found.
        message: One line saying why (``"ok"`` when all is well).
        values: Ordered (key, value) pairs for DiagnosticStatus.values.
    """

    level: HealthLevel
    message: str
    values: tuple[tuple[str, str], ...]


class CameraStats:
    """Counts and timings of one camera over a sliding window.

    Args:
        window_s: Rates and percentiles cover the last this many seconds.
        max_samples: Cap on stored latency samples (memory stays bounded at any rate).
    """

    def __init__(self, window_s: float = 5.0, max_samples: int = 1024) -> None:
        self.window_ns = int(window_s * _NS_PER_S)
        self._inputs: collections.deque[int] = collections.deque(maxlen=max_samples)
        self._outputs: collections.deque[tuple[int, float, float]] = collections.deque(
            maxlen=max_samples
        )
        # (publication time, stage -> ms) of the published frames.
        self._stages: collections.deque[tuple[int, Mapping[str, float]]] = collections.deque(
            maxlen=max_samples
        )
        self.received_total = 0
        self.processed_total = 0
        self.dropped_total = 0
        self.errors_total = 0
        self.errors_by_kind: collections.Counter[str] = collections.Counter()
        self.last_error = ""
        self.last_input_ns: int | None = None
        self.started_ns: int | None = None
        # Monotonic times of problems (frames lost or not), to grade only the recent ones.
        self._problems: collections.deque[int] = collections.deque(maxlen=max_samples)
        # (time, received_total, dropped_total) at each health() call: the drop share of
        # the window, so a burst long past does not keep the camera at WARN.
        self._totals: collections.deque[tuple[int, int, int]] = collections.deque(maxlen=256)

    def record_input(self, received_ns: int) -> None:
        """A message arrived (before the mailbox decides whether it is dropped)."""
        self.received_total += 1
        self._inputs.append(received_ns)
        self.last_input_ns = received_ns
        if self.started_ns is None:
            self.started_ns = received_ns

    def record_drops(self, dropped_total: int) -> None:
        """The mailbox's running count of superseded frames."""
        self.dropped_total = dropped_total

    def record_output(
        self,
        received_ns: int,
        published_ns: int,
        stamp_age_ms: float,
        stages_ms: Mapping[str, float] | None = None,
    ) -> None:
        """Outputs of a frame were published.

        Args:
            received_ns: Monotonic receipt time of the input message.
            published_ns: Monotonic time after the last publish call.
            stamp_age_ms: ROS now minus the header stamp, in ms (NaN when unknown).
            stages_ms: The frame's time per stage (names of
                :data:`panoptic_ros.timing.STAGES`), if known.
        """
        self.processed_total += 1
        latency_ms = (published_ns - received_ns) / 1e6
        self._outputs.append((published_ns, latency_ms, stamp_age_ms))
        if stages_ms is not None:
            self._stages.append((published_ns, stages_ms))

    def record_error(
        self, kind: str, message: str, *, now_ns: int, frame_lost: bool = True
    ) -> None:
        """A problem with a frame (bad encoding, backend failure, non-finite outputs ...).

        Args:
            kind: Short name, reported as ``errors_<kind>``.
            message: One line saying what went wrong.
            now_ns: Monotonic time of the problem.
            frame_lost: False when the frame was still published (counted in
                ``errors_<kind>`` but not in ``frames_failed``).
        """
        if frame_lost:
            self.errors_total += 1
        self.errors_by_kind[kind] += 1
        self.last_error = message
        self._problems.append(now_ns)

    def _rate_hz(self, times_ns: list[int], now_ns: int) -> float:
        recent = [t for t in times_ns if now_ns - t <= self.window_ns]
        if not recent:
            return 0.0
        span_ns = now_ns - (self.started_ns if self.started_ns is not None else recent[0])
        span_ns = min(max(span_ns, 1), self.window_ns)
        return len(recent) * _NS_PER_S / span_ns

    def health(self, now_ns: int, thresholds: HealthThresholds) -> CameraHealth:
        """Summarise the window ending at ``now_ns`` and grade it.

        Returns:
            Level, reason and the key/value table (rates in Hz, latencies in ms).
        """
        input_hz = self._rate_hz(list(self._inputs), now_ns)
        recent = [o for o in self._outputs if now_ns - o[0] <= self.window_ns]
        output_hz = self._rate_hz([o[0] for o in recent], now_ns)
        latencies = np.array([o[1] for o in recent], dtype=np.float64)
        ages = np.array([o[2] for o in recent if np.isfinite(o[2])], dtype=np.float64)
        p50, p99 = (
            (float(np.percentile(latencies, 50)), float(np.percentile(latencies, 99)))
            if latencies.size
            else (float("nan"), float("nan"))
        )
        age_p50 = float(np.percentile(ages, 50)) if ages.size else float("nan")
        drop_ratio = self._window_drop_ratio(now_ns)
        recent_problems = sum(1 for t in self._problems if now_ns - t <= self.window_ns)

        level, reasons = HealthLevel.OK, []
        silent_s = (
            (now_ns - self.last_input_ns) / _NS_PER_S if self.last_input_ns is not None else None
        )
        if silent_s is None:
            level, reasons = HealthLevel.WARN, ["no input received yet"]
        elif silent_s > thresholds.input_timeout_s:
            level = HealthLevel.WARN
            reasons.append(f"no input for {silent_s:.1f} s")
        if np.isfinite(p99) and p99 > thresholds.latency_error_ms:
            level = HealthLevel.ERROR
            reasons.append(f"latency p99 {p99:.0f} ms > {thresholds.latency_error_ms:.0f} ms")
        elif np.isfinite(p99) and p99 > thresholds.latency_warn_ms:
            level = max(level, HealthLevel.WARN)
            reasons.append(f"latency p99 {p99:.0f} ms > {thresholds.latency_warn_ms:.0f} ms")
        if drop_ratio > thresholds.drop_ratio_warn:
            level = max(level, HealthLevel.WARN)
            reasons.append(f"{drop_ratio:.0%} of frames dropped (model slower than camera)")
        window_s = self.window_ns / _NS_PER_S
        if recent_problems:
            level = max(level, HealthLevel.WARN)
            reasons.append(
                f"{recent_problems} bad frames in the last {window_s:.0f} s, "
                f"last: {self.last_error}"
            )
        if self._stalled(now_ns, recent):
            level = HealthLevel.ERROR
            reasons.append(f"frames arrive but nothing was published in {window_s:.0f} s")

        values = (
            ("input_rate_hz", f"{input_hz:.2f}"),
            ("output_rate_hz", f"{output_hz:.2f}"),
            ("frames_received", str(self.received_total)),
            ("frames_processed", str(self.processed_total)),
            ("frames_dropped", str(self.dropped_total)),
            ("frames_failed", str(self.errors_total)),
            ("latency_p50_ms", f"{p50:.1f}"),
            ("latency_p99_ms", f"{p99:.1f}"),
            ("stamp_age_p50_ms", f"{age_p50:.1f}"),
            *self._stage_values(now_ns),
            *(
                (f"errors_{kind}", str(count))
                for kind, count in sorted(self.errors_by_kind.items())
            ),
        )
        return CameraHealth(level, "; ".join(reasons) or "ok", values)

    def _stage_values(self, now_ns: int) -> list[tuple[str, str]]:
        """``<stage>_p50_ms`` over the frames published in the window, stages in order."""
        recent = [stages for t, stages in self._stages if now_ns - t <= self.window_ns]
        values = []
        for stage in STAGES:
            times = [stages[stage] for stages in recent if stage in stages]
            if times:
                values.append((f"{stage}_p50_ms", f"{StageStats.of(times).p50_ms:.1f}"))
        return values

    def _window_drop_ratio(self, now_ns: int) -> float:
        """Share of the frames received in the window that were dropped."""
        self._totals.append((now_ns, self.received_total, self.dropped_total))
        base_received, base_dropped = 0, 0
        for t, received, dropped in self._totals:
            if now_ns - t <= self.window_ns:
                break
            base_received, base_dropped = received, dropped
        received = self.received_total - base_received
        return (self.dropped_total - base_dropped) / received if received > 0 else 0.0

    def _stalled(self, now_ns: int, recent_outputs: list[tuple[int, float, float]]) -> bool:
        """Input keeps arriving, has for a whole window, and no output went out in it."""
        if self.last_input_ns is None or self.started_ns is None or recent_outputs:
            return False
        inputs_recent = now_ns - self.last_input_ns <= self.window_ns
        return inputs_recent and now_ns - self.started_ns > self.window_ns


class LogThrottle:
    """At most one log line per key in ``period_s`` (a broken camera cannot flood the log).

    Args:
        period_s: Minimum seconds between two lines with the same key.
    """

    def __init__(self, period_s: float) -> None:
        self.period_ns = int(period_s * _NS_PER_S)
        self._last: dict[str, int] = {}
        self.suppressed: collections.Counter[str] = collections.Counter()

    def set_period(self, period_s: float) -> None:
        """Change the period from now on; the counts of held-back lines are kept."""
        self.period_ns = int(period_s * _NS_PER_S)

    def ready(self, key: str, now_ns: int) -> bool:
        """True if a line for ``key`` may be logged now (and records that it was)."""
        last = self._last.get(key)
        if last is not None and now_ns - last < self.period_ns:
            self.suppressed[key] += 1
            return False
        self._last[key] = now_ns
        return True
