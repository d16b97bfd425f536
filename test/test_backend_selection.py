"""Which backend runs: the requested one, the fallback with its reason, or auto's choice."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from panoptic_ros.backends import base
from panoptic_ros.backends.base import BackendRequest, create_backend
from panoptic_ros.config import config_from_flat
from panoptic_ros.errors import BackendError, ConfigError, ModelFileError
from panoptic_ros.resources import DEFAULT_MODEL_NAME


class _Started:
    def __init__(self, name: str) -> None:
        self.name = name
        self.device = "cpu"
        self.input_hw = (256, 512)


def _factories(calls: list[str], failing: dict[str, Exception]) -> dict[str, Any]:
    def factory(name: str) -> Any:
        def create(request: BackendRequest) -> _Started:
            calls.append(name)
            if name in failing:
                raise failing[name]
            return _Started(name)

        return create

    return {name: factory(name) for name in base.BACKEND_ORDER}


def _sections(**flat: Any) -> tuple[Any, Any]:
    config = config_from_flat(flat)
    return config.model, config.backend


def test_requested_backend_that_cannot_start_hands_over_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []
    failing = {"tensorrt": BackendError("tensorrt is not installed (pip install tensorrt)")}
    model, backend = _sections(**{"backend.name": "tensorrt"})
    with caplog.at_level(logging.INFO, logger="panoptic_ros.backends.base"):
        created = create_backend(model, backend, factories=_factories(calls, failing))
    assert created.name == "torch" and calls == ["tensorrt", "torch"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "backend tensorrt unavailable (tensorrt is not installed (pip install tensorrt)); "
        "trying the next one"
    ]
    chosen = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(chosen) == 1 and chosen[0].startswith("backend torch on cpu chosen (fallback)")


def test_without_fallback_the_requested_backends_error_stands() -> None:
    calls: list[str] = []
    failing = {"tensorrt": BackendError("tensorrt is not installed")}
    model, backend = _sections(**{"backend.name": "tensorrt", "backend.allow_fallback": False})
    with pytest.raises(BackendError, match="tensorrt is not installed"):
        create_backend(model, backend, factories=_factories(calls, failing))
    assert calls == ["tensorrt"]


def test_every_reason_is_listed_when_nothing_starts() -> None:
    calls: list[str] = []
    failing = {
        "tensorrt": BackendError("no GPU"),
        "torch": BackendError("torch is not installed"),
        "onnxruntime": BackendError("onnxruntime is not installed"),
    }
    model, backend = _sections(**{"backend.name": "tensorrt"})
    with pytest.raises(BackendError) as raised:
        create_backend(model, backend, factories=_factories(calls, failing))
    assert str(raised.value) == (
        "no inference backend could start: tensorrt: no GPU; torch: torch is not installed; "
        "onnxruntime: onnxruntime is not installed"
    )


def test_a_broken_model_file_is_not_hidden_by_falling_back() -> None:
    calls: list[str] = []
    broken = ModelFileError("model.onnx breaks the output contract: no output 'offsets'")
    failing = dict.fromkeys(base.BACKEND_ORDER, broken)
    model, backend = _sections(**{"backend.name": "torch"})
    with pytest.raises(ModelFileError, match="no output 'offsets'"):
        create_backend(model, backend, factories=_factories(calls, failing))


@pytest.mark.parametrize(
    ("cuda", "device", "expected_calls"),
    [
        (False, "auto", ["onnxruntime"]),
        (True, "cpu", ["onnxruntime"]),  # the user asked for the CPU
        (True, "auto", ["tensorrt", "torch"]),  # TensorRT missing: torch on CUDA wins
    ],
)
def test_auto_order(
    monkeypatch: pytest.MonkeyPatch, cuda: bool, device: str, expected_calls: list[str]
) -> None:
    monkeypatch.setattr(base, "cuda_available", lambda: cuda)
    calls: list[str] = []
    failing = {"tensorrt": BackendError("tensorrt is not installed")}
    model, backend = _sections(**{"backend.name": "auto", "backend.device": device})
    created = create_backend(model, backend, factories=_factories(calls, failing))
    assert calls == expected_calls
    assert created.name == expected_calls[-1]


def test_auto_on_this_cpu_machine_runs_the_bundled_model_in_onnxruntime(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pytest.importorskip("onnxruntime")
    model, backend = _sections(**{"backend.name": "auto", "backend.device": "cpu"})
    with caplog.at_level(logging.INFO, logger="panoptic_ros.backends.base"):
        created = create_backend(model, backend)
    try:
        assert created.name == "onnxruntime"
        assert Path(created.model_path).name == DEFAULT_MODEL_NAME  # type: ignore[attr-defined]
        assert any("chosen (runs everywhere)" in r.getMessage() for r in caplog.records)
    finally:
        created.close()


def test_unknown_backend_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"backend\.name"):
        config_from_flat({"backend.name": "cuda"})
