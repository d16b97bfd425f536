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
from panoptic_ros.errors import ConfigError  # noqa: E402
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
    device: str = "cpu",
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
        device=device,
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


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_resume_continues_with_the_same_losses(
    tmp_path: Path, device: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device (mixed precision: the GradScaler state is resumed)")
    from panoptic_ros.modeling import checkpoint

    saved_at: list[int] = []
    save = checkpoint.save_checkpoint

    def recording_save(*args: Any, **kwargs: Any) -> Any:
        if "optimizer_state" in kwargs:
            saved_at.append(kwargs["step"])
        return save(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_checkpoint", recording_save)
    overrides = {
        "train.steps": 20,
        "train.batch_size": 2,
        "train.log_every": 1,
        "train.checkpoint_every": 4,
    }
    straight = run(tmp_path / "straight", device=device, **overrides)
    assert saved_at == [4, 8, 12, 16, 20]  # every checkpoint_every steps, and the last
    saved_at.clear()
    interrupted = run(tmp_path / "resumed", stop_at=10, device=device, **overrides)
    assert interrupted.steps == 10
    assert saved_at == [4, 8, 10]
    resumed = run(tmp_path / "resumed", resume=True, device=device, **overrides)
    assert resumed.steps == straight.steps == 20

    expected = _losses(tmp_path / "straight" / "metrics.jsonl")
    rows = _records(tmp_path / "resumed" / "metrics.jsonl")
    # The resumed run appends steps 11.. right after the interrupted run's 1..10.
    assert [row["step"] for row in rows] == list(range(1, 21)) == sorted(expected)
    # CPU runs repeat to rounding; on CUDA autocast and atomics leave a little noise.
    tolerance = 1e-5 if device == "cpu" else 2e-2
    first_after_resume = rows[10]
    assert first_after_resume["step"] == 11
    assert first_after_resume["total"] == pytest.approx(expected[11], rel=tolerance)
    assert resumed.losses["first"] == pytest.approx(expected[11], rel=tolerance)
    for row in rows[10:]:
        assert row["total"] == pytest.approx(expected[row["step"]], rel=tolerance), row["step"]
    assert rows[10]["lr"] == _records(tmp_path / "straight" / "metrics.jsonl")[10]["lr"]
    # The mixed-precision scaler went on from its saved scale and growth count ({} on CPU).
    states = [
        checkpoint.load_checkpoint(tmp_path / run_dir / "checkpoint_last.safetensors")[2]
        for run_dir in ("straight", "resumed")
    ]
    assert states[0]["scaler_state"] == states[1]["scaler_state"]
    assert bool(states[0]["scaler_state"]) == (device == "cuda")


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


# ---- real datasets: Cityscapes and COCO panoptic folders -----------------------------------

SCENE_HW = (128, 256)  # written image size; training crops half of it after rescaling


def _scenes(first_seed: int, count: int) -> list[Any]:
    return [generate_scene(first_seed + i, *SCENE_HW) for i in range(count)]


@pytest.fixture(scope="module")
def cityscapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Cityscapes panoptic dataset in createPanopticImgs' layout: 8 train, 2 val."""
    from panoptic_ros.data.panoptic_format import write_cityscapes_panoptic

    root = tmp_path_factory.mktemp("cityscapes")
    write_cityscapes_panoptic(root, _scenes(0, 8), LABELS, "train")
    write_cityscapes_panoptic(root, _scenes(100, 2), LABELS, "val", city="frankfurt")
    return root


#: The label space of the COCO test: four classes with their own ids, as a user would write.
COCO_CLASSES = [
    {"name": "road", "isthing": 0, "color": [128, 64, 128], "id": 1},
    {"name": "building", "isthing": 0, "color": [70, 70, 70], "id": 2},
    {"name": "vehicle", "isthing": 1, "color": [0, 0, 142], "id": 3},
    {"name": "person", "isthing": 1, "color": [220, 20, 60], "id": 4},
]
#: COCO-style category ids for the Cityscapes classes of the scenes (COCO numbers them 1..200).
COCO_IDS = {name: 101 + i for i, name in enumerate(LABELS.names)}


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny COCO panoptic dataset: annotations/panoptic_S.json + PNGs, S/ with JPEGs."""
    from panoptic_ros.data.panoptic_format import (
        dataset_categories,
        panoptic_from_maps,
        write_coco_panoptic,
    )
    from panoptic_ros.labels import ClassInfo, LabelSpace

    coco_like = LabelSpace(
        tuple(ClassInfo(c.name, c.is_thing, c.color_rgb, COCO_IDS[c.name]) for c in LABELS.classes)
    )
    root = tmp_path_factory.mktemp("coco")
    for split, scenes in (("train2017", _scenes(0, 6)), ("val2017", _scenes(100, 2))):
        (root / split).mkdir()
        entries = []
        for k, scene in enumerate(scenes):
            image_id = 1000 + k
            cv2.imwrite(str(root / split / f"{image_id:012d}.jpg"), scene.image[..., ::-1])
            entries.append(
                (image_id, *panoptic_from_maps(scene.semantic, scene.instances, coco_like))
            )
        json_path = root / "annotations" / f"panoptic_{split}.json"
        write_coco_panoptic(
            json_path,
            root / "annotations" / f"panoptic_{split}",
            entries,
            dataset_categories(coco_like),
        )
        data = json.loads(json_path.read_text())
        for row in data["images"]:  # COCO's images are JPEGs beside the PNG annotations
            row["file_name"] = f"{row['id']:012d}.jpg"
        for row in data["annotations"]:  # ... which are named after the image
            row["file_name"] = f"{row['image_id']:012d}.png"
            (json_path.with_suffix("") / f"{row['image_id']}.png").rename(
                json_path.with_suffix("") / row["file_name"]
            )
        json_path.write_text(json.dumps(data))
    (root / "coco_classes.json").write_text(json.dumps(COCO_CLASSES))
    return root


def _coco_settings(root: Path) -> dict[str, Any]:
    vehicles = ("car", "truck", "bus")
    mapping = [f"{COCO_IDS[n]}=vehicle" for n in vehicles] + [
        f"{COCO_IDS['road']}=road",
        f"{COCO_IDS['building']}=building",
        f"{COCO_IDS['person']}=person",
        f"{COCO_IDS['rider']}=person",
    ]
    return {
        "train.dataset": "coco",
        "train.dataset_root": str(root),
        "train.train_split": "train2017",
        "train.eval_split": "val2017",
        "train.labels_file": str(root / "coco_classes.json"),
        "dataset.category_map": mapping,
    }


def test_cityscapes_source_reads_the_split_in_a_seeded_order(cityscapes_root: Path) -> None:
    from panoptic_ros.training.sources import build_training_data

    settings = {**TINY, "train.dataset": "cityscapes", "train.dataset_root": str(cityscapes_root)}
    settings.update({"train.steps": 6, "train.batch_size": 4, "train.eval_images": 0})
    data = build_training_data(config_from_flat(settings))
    assert data.labels.names == LABELS.names
    assert len(data.indices) == 24  # 3 epochs of 8 images, each a permutation
    for epoch in range(3):
        assert sorted(data.indices[8 * epoch : 8 * epoch + 8]) == list(range(8))
    assert data.indices[:8] != list(range(8))
    again = build_training_data(config_from_flat(settings))
    assert again.indices == data.indices
    reseeded = build_training_data(config_from_flat({**settings, "train.seed": 1}))
    assert reseeded.indices != data.indices
    scenes = _scenes(0, 8)
    sample = data.source(data.indices[0])
    expected = scenes[data.indices[0]]
    assert np.array_equal(sample.image, expected.image)  # PNG: lossless
    thing_without_instance = LABELS.is_thing_table()[expected.semantic] & (expected.instances == 0)
    assert np.array_equal(sample.ignore_mask, thing_without_instance)  # crowd -> ignored
    assert (sample.semantic[sample.ignore_mask] == 255).all()
    assert data.eval_samples is not None and len(data.eval_samples) == 2  # all of val
    val = data.eval_samples[1]
    assert np.array_equal(val.semantic, _scenes(100, 2)[1].semantic)  # crowd keeps its class


def test_coco_source_maps_categories_through_the_config(coco_root: Path) -> None:
    from panoptic_ros.training.sources import build_training_data

    settings = {**TINY, **_coco_settings(coco_root), "train.steps": 2, "train.batch_size": 3}
    data = build_training_data(config_from_flat(settings))
    assert data.labels.names == ("road", "building", "vehicle", "person")
    assert data.labels.drivable == (0,)
    scenes = _scenes(0, 6)
    for index in range(6):
        sample = data.source(index)
        scene = scenes[index]
        names = np.array([*LABELS.names, *["void"] * (256 - LABELS.num_classes)])[scene.semantic]
        expected = np.full(scene.semantic.shape, 255, np.uint8)
        expected[names == "road"] = 0
        expected[names == "building"] = 1
        expected[np.isin(names, ["car", "truck", "bus"])] = 2
        expected[np.isin(names, ["person", "rider"])] = 3
        expected[sample.ignore_mask] = 255  # crowd regions: void and ignored in training
        assert np.array_equal(sample.semantic, expected)
        assert sample.image.shape == (*SCENE_HW, 3)  # a JPEG: the pixels differ, not the size
    assert (data.source(0).semantic == 2).any()
    assert data.eval_samples is not None and len(data.eval_samples) == 2


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"train.dataset": "cityscapes"}, r"needs train.dataset_root"),
        ({"train.dataset": "coco", "train.dataset_root": "/nonexistent"}, "is not a folder"),
        ({"train.dataset_root": "{cityscapes}", "train.train_split": "test"}, "createPanopticImgs"),
        (
            {"train.dataset_root": "{cityscapes}", "train.eval_split": "nope"},
            r"train.eval_split='nope'",
        ),
        (
            {"train.dataset_root": "{cityscapes}", "dataset.category_map": ["26=lorry"]},
            "'26=lorry' names no class of the label space",
        ),
        (
            {"train.dataset_root": "{cityscapes}", "dataset.category_map": ["999=car"]},
            "names dataset id 999",
        ),
        (
            {"train.dataset_root": "{cityscapes}", "dataset.category_map": ["26:car"]},
            "must look like 'ID=NAME'",
        ),
        (
            {"train.dataset_root": "{cityscapes}", "train.labels_file": "{cityscapes}/gtFine"},
            "train.labels_file=",
        ),
        ({"train.labels_file": "classes.json"}, "applies to cityscapes and coco"),
        ({"dataset.category_map": ["26=car"]}, "applies to cityscapes and coco"),
        (
            {"train.dataset_root": "{cityscapes}", "train.scale_min": 2.0, "train.scale_max": 1.0},
            "swap them",
        ),
    ],
)
def test_dataset_settings_are_checked_with_one_line_errors(
    cityscapes_root: Path, settings: dict[str, Any], message: str
) -> None:
    from panoptic_ros.errors import ConfigError
    from panoptic_ros.training.sources import build_training_data

    values = (
        {"train.dataset": "cityscapes", **settings}
        if "train.dataset_root" in settings
        else settings
    )
    values = {
        k: v.replace("{cityscapes}", str(cityscapes_root)) if isinstance(v, str) else v
        for k, v in values.items()
    }
    with pytest.raises(ConfigError, match=message) as caught:
        build_training_data(config_from_flat({**TINY, **values}))
    assert "\n" not in str(caught.value)


def test_empty_split_and_unmapped_dataset_are_refused(tmp_path: Path) -> None:
    from panoptic_ros.data.panoptic_format import write_cityscapes_panoptic
    from panoptic_ros.errors import ConfigError
    from panoptic_ros.training.sources import build_training_data

    write_cityscapes_panoptic(tmp_path, [], LABELS, "train")
    settings = {**TINY, "train.dataset": "cityscapes", "train.dataset_root": str(tmp_path)}
    with pytest.raises(ConfigError, match="lists no annotated images"):
        build_training_data(config_from_flat(settings))
    write_cityscapes_panoptic(tmp_path, _scenes(0, 1), LABELS, "train")
    labels_file = tmp_path / "classes.yaml"
    labels_file.write_text("- {name: road, isthing: false, color: [1, 2, 3], id: 240}\n")
    settings["train.labels_file"] = str(labels_file)
    with pytest.raises(ConfigError, match="maps into the label space"):
        build_training_data(config_from_flat(settings))


def _cli_train(output: Path, settings: dict[str, Any]) -> int:
    from panoptic_ros.cli.main import main

    torch.set_num_threads(2)
    flags = [
        f"--set={k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in settings.items()
    ]
    return main(["train", "-o", str(output), "--device", "cpu", "-q", *flags])


#: A few steps at 64x128 crops of the 128x256 images, every step logged.
CLI_TINY = {
    **TINY,
    "train.image_height": 64,
    "train.image_width": 128,
    "train.scale_min": 0.5,
    "train.scale_max": 1.0,
    "train.log_every": 1,
}


@pytest.mark.slow
def test_cli_trains_on_a_cityscapes_folder(cityscapes_root: Path, tmp_path: Path) -> None:
    output = tmp_path / "run"
    settings = {
        **CLI_TINY,
        "train.dataset": "cityscapes",
        "train.dataset_root": str(cityscapes_root),
        "train.steps": 30,
        "train.batch_size": 2,
        "train.eval_every": 15,
    }
    assert _cli_train(output, settings) == 0
    rows = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    losses = [row["total"] for row in rows if "total" in row]
    assert len(losses) == 30
    # Random crops at random scales make single steps noisy; windows of 10 are not.
    assert np.mean(losses[-10:]) < 0.75 * losses[0]
    assert np.mean(losses[-10:]) < 0.9 * np.mean(losses[:10])
    evaluations = [row for row in rows if "eval" in row]
    assert [row["step"] for row in evaluations] == [15, 30]  # on the val split
    assert set(evaluations[-1]["eval"]["per_class"]) <= set(LABELS.names)
    assert (output / "checkpoint_last.safetensors").is_file()
    assert (output / "model.safetensors").is_file()
    saved = (output / "config.yaml").read_text()
    assert "dataset: cityscapes" in saved


def test_cli_trains_on_coco_with_the_configured_label_space(
    coco_root: Path, tmp_path: Path
) -> None:
    output = tmp_path / "run"
    settings = {**CLI_TINY, **_coco_settings(coco_root), "train.steps": 4, "train.batch_size": 2}
    assert _cli_train(output, settings) == 0
    metadata = json.loads((output / "model.json").read_text())
    names = [row["name"] for row in metadata["classes"]]
    assert names == ["road", "building", "vehicle", "person"]
    rows = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows if "eval" in row] == [4]
    assert len([row for row in rows if "total" in row]) == 4


def test_cli_refuses_a_missing_dataset_before_touching_the_output(
    tmp_path: Path, capsys: Any
) -> None:
    output = tmp_path / "run"
    settings = {"train.dataset": "cityscapes", "train.dataset_root": str(tmp_path / "missing")}
    assert _cli_train(output, settings) == 1
    assert "train.dataset_root=" in capsys.readouterr().err
    assert not output.exists()


def test_set_settles_a_rule_across_the_config_files_fields(tmp_path: Path) -> None:
    """config/train_real.yaml names the dataset kind; --set gives its folder."""
    from panoptic_ros.config import load_config

    recipe = Path(__file__).resolve().parent.parent / "config" / "train_real.yaml"
    config = load_config(recipe, [f"train.dataset_root={tmp_path}"])
    assert config.train.dataset == "cityscapes"
    assert config.train.dataset_root == str(tmp_path)
    assert (config.train.inference_height, config.train.inference_width) == (384, 768)
    # Without the override the file's own error stands, naming the file.
    with pytest.raises(ConfigError, match=r"train_real.yaml: train.dataset='cityscapes' needs"):
        load_config(recipe)
    # An override that does not settle it does not hide it.
    with pytest.raises(ConfigError, match=r"train_real.yaml: train.dataset='cityscapes' needs"):
        load_config(recipe, ["train.steps=5"])
