"""Launch arguments override the params file only when given (panoptic_ros.ros.launch_arguments)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from panoptic_ros.config import config_from_flat, load_config
from panoptic_ros.ros.launch_arguments import (
    EXECUTABLES,
    FROM_PARAMS_FILE,
    MANAGED_CHOICES,
    PARAMETER_ARGUMENTS,
    is_managed,
    node_parameter_overrides,
)

REPO = Path(__file__).resolve().parent.parent


def test_arguments_not_given_leave_the_params_file_alone() -> None:
    untouched = dict.fromkeys(PARAMETER_ARGUMENTS, FROM_PARAMS_FILE)
    assert node_parameter_overrides(untouched) == {}
    assert node_parameter_overrides({}) == {}
    assert node_parameter_overrides({"image_topic": "  "}) == {}


def test_given_arguments_become_valid_node_parameters() -> None:
    overrides = node_parameter_overrides(
        {
            "image_topic": "/front/image_raw",
            "input_transport": "compressed",
            "backend": "onnxruntime",
            "model_file_path": "/models/city.onnx",
            "namespace": "ignored: not a parameter",
        }
    )
    assert overrides == {
        "node.image_topics": ["/front/image_raw"],
        "node.input_transport": "compressed",
        "backend.name": "onnxruntime",
        "model.model_file_path": "/models/city.onnx",
    }
    # Every target is a real parameter, and the values pass the node's own validation.
    config = config_from_flat({k: v for k, v in overrides.items() if k != "model.model_file_path"})
    assert config.node.image_topics == ("/front/image_raw",)
    assert config.backend.name == "onnxruntime"


@pytest.mark.parametrize("argument", sorted(PARAMETER_ARGUMENTS))
def test_every_mapped_argument_targets_a_declared_parameter(argument: str) -> None:
    section, field = PARAMETER_ARGUMENTS[argument].split(".")
    assert hasattr(getattr(load_config(None), section), field)


def _declared_defaults(launch_file: Path) -> dict[str, ast.expr | None]:
    tree = ast.parse(launch_file.read_text(encoding="utf-8"))
    defaults: dict[str, ast.expr | None] = {}
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "DeclareLaunchArgument":
            name = call.args[0]
            assert isinstance(name, ast.Constant)
            keywords = {k.arg: k.value for k in call.keywords}
            defaults[str(name.value)] = keywords.get("default_value")
    return defaults


@pytest.mark.parametrize("launch_name", ["panoptic.launch.py", "replay.launch.py"])
def test_parameter_arguments_default_to_the_params_file(launch_name: str) -> None:
    """A non-empty default would override the params file even when nobody typed it."""
    defaults = _declared_defaults(REPO / "launch" / launch_name)
    mapped = [name for name in defaults if name in PARAMETER_ARGUMENTS]
    assert mapped, launch_name
    for name in mapped:
        default = defaults[name]
        assert isinstance(default, ast.Name) and default.id == "FROM_PARAMS_FILE", (
            launch_name,
            name,
        )


def test_node_gets_the_params_file_first_then_only_the_given_arguments() -> None:
    source = (REPO / "launch" / "panoptic.launch.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    nodes = [
        call
        for call in ast.walk(tree)
        if isinstance(call, ast.Call)
        and getattr(call.func, "id", "") in ("Node", "node_action")
        and "'panoptic_node'" in ast.unparse(call)
    ]
    assert len(nodes) == 1
    parameters = next(k.value for k in nodes[0].keywords if k.arg == "parameters")
    assert isinstance(parameters, ast.List) and len(parameters.elts) == 2
    assert "params_file" in ast.unparse(parameters.elts[0])
    assert "node_parameter_overrides(" in ast.unparse(parameters.elts[1])


def test_managed_picks_the_lifecycle_executable() -> None:
    assert not is_managed("false")
    assert is_managed("true")
    assert EXECUTABLES[False] == "panoptic_node"
    assert EXECUTABLES[True] == "panoptic_lifecycle_node"
    with pytest.raises(ValueError, match="managed must be one of false, true, got 'yes'"):
        is_managed("yes")


def test_every_executable_is_a_console_script() -> None:
    setup = (REPO / "setup.py").read_text(encoding="utf-8")
    for executable in EXECUTABLES.values():
        assert f'"{executable} = panoptic_ros.ros.node:' in setup, executable


def _declared(launch_file: Path, name: str) -> dict[str, ast.expr]:
    tree = ast.parse(launch_file.read_text(encoding="utf-8"))
    for call in ast.walk(tree):
        if (
            isinstance(call, ast.Call)
            and getattr(call.func, "id", "") == "DeclareLaunchArgument"
            and isinstance(call.args[0], ast.Constant)
            and call.args[0].value == name
        ):
            return {str(k.arg): k.value for k in call.keywords}
    raise AssertionError(f"{launch_file.name} declares no {name!r}")


def test_managed_argument_is_documented_with_choices_and_off_by_default() -> None:
    launch_file = REPO / "launch" / "panoptic.launch.py"
    keywords = _declared(launch_file, "managed")
    assert ast.unparse(keywords["default_value"]) == "MANAGED_CHOICES[0]"
    assert MANAGED_CHOICES[0] == "false"
    assert ast.unparse(keywords["choices"]) == "list(MANAGED_CHOICES)"
    description = ast.literal_eval(keywords["description"])
    assert "lifecycle" in description and "ros2 lifecycle set" in description
    source = launch_file.read_text(encoding="utf-8")
    # The managed node is launch_ros' LifecycleNode action, under the same node name.
    assert "node_action = LifecycleNode if managed else Node" in source
    assert "executable=EXECUTABLES[managed]" in source
