"""The official evaluation tools for equality tests: skip without them, or fail under CI.

panopticapi (``panopticapi-lite``) and cityscapesscripts are test dependencies (``pip
install -e .[dev]``). A user without them gets a skip that names the missing package. CI
sets ``PANOPTIC_REQUIRE_OFFICIAL_TOOLS=1`` (``.ci/run``), and there a missing tool fails the
run instead: the equality tests are the evidence that our PQ is the official one, so they
must not silently vanish.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

#: Environment variable that turns a missing official tool from a skip into a failure.
REQUIRE_ENV = "PANOPTIC_REQUIRE_OFFICIAL_TOOLS"


def official_tools_required() -> bool:
    """True when :data:`REQUIRE_ENV` is set to anything but empty or ``0``."""
    return os.environ.get(REQUIRE_ENV, "").strip() not in ("", "0")


def import_official_tool(module: str, package: str) -> ModuleType:
    """Import ``module`` of the official tool ``package`` (at a test module's top level).

    Args:
        module: The module to import, e.g. ``"panopticapi.evaluation"``.
        package: Its pip package, named in the skip or failure message.

    Returns:
        The module.

    Raises:
        pytest.skip.Exception: It is missing and :data:`REQUIRE_ENV` is not set (the
            calling module is skipped with the reason).
        pytest.fail.Exception: It is missing and :data:`REQUIRE_ENV` is set.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        if official_tools_required():
            pytest.fail(
                f"{package} is required ({REQUIRE_ENV}=1) but {module} does not import: "
                f"{err}; pip install -e .[dev]",
                pytrace=False,
            )
        pytest.skip(
            f"{package} not installed (pip install -e .[dev]); {REQUIRE_ENV}=1 fails instead",
            allow_module_level=True,
        )
