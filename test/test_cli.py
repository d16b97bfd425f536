"""The command line as a user runs it: demo, replay, bench, the help of every subcommand."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from panoptic_ros.cli.main import build_parser, main
from panoptic_ros.timing import STAGES

pytest.importorskip("onnxruntime")
COMMANDS = ("demo", "replay", "bench", "eval", "train", "export", "quantize", "build-engine")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_examples_and_no_doubled_defaults(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "Examples:" in text
    assert "(default: None)" not in text
    assert not re.search(r"\(default: [^)]*\)\s*\(default:", text), text
    # An example broken over lines keeps its continuation (a lone backslash in the source
    # would have joined the lines).
    for line in text.splitlines():
        assert not re.search(r"\S {4,}--", line.strip()), line


def test_help_is_quick_because_heavy_imports_wait() -> None:
    """``--help`` imports neither torch nor onnxruntime nor tensorrt."""
    code = (
        "import sys\n"
        "from panoptic_ros.cli.main import main\n"
        "try:\n    main(['replay', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'onnxruntime', 'tensorrt') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_demo_writes_the_outputs_it_announces(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "demo"
    assert main(["demo", "-o", str(output), "-q"]) == 0
    text = capsys.readouterr().out
    assert str(output.resolve()) in text or str(output) in text
    summary = json.loads((output / "summary.json").read_text(encoding="utf-8"))
    assert summary["frames"] == 16 and summary["skipped"] == 0
    assert (output / "overlay.mp4").stat().st_size > 10_000
    assert (output / "panoptic" / "metadata.yaml").is_file()
    assert (output / "config.yaml").is_file()
    for stage in (*STAGES, "objects", "write", "total"):
        assert re.search(rf"^{stage}\s+[\d.]+\s+[\d.]+$", text, re.MULTILINE), stage
    # A second demo replaces its own earlier output.
    assert main(["demo", "-o", str(output), "-q"]) == 0


def test_replay_of_a_real_bag_with_its_topic(
    tmp_path: Path, shared_bags: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out"
    code = main(
        [
            "replay",
            str(shared_bags / "dashcam_compressed_sqlite3"),
            "--topic",
            "/camera/front/image_raw/compressed",
            "-o",
            str(output),
            "--set",
            "replay.max_frames=3",
            "--set",
            "replay.write_video=false",
            "-q",
        ]
    )
    assert code == 0, capsys.readouterr().err
    summary = json.loads((output / "summary.json").read_text(encoding="utf-8"))
    assert summary["frames"] == 3
    assert summary["topic"] == "/camera/front/image_raw/compressed"
    # An existing output is refused without --overwrite, in one line, exit code 1.
    assert main(["replay", str(shared_bags / "dashcam_raw_mcap"), "-o", str(output)]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("panoptic-ros replay: error:"), error
    assert "--overwrite" in error[0]


@pytest.mark.parametrize(
    ("bag", "message"),
    [
        ("rosbag2_recorder_talker_mcap", "no sensor_msgs/Image or sensor_msgs/CompressedImage"),
        ("does_not_exist", "does_not_exist"),
    ],
)
def test_replay_refuses_bad_input_in_one_line(
    tmp_path: Path, shared_bags: Path, capsys: pytest.CaptureFixture[str], bag: str, message: str
) -> None:
    code = main(["replay", str(shared_bags / bag), "-o", str(tmp_path / "out")])
    assert code == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1, error
    assert error[0].startswith("panoptic-ros replay: error:") and message in error[0]
    assert not (tmp_path / "out").exists()


def test_bench_prints_every_stage_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "bench.json"
    code = main(
        [
            "bench",
            "--input-size",
            "96x160",
            "--network-size",
            "model",
            "--frames",
            "2",
            "--warmup",
            "1",
            "--json",
            str(report),
            "-q",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    for stage in STAGES:
        assert re.search(rf"^\s*{stage}\b", text, re.MULTILINE), (stage, text)
    data = json.loads(report.read_text(encoding="utf-8"))
    assert json.dumps(data)  # a real JSON report
    assert "fps" in json.dumps(data)


def test_usage_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["replay"])  # the bag and -o are missing
    assert exited.value.code == 2
