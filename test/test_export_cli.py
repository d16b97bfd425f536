"""`panoptic-ros export`: heads and fused models, parity with PyTorch on real frames, TRT ops."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from panoptic_ros.cli.main import main  # noqa: E402
from panoptic_ros.contract import ModelMetadata  # noqa: E402
from panoptic_ros.export.tensorrt_ops import unsupported_tensorrt_ops  # noqa: E402
from panoptic_ros.labels import CITYSCAPES  # noqa: E402
from panoptic_ros.modeling.checkpoint import save_checkpoint  # noqa: E402
from panoptic_ros.modeling.network import build_network  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(3)
    network = build_network(num_classes=19, fpn_channels=16, head_channels=16)
    network.eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    metadata = ModelMetadata(labels=CITYSCAPES.with_drivable(["road"]), input_hw=(128, 256))
    return save_checkpoint(path, network, metadata=metadata)


@pytest.mark.parametrize("fused", [False, True])
def test_export_checks_parity_on_real_frames(
    checkpoint: Path,
    tmp_path: Path,
    shared_bags: Path,
    fused: bool,
    capsys: pytest.CaptureFixture[str],
) -> None:
    output = tmp_path / ("fused.onnx" if fused else "heads.onnx")
    args = [
        "export",
        str(checkpoint),
        "-o",
        str(output),
        "--parity-frames",
        str(shared_bags / "dashcam_compressed_mcap"),
    ] + (["--fused"] if fused else [])
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "over 4 frames (tolerance: |ONNX Runtime - PyTorch| <= 0.001 + 0.001" in printed
    assert "every operator is in TensorRT 10's ONNX parser support list" in printed
    line = next(x for x in printed.splitlines() if x.startswith("ONNX Runtime vs PyTorch"))
    values = [float(v.split()[-1]) for v in line.split(":", 1)[1].split(" over")[0].split(",")]
    assert max(values) < 1e-3
    assert unsupported_tensorrt_ops(output) == {}
    assert output.with_suffix(".json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        output.with_suffix(".json").name,
        output.name,
    ]


def export_args(checkpoint: Path, output: Path, shared_bags: Path, *extra: str) -> list[str]:
    frames = str(shared_bags / "dashcam_compressed_mcap")
    return ["export", str(checkpoint), "-o", str(output), "--parity-frames", frames, *extra]


def test_export_fails_when_the_graph_differs_from_pytorch(
    checkpoint: Path,
    tmp_path: Path,
    shared_bags: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # An exporter that writes a graph which is not the network any more (as a broken
    # exporter or an unexported custom op would): parity must catch it.
    from panoptic_ros.export import onnx_export

    real_export = onnx_export.export_onnx

    def drifting_export(model: Any, path: Path, **kwargs: Any) -> Path:
        written = real_export(model, path, **kwargs)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.mul_(1.5)
        return written

    monkeypatch.setattr(onnx_export, "export_onnx", drifting_export)
    output = tmp_path / "drift.onnx"
    output.write_bytes(b"the previous model")
    assert main(export_args(checkpoint, output, shared_bags, "--overwrite")) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "differs from PyTorch beyond the tolerance" in error and "nothing written" in error
    assert output.read_bytes() == b"the previous model"  # the old output stands
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drift.onnx"]  # no staging left


def with_unsupported_op(path: Path) -> None:
    """Add a BitShift of the input (ONNX Runtime runs it, TensorRT cannot parse it)."""
    from onnx import TensorProto, helper

    proto = onnx.load(str(path))
    proto.graph.initializer.append(helper.make_tensor("shift", TensorProto.UINT8, [1], [1]))
    proto.graph.node.append(
        helper.make_node("BitShift", ["image", "shift"], ["image_halved"], direction="RIGHT")
    )
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def test_export_refuses_operators_tensorrt_cannot_parse(
    checkpoint: Path,
    tmp_path: Path,
    shared_bags: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from panoptic_ros.export import onnx_export

    real_export = onnx_export.export_onnx

    def export_with_bitshift(model: Any, path: Path, **kwargs: Any) -> Path:
        written = real_export(model, path, **kwargs)
        with_unsupported_op(written)
        return written

    monkeypatch.setattr(onnx_export, "export_onnx", export_with_bitshift)
    output = tmp_path / "bitshift.onnx"
    assert main(export_args(checkpoint, output, shared_bags)) == 1
    captured = capsys.readouterr()
    assert "operators TensorRT's ONNX parser does not support: {'BitShift': 1}" in captured.out
    error = captured.err.strip()
    assert len(error.splitlines()) == 1
    assert "{'BitShift': 1}; nothing written (--allow-unsupported-ops" in error
    assert not output.exists() and list(tmp_path.iterdir()) == []
    # Asked for, the model is kept (parity still passed: the extra node changes no output).
    assert main(export_args(checkpoint, output, shared_bags, "--allow-unsupported-ops")) == 0
    assert unsupported_tensorrt_ops(output) == {"BitShift": 1}
    assert "wrote" in capsys.readouterr().out


def test_export_checks_its_flags_before_any_work(checkpoint: Path, tmp_path: Path) -> None:
    output = tmp_path / "m.onnx"
    assert main(["export", str(checkpoint), "-o", str(output), "--parity-atol", "-1"]) == 1
    missing = str(tmp_path / "no_frames")
    assert main(["export", str(checkpoint), "-o", str(output), "--parity-frames", missing]) == 1
    assert list(tmp_path.iterdir()) == []


def test_unsupported_operators_are_reported(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    node = helper.make_node("Unique", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
    )
    path = tmp_path / "unique.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert unsupported_tensorrt_ops(path) == {"Unique": 1}


def test_export_refuses_an_existing_output(checkpoint: Path, tmp_path: Path) -> None:
    output = tmp_path / "m.onnx"
    output.write_bytes(b"keep me")
    assert main(["export", str(checkpoint), "-o", str(output)]) != 0
    assert output.read_bytes() == b"keep me"
