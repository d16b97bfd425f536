"""A tiny training run on synthetic scenes: loss falls, quality rises, resume is exact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from panoptic_ros.config import config_from_flat  # noqa: E402
from panoptic_ros.data.synthetic import generate_scene  # noqa: E402
from panoptic_ros.evaluation.model_eval import evaluate_torch_network, held_out_synthetic  # noqa: E402
from panoptic_ros.fusion import FusionParams  # noqa: E402
from panoptic_ros.labels import CITYSCAPES  # noqa: E402
from panoptic_ros.training.data import AugmentParams, TargetDataset, augment, collate  # noqa: E402
from panoptic_ros.training.loop import train  # noqa: E402
from panoptic_ros.training.losses import panoptic_loss  # noqa: E402

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
    "train.scale_min": 1.0,  # scenes are drawn at the training size
    "train.scale_max": 1.0,
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


class CrowdSample:
    """Road with one car (instance 1), a crowd of cars (ignored) and a void block.

    The crowd region also carries an instance number, so the test sees that ignoring it,
    not the missing number, keeps it from making a centre.
    """

    def __init__(self, *, with_ignore: bool = True) -> None:
        height, width = 128, 256
        self.image = np.full((height, width, 3), 90, np.uint8)
        self.semantic = np.full((height, width), LABELS.index("road"), np.uint8)
        self.instances = np.zeros((height, width), np.int32)
        car = LABELS.index("car")
        self.semantic[40:72, 20:68] = car  # the car, centre (55.5, 43.5)
        self.instances[40:72, 20:68] = 1
        self.semantic[48:96, 152:232] = car  # the crowd, centre (71.5, 191.5)
        self.instances[48:96, 152:232] = 2
        self.semantic[100:128, 80:120] = 255  # void
        self.ignore_mask = np.zeros((height, width), np.bool_)
        if with_ignore:
            self.ignore_mask[48:96, 152:232] = True
        self.crowd_cells = (slice(12, 24), slice(38, 58))  # stride-4 cells inside the crowd
        self.void_cells = (slice(25, 32), slice(20, 30))


def test_crowd_and_void_get_no_loss_weight_and_no_centre() -> None:
    sample = CrowdSample()
    plain = TargetDataset(lambda _: sample, [0], augment_params=None)[0]
    # Flipped: the ignore mask must follow the image.
    no_jitter = AugmentParams(flip=1.0, brightness=0.0, contrast=0.0, saturation=0.0)
    flipped = TargetDataset(lambda _: sample, [0], augment_params=no_jitter)[0]
    for name in ("semantic", "semantic_weight", "center_heatmap", "center_weight"):
        assert np.array_equal(flipped[name], plain[name][..., ::-1]), name
    crowd, void = sample.crowd_cells, sample.void_cells
    for cells in (crowd, void):
        assert (plain["semantic"][cells] == 255).all()
        assert (plain["semantic_weight"][cells] == 0).all()
        assert (plain["center_weight"][0][cells] == 0).all()
        assert (plain["offset_weight"][0][cells] == 0).all()
    heatmap = plain["center_heatmap"][0]
    assert heatmap[13, 10] > 0.9  # the car's centre (55.5, 43.5) is cell (13, 10)
    assert heatmap[17, 47] < 1e-3  # no centre at the crowd's (71.5, 191.5)
    assert plain["semantic_weight"][13, 10] > 0
    # Without the mask the crowd would be an instance with a centre: the mask is what acts.
    unmasked = TargetDataset(lambda _: CrowdSample(with_ignore=False), [0], augment_params=None)
    assert unmasked[0]["center_heatmap"][0][17, 47] > 0.9

    # Whatever the network says inside the crowd and the void, the loss does not change.
    batch = collate([plain])
    torch.manual_seed(0)
    logits = torch.randn(1, LABELS.num_classes, 32, 64)
    heat = torch.rand(1, 1, 32, 64)
    offsets = torch.randn(1, 2, 32, 64)
    before = panoptic_loss((logits, heat, offsets), batch)
    for cells in (crowd, void):
        logits[0, :, cells[0], cells[1]] = torch.randn_like(logits[0, :, cells[0], cells[1]]) * 9
        heat[0, :, cells[0], cells[1]] = 5.0
        offsets[0, :, cells[0], cells[1]] = 300.0
    after = panoptic_loss((logits, heat, offsets), batch)
    for key in ("semantic", "center", "offset"):
        assert float(after[key]) == pytest.approx(float(before[key]), rel=1e-6), key
    # ... while the same change on the car moves it.
    logits[0, :, 11:16, 8:13] = torch.randn_like(logits[0, :, 11:16, 8:13]) * 9
    heat[0, :, 11:16, 8:13] = 5.0
    moved = panoptic_loss((logits, heat, offsets), batch)
    assert float(moved["center"]) > float(before["center"])


NO_COLOUR = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0}


def _augmented(seed: int, params: AugmentParams, scene: Any = None) -> tuple[Any, ...]:
    scene = scene if scene is not None else generate_scene(5, 256, 512)
    ignore = np.zeros(scene.semantic.shape, np.bool_)
    ignore[:40, :100] = True
    rng = np.random.default_rng(seed)
    return augment(scene.image, scene.semantic, scene.instances, ignore, rng, params)


def test_scale_jitter_and_crop_give_the_training_size_deterministically() -> None:
    params = AugmentParams(scale_min=0.25, scale_max=2.0, crop_hw=(96, 160))
    first = _augmented(3, params)
    for array in first:
        assert array.shape[:2] == (96, 160)
    for a, b in zip(first, _augmented(3, params), strict=True):
        assert np.array_equal(a, b)  # same generator, same sample
    assert first[0].dtype == np.uint8 and first[2].dtype == np.int32 and first[3].dtype == bool
    others = [_augmented(seed, params)[1] for seed in range(4, 10)]
    assert not all(np.array_equal(first[1], other) for other in others)


def test_rescaled_labels_are_nearest_samples_aligned_with_the_image() -> None:
    scene = generate_scene(5, 64, 128)
    # An image whose colour is its class, so image and labels can be compared pixel by pixel.
    palette = LABELS.color_table()
    painted = type("Painted", (), {})()
    painted.image, painted.semantic, painted.instances = (
        palette[scene.semantic],
        scene.semantic,
        scene.instances,
    )
    params = AugmentParams(flip=0.0, scale_min=2.0, scale_max=2.0, crop_hw=(64, 96), **NO_COLOUR)
    image, semantic, instances, ignore = _augmented(11, params, painted)

    # Scale 2 exactly: every input pixel becomes a 2x2 block, at some crop offset.
    def blocks(array: Any) -> Any:
        return np.repeat(np.repeat(array, 2, axis=0), 2, axis=1)

    big_semantic, big_instances = blocks(scene.semantic), blocks(scene.instances)
    offsets = [
        (y, x)
        for y in range(128 - 64 + 1)
        for x in range(256 - 96 + 1)
        if np.array_equal(big_semantic[y : y + 64, x : x + 96], semantic)
        and np.array_equal(big_instances[y : y + 64, x : x + 96], instances)
    ]
    assert offsets, "labels are not a nearest-neighbour crop of the 2x image"
    original_ignore = np.zeros((64, 128), bool)
    original_ignore[:40, :100] = True
    (y, x) = next(
        (y, x)
        for y, x in offsets
        if np.array_equal(blocks(original_ignore)[y : y + 64, x : x + 96], ignore)
    )
    # The image at the same offset is the bilinear 2x image (pixel-centre convention), so
    # image and labels are aligned.
    bilinear = cv2.resize(painted.image, (256, 128), interpolation=cv2.INTER_LINEAR)
    difference = np.abs(bilinear[y : y + 64, x : x + 96].astype(int) - image.astype(int))
    assert difference.max() <= 1


def test_a_small_rescale_is_padded_with_void_and_ignored() -> None:
    params = AugmentParams(
        flip=0.0, scale_min=0.25, scale_max=0.25, crop_hw=(128, 256), **NO_COLOUR
    )
    image, semantic, instances, ignore = _augmented(2, params)
    # 256x512 at 0.25 is 64x128, pasted somewhere into the 128x256 crop.
    inside = semantic != 255
    scene = generate_scene(5, 256, 512)
    void_in_scene = (scene.semantic == 255).mean()
    assert inside.sum() >= 64 * 128 * (1 - void_in_scene) - 200
    rows, cols = np.nonzero(~ignore)
    assert rows.max() - rows.min() < 64 and cols.max() - cols.min() < 128
    padding = np.ones_like(ignore)
    padding[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = False
    assert ignore[padding].all() and (semantic[padding] == 255).all()
    assert (instances[padding] == 0).all() and (image[padding] == params.pad_value).all()
    assert padding.mean() > 0.7


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
