"""ONNX export: ONNX Runtime matches PyTorch at two sizes, metadata travels, contract checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from panoptic_ros.contract import (  # noqa: E402
    HEAD_OUTPUTS,
    INPUT_NAME,
    METADATA_KEY,
    ModelMetadata,
    read_sidecar,
)
from panoptic_ros.errors import ConfigError, ModelFileError  # noqa: E402
from panoptic_ros.export.onnx_export import (  # noqa: E402
    check_onnx_contract,
    export_onnx,
    read_onnx_metadata,
)
from panoptic_ros.export.tensorrt_ops import unsupported_tensorrt_ops  # noqa: E402
from panoptic_ros.labels import CITYSCAPES  # noqa: E402
from panoptic_ros.modeling.network import PanopticNet, build_network  # noqa: E402

EXPORT_HW = (64, 128)
#: ORT and PyTorch run the same FP32 graph; only summation order differs.
TOLERANCE = 1e-4


def _tiny_network() -> PanopticNet:
    """Small random network whose every output varies (no zero-initialised layer left)."""
    torch.manual_seed(0)
    network = build_network(num_classes=19, fpn_channels=16, head_channels=16)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                # Non-trivial statistics so normalisation is really exercised.
                module.running_mean.uniform_(-0.2, 0.2, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
        # The heatmap conv starts at zero (mostly background); random here, or the
        # comparison of that output would be vacuous.
        last = network.instance_head.center[-1]
        assert isinstance(last, torch.nn.Conv2d)
        torch.nn.init.normal_(last.weight, std=1.0, generator=generator)
    return network.eval()


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[PanopticNet, Path]:
    network = _tiny_network()
    metadata = ModelMetadata(
        labels=CITYSCAPES.with_drivable(["road", "sidewalk"]),
        input_hw=EXPORT_HW,
        provenance={"test": "tiny"},
    )
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    returned = export_onnx(network, path, metadata=metadata, input_hw=EXPORT_HW, dynamic=True)
    assert returned == path
    return network, path


@pytest.mark.parametrize(("batch", "height", "width"), [(1, 64, 128), (2, 96, 160)])
def test_onnxruntime_matches_torch(
    tiny_export: tuple[PanopticNet, Path], batch: int, height: int, width: int
) -> None:
    network, path = tiny_export
    image = np.random.default_rng(height).integers(0, 256, (batch, height, width, 3), np.uint8)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == list(HEAD_OUTPUTS)
    got = session.run(None, {INPUT_NAME: image})
    with torch.no_grad():
        expected = network(torch.from_numpy(image))
    channels = (19, 1, 2)
    for name, ours, theirs, c in zip(HEAD_OUTPUTS, got, expected, channels, strict=True):
        assert ours.dtype == np.float32, name
        assert ours.shape == (batch, c, height // 4, width // 4), name
        reference = theirs.numpy()
        assert float(reference.std()) > 1e-3, f"{name} is constant: the check would be vacuous"
        difference = float(np.abs(ours - reference).max())
        print(f"{name} at {batch}x{height}x{width}: max |ORT - torch| = {difference:.2e}")
        assert difference < TOLERANCE, name


def test_graph_uses_standard_static_ops(tiny_export: tuple[PanopticNet, Path]) -> None:
    _, path = tiny_export
    proto = onnx.load(str(path))
    ops = {node.op_type for node in proto.graph.node}
    assert not ops & {"If", "Loop", "NonZero", "NonMaxSuppression", "RoiAlign", "TopK"}
    assert all(node.domain in ("", "ai.onnx") for node in proto.graph.node)
    assert unsupported_tensorrt_ops(path) == {}
    assert proto.opset_import[0].version == 17
    image = proto.graph.input[0]
    assert image.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim] == [
        "batch",
        "height",
        "width",
        3,
    ]


def test_metadata_round_trips(tiny_export: tuple[PanopticNet, Path]) -> None:
    _, path = tiny_export
    metadata = read_onnx_metadata(path)
    assert metadata.input_hw == EXPORT_HW
    assert metadata.dynamic_input
    assert metadata.labels == CITYSCAPES.with_drivable(["road", "sidewalk"])
    assert metadata.mean_rgb == (127.0, 127.0, 127.0)
    assert dict(metadata.provenance) == {"test": "tiny"}
    assert read_sidecar(path) == metadata
    assert check_onnx_contract(path) == metadata
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    embedded = session.get_modelmeta().custom_metadata_map[METADATA_KEY]
    assert ModelMetadata.from_json(embedded) == metadata


def test_static_export_fixes_the_size(tmp_path: Path) -> None:
    network = _tiny_network()
    metadata = ModelMetadata(labels=CITYSCAPES, input_hw=(32, 32))
    path = export_onnx(
        network, tmp_path / "s.onnx", metadata=metadata, input_hw=(64, 96), dynamic=False
    )
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 64, 96, 3]
    stored = read_onnx_metadata(path)
    assert stored.input_hw == (64, 96)
    assert not stored.dynamic_input
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception, match=r"[Ii]nvalid|[Dd]imension"):
        session.run(None, {INPUT_NAME: np.zeros((1, 96, 160, 3), np.uint8)})


def test_size_not_multiple_of_32_is_refused(tmp_path: Path) -> None:
    metadata = ModelMetadata(labels=CITYSCAPES, input_hw=EXPORT_HW)
    with pytest.raises(ConfigError, match="multiples of 32"):
        export_onnx(_tiny_network(), tmp_path / "x.onnx", metadata=metadata, input_hw=(60, 128))
    assert list(tmp_path.iterdir()) == []


def _edited(source: Path, target: Path, edit: str) -> Path:
    proto = onnx.load(str(source))
    if edit == "rename_output":
        for node in proto.graph.node:
            node.output[:] = ["offset" if o == "offsets" else o for o in node.output]
        for output in proto.graph.output:
            if output.name == "offsets":
                output.name = "offset"
    elif edit == "drop_metadata":
        del proto.metadata_props[:]
    elif edit == "bad_metadata":
        proto.metadata_props[0].value = '{"format_version": 1}'
    onnx.save(proto, str(target))
    return target


def test_contract_violations_are_named(
    tiny_export: tuple[PanopticNet, Path], tmp_path: Path
) -> None:
    _, path = tiny_export
    renamed = _edited(path, tmp_path / "renamed.onnx", "rename_output")
    onnx.checker.check_model(str(renamed))  # still a valid model, just not ours
    with pytest.raises(ModelFileError, match=r"output 'offsets' is missing \(outputs: \["):
        check_onnx_contract(renamed)
    with pytest.raises(ModelFileError, match="has no 'panoptic_ros' metadata"):
        read_onnx_metadata(_edited(path, tmp_path / "bare.onnx", "drop_metadata"))
    with pytest.raises(ModelFileError, match="invalid panoptic_ros metadata"):
        read_onnx_metadata(_edited(path, tmp_path / "bad.onnx", "bad_metadata"))
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07not a protobuf at all" * 10)
    with pytest.raises(ModelFileError, match="cannot read ONNX model"):
        read_onnx_metadata(garbage)
    with pytest.raises(ModelFileError, match="cannot read ONNX model"):
        check_onnx_contract(tmp_path / "missing.onnx")


class _Broken(torch.nn.Module):
    """Fails while being traced, as a model with an unsupported operation would."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("unsupported operation in forward")


def test_failed_export_leaves_nothing(tmp_path: Path) -> None:
    metadata = ModelMetadata(labels=CITYSCAPES, input_hw=EXPORT_HW)
    with pytest.raises(ModelFileError, match=r"ONNX export to .* failed: unsupported operation"):
        export_onnx(_Broken(), tmp_path / "b.onnx", metadata=metadata, input_hw=EXPORT_HW)
    assert list(tmp_path.iterdir()) == []
