"""A missing official tool skips the equality tests, or fails them when CI requires it."""

from __future__ import annotations

import pytest
from official_tools import REQUIRE_ENV, import_official_tool

MISSING = "panoptic_ros_no_such_official_tool"


def test_missing_tool_skips_with_the_package_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="official-tool-x not installed"):
        import_official_tool(MISSING, "official-tool-x")
    monkeypatch.setenv(REQUIRE_ENV, "0")
    with pytest.raises(pytest.skip.Exception):
        import_official_tool(MISSING, "official-tool-x")


def test_missing_tool_fails_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=r"official-tool-x is required .*=1"):
        import_official_tool(MISSING, "official-tool-x")


def test_present_tool_is_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_ENV, "1")
    assert import_official_tool("json", "json").dumps([1]) == "[1]"
