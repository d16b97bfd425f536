"""A newest-frame mailbox per camera: latency never grows when the model is slow.

Subscription callbacks (any thread) ``offer`` each incoming message; one worker thread
``take`` takes the newest message of whichever camera has one. A message that is replaced
before the worker takes it is dropped and counted, never queued: with a model at 5 Hz and
a camera at 60 Hz, a frame waits at most one processing time, and memory is one message
per camera. Cameras are served in turn, so one flooding camera cannot starve another.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Delivery", "LatestFrameMailbox"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Delivery(Generic[T]):
    """One message handed to the worker.

    Attributes:
        camera: Camera name the message arrived for.
        message: The message as received.
        received_ns: ``time.monotonic_ns()`` when it arrived (latency is measured from here).
    """

    camera: str
    message: T
    received_ns: int


class LatestFrameMailbox(Generic[T]):
    """Holds at most one pending message per camera.

    Args:
        cameras: Camera names, in the order they are served when several have frames.
    """

    def __init__(self, cameras: tuple[str, ...]) -> None:
        self._cameras = cameras
        self._pending: dict[str, Delivery[T]] = {}
        self._dropped = dict.fromkeys(cameras, 0)
        self._received = dict.fromkeys(cameras, 0)
        self._next_index = 0
        self._closed = False
        self._condition = threading.Condition()

    def offer(self, camera: str, message: T, received_ns: int | None = None) -> bool:
        """Store the newest message of ``camera``; replaces (drops) an untaken older one.

        Args:
            camera: One of the names given at construction.
            message: The message.
            received_ns: Arrival time on the monotonic clock; now when None.

        Returns:
            True if an older pending message was dropped to make room.

        Raises:
            KeyError: For a camera the mailbox was not built with.
        """
        stamp_ns = time.monotonic_ns() if received_ns is None else received_ns
        with self._condition:
            if camera not in self._received:
                raise KeyError(camera)
            self._received[camera] += 1
            replaced = camera in self._pending
            if replaced:
                self._dropped[camera] += 1
            self._pending[camera] = Delivery(camera, message, stamp_ns)
            self._condition.notify()
        return replaced

    def take(self, timeout_s: float | None = None) -> Delivery[T] | None:
        """Wait for and remove the newest pending message, cameras served round-robin.

        Args:
            timeout_s: Longest wait; None waits until a message arrives or ``close``.

        Returns:
            The delivery, or None on timeout or after :meth:`close`.
        """
        with self._condition:
            if not self._condition.wait_for(
                lambda: self._pending or self._closed, timeout=timeout_s
            ):
                return None
            if self._closed and not self._pending:
                return None
            count = len(self._cameras)
            for step in range(count):
                camera = self._cameras[(self._next_index + step) % count]
                delivery = self._pending.pop(camera, None)
                if delivery is not None:
                    self._next_index = (self._next_index + step + 1) % count
                    return delivery
        return None  # pragma: no cover - pending held a camera not in the list

    def close(self) -> None:
        """Wake the worker for shutdown; pending messages are discarded."""
        with self._condition:
            self._closed = True
            self._pending.clear()
            self._condition.notify_all()

    def reopen(self) -> None:
        """Accept and hand out messages again after :meth:`close` (a node reactivated).

        Anything offered while closed is discarded: a frame from before the pause is stale.
        The counts of received and dropped messages go on from where they were.
        """
        with self._condition:
            self._closed = False
            self._pending.clear()

    def dropped(self, camera: str) -> int:
        """Messages of ``camera`` replaced before the worker took them."""
        with self._condition:
            return self._dropped[camera]

    def received(self, camera: str) -> int:
        """Messages of ``camera`` offered so far."""
        with self._condition:
            return self._received[camera]
