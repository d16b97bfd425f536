"""Loggers that record what they are given (tests read ``LOG``)."""

from __future__ import annotations

import time
from typing import Any

LOG: list[tuple[str, str, str]] = []


class Logger:
    def __init__(self, name: str) -> None:
        self.name = name
        self._last: dict[str, float] = {}

    def _log(
        self, level: str, message: str, throttle_duration_sec: float | None = None, **_: Any
    ) -> bool:
        if throttle_duration_sec:
            now = time.monotonic()
            if now - self._last.get(message, -1e9) < throttle_duration_sec:
                return False
            self._last[message] = now
        LOG.append((self.name, level, str(message)))
        return True

    def debug(self, message: str, **kwargs: Any) -> bool:
        return self._log("DEBUG", message, **kwargs)

    def info(self, message: str, **kwargs: Any) -> bool:
        return self._log("INFO", message, **kwargs)

    def warning(self, message: str, **kwargs: Any) -> bool:
        return self._log("WARN", message, **kwargs)

    warn = warning

    def error(self, message: str, **kwargs: Any) -> bool:
        return self._log("ERROR", message, **kwargs)

    def fatal(self, message: str, **kwargs: Any) -> bool:
        return self._log("FATAL", message, **kwargs)


def get_logger(name: str) -> Logger:
    return Logger(name)
