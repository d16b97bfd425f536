"""A tiny training run on synthetic scenes: loss falls, quality rises, resume is exact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from panoptic_ros.config import config_from_flat  # noqa: E402
from panoptic_ros.data.synthetic import generate_scene  # noqa: E402
from panoptic_ros.evaluation.model_eval import evaluate_torch_network, held_out_synthetic  # noqa: E402
from panoptic_ros.fusion import FusionParams  # noqa: E402
from panoptic_ros.labels import CITYSCAPES  # noqa: E402
from panoptic_ros.training.loop import train  # noqa: E402

LABELS = CITYSCAPES.with_drivable(["road"])
TINY = {
    "train.steps": 40,
    "train.batch_size": 4,
    "train.image_height": 128,
    "train.image_width": 256,
    "train.learning_rate": 0.004,
    "train.warmup_steps": 5,
    "train.num_workers": 0,
    "train.eval_every": 0,
    "train.fpn_channels": 32,
    "train.head_channels": 32,
}


def source(seed: int) -> Any:
    return generate_scene(seed, 128, 256)


def run(
    tmp: Path,
    *,
    resume: bool = False,
    stop_at: int | None = None,
    evaluate: Any = None,
    **overrides: Any,
) -> Any:
    torch.set_num_threads(2)
    config = config_from_flat({**TINY, **overrides})
    needed = config.train.steps * config.train.batch_size
    return train(
        config,
        LABELS,
        source,
        list(range(needed)),
        tmp,
        evaluate=evaluate,
        resume=resume,
        progress=False,
        device="cpu",
        export_onnx=False,
        stop_at=stop_at,
    )


@pytest.mark.slow
def test_loss_falls_and_quality_rises(tmp_path: Path) -> None:
    scenes = held_out_synthetic(4, 128, 256)

    def evaluate(network: Any, metadata: Any) -> dict[str, Any]:
        return evaluate_torch_network(network, metadata, scenes, FusionParams()).to_dict()

    outcome = run(tmp_path, evaluate=evaluate, **{"train.steps": 60, "train.eval_every": 20})
    assert outcome.losses["last"] < 0.75 * outcome.losses["first"]
    (_, early), (_, late) = outcome.evaluations[0], outcome.evaluations[-1]
    assert late["miou"] > early["miou"]
    assert late["all"]["pq"] > early["all"]["pq"]
    assert (tmp_path / "model.safetensors").is_file()
    if __import__("importlib").util.find_spec("tensorboard") is not None:
        assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def _losses(path: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {row["step"]: row["total"] for row in rows if "total" in row}


@pytest.mark.slow
def test_resume_continues_with_the_same_losses(tmp_path: Path) -> None:
    overrides = {"train.steps": 20, "train.batch_size": 2}
    straight = run(tmp_path / "straight", **overrides)
    interrupted = run(tmp_path / "resumed", stop_at=10, **overrides)
    assert interrupted.steps == 10
    resumed = run(tmp_path / "resumed", resume=True, **overrides)
    assert resumed.steps == 20
    expected = _losses(tmp_path / "straight" / "metrics.jsonl")
    got = _losses(tmp_path / "resumed" / "metrics.jsonl")
    assert sorted(got) == sorted(expected) == [10, 20]
    assert got[20] == pytest.approx(expected[20], rel=1e-4)
    assert straight.steps == 20


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path: Path) -> None:
    """DistributedDataParallel over two CPU processes (gloo): both end with equal weights."""
    import re
    import subprocess
    import sys

    output = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--standalone",
        "-m",
        "panoptic_ros",
        "train",
        "-o",
        str(output),
        "--device",
        "cpu",
        *[
            f"--set={k}={v}"
            for k, v in {
                **TINY,
                "train.steps": 4,
                "train.batch_size": 1,
                "train.image_height": 64,
                "train.image_width": 128,
                "train.backbone_weights": "none",
            }.items()
        ],
    ]
    completed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    log = completed.stdout + completed.stderr
    assert completed.returncode == 0, log[-3000:]
    digests = re.findall(r"rank (\d) of 2: parameters sha256 (\w+)", log)
    assert sorted(rank for rank, _ in digests) == ["0", "1"], log[-3000:]
    assert digests[0][1] == digests[1][1]  # gradients were averaged: identical weights
    assert json.loads((output / "environment.json").read_text())["world_size"] == 2
    assert (output / "model.safetensors").is_file()
    assert len(_losses(output / "metrics.jsonl")) == 1  # only rank 0 writes (step 4 is last)
