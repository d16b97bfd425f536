"""Inference backends behind one interface (:class:`Backend`), picked by name or ``auto``."""

from __future__ import annotations

from panoptic_ros.backends.base import (
    BACKEND_ORDER,
    BACKENDS,
    Backend,
    BackendBase,
    DeviceBackend,
    FusedBackend,
    create_backend,
)

__all__ = [
    "BACKENDS",
    "BACKEND_ORDER",
    "Backend",
    "BackendBase",
    "DeviceBackend",
    "FusedBackend",
    "create_backend",
]
