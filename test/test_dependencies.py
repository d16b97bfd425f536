"""The documented installs: each command works with its extra or says in one line what to add.

The runtime commands (demo, replay, bench, eval) run in a subprocess whose imports of torch,
Pillow and the other ``[train]``/``[tensorrt]`` packages are blocked, as ``pip install
.[cpu,opencv]`` leaves them out (the way test_package.py blocks rclpy); the commands that
need them must stop with one line naming the extra, before touching any file. CI also runs
the same commands in a real ``.[cpu,opencv]`` virtual environment (.ci/run).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from panoptic_ros.cli import main as cli_main
from panoptic_ros.cli.common import missing_module_error, require_extra
from panoptic_ros.errors import DependencyError

REPO = Path(__file__).resolve().parent.parent
SAMPLE_BAG = REPO / "samples" / "synthetic_street"
#: What ``.[cpu,opencv]`` does not install (sympy comes only with torch or the [train] extra).
BLOCKED = ("torch", "PIL", "safetensors", "sympy", "tensorrt", "pycuda")

#: Runs ``panoptic-ros`` commands with BLOCKED unimportable: ``import`` raises
#: ModuleNotFoundError (the meta_path finder) and ``importlib.util.find_spec`` answers None
#: (the None entries), as when a package is not installed. Prints one JSON line per command.
BLOCKED_RUNNER = """
import contextlib, io, json, sys
BLOCKED = {blocked!r}

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None

sys.meta_path.insert(0, Block())
for name in BLOCKED:
    sys.modules[name] = None
from panoptic_ros.cli.main import main

for label, argv in json.loads(sys.argv[1]).items():
    stderr = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
        try:
            code = main(argv)
        except BaseException as err:  # a traceback is a failure the test reports
            import traceback
            code = repr(err)
            stderr.write(traceback.format_exc())
    print(json.dumps({{"label": label, "code": code, "stderr": stderr.getvalue()}}))
loaded = sorted(m for m in BLOCKED if sys.modules.get(m) is not None)
print(json.dumps({{"loaded": loaded}}))
"""


def run_blocked(commands: dict[str, list[str]]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Run ``commands`` (label -> argv) in one blocked subprocess.

    Returns:
        (label -> ``{"code", "stderr"}``, the blocked modules that got loaded anyway).
    """
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED_RUNNER.format(blocked=BLOCKED), json.dumps(commands)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    results = {entry["label"]: entry for entry in lines if "label" in entry}
    return results, lines[-1]["loaded"]


@pytest.fixture(scope="module")
def blocked_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every runtime command, and the ones that need other extras, without those extras."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("cv2")
    pytest.importorskip("onnx")
    root = tmp_path_factory.mktemp("blocked")
    from panoptic_ros.data.panoptic_format import write_cityscapes_panoptic
    from panoptic_ros.data.synthetic import generate_scene
    from panoptic_ros.labels import CITYSCAPES

    # A Cityscapes panoptic dataset (PNG + JSON): the folder mode scores it against itself,
    # --cityscapes runs the model over it; both read panoptic PNGs.
    scenes = [generate_scene(seed, 64, 128) for seed in range(2)]
    gt_json = write_cityscapes_panoptic(root / "cityscapes", scenes, CITYSCAPES)
    old_run = root / "old_run"
    old_run.mkdir()
    (old_run / "checkpoint_last.safetensors").write_text("an earlier run", encoding="utf-8")
    (root / "model.safetensors").write_text("not read", encoding="utf-8")
    model = str(REPO / "models" / "panoptic_lite0_synthetic.onnx")
    commands = {
        "demo": ["demo", "-q", "-o", str(root / "demo")],
        "replay": ["replay", str(SAMPLE_BAG), "-q", "-o", str(root / "replay")],
        "bench": ["bench", "-q", "--input-size", "64x128", "--frames", "1", "--warmup", "0"],
        "eval folders": ["eval", "--gt-json", str(gt_json), "--pred-json", str(gt_json),
                         "--workers", "1", "--json", str(root / "pq.json")],
        "eval cityscapes": ["eval", "--cityscapes", str(root / "cityscapes"), "-q"],
        "train": ["train", "-o", str(old_run), "--overwrite", "--set", "train.steps=1"],
        "export": ["export", str(root / "model.safetensors"), "-o", str(root / "model.onnx")],
        "quantize": ["quantize", model, "--calibration", str(SAMPLE_BAG), "-o",
                     str(root / "quantized")],
        "build-engine": ["build-engine", model],
    }  # fmt: skip
    results, loaded = run_blocked(commands)
    return {"root": root, "results": results, "loaded": loaded}


@pytest.mark.parametrize("command", ["demo", "replay", "bench", "eval folders", "eval cityscapes"])
def test_runtime_commands_work_without_torch_and_pillow(
    blocked_runs: dict[str, Any], command: str
) -> None:
    result = blocked_runs["results"][command]
    assert result["code"] == 0, result["stderr"][-3000:]
    assert blocked_runs["loaded"] == []


def test_the_folder_mode_scores_a_dataset_against_itself_perfectly(
    blocked_runs: dict[str, Any],
) -> None:
    scores = json.loads((blocked_runs["root"] / "pq.json").read_text(encoding="utf-8"))
    assert scores["all"]["pq"] == pytest.approx(1.0)
    assert (blocked_runs["root"] / "replay" / "summary.json").is_file()


@pytest.mark.parametrize(
    ("command", "extra", "names"),
    [
        ("train", "train", "torch, safetensors"),
        ("export", "train", "torch, safetensors"),
        ("quantize", "train", "sympy"),
        ("build-engine", "tensorrt", "tensorrt"),
    ],
)
def test_commands_of_other_extras_say_in_one_line_what_to_install(
    blocked_runs: dict[str, Any], command: str, extra: str, names: str
) -> None:
    result = blocked_runs["results"][command]
    lines = result["stderr"].strip().splitlines()
    assert result["code"] == 1, result["stderr"][-3000:]
    assert len(lines) == 1, lines
    assert lines[0] == (
        f"panoptic-ros {command}: error: {names} "
        f"{'are' if ',' in names else 'is'} not installed or cannot be imported; "
        f"install the '[{extra}]' extra: pip install 'panoptic_ros[{extra}]'"
    )


def test_nothing_is_written_or_deleted_before_the_missing_extra_is_found(
    blocked_runs: dict[str, Any],
) -> None:
    root = blocked_runs["root"]
    # train --overwrite found torch missing before it replaced the earlier run.
    assert (root / "old_run" / "checkpoint_last.safetensors").read_text() == "an earlier run"
    assert not (root / "model.onnx").exists()
    assert not (root / "quantized").exists()


def test_a_missing_subcommand_module_is_an_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(cli_main.COMMANDS, "lost", "no_such_command_module")
    with pytest.raises(DependencyError, match="subcommand 'lost' cannot be loaded"):
        cli_main.build_parser()
    assert cli_main.main(["demo", "--help"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("panoptic-ros: error: subcommand 'lost'")
    assert "reinstall panoptic_ros" in lines[0]


def test_require_extra_names_every_missing_module_and_the_extra() -> None:
    require_extra("cpu", ("json",))  # present: nothing happens
    with pytest.raises(DependencyError) as raised:
        require_extra("train", ("json", "no_such_module_a", "no_such_module_b"))
    assert str(raised.value) == (
        "no_such_module_a, no_such_module_b are not installed or cannot be imported; "
        "install the '[train]' extra: pip install 'panoptic_ros[train]'"
    )


def test_a_missing_optional_module_found_mid_command_becomes_one_line() -> None:
    found = missing_module_error(ModuleNotFoundError("No module named 'torch'", name="torch.nn"))
    assert str(found) == (
        "torch is not installed; install the '[train]' extra: pip install 'panoptic_ros[train]'"
    )
    # Anything else is a bug and keeps its traceback.
    assert missing_module_error(ModuleNotFoundError("x", name="panoptic_ros.lost")) is None


def test_the_fused_host_path_does_not_import_torch() -> None:
    """Replaying or benchmarking a fused model needs the NumPy side only."""
    code = (
        "import sys\n"
        "import panoptic_ros.pipeline, panoptic_ros.fusion.fused_outputs\n"
        "import panoptic_ros.export.quantize, panoptic_ros.cli.bench, panoptic_ros.replay\n"
        "print('torch' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert done.stdout.strip() == "False"


def test_a_fused_model_runs_without_torch(tiny_onnx_model: Path, tmp_path: Path) -> None:
    from panoptic_ros.export.fused import append_fusion
    from panoptic_ros.fusion import FusionParams

    fused = append_fusion(tiny_onnx_model, tmp_path / "fused.onnx", params=FusionParams())
    argv = ["bench", "-q", "--model", str(fused), "--input-size", "64x128", "--frames", "1"]
    results, loaded = run_blocked({"bench": argv})
    result = results["bench"]
    assert result["code"] == 0, result["stderr"][-3000:]
    assert loaded == []
