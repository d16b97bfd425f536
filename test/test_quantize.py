"""FP16 and INT8 (Q/DQ) model variants: contract kept, symmetric zero points, accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
import onnx
import onnxruntime as ort

from panoptic_ros.errors import ModelFileError
from panoptic_ros.export.onnx_export import check_onnx_contract
from panoptic_ros.export.quantize import (
    DEFAULT_FLOAT_PATTERNS,
    calibration_frames,
    check_symmetric_zero_points,
    convert_fp16,
    quantize_int8,
)

SAMPLE_BAG = Path(__file__).resolve().parent.parent / "samples" / "synthetic_street"


def run_model(path: Path, image: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": image[None]})


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return calibration_frames(SAMPLE_BAG, (128, 256), count=6)


def test_calibration_frames_from_a_bag_and_a_folder(
    frames: list[np.ndarray], tmp_path: Path
) -> None:
    import cv2

    assert len(frames) == 6
    assert all(f.shape == (128, 256, 3) and f.dtype == np.uint8 for f in frames)
    # 960x540 letterboxed into 256x128 is 228 px wide: the last columns are padding.
    assert not frames[0][:, -1].any()
    assert frames[0][:, 220].any()
    for index, frame in enumerate(frames[:3]):
        cv2.imwrite(str(tmp_path / f"{index}.png"), frame[..., ::-1])
    from_folder = calibration_frames(tmp_path, (128, 256), count=10)
    assert len(from_folder) == 3
    assert np.array_equal(from_folder[0], frames[0])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFileError, match="holds no JPEG/PNG"):
        calibration_frames(tmp_path / "empty", (128, 256))


def test_fp16_keeps_the_contract_and_the_outputs(
    tiny_onnx_model: Path, frames: list[np.ndarray], tmp_path: Path
) -> None:
    target = tmp_path / "m.fp16.onnx"
    metadata = convert_fp16(tiny_onnx_model, target)
    assert metadata.precision == "fp16"
    assert check_onnx_contract(target).precision == "fp16"
    reference = run_model(tiny_onnx_model, frames[0])
    half = run_model(target, frames[0])
    for ref, got in zip(reference, half, strict=True):
        assert got.dtype == np.float32
        scale = np.abs(ref).max() + 1e-6
        assert np.abs(ref - got).max() / scale < 0.02
    assert target.stat().st_size < 0.6 * tiny_onnx_model.stat().st_size


def test_fp16_for_dla_has_static_shapes(tiny_onnx_model: Path, tmp_path: Path) -> None:
    target = tmp_path / "m.fp16-dla.onnx"
    metadata = convert_fp16(tiny_onnx_model, target, static_hw=(128, 256))
    assert not metadata.dynamic_input
    dims = [d.dim_value for d in onnx.load(str(target)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 128, 256, 3]


def test_int8_is_symmetric_qdq(
    tiny_onnx_model: Path, frames: list[np.ndarray], tmp_path: Path
) -> None:
    target = tmp_path / "m.int8.onnx"
    metadata = quantize_int8(tiny_onnx_model, target, frames, method="minmax")
    assert metadata.precision == "int8"
    proto = onnx.load(str(target))
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("QuantizeLinear") > 50
    assert check_symmetric_zero_points(proto) > 50
    # The three output convolutions stay float (no DequantizeLinear feeding their inputs).
    producers = {o: n for n in proto.graph.node for o in n.output}
    for name in ("semantic_logits", "center_heatmap", "offsets"):
        conv = producers[name]
        assert conv.op_type == "Conv"
        assert (
            producers[conv.input[1]].op_type != "DequantizeLinear"
            if conv.input[1] in producers
            else True
        )
    reference = run_model(tiny_onnx_model, frames[1])
    quantized = run_model(target, frames[1])
    agreement = np.mean(reference[0].argmax(1) == quantized[0].argmax(1))
    assert agreement > 0.5  # random weights: only a sanity bound; the trained model is measured
    assert check_onnx_contract(target).precision == "int8"


def test_non_zero_zero_point_is_refused(
    tiny_onnx_model: Path, frames: list[np.ndarray], tmp_path: Path
) -> None:
    target = tmp_path / "m.int8.onnx"
    quantize_int8(tiny_onnx_model, target, frames[:2], method="minmax")
    proto = onnx.load(str(target))
    zero_point = next(i for i in proto.graph.initializer if "zero_point" in i.name)
    values = onnx.numpy_helper.to_array(zero_point).copy()
    values.flat[0] = 3
    zero_point.CopyFrom(onnx.numpy_helper.from_array(values, zero_point.name))
    with pytest.raises(ModelFileError, match="TensorRT accepts only symmetric"):
        check_symmetric_zero_points(proto)
    # A zero point of value 0 but type uint8 (asymmetric activations) is refused too.
    zeros = np.zeros_like(values, dtype=np.uint8)
    zero_point.CopyFrom(onnx.numpy_helper.from_array(zeros, zero_point.name))
    with pytest.raises(ModelFileError, match="is uint8; TensorRT accepts only int8") as caught:
        check_symmetric_zero_points(proto)
    assert "\n" not in str(caught.value)
    # A zero point from a Constant node is checked like an initialiser.
    proto = onnx.load(str(target))
    node = next(n for n in proto.graph.node if n.op_type == "QuantizeLinear")
    bad = onnx.numpy_helper.from_array(np.array(5, np.int8))
    constant = onnx.helper.make_node("Constant", [], ["zp_const"], value=bad, name="zp")
    proto.graph.node.insert(0, constant)
    node.input[2] = "zp_const"
    with pytest.raises(ModelFileError, match=r"'zp_const' .* is not 0"):
        check_symmetric_zero_points(proto)


def _weight_is_quantized(proto: onnx.ModelProto, node: onnx.NodeProto) -> bool:
    producers = {output: n for n in proto.graph.node for output in n.output}
    weight = producers.get(node.input[1])
    return weight is not None and weight.op_type == "DequantizeLinear"


def test_int8_leaves_the_first_block_float_unless_told_otherwise(
    tiny_onnx_model: Path, frames: list[np.ndarray], tmp_path: Path, caplog: Any
) -> None:
    default = tmp_path / "default.int8.onnx"
    quantize_int8(tiny_onnx_model, default, frames[:2], method="minmax")
    everything = tmp_path / "all.int8.onnx"
    quantize_int8(tiny_onnx_model, everything, frames[:2], method="minmax", exclude_patterns=())
    for path, first_block_quantized in ((default, False), (everything, True)):
        proto = onnx.load(str(path))
        convs = [n for n in proto.graph.node if n.op_type == "Conv"]
        first_block = [n for n in convs if any(p in n.name for p in DEFAULT_FLOAT_PATTERNS)]
        assert len(first_block) == 2  # depthwise 3x3 and linear 1x1
        assert all(_weight_is_quantized(proto, n) == first_block_quantized for n in first_block)
        assert sum(_weight_is_quantized(proto, n) for n in convs) > 20
    with caplog.at_level("WARNING"):
        quantize_int8(
            tiny_onnx_model,
            tmp_path / "typo.int8.onnx",
            frames[:1],
            method="minmax",
            exclude_patterns=("/backbone/stage0/",),
        )
    assert "no node of" in caplog.text and "/backbone/stage0/" in caplog.text


def test_quantize_command_refuses_contradicting_options(
    tiny_onnx_model: Path, tmp_path: Path
) -> None:
    from panoptic_ros.cli.main import main

    code = main(
        [
            "quantize",
            str(tiny_onnx_model),
            "--calibration",
            str(SAMPLE_BAG),
            "--quantize-all",
            "--keep-float",
            "/fpn/",
            "-o",
            str(tmp_path / "q"),
        ]
    )
    assert code == 1
    # Refused before anything is written (the FP16 models used to come first).
    assert not (tmp_path / "q").exists()


@pytest.mark.slow
def test_int8_demo_model_stays_within_one_pq_point(tmp_path: Path) -> None:
    """The issue's aim, on the bundled model: calibrated on the sample bag's 16 frames."""
    from panoptic_ros.config import config_from_flat
    from panoptic_ros.evaluation.model_eval import evaluate_pipeline, held_out_synthetic
    from panoptic_ros.pipeline import PanopticPipeline
    from panoptic_ros.resources import synthetic_model_path

    source = synthetic_model_path()
    target = tmp_path / "demo.int8.onnx"
    quantize_int8(source, target, calibration_frames(SAMPLE_BAG, (256, 512), count=16))
    scenes = held_out_synthetic(24, 256, 512)
    quality = {}
    for name, path in (("fp32", source), ("int8", target)):
        config = config_from_flat(
            {"model.model_file_path": str(path), "backend.name": "onnxruntime"}
        )
        with PanopticPipeline.from_config(config) as pipeline:
            quality[name] = evaluate_pipeline(pipeline, scenes).summary["all"]["pq"]
    print(quality)
    assert quality["int8"] >= quality["fp32"] - 0.01, quality


def _float16_outside_the_network(proto: onnx.ModelProto) -> list[str]:
    """Nodes outside the network scope that read or write a float16 tensor."""
    from panoptic_ros.export.fused import NETWORK_SCOPE

    inferred = onnx.shape_inference.infer_shapes(proto)
    graph = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.output]}
    types.update({i.name: i.data_type for i in graph.initializer})
    half = onnx.TensorProto.FLOAT16
    return [
        n.name
        for n in graph.node
        if not n.name.startswith(NETWORK_SCOPE)
        and any(types.get(t) == half for t in [*n.input, *n.output])
    ]


def test_fp16_of_a_fused_model_keeps_the_fusion_float32(tmp_path: Path) -> None:
    """Only the network goes to float16: the fusion equals NumPy on the rounded heads."""
    pytest.importorskip("torch")
    from test_fused_export import LABELS, PARAMS, export_fused_heads
    from test_fusion_torch import realistic_heads

    from panoptic_ros.export.fused import cells_from_fused
    from panoptic_ros.fusion import fuse_cells
    from panoptic_ros.results import HeadOutputs

    heads = realistic_heads(4)
    source = export_fused_heads(heads, tmp_path / "fused.onnx")
    target = tmp_path / "fused.fp16.onnx"
    metadata = convert_fp16(source, target)  # failed before: "/TopK ... topologically sorted"
    assert (metadata.precision, metadata.contract.value) == ("fp16", "fused")
    proto = onnx.load(str(target))
    assert _float16_outside_the_network(proto) == []
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in proto.graph.initializer)
    # The stand-in network's heads are now float16 values; the fusion must be exact on them.
    rounded = HeadOutputs(
        *(
            getattr(heads, name).astype(np.float16).astype(np.float32)
            for name in ("semantic_logits", "center_heatmap", "offsets")
        )
    )
    reference = fuse_cells(rounded, LABELS, PARAMS)
    image = np.zeros((1, *metadata.input_hw, 3), np.uint8)
    semantic, instance, table, count = run_model(target, image[0])
    cells = cells_from_fused(
        semantic[0], instance[0], table[0], count[0], valid_hw=reference.semantic.shape
    )
    assert len(reference.classes) > 0
    assert np.array_equal(cells.semantic, reference.semantic)
    assert np.array_equal(cells.instances, reference.instances)
    assert np.array_equal(cells.classes, reference.classes)
    np.testing.assert_allclose(cells.scores, reference.scores, rtol=1e-5)
    static = convert_fp16(source, tmp_path / "fused.fp16-dla.onnx", static_hw=metadata.input_hw)
    assert not static.dynamic_input


def test_fp16_fused_demo_model_on_held_out_scenes(tmp_path: Path) -> None:
    """The demo model with the fusion folded in, FP16 vs FP32, on 24 held-out scenes.

    Measured (2-core VM, ONNX Runtime 1.32 CPU): the FP16 fused maps equal the NumPy fusion
    of the FP16 heads model in 24/24 scenes (the fusion is exact float32); against the FP32
    fused model the instance counts agree in 24/24 and at most 0.05% of the cells of a scene
    differ (network rounding). The bound below leaves room for other CPUs' kernels.
    """
    pytest.importorskip("torch")
    from panoptic_ros.data.synthetic import HELD_OUT_SEED_START, generate_scene
    from panoptic_ros.export.fused import append_fusion, cells_from_fused
    from panoptic_ros.fusion import FusionParams, fuse_cells
    from panoptic_ros.resources import synthetic_model_path
    from panoptic_ros.results import HeadOutputs

    params = FusionParams(top_k=64)
    fp32 = append_fusion(synthetic_model_path(), tmp_path / "demo.fused.onnx", params=params)
    fp16 = tmp_path / "demo.fused.fp16.onnx"
    convert_fp16(fp32, fp16)
    heads16 = tmp_path / "demo.fp16.onnx"
    labels = convert_fp16(synthetic_model_path(), heads16).labels
    sessions = {
        name: ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for name, path in (("fp32", fp32), ("fp16", fp16), ("heads16", heads16))
    }
    worst_cells = 0.0
    for index in range(24):
        image = generate_scene(HELD_OUT_SEED_START + index, 256, 512).image[None]
        full, half = (sessions[n].run(None, {"image": image}) for n in ("fp32", "fp16"))
        heads = HeadOutputs(*sessions["heads16"].run(None, {"image": image}))
        reference = fuse_cells(heads, labels, params)
        cells = cells_from_fused(*(o[0] for o in half), valid_hw=reference.semantic.shape)
        assert np.array_equal(cells.semantic, reference.semantic), index
        assert np.array_equal(cells.instances, reference.instances), index
        assert np.array_equal(cells.classes, reference.classes), index
        assert int(half[3][0]) == int(full[3][0]), index
        worst_cells = max(worst_cells, float((half[0] != full[0]).mean()))
    assert worst_cells < 0.002, worst_cells
