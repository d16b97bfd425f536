"""`panoptic-ros export`: heads and fused models, parity with PyTorch on real frames, TRT ops."""

from __future__ import annotations

from pathlib import Path

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
    assert "over 4 frames" in printed
    assert "every operator is in TensorRT 10's ONNX parser support list" in printed
    line = next(x for x in printed.splitlines() if x.startswith("ONNX Runtime vs PyTorch"))
    values = [float(v.split()[-1]) for v in line.split(":", 1)[1].split(" over")[0].split(",")]
    assert max(values) < 1e-3
    assert unsupported_tensorrt_ops(output) == {}


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
