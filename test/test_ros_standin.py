"""The rclpy stand-in's lifecycle emulation is faithful to rclpy and rcl_lifecycle.

test/ros_standin emulates ``rclpy.lifecycle`` (LifecycleNode, LifecycleState,
LifecyclePublisher, ManagedEntity, TransitionCallbackReturn) and the parts of rclpy's C
extension behind it. These tests compare every emulated name, base class and parameter list
with rclpy's own sources (installed by rclpy-intellisense, Humble; skipped with the reason
where absent), and drive the emulated state machine through rcl_lifecycle's default
transitions, so the managed node's tests (test_lifecycle.py) meet what a robot runs.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
from pathlib import Path
from typing import Any

import pytest
from test_node import (
    Probe,
    ros,  # noqa: F401 (the fixture, shared)
)

STANDIN = Path(__file__).parent / "ros_standin"


def state(node: Any) -> str:
    """The label of the node's current lifecycle state (what ``ros2 lifecycle get`` says)."""
    return str(node._state_machine.current_state[1])


def _installed_rclpy() -> Path:
    """rclpy's sources from rclpy-intellisense (never the stand-in); skip when absent."""
    try:
        distribution = importlib.metadata.distribution("rclpy-intellisense")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("rclpy-intellisense is not installed: rclpy's sources are not here to compare")
    root = Path(str(distribution.locate_file("rclpy")))
    if not (root / "lifecycle" / "node.py").is_file():
        pytest.skip(f"rclpy-intellisense has no rclpy/lifecycle/node.py under {root}")
    return root


def _top_level_names(tree: ast.Module, *, imports: bool = True) -> set[str]:
    """Classes, functions and assignments (and, with ``imports``, imported names)."""
    names: set[str] = set()
    for statement in tree.body:
        if isinstance(statement, (ast.ClassDef, ast.FunctionDef)):
            names.add(statement.name)
        elif isinstance(statement, ast.Assign):
            names.update(t.id for t in statement.targets if isinstance(t, ast.Name))
        elif imports and isinstance(statement, ast.ImportFrom):
            names.update(a.asname or a.name for a in statement.names)
    return names


def _classes(tree: ast.Module) -> dict[str, ast.ClassDef]:
    return {s.name: s for s in tree.body if isinstance(s, ast.ClassDef)}


def _methods(cls: ast.ClassDef) -> dict[str, ast.FunctionDef]:
    return {s.name: s for s in cls.body if isinstance(s, ast.FunctionDef)}


def _signature(function: ast.FunctionDef) -> list[tuple[str, str, str | None]]:
    """(kind, name, default source) of every parameter; annotations are left out."""
    args = function.args
    positional = [*args.posonlyargs, *args.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
    defaults += list(args.defaults)
    out = [
        ("positional", a.arg, None if d is None else ast.unparse(d))
        for a, d in zip(positional, defaults, strict=True)
    ]
    if args.vararg:
        out.append(("*args", args.vararg.arg, None))
    out += [
        ("keyword", a.arg, None if d is None else ast.unparse(d))
        for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
    ]
    if args.kwarg:
        out.append(("**kwargs", args.kwarg.arg, None))
    return out


def _decorators(function: ast.FunctionDef) -> set[str]:
    return {ast.unparse(d) for d in function.decorator_list}


def _self_attributes(cls: ast.ClassDef) -> set[str]:
    return {
        node.attr
        for node in ast.walk(cls)
        if isinstance(node, ast.Attribute)
        and isinstance(node.ctx, ast.Store)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    }


def _attribute_uses(source: str, owner: str) -> set[str]:
    """Names used as ``<owner>.<name>`` anywhere in ``source`` (docstrings included)."""
    return set(re.findall(rf"\b{re.escape(owner)}\.(\w+)", source))


LIFECYCLE_MODULES = ("__init__.py", "managed_entity.py", "node.py", "publisher.py")


@pytest.mark.parametrize("module", LIFECYCLE_MODULES)
def test_emulated_lifecycle_names_exist_in_rclpy_with_the_same_parameters(module: str) -> None:
    real_root = _installed_rclpy() / "lifecycle"
    ours = ast.parse((STANDIN / "rclpy" / "lifecycle" / module).read_text(encoding="utf-8"))
    real = ast.parse((real_root / module).read_text(encoding="utf-8"))
    # Re-exports count in __init__.py; elsewhere imports are the stand-in's own typing.
    emulated = _top_level_names(ours, imports=module == "__init__.py") - {"annotations"}
    assert emulated, module
    assert emulated <= _top_level_names(real), module
    real_classes = _classes(real)
    for name, cls in _classes(ours).items():
        real_cls = real_classes[name]
        assert [ast.unparse(b) for b in cls.bases] == [ast.unparse(b) for b in real_cls.bases]
        fields = [s.target for s in cls.body if isinstance(s, ast.AnnAssign)]
        real_fields = [s.target for s in real_cls.body if isinstance(s, ast.AnnAssign)]
        assert [ast.unparse(f) for f in fields] == [ast.unparse(f) for f in real_fields], name
        real_methods = _methods(real_cls)
        for method_name, method in _methods(cls).items():
            if method_name.startswith("_standin"):
                continue  # the stand-in's own plumbing (rclpy's is name-mangled)
            where = f"{module}: {name}.{method_name}"
            assert method_name in real_methods, where
            assert _signature(method) == _signature(real_methods[method_name]), where
            assert _decorators(method) == _decorators(real_methods[method_name]), where
        assert _self_attributes(cls) <= _self_attributes(real_cls), name


def test_emulated_extension_names_are_the_ones_rclpy_uses() -> None:
    """The C extension has no source: what the stand-in emulates must be what rclpy calls."""
    real_root = _installed_rclpy() / "lifecycle"
    real = "\n".join((real_root / m).read_text(encoding="utf-8") for m in LIFECYCLE_MODULES)
    ours_root = STANDIN / "rclpy"
    ours = "\n".join(
        (ours_root / "lifecycle" / m).read_text(encoding="utf-8") for m in LIFECYCLE_MODULES
    )
    extension = (ours_root / "impl" / "implementation_singleton.py").read_text(encoding="utf-8")
    assert _attribute_uses(ours, "_rclpy") <= _attribute_uses(real, "_rclpy")
    machine_uses = _attribute_uses(ours, "_state_machine")
    assert machine_uses <= _attribute_uses(real, "_state_machine")
    emulated_machine = {
        n.name
        for n in ast.walk(_classes(ast.parse(extension))["LifecycleStateMachine"])
        if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")
    } | {"initialized"}
    assert emulated_machine <= _attribute_uses(real, "_state_machine")
    # SUCCESS, FAILURE, ERROR and to_label(): the members rclpy's sources name.
    members = {"SUCCESS", "FAILURE", "ERROR"}
    assert members <= _attribute_uses(real, "TransitionCallbackReturn")
    assert ".to_label()" in real


@pytest.mark.parametrize(
    ("module", "class_name", "real_module"),
    [
        ("node.py", "Node", "node.py"),
        ("node.py", "Publisher", "publisher.py"),
        ("node.py", "Subscription", "subscription.py"),
    ],
)
def test_emulated_node_methods_exist_in_rclpy(
    module: str, class_name: str, real_module: str
) -> None:
    """The plain stand-in takes fewer arguments, but none that rclpy's methods lack."""
    real_root = _installed_rclpy()
    ours = _classes(ast.parse((STANDIN / "rclpy" / module).read_text(encoding="utf-8")))
    real = _classes(ast.parse((real_root / real_module).read_text(encoding="utf-8")))
    real_methods = _methods(real[class_name])
    for name, method in _methods(ours[class_name]).items():
        if name.startswith("_") and name != "__init__":
            continue
        if name == "__init__" and class_name != "Node":
            continue  # entities are built by the stand-in Node, not by users
        assert name in real_methods, f"{class_name}.{name}"
        named = {p for kind, p, _ in _signature(method) if kind in ("positional", "keyword")}
        real_named = {p for kind, p, _ in _signature(real_methods[name])}
        assert named <= real_named, f"{class_name}.{name}: {named - real_named}"


@pytest.mark.usefixtures("ros")
def test_state_machine_follows_rcl_default() -> None:
    """Transitions, callback results and refusals of rcl_lifecycle's default state machine."""
    from rclpy.impl.implementation_singleton import rclpy_implementation
    from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

    results: dict[str, Any] = {}
    seen: list[tuple[str, str]] = []

    class Scripted(LifecycleNode):
        def _answer(self, name: str, previous: LifecycleState) -> Any:
            seen.append((name, previous.label))
            answer = results.get(name, TransitionCallbackReturn.SUCCESS)
            if isinstance(answer, Exception):
                raise answer
            return answer

        def on_configure(self, state: LifecycleState) -> Any:
            return self._answer("configure", state)

        def on_activate(self, state: LifecycleState) -> Any:
            return self._answer("activate", state)

        def on_error(self, state: LifecycleState) -> Any:
            return self._answer("error", state)

    node = Scripted("scripted")
    assert state(node) == "unconfigured"
    labels = {t[1] for t in node._state_machine.available_transitions}
    assert labels == {"configure", "shutdown"}
    with pytest.raises(rclpy_implementation.RCLError):
        node.trigger_activate()  # not a transition of unconfigured
    results["configure"] = TransitionCallbackReturn.FAILURE
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert state(node) == "unconfigured"
    results["configure"] = ValueError("boom")  # an exception is an ERROR
    assert node.trigger_configure() == TransitionCallbackReturn.ERROR
    assert seen[-1] == ("error", "unconfigured")
    assert state(node) == "unconfigured"  # on_error said SUCCESS
    results["configure"] = TransitionCallbackReturn.SUCCESS
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert state(node) == "inactive"
    results["activate"] = TransitionCallbackReturn.ERROR
    results["error"] = TransitionCallbackReturn.FAILURE
    assert node.trigger_activate() == TransitionCallbackReturn.ERROR
    assert state(node) == "finalized"  # error processing failed
    with pytest.raises(rclpy_implementation.RCLError):
        node.trigger_shutdown()
    assert seen == [
        ("configure", "unconfigured"),
        ("configure", "unconfigured"),
        ("error", "unconfigured"),
        ("configure", "unconfigured"),
        ("activate", "inactive"),
        ("error", "inactive"),
    ]


@pytest.mark.usefixtures("ros")
def test_lifecycle_publisher_publishes_only_while_active() -> None:
    from rclpy.lifecycle import LifecycleNode, LifecyclePublisher
    from rclpy.qos import QoSProfile
    from std_msgs.msg import String

    node = LifecycleNode("talker")
    probe = Probe(None)
    heard: list[Any] = probe.listen("/chatter", String)
    publisher = node.create_lifecycle_publisher(String, "/chatter", QoSProfile(depth=1))
    assert isinstance(publisher, LifecyclePublisher)
    node.trigger_configure()
    publisher.publish(String(data="inactive"))
    node.trigger_activate()
    publisher.publish(String(data="active"))
    node.trigger_deactivate()
    publisher.publish(String(data="inactive again"))
    assert [m.data for m in heard] == ["active"]
    assert node.destroy_lifecycle_publisher(publisher)
    assert publisher not in node._managed_entities
