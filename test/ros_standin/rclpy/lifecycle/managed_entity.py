"""Stand-in rclpy.lifecycle.managed_entity: entities a lifecycle node drives."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy

TransitionCallbackReturn = _rclpy.TransitionCallbackReturnType


class ManagedEntity:
    """Every transition callback succeeds unless overridden."""

    def on_configure(self, state: Any) -> Any:
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: Any) -> Any:
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: Any) -> Any:
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: Any) -> Any:
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: Any) -> Any:
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: Any) -> Any:
        return TransitionCallbackReturn.SUCCESS


class SimpleManagedEntity(ManagedEntity):
    """Enabled by on_activate, disabled by on_deactivate (nothing else)."""

    def __init__(self) -> None:
        self._enabled = False

    def on_activate(self, state: Any) -> Any:
        self._enabled = True
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: Any) -> Any:
        self._enabled = False
        return TransitionCallbackReturn.SUCCESS

    @property
    def is_activated(self) -> bool:
        return self._enabled

    @staticmethod
    def when_enabled(wrapped: Any = None, *, when_not_enabled: Any = None) -> Any:
        """Decorate a method so that it does nothing (or calls ``when_not_enabled``) while
        the entity is not activated."""

        def decorate(method: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(method)
            def guarded(self: SimpleManagedEntity, *args: Any, **kwargs: Any) -> None:
                if self._enabled:
                    method(self, *args, **kwargs)
                elif when_not_enabled is not None:
                    when_not_enabled()

            return guarded

        return decorate if wrapped is None else decorate(wrapped)
