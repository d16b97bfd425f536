"""``panoptic-ros bench``: the single run and the matrix report what they measured, and where.

No timing is asserted: only that the report holds what it claims (runs, stages, the
machine).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from panoptic_ros.cli.bench import matrix_entries
from panoptic_ros.cli.main import main
from panoptic_ros.timing import STAGES


def test_matrix_runs_every_precision_found_and_records_the_machine(
    tiny_onnx_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnxruntime")
    from panoptic_ros.export.quantize import convert_fp16

    variants = tmp_path / "q"
    convert_fp16(tiny_onnx_model, variants / "tiny.fp16.onnx")  # no INT8 file: not run
    report_path = tmp_path / "matrix.json"
    code = main(
        [
            "bench",
            "--matrix",
            "--model",
            str(tiny_onnx_model),
            "--variants",
            str(variants),
            "--matrix-sizes",
            "128x256,64x128",
            "--frames",
            "2",
            "--warmup",
            "0",
            "--device",
            "cpu",
            "--json",
            str(report_path),
        ]
    )
    assert code == 0
    report = json.loads(report_path.read_text())
    labels = [run["label"] for run in report["runs"]]
    assert labels == [
        "onnxruntime fp32 128x256",
        "onnxruntime fp16 128x256",
        "onnxruntime fp32 64x128",
        "onnxruntime fp16 64x128",
    ]
    for run in report["runs"]:
        assert run["network_size"] == run["input_size"]  # --network-size input (default)
        assert tuple(run["stages"]) == STAGES  # the node's stages, tracking included
        assert run["stages"]["tracking"]["p50_ms"] > 0
        assert 0.0 <= run["outside_network_share"] < 1.0
        assert "inference_device" not in run  # no CUDA events off CUDA
    assert [run["precision"] for run in report["runs"][:2]] == ["fp32", "fp16"]
    machine = report["environment"]
    assert machine["cpu"] and machine["cpu_count"] >= 1
    assert machine["versions"]["onnxruntime"] and machine["versions"]["numpy"]
    assert "onnxruntime fp16 64x128" in capsys.readouterr().out


def test_matrix_entries_follow_what_is_installed(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    for name in ("m.onnx", "m.int8.onnx", "m.safetensors"):
        (tmp_path / name).write_bytes(b"")
    cpu_only = matrix_entries(model, tmp_path, tensorrt=False, cuda=False)
    assert [e["label"] for e in cpu_only] == ["onnxruntime fp32", "onnxruntime int8"]
    gpu = matrix_entries(model, tmp_path, tensorrt=True, cuda=True)
    assert [e["label"] for e in gpu] == [
        "onnxruntime fp32",
        "onnxruntime int8",
        "tensorrt fp32",
        "tensorrt int8",
        "torch fp32",
        "torch fp16",
    ]
    assert gpu[-1]["model"] == tmp_path / "m.safetensors"
    # TensorRT without a CUDA device is not offered.
    assert "tensorrt fp32" not in [
        e["label"] for e in matrix_entries(model, tmp_path, tensorrt=True, cuda=False)
    ]


def test_bench_refuses_contradicting_options(tmp_path: Path) -> None:
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    assert main(["bench", "--matrix", "--image", str(image)]) == 1
    assert main(["bench", "--variants", str(tmp_path / "missing")]) == 1
