"""Training on pseudo-labelled data: soft targets, distillation, scale reference, mixing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from panoptic_ros.config import config_from_flat  # noqa: E402
from panoptic_ros.data.synthetic import generate_scene  # noqa: E402
from panoptic_ros.errors import ConfigError, EvaluationError  # noqa: E402
from panoptic_ros.labels import CITYSCAPES  # noqa: E402
from panoptic_ros.training.data import (  # noqa: E402
    AugmentParams,
    TargetDataset,
    augment,
    augment_sample,
    collate,
)
from panoptic_ros.training.losses import distillation_loss, panoptic_loss  # noqa: E402

LABELS = CITYSCAPES.with_drivable(["road"])
NO_COLOUR = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0}


def _block_mean(array: Any, stride: int = 4) -> Any:
    """[..., H, W] -> [..., ceil(H/s), ceil(W/s)] means over s x s blocks (edge blocks partial)."""
    *lead, height, width = array.shape
    cells_h, cells_w = -(-height // stride), -(-width // stride)
    total = np.zeros((*lead, cells_h, cells_w))
    count = np.zeros((cells_h, cells_w))
    for dy in range(stride):
        for dx in range(stride):
            part = array[..., dy::stride, dx::stride]
            total[..., : part.shape[-2], : part.shape[-1]] += part
            count[: part.shape[-2], : part.shape[-1]] += 1
    return total / count


def _ramp_sample(height: int = 64, width: int = 128) -> tuple[Any, ...]:
    """An image whose red is x and green is y, and 'soft targets' that are their block means."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = np.round(xs * 255 / (width - 1))
    image[..., 1] = np.round(ys * 255 / (height - 1))
    soft = _block_mean(np.moveaxis(image[..., :2].astype(np.float64), -1, 0)) / 255
    semantic = np.zeros((height, width), np.uint8)
    instances = np.zeros((height, width), np.int32)
    ignore = np.zeros((height, width), np.bool_)
    return image, semantic, instances, ignore, soft.astype(np.float16)


@pytest.mark.parametrize("flip", [0.0, 1.0])
@pytest.mark.parametrize("scale", [1.0, 1.5, 2.0])
def test_soft_targets_follow_the_image_through_flip_scale_and_crop(
    flip: float, scale: float
) -> None:
    image, semantic, instances, ignore, soft = _ramp_sample()
    params = AugmentParams(
        flip=flip, scale_min=scale, scale_max=scale, crop_hw=(64, 96), **NO_COLOUR
    )
    for seed in range(3):
        out = augment_sample(
            image,
            semantic,
            instances,
            ignore,
            np.random.default_rng(seed),
            params,
            soft_targets=soft,
        )
        assert out.soft_targets is not None and out.soft_weight is not None
        assert out.soft_targets.shape == (2, 16, 24) and out.soft_weight.shape == (16, 24)
        assert (out.soft_weight == 1).all()  # scale >= 1 and the crop is inside: no padding
        # The augmented image's own block means are what the soft targets must say.
        expected = _block_mean(np.moveaxis(out.image[..., :2].astype(np.float64), -1, 0)) / 255
        inner = (slice(None), slice(1, -1), slice(1, -1))  # edge cells sample the border
        assert np.abs(out.soft_targets[inner] - expected[inner]).max() < 0.01
        # The same draws move the labels exactly as without soft targets.
        plain = augment(image, semantic, instances, ignore, np.random.default_rng(seed), params)
        assert np.array_equal(plain[0], out.image)


def test_soft_targets_get_no_weight_on_padding() -> None:
    image, semantic, instances, ignore, soft = _ramp_sample()
    params = AugmentParams(flip=0.0, scale_min=0.5, scale_max=0.5, crop_hw=(64, 128), **NO_COLOUR)
    out = augment_sample(
        image, semantic, instances, ignore, np.random.default_rng(1), params, soft_targets=soft
    )
    assert out.soft_weight is not None
    padded = out.ignore[1::4, 1::4]  # the pixel each cell's label comes from
    assert np.array_equal(out.soft_weight == 0, padded)
    assert 0.6 < padded.mean() < 0.9  # a 32x64 image in a 64x128 crop


def test_scale_is_relative_to_the_letterbox_at_inference() -> None:
    scene = generate_scene(5, 256, 512)
    ignore = np.zeros(scene.semantic.shape, np.bool_)
    arrays = (scene.image, scene.semantic, scene.instances, ignore)
    # Inference at 128x256: the 256x512 image is seen at half size; scale 1 is that view.
    params = AugmentParams(flip=0.0, crop_hw=(128, 256), reference_hw=(128, 256), **NO_COLOUR)
    _, semantic, _, ignore_out = augment(*arrays, np.random.default_rng(0), params)
    # Output pixel u samples input (u + 0.5) / 0.5 - 0.5 = 2u + 0.5: nearest is 2u + 1.
    assert np.array_equal(semantic, scene.semantic[1::2, 1::2])
    assert not ignore_out.any()  # the whole image, no padding
    # Relative to the stored image (no reference), scale 1 is a 128x256 crop at full size.
    stored = AugmentParams(flip=0.0, crop_hw=(128, 256), **NO_COLOUR)
    _, cropped, _, _ = augment(*arrays, np.random.default_rng(0), stored)
    windows = [
        (y, x)
        for y in range(0, 129)
        for x in range(0, 257)
        if np.array_equal(scene.semantic[y : y + 128, x : x + 256], cropped)
    ]
    assert windows


def test_config_resolves_scale_reference_and_camera_effects() -> None:
    from panoptic_ros.training.loop import augment_params

    synthetic = augment_params(config_from_flat({}).train)
    assert synthetic.reference_hw is None and synthetic.hue == 0 and synthetic.blur_probability == 0
    real = {"train.dataset": "cityscapes", "train.dataset_root": "/data"}
    params = augment_params(config_from_flat(real).train)
    assert params.reference_hw == (288, 512) and params.hue > 0 and params.blur_probability > 0
    sized = augment_params(
        config_from_flat(
            {**real, "train.inference_height": 512, "train.inference_width": 1024}
        ).train
    )
    assert sized.reference_hw == (512, 1024) and sized.crop_hw == (288, 512)
    stored = augment_params(
        config_from_flat(
            {**real, "train.scale_reference": "stored", "train.camera_augment": "off"}
        ).train
    )
    assert stored.reference_hw is None and stored.hue == 0 and stored.blur_probability == 0
    for values, message in [
        ({"train.synthetic_ratio": 0.5}, "synthetic_ratio"),
        ({**real, "train.inference_height": 100}, "multiple of 32"),
        ({**real, "train.blur_probability": 1.5}, "above the maximum"),
        ({**real, "train.scale_reference": "camera"}, "must be one of"),
    ]:
        with pytest.raises(ConfigError, match=message):
            config_from_flat(values)


def test_hue_and_blur_change_the_image_but_not_the_geometry() -> None:
    scene = generate_scene(7, 128, 256)
    ignore = np.zeros(scene.semantic.shape, np.bool_)
    arrays = (scene.image, scene.semantic, scene.instances, ignore)
    base = AugmentParams(scale_min=0.8, scale_max=1.5, crop_hw=(96, 160))
    camera = AugmentParams(
        scale_min=0.8, scale_max=1.5, crop_hw=(96, 160), hue=0.1, blur_probability=1.0
    )
    changed = 0
    for seed in range(6):
        plain = augment(*arrays, np.random.default_rng(seed), base)
        effects = augment(*arrays, np.random.default_rng(seed), camera)
        for a, b in zip(plain[1:], effects[1:], strict=True):
            assert np.array_equal(a, b)  # hue and blur are drawn after the geometry
        changed += not np.array_equal(plain[0], effects[0])
        # Blurred: less high-frequency energy than the un-blurred crop of the same draws.
        gradient = [np.abs(np.diff(x[0].astype(float), axis=1)).mean() for x in (plain, effects)]
        assert gradient[1] < gradient[0]
    assert changed == 6


def test_hue_rotation_keeps_grey_and_turns_colours() -> None:
    from panoptic_ros.training.data import _hue_rotation

    third = _hue_rotation(2 * np.pi / 3)
    assert np.allclose(third @ np.array([50.0, 50, 50]), [50, 50, 50], atol=1e-4)
    assert np.allclose(third @ np.array([255.0, 0, 0]), [0, 255, 0], atol=1e-3)


# ---- the loss -----------------------------------------------------------------------------


def test_distillation_is_zero_at_the_teacher_and_masked_where_there_is_none() -> None:
    torch.manual_seed(0)
    teacher_logits = torch.randn(2, 5, 4, 6)
    teacher = torch.softmax(teacher_logits, dim=1).half()
    weight = torch.ones(2, 4, 6)
    for temperature in (1.0, 2.0, 4.0):
        at_teacher = distillation_loss(teacher_logits, teacher, weight, temperature=temperature)
        assert float(at_teacher) == pytest.approx(0.0, abs=2e-3)
    student = torch.randn(2, 5, 4, 6, requires_grad=True)
    loss = distillation_loss(student, teacher, weight, temperature=2.0)
    assert float(loss.detach()) > 0.05
    # KL at T, scaled by T^2: compare with torch's own kl_div on the re-softened teacher.
    soft_teacher = torch.softmax(teacher_logits / 2.0, dim=1)
    reference = (
        torch.nn.functional.kl_div(
            torch.log_softmax(student / 2.0, dim=1), soft_teacher, reduction="none"
        )
        .sum(1)
        .mean()
        * 4.0
    )
    assert float(loss) == pytest.approx(float(reference), rel=2e-2)
    # A teacher that used tau = 2: its probabilities re-softened to T = 2 are the teacher.
    tau_teacher = torch.softmax(teacher_logits / 2.0, dim=1)
    assert float(
        distillation_loss(
            teacher_logits, tau_teacher, weight, temperature=2.0, teacher_temperature=2.0
        )
    ) == pytest.approx(0.0, abs=1e-4)
    # Cells without soft targets: whatever the student says there changes nothing.
    weight[0, :2] = 0
    masked = distillation_loss(student, teacher, weight)
    changed = student.detach().clone()
    changed[0, :, :2] += 10 * torch.randn(5, 2, 6)
    assert float(distillation_loss(changed, teacher, weight)) == pytest.approx(float(masked))
    masked.backward()
    assert student.grad is not None
    assert float(student.grad[0, :, :2].abs().max()) == 0.0
    assert float(student.grad[0, :, 2:].abs().max()) > 0.0


def test_panoptic_loss_adds_the_weighted_distillation() -> None:
    from panoptic_ros.training.losses import LossWeights

    sample = TargetDataset(
        lambda _: generate_scene(3, 64, 128), [0], augment_params=None, soft_classes=19
    )[0]
    assert sample["soft_weight"].shape == (16, 32) and not sample["soft_weight"].any()
    sample["soft_targets"][:] = 1.0 / 19
    sample["soft_weight"][:] = 1.0
    batch = collate([sample])
    torch.manual_seed(0)
    outputs = (torch.randn(1, 19, 16, 32), torch.rand(1, 1, 16, 32), torch.randn(1, 2, 16, 32))
    hard = {k: v for k, v in batch.items() if not k.startswith("soft")}
    without = panoptic_loss(outputs, hard)
    assert "distill" not in without
    with_soft = panoptic_loss(outputs, batch, LossWeights(distill=0.5))
    assert float(with_soft["distill"]) > 0
    assert float(with_soft["total"]) == pytest.approx(
        float(without["total"]) + 0.5 * float(with_soft["distill"]), rel=1e-6
    )


# ---- a pseudo-labelled dataset on disk ---------------------------------------------------------

SCENE_HW = (96, 192)  # stored size; not a multiple of 32, as camera frames are not


def _write_pseudo_dataset(root: Path, count: int = 6, *, jpeg: bool = True) -> list[Any]:
    """A Cityscapes-panoptic dataset with soft targets (all but the last image), some JPEGs."""
    import cv2

    from panoptic_ros.data.panoptic_format import write_cityscapes_panoptic

    scenes = [generate_scene(40 + k, *SCENE_HW) for k in range(count)]
    json_path = write_cityscapes_panoptic(root, scenes, LABELS, "train", city="pseudo")
    data = json.loads(json_path.read_text())
    data["soft_targets"] = {
        "folder": "softTargets/train",
        "stride": 4,
        "dtype": "float16",
        "classes": list(LABELS.names),
        "temperature": 1.0,
    }
    json_path.write_text(json.dumps(data))
    folder = root / "softTargets" / "train"
    folder.mkdir(parents=True)
    for k, (scene, row) in enumerate(zip(scenes, data["annotations"], strict=True)):
        image_id = row["image_id"]
        if k < count - 1:
            # The "teacher" knows the truth, smoothed: 0.8 on the class, the rest spread.
            onehot = np.full((LABELS.num_classes, *SCENE_HW), 0.2 / 18)
            valid = scene.semantic < LABELS.num_classes
            ys, xs = np.nonzero(valid)
            onehot[:, ~valid] = 1.0 / LABELS.num_classes
            onehot[scene.semantic[valid], ys, xs] = 0.8
            np.save(folder / f"{image_id}_probs.npy", _block_mean(onehot).astype(np.float16))
        if jpeg and k % 2:
            png = root / "leftImg8bit" / "train" / "pseudo" / f"{image_id}_leftImg8bit.png"
            cv2.imwrite(str(png.with_suffix(".jpg")), cv2.imread(str(png)))
            png.unlink()
    return scenes


@pytest.fixture(scope="module")
def pseudo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pseudo")
    _write_pseudo_dataset(root)
    return root


def test_reader_finds_jpegs_and_soft_targets(pseudo_root: Path, tmp_path: Path) -> None:
    from panoptic_ros.data.panoptic_format import PanopticDatasetSource, read_cityscapes_panoptic

    dataset = read_cityscapes_panoptic(pseudo_root, "train")
    assert dataset.soft_targets is not None and dataset.soft_targets.stride == 4
    suffixes = [record.image_path.suffix for record in dataset]
    assert suffixes == [".png", ".jpg", ".png", ".jpg", ".png", ".jpg"]
    assert [r.soft_target_path is not None for r in dataset] == [True] * 5 + [False]
    source = PanopticDatasetSource(dataset, LABELS, soft_targets=True)
    sample = source(0)
    assert sample.soft_targets is not None and sample.soft_targets.shape == (19, 24, 48)
    assert source(5).soft_targets is None
    assert PanopticDatasetSource(dataset, LABELS)(0).soft_targets is None  # not asked for

    # Teacher channels in another order are put in the label space's order by name.
    shuffled = tmp_path / "shuffled"
    import shutil

    shutil.copytree(pseudo_root, shuffled)
    json_path = shuffled / "gtFine" / "cityscapes_panoptic_train.json"
    data = json.loads(json_path.read_text())
    order = list(reversed(range(19)))
    data["soft_targets"]["classes"] = [LABELS.names[k] for k in order]
    json_path.write_text(json.dumps(data))
    for path in (shuffled / "softTargets" / "train").glob("*.npy"):
        np.save(path, np.load(path)[order])
    again = PanopticDatasetSource(
        read_cityscapes_panoptic(shuffled, "train"), LABELS, soft_targets=True
    )(0)
    assert again.soft_targets is not None
    assert np.allclose(again.soft_targets, sample.soft_targets.astype(np.float32), atol=2e-3)

    # A class of the label space the teachers do not have: refused, naming it.
    data["soft_targets"]["classes"] = ["road", *LABELS.names[2:]]
    json_path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="no class 'sidewalk'"):
        PanopticDatasetSource(
            read_cityscapes_panoptic(shuffled, "train"), LABELS, soft_targets=True
        )
    # A file of the wrong size: one line naming it.
    data["soft_targets"]["classes"] = list(LABELS.names)
    json_path.write_text(json.dumps(data))
    first = sorted((shuffled / "softTargets" / "train").glob("*.npy"))[0]
    np.save(first, np.zeros((19, 23, 48), np.float16))
    broken = PanopticDatasetSource(
        read_cityscapes_panoptic(shuffled, "train"), LABELS, soft_targets=True
    )
    with pytest.raises(EvaluationError, match=r"ceil\(H/4\)"):
        broken(0)


TINY = {
    "train.steps": 8,
    "train.batch_size": 2,
    "train.image_height": 64,
    "train.image_width": 128,
    "train.learning_rate": 0.004,
    "train.warmup_steps": 2,
    "train.num_workers": 0,
    "train.eval_every": 0,
    "train.fpn_channels": 32,
    "train.head_channels": 32,
    "train.log_every": 1,
    "train.backbone_weights": "none",
    "train.eval_split": "",
}


def _train(root: Path, output: Path, **overrides: Any) -> Any:
    from panoptic_ros.training.loop import train
    from panoptic_ros.training.sources import build_training_data

    torch.set_num_threads(2)
    settings = {
        **TINY,
        "train.dataset": "cityscapes",
        "train.dataset_root": str(root),
        **overrides,
    }
    config = config_from_flat(settings)
    data = build_training_data(config)
    outcome = train(
        config,
        data.labels,
        data.source,
        data.indices,
        output,
        progress=False,
        device="cpu",
        export_onnx=False,
        soft_targets=data.soft_targets,
    )
    rows = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    return data, outcome, rows


@pytest.mark.slow
def test_training_distils_the_soft_targets(pseudo_root: Path, tmp_path: Path) -> None:
    data, _, rows = _train(pseudo_root, tmp_path / "distil", **{"train.distill_weight": 2.0})
    assert data.soft_targets is not None and "soft targets for 5 images" in data.description
    assert len(rows) == 8
    for row in rows:
        assert np.isfinite(row["distill"]) and row["distill"] > 0
        hard = row["semantic"] + 200.0 * row["center"] + 0.01 * row["offset"]
        assert row["total"] == pytest.approx(hard + 2.0 * row["distill"], rel=1e-4)
    distill = [row["distill"] for row in rows]
    assert np.mean(distill[-3:]) < np.mean(distill[:3])
    # distill_weight 0: the soft targets are not read and nothing is reported.
    plain, _, plain_rows = _train(pseudo_root, tmp_path / "plain", **{"train.distill_weight": 0.0})
    assert plain.soft_targets is None and "distill" not in plain_rows[0]


@pytest.mark.slow
def test_fine_tuning_starts_from_the_checkpoint(pseudo_root: Path, tmp_path: Path) -> None:
    from panoptic_ros.modeling.checkpoint import load_checkpoint

    _train(pseudo_root, tmp_path / "first", **{"train.steps": 2})
    start = tmp_path / "first" / "model.safetensors"
    _train(
        pseudo_root,
        tmp_path / "tuned",
        **{"train.steps": 2, "train.init_checkpoint": str(start), "train.learning_rate": 0.0},
    )
    before = load_checkpoint(start)[0].state_dict()
    after = load_checkpoint(tmp_path / "tuned" / "model.safetensors")[0].state_dict()
    weights = [k for k in before if k.endswith("weight")]
    assert weights and all(torch.equal(before[k], after[k]) for k in weights)  # lr 0: unchanged
    with pytest.raises(ConfigError, match=r"train\.init_checkpoint="):
        _train(pseudo_root, tmp_path / "x", **{"train.init_checkpoint": str(tmp_path / "no")})


def test_synthetic_scenes_are_mixed_in_at_the_ratio(pseudo_root: Path) -> None:
    from panoptic_ros.training.sources import build_training_data, mixed_indices

    indices, count = mixed_indices(6, 400, 0.25, seed=3)
    assert 70 < count < 130
    synthetic = [i for i in indices if i >= 6]
    assert len(synthetic) == count and len(set(synthetic)) == count
    longer, _ = mixed_indices(6, 800, 0.25, seed=3)
    assert longer[:400] == indices  # a position's sample does not depend on the run length
    settings = {
        **TINY,
        "train.dataset": "cityscapes",
        "train.dataset_root": str(pseudo_root),
        "train.synthetic_ratio": 0.5,
        "train.steps": 20,
    }
    data = build_training_data(config_from_flat(settings))
    assert data.indices == build_training_data(config_from_flat(settings)).indices
    scenes = [i for i in data.indices if i >= 6]
    assert 8 < len(scenes) < 32 and "synthetic scenes" in data.description
    scene = data.source(scenes[0])
    assert scene.image.shape == (64, 128, 3)  # drawn at the training crop size
    real = data.source(next(i for i in data.indices if i < 6))
    assert real.image.shape == (*SCENE_HW, 3)
    # Mixed with soft targets: a synthetic scene gets zero distillation weight.
    dataset = TargetDataset(data.source, data.indices, soft_classes=19)
    position = data.indices.index(scenes[0])
    assert not dataset[position]["soft_weight"].any()


# ---- evaluation over the classes present, the trainer's stages, the command line ----------


def test_present_class_means_leave_out_classes_only_predicted() -> None:
    from panoptic_ros.training.scoring import present_class_scores

    names = ["road", "car", "person"]
    confusion = np.zeros((3, 4), np.int64)
    confusion[0, 0], confusion[0, 1] = 80, 20  # road: 80 right, 20 called car
    confusion[1, 1] = 50  # car: 50 right
    # person: no ground truth; predicted nowhere either (but a false-positive segment below)
    per_class = {
        "road": {"pq": 0.9, "tp": 1, "fp": 0, "fn": 0},
        "car": {"pq": 0.5, "tp": 1, "fp": 1, "fn": 0},
        "person": {"pq": 0.0, "tp": 0, "fp": 3, "fn": 0},
    }
    scores = present_class_scores(confusion, per_class, names)
    assert scores["gt_classes"] == ["road", "car"] and scores["n_gt_classes"] == 2
    # IoU road 80/100, car 50/70 (20 false car pixels); person is not averaged in.
    assert scores["miou_gt_classes"] == pytest.approx((0.8 + 50 / 70) / 2)
    assert scores["pq_gt_classes"] == pytest.approx(0.7)


def test_trainer_stages_run_one_by_one(pseudo_root: Path, tmp_path: Path) -> None:
    from panoptic_ros.training.loop import Trainer
    from panoptic_ros.training.sources import build_training_data

    torch.set_num_threads(2)
    config = config_from_flat(
        {**TINY, "train.dataset": "cityscapes", "train.dataset_root": str(pseudo_root)}
    )
    data = build_training_data(config)
    scores: list[int] = []
    trainer = Trainer(
        config,
        data.labels,
        tmp_path,
        evaluate=lambda network, metadata: (
            scores.append(1) or {"all": {"pq": 0.5}, "things": {"pq": 0.4}, "stuff": {"pq": 0.6}}
        ),
        device="cpu",
        soft_targets=data.soft_targets,
    )
    try:
        restored = trainer.restore(resume=False)
        assert restored.step == 0 and restored.optimizer_state is None
        trainer.prepare(restored, progress=False)
        assert (tmp_path / "config.yaml").is_file() and (tmp_path / "environment.json").is_file()
        dataset = trainer.dataset(data.source, data.indices)
        batch = collate([dataset[0], dataset[1]])
        assert batch["soft_targets"].shape == (2, 19, 16, 32)
        before = [p.detach().clone() for p in trainer.network.parameters()]
        values = trainer.step(batch, 0)
        assert set(values) == {"lr", "semantic", "center", "offset", "distill", "total"}
        assert any(
            not torch.equal(a, b) for a, b in zip(before, trainer.network.parameters(), strict=True)
        )
        trainer.after_step(1, values)
        trainer.evaluate(1)
        assert scores == [1] and trainer.outcome.evaluations[0][0] == 1
        outcome = trainer.finish(1, export_onnx=False)  # 1 of 8 steps: resumable only
        assert outcome.files == [tmp_path / "checkpoint_last.safetensors"]
        assert not (tmp_path / "model.safetensors").exists()
    finally:
        trainer.close()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 1 and rows[0]["total"] == values["total"]
    assert rows[1]["eval"]["all"]["pq"] == 0.5


@pytest.mark.slow
def test_cli_trains_on_pseudo_labels_and_scores_the_present_classes(
    pseudo_root: Path, tmp_path: Path, capsys: Any
) -> None:
    from panoptic_ros.cli.main import main

    torch.set_num_threads(2)
    output = tmp_path / "run"
    settings = {
        **TINY,
        "train.dataset": "cityscapes",
        "train.dataset_root": str(pseudo_root),
        "train.eval_split": "train",  # scored on its own frames: only the wiring is tested
        "train.eval_images": 2,
        "train.steps": 3,
        "train.synthetic_ratio": 0.3,
    }
    flags = [f"--set={k}={v}" for k, v in settings.items()]
    assert main(["train", "-o", str(output), "--device", "cpu", "-q", *flags]) == 0
    rows = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert all("distill" in row for row in rows if "total" in row)
    (evaluation,) = [row["eval"] for row in rows if "eval" in row]
    present = evaluation["gt_classes"]
    assert present and set(present) <= set(LABELS.names)
    assert 0.0 <= evaluation["miou_gt_classes"] <= 1.0
    assert evaluation["n_gt_classes"] == len(present)
    assert "classes in its ground truth" in capsys.readouterr().out
