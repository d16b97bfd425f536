"""Package-level checks: the ROS import boundary, the params file, launch files, metadata."""

from __future__ import annotations

import ast
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from panoptic_ros.config import Config, load_config, render_params_yaml

REPO = Path(__file__).resolve().parent.parent
BLOCKED = (
    "rclpy",
    "sensor_msgs",
    "vision_msgs",
    "cv_bridge",
    "tf2_ros",
    "std_msgs",
    "diagnostic_msgs",
    "nav_msgs",
    "geometry_msgs",
    "rcl_interfaces",
)

BOUNDARY_SCRIPT = """
import importlib, pkgutil, sys
BLOCKED = {blocked!r}

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"ROS module {{name}} imported outside panoptic_ros.ros.node")
        return None

sys.meta_path.insert(0, Block())
import panoptic_ros
for info in pkgutil.walk_packages(panoptic_ros.__path__, "panoptic_ros."):
    if info.name in ("panoptic_ros.ros.node", "panoptic_ros.__main__"):
        continue
    importlib.import_module(info.name)
print("imported", len(sys.modules))
"""


def test_only_the_node_imports_ros() -> None:
    """Every module but node.py imports with ROS packages blocked (the boundary is enforced)."""
    script = BOUNDARY_SCRIPT.format(blocked=BLOCKED)
    completed = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]


def test_node_is_the_only_ros_importer_by_source() -> None:
    offenders = []
    for path in (REPO / "panoptic_ros").rglob("*.py"):
        if path.name == "node.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in BLOCKED]
    assert offenders == []


def test_params_file_is_generated_from_the_config() -> None:
    """config/panoptic.yaml is exactly what render_params_yaml() writes, and loads as defaults."""
    path = REPO / "config" / "panoptic.yaml"
    assert path.read_text(encoding="utf-8") == render_params_yaml(), (
        "config/panoptic.yaml is stale: regenerate it with "
        "python -c 'from panoptic_ros.config import render_params_yaml as r; "
        'open("config/panoptic.yaml", "w").write(r())\''
    )
    assert load_config(path) == Config()


def test_package_xml_declares_the_runtime_dependencies() -> None:
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "panoptic_ros"
    depends = {e.text for e in root.iter() if e.tag in ("exec_depend", "depend")}
    for key in (
        "rclpy",
        "sensor_msgs",
        "vision_msgs",
        "diagnostic_msgs",
        "nav_msgs",
        "tf2_ros",
        "launch_ros",
        "ros2bag",
        "rviz2",
        "python3-numpy",
        "python3-opencv",
    ):
        assert key in depends, key
    assert root.find("export/build_type").text == "ament_python"  # type: ignore[union-attr]


def test_launch_files_parse_and_declare_described_arguments() -> None:
    for name in ("panoptic.launch.py", "replay.launch.py"):
        tree = ast.parse((REPO / "launch" / name).read_text(encoding="utf-8"))
        calls = [
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "DeclareLaunchArgument"
        ]
        assert calls, name
        for call in calls:
            keywords = {k.arg for k in call.keywords}
            assert "description" in keywords, (name, ast.unparse(call)[:80])


def test_setup_installs_launch_config_rviz_models_and_samples() -> None:
    text = (REPO / "setup.py").read_text(encoding="utf-8")
    for folder in ("launch", "config", "rviz", "models", "samples"):
        assert f'"{folder}"' in text
    assert "panoptic_node = panoptic_ros.ros.node:main" in text
