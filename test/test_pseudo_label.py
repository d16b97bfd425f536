"""``panoptic-ros pseudo-label`` on tiny teacher ONNX models whose outputs are known.

The semantic teachers score each pixel by its colour: class c gets the logit
``k * (2 v_c . x - |v_c|^2)`` (x the pixel's RGB in 0..1, v_c the class's prototype
colour), so softmax picks the nearest prototype and the test can compute every
probability itself. The road teacher and the detector give fixed outputs (a road map,
one car box), so which pixels they touch is known in advance.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
cv2 = pytest.importorskip("cv2")

import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from panoptic_ros.bags import write_image_bag  # noqa: E402
from panoptic_ros.data.panoptic_format import (  # noqa: E402
    PanopticDatasetSource,
    read_cityscapes_panoptic,
)
from panoptic_ros.errors import ConfigError, ModelFileError  # noqa: E402
from panoptic_ros.labels import CITYSCAPES, IGNORE_INDEX  # noqa: E402
from panoptic_ros.pseudo.frames import Subsampling, open_sources  # noqa: E402
from panoptic_ros.pseudo.labeller import (  # noqa: E402
    LabelSettings,
    PseudoLabeller,
    _tiles,
    cell_average,
)
from panoptic_ros.pseudo.teachers import load_teachers, read_teacher_specs  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
H, W = 16, 32
NAMES = [*CITYSCAPES.names, None]  # the teachers' 20 channels: 19 classes + void

# Prototype colours (RGB 0..1) of the classes the tiny teachers know.
PROTOTYPES = {
    "road": (0.5, 0.5, 0.5),
    "sidewalk": (1.0, 1.0, 0.0),
    "vegetation": (0.0, 1.0, 0.0),
    "sky": (0.0, 0.0, 1.0),
    "car": (1.0, 0.0, 0.0),
    "person": (1.0, 0.0, 1.0),
}
VOID_LOGIT_PER_K = -0.5  # black pixels: every class scores <= -0.75 k, void -0.5 k

GREY, YELLOW, GREEN, BLUE, RED, BLACK = (
    (128, 128, 128),
    (255, 255, 0),
    (0, 255, 0),
    (0, 0, 255),
    (255, 0, 0),
    (0, 0, 0),
)
CAR_BOX = (1.0, 7.0, 11.0, 13.0)  # x0, y0, x1, y1 in frame pixels


def scene() -> npt.NDArray[np.uint8]:
    """The [16, 32, 3] test frame: every region exercises one rule."""
    frame = np.zeros((H, W, 3), dtype=np.uint8)
    frame[0:4] = BLUE  # sky
    frame[4:8, 0:16] = GREEN  # vegetation
    frame[4:8, 16:32] = BLACK  # the teachers are unsure: void
    frame[8:12] = GREY  # road ...
    frame[8:12, 2:10] = RED  # ... a car inside the detector's box
    frame[8:12, 20:26] = RED  # a car-coloured blob no box explains: void
    frame[12:16, 0:16] = YELLOW  # sidewalk, the road model is sure it is road: road
    frame[12:16, 16:32] = GREY  # road, the road model is sure it is not: void
    return frame


def _weights(
    k: float, prototypes: dict[str, tuple[float, float, float]]
) -> tuple[np.ndarray, np.ndarray]:
    weight = np.zeros((20, 3), dtype=np.float32)
    bias = np.full(20, -50.0, dtype=np.float32)  # classes the teacher does not know
    for name, colour in prototypes.items():
        v = np.array(colour, dtype=np.float32)
        channel = NAMES.index(name)
        weight[channel] = 2 * k * v / 255.0  # the input is 0..255
        bias[channel] = -k * float(v @ v)
    bias[19] = VOID_LOGIT_PER_K * k
    return weight, bias


def expected_probs(
    frame: npt.NDArray[np.uint8], k: float, prototypes: dict[str, tuple[float, float, float]]
) -> npt.NDArray[np.float64]:
    """What a colour teacher gives, computed here: [H, W, 19] class probabilities."""
    weight, bias = _weights(k, prototypes)
    logits = frame.astype(np.float64) @ weight.T.astype(np.float64) + bias  # [H, W, 20]
    logits -= logits.max(axis=-1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=-1, keepdims=True)
    return probs[:, :, :19]


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def colour_teacher(
    path: Path, k: float, prototypes: dict[str, tuple[float, float, float]] = PROTOTYPES
) -> Path:
    """uint8 NHWC RGB [1, 16, 32, 3] -> logits [1, 20, 16, 32] by the colour rule."""
    weight, bias = _weights(k, prototypes)
    nodes = [
        helper.make_node("Cast", ["image"], ["as_float"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["as_float"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "weight", "bias"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "colour_teacher",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, [1, H, W, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 20, H, W])],
        initializer=[
            numpy_helper.from_array(weight.reshape(20, 3, 1, 1), "weight"),
            numpy_helper.from_array(bias, "bias"),
        ],
    )
    return _save(graph, path)


def _constant_model(
    path: Path, name: str, shape_in: list[int], value: np.ndarray, out: str
) -> Path:
    """A model whose output is ``value`` whatever the input (input * 0 + value)."""
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["value", "nothing"], [out]),
    ]
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape_in)],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, list(value.shape))],
        initializer=[
            numpy_helper.from_array(np.zeros((), np.float32), "zero"),
            numpy_helper.from_array(value.astype(np.float32), "value"),
        ],
    )
    return _save(graph, path)


def road_teacher(path: Path) -> Path:
    """Fixed [1, 16, 32, 4] probabilities: bottom-left sure road, bottom-right sure not."""
    probs = np.zeros((1, H, W, 4), dtype=np.float32)
    probs[..., 0] = 1.0  # background
    probs[0, 12:16, 0:16] = (0.02, 0.9, 0.02, 0.06)  # road + mark = 0.96
    probs[0, 12:16, 16:32] = (0.95, 0.03, 0.02, 0.0)  # not road 0.97
    probs[0, 8:12] = (0.5, 0.5, 0.0, 0.0)  # undecided: the ensemble stands
    return _constant_model(path, "road_teacher", [1, H, W, 3], probs, "probs")


def detector_teacher(path: Path, box: tuple[float, float, float, float] = CAR_BOX) -> Path:
    """A YOLOX head over a 32x32 input (21 anchors) with one car box at anchor 0."""
    head = np.zeros((1, 16 + 4 + 1, 85), dtype=np.float32)
    x0, y0, x1, y1 = box
    cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
    head[0, 0, :4] = (cx / 8, cy / 8, np.log(w / 8), np.log(h / 8))  # anchor (0, 0), stride 8
    head[0, 0, 4] = 0.9
    head[0, 0, 5 + 2] = 1.0  # COCO class 2: car
    return _constant_model(path, "detector", [1, 3, 32, 32], head, "output")


def write_teachers(folder: Path, second_sky_as: str = "sky") -> Path:
    """Write the four tiny teachers and their YAML; return the YAML path."""
    folder.mkdir(parents=True, exist_ok=True)
    colour_teacher(folder / "a.onnx", k=20.0)
    second = dict(PROTOTYPES)
    second[second_sky_as] = second.pop("sky")
    colour_teacher(folder / "b.onnx", k=5.0, prototypes=second)
    road_teacher(folder / "road.onnx")
    detector_teacher(folder / "det.onnx")
    (folder / "coco.txt").write_text("person\nbicycle\ncar\nmotorbike\nbus\ntruck\n")
    classes = json.dumps(NAMES)
    text = f"""
teachers:
  - name: a
    role: semantic
    file: a.onnx
    weight: 3.0
    input: {{layout: NHWC, dtype: uint8, color: RGB, height: {H}, width: {W}}}
    output: {{kind: logits, layout: NCHW}}
    classes: {classes}
  - name: b
    role: semantic
    file: b.onnx
    weight: 1.0
    input: {{layout: NHWC, dtype: uint8, color: RGB, height: {H}, width: {W}}}
    classes: {classes}
  - name: road
    role: road
    file: road.onnx
    input: {{layout: NHWC, dtype: float32, color: BGR, height: {H}, width: {W}}}
    output: {{kind: probabilities, layout: NHWC}}
    classes: [background, road, curb, mark]
    road: [road, mark]
  - name: det
    role: detector
    file: det.onnx
    input: {{layout: NCHW, dtype: float32, color: BGR, height: 32, width: 32, resize: letterbox}}
    classes_file: coco.txt
    class_map: {{person: [person, rider], car: [car], truck: [truck, bus]}}
"""
    path = folder / "teachers.yaml"
    path.write_text(text)
    return path


SETTINGS = LabelSettings(tile_grid=(1, 1), min_instance_px=4, soft_stride=4)


@pytest.fixture(scope="module")
def teachers_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_teachers(tmp_path_factory.mktemp("teachers"))


@pytest.fixture(scope="module")
def labeller(teachers_yaml: Path) -> PseudoLabeller:
    specs = read_teacher_specs(teachers_yaml, CITYSCAPES)
    return PseudoLabeller(load_teachers(specs, CITYSCAPES), CITYSCAPES, SETTINGS)


def test_ensemble_is_the_weighted_mean_of_the_teachers(labeller: PseudoLabeller) -> None:
    frame = scene()
    expected = (
        3.0 * expected_probs(frame, 20.0, PROTOTYPES) + expected_probs(frame, 5.0, PROTOTYPES)
    ) / 4
    np.testing.assert_allclose(labeller.ensemble(frame), expected, atol=1e-5)


def test_labels_follow_every_rule(labeller: PseudoLabeller) -> None:
    label = labeller.label(scene())
    sem, ids = label.semantic, label.instances
    index = CITYSCAPES.index
    assert (sem[0:4] == index("sky")).all()
    assert (sem[4:8, 0:16] == index("vegetation")).all()
    assert (sem[4:8, 16:32] == IGNORE_INDEX).all(), "unsure pixels must be void"
    # The box's car pixels are one instance of class car; the box's road pixels stay road.
    assert (sem[8:12, 2:10] == index("car")).all()
    assert (ids[8:12, 2:10] == 1).all()
    assert (ids != 0).sum() == 32
    assert (sem[8:12, 10:20] == index("road")).all()
    # Car pixels that no box explains are void, not a guessed instance.
    assert (sem[8:12, 20:26] == IGNORE_INDEX).all()
    assert label.stats.void_unexplained_px == 24
    # The road model overrules the ensemble only where it is confident.
    assert (sem[12:16, 0:16] == index("road")).all()
    assert (sem[12:16, 16:32] == IGNORE_INDEX).all()
    # Removed: the bottom-right road and the unsure black block (its top class is road).
    assert label.stats.road_added_px == 64 and label.stats.road_removed_px == 128
    assert label.stats.instances == 1 and label.stats.instances_per_class == {"car": 1}


def test_disagreeing_teachers_give_void(tmp_path: Path) -> None:
    """Teacher b calls the sky 'building': the averaged top probability drops below 0.6."""
    yaml_path = write_teachers(tmp_path, second_sky_as="building")
    specs = read_teacher_specs(yaml_path, CITYSCAPES)
    # Equal weights: sky (a, sure) against building (b, softer).
    specs = [s if s.name != "a" else type(s)(**{**_fields(s), "weight": 1.0}) for s in specs]
    settings = LabelSettings(min_confidence=0.6, tile_grid=(1, 1), min_instance_px=4)
    label = PseudoLabeller(load_teachers(specs, CITYSCAPES), CITYSCAPES, settings).label(scene())
    assert (label.semantic[0:4] == IGNORE_INDEX).all()
    assert (label.semantic[4:8, 0:16] == CITYSCAPES.index("vegetation")).all()


def _fields(spec: object) -> dict[str, object]:
    return {name: getattr(spec, name) for name in spec.__dataclass_fields__}  # type: ignore[attr-defined]


def test_soft_targets_are_cell_means_of_the_ensemble(labeller: PseudoLabeller) -> None:
    frame = scene()
    label = labeller.label(frame)
    assert label.soft is not None and label.soft.dtype == np.float16
    assert label.soft.shape == (19, H // 4, W // 4)
    np.testing.assert_allclose(label.soft.astype(np.float32).sum(axis=0), 1.0, atol=2e-3)
    probs = labeller.ensemble(frame)
    # Where the road model overruled the ensemble the soft target leans to road; elsewhere
    # it is the cell mean of the ensemble, renormalised.
    cells = cell_average(probs, 4)
    cells /= cells.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(
        label.soft[:, 0:2].astype(np.float32), cells[0:2].transpose(2, 0, 1), atol=1e-3
    )


def test_cell_average_pads_the_border_by_repeating_it() -> None:
    values = np.arange(5 * 6, dtype=np.float32).reshape(5, 6, 1)
    cells = cell_average(values, 4)
    assert cells.shape == (2, 2, 1)
    assert cells[0, 0, 0] == pytest.approx(values[0:4, 0:4].mean())
    bottom = np.concatenate([values[4:5, 4:6]] * 4, axis=0)  # row 4 repeated, cols 4..5 + 5, 5
    padded = np.concatenate([bottom, bottom[:, -1:], bottom[:, -1:]], axis=1)
    assert cells[1, 1, 0] == pytest.approx(padded.mean())


def test_tiles_cover_the_frame_with_overlap() -> None:
    tiles = _tiles(720, 1280, (2, 3), 0.25)
    assert len(tiles) == 6
    covered = np.zeros((720, 1280), dtype=np.int32)
    for y0, x0, y1, x1 in tiles:
        covered[y0:y1, x0:x1] += 1
    assert covered.min() >= 1
    assert (covered >= 2).mean() > 0.2


def test_detector_box_is_decoded_in_frame_pixels(labeller: PseudoLabeller) -> None:
    detections = labeller.detect(scene())
    assert len(detections) == 1
    np.testing.assert_allclose(detections[0].box_xyxy, CAR_BOX, atol=1e-4)
    assert detections[0].score == pytest.approx(0.9)
    assert detections[0].label_classes == (CITYSCAPES.index("car"),)


# --- teachers file ----------------------------------------------------------------------


def test_teachers_file_errors_name_the_teacher(tmp_path: Path, teachers_yaml: Path) -> None:
    text = teachers_yaml.read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("car: [car]", "car: [carr]"))
    with pytest.raises(ConfigError, match=r"teacher 'det'.class_map\['car'\] names \['carr'\]"):
        read_teacher_specs(bad, CITYSCAPES, teachers_yaml.parent)
    bad.write_text(text.replace("file: a.onnx", "file: missing.onnx"))
    with pytest.raises(ConfigError, match=r"teacher 'a': file .*missing.onnx' does not exist"):
        read_teacher_specs(bad, CITYSCAPES, teachers_yaml.parent)
    bad.write_text(text.replace("role: road", "role: roads"))
    with pytest.raises(ConfigError, match=r"role='roads' must be one of semantic, road, detector"):
        read_teacher_specs(bad, CITYSCAPES, teachers_yaml.parent)
    bad.write_text(text.replace("file: a.onnx", "file: a.onnx\n    sha256: 00ff"))
    specs = read_teacher_specs(bad, CITYSCAPES, teachers_yaml.parent)
    with pytest.raises(ModelFileError, match=r"teacher 'a'.*SHA-256"):
        load_teachers(specs, CITYSCAPES)


def test_the_documented_teachers_file_is_valid(shared_data: Path) -> None:
    teachers = shared_data.parent / "teachers"
    if not (teachers / "README.md").is_file():
        pytest.skip(f"open teachers not found at {teachers}")
    specs = read_teacher_specs(REPO / "config" / "teachers.yaml", CITYSCAPES, teachers)
    assert [s.role for s in specs] == ["semantic", "semantic", "road", "detector"]
    loaded = load_teachers(specs, CITYSCAPES)  # checks every SHA-256
    assert loaded.detector is not None


# --- frames -----------------------------------------------------------------------------


def _frames(count: int) -> list[npt.NDArray[np.uint8]]:
    base = scene()
    return [np.roll(base, shift, axis=1) for shift in range(count)]


def test_bag_subsampling_by_interval_and_every(tmp_path: Path) -> None:
    bag = write_image_bag(
        tmp_path / "drive", _frames(10), topic="/cam/image_raw", compressed="jpeg",
        storage="mcap", frame_id="cam", start_ns=0, period_ns=250_000_000,
    )  # fmt: skip
    (source,) = open_sources([bag], Subsampling(min_interval_s=1.0))
    assert [f.index for f in source] == [0, 4, 8]
    (source,) = open_sources([bag], Subsampling(every=3))
    frames = list(source)
    assert [f.index for f in frames] == [0, 3, 6, 9]
    assert frames[0].provenance == {"path": str(bag), "topic": "/cam/image_raw", "stamp_ns": 0}
    assert frames[0].encoded is not None and frames[0].encoded[:3] == b"\xff\xd8\xff"


def test_near_duplicates_are_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "standing"
    folder.mkdir()
    frame = cv2.resize(scene(), (320, 160), interpolation=cv2.INTER_NEAREST)
    for index in range(4):
        image = frame if index < 3 else np.roll(frame, 40, axis=1)
        cv2.imwrite(str(folder / f"{index}.png"), image[:, :, ::-1])
    (source,) = open_sources([folder], Subsampling(dedup=3.0))
    assert [f.index for f in source] == [0, 3]


def test_video_frames_are_sampled_by_time(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 32))
    if not writer.isOpened():
        pytest.skip("this OpenCV build writes no MJPG video")
    for index in range(25):
        writer.write(cv2.resize(_frames(25)[index], (64, 32))[:, :, ::-1])
    writer.release()
    (source,) = open_sources([path], Subsampling(min_interval_s=1.0))
    frames = list(source)
    assert [f.index for f in frames] == [0, 10, 20]
    assert frames[1].provenance["time_s"] == pytest.approx(1.0)
    assert frames[0].image.shape == (32, 64, 3)


# --- the command ------------------------------------------------------------------------


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "panoptic_ros", "pseudo-label", *map(str, args)],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=300, check=False,
    )  # fmt: skip


def _label(teachers: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """pseudo-label with the tiny teachers: whole-frame detector, 4-pixel instances allowed."""
    return _cli(*args, "--teachers", teachers, "--tiles", "1x1", "--min-instance-px", "4")


def _summary(stdout: str) -> dict[str, str]:
    """The summary table as {row name: value}."""
    rows = (re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in stdout.splitlines())
    return {row[0]: row[1] for row in rows if len(row) == 2}


def _inputs(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "street_frames"
    folder.mkdir()
    for index, frame in enumerate(_frames(3)):
        cv2.imwrite(str(folder / f"f{index}.png"), frame[:, :, ::-1])
    _, jpeg = cv2.imencode(".jpg", scene()[:, :, ::-1])
    (folder / "f3_truncated.jpg").write_bytes(jpeg.tobytes()[:40])
    bag = write_image_bag(
        tmp_path / "drive", _frames(2), topic="/cam/image_raw", encoding="rgb8",
        storage="mcap", frame_id="cam", start_ns=0, period_ns=1_000_000_000,
    )  # fmt: skip
    return folder, bag


def test_command_writes_a_dataset_train_and_eval_read(tmp_path: Path, teachers_yaml: Path) -> None:
    folder, bag = _inputs(tmp_path)
    out = tmp_path / "pseudo"
    done = _label(teachers_yaml, folder, bag, "-o", out, "--split", "val")
    assert done.returncode == 0, done.stderr
    # The truncated frame is counted and named in one line; the others are labelled.
    warnings = [line for line in done.stderr.splitlines() if "skipped frame" in line]
    assert len(warnings) == 1 and "f3_truncated.jpg" in warnings[0]
    summary = _summary(done.stdout)
    assert summary["labelled"] == "5" and summary["bad frames"] == "1"
    document = json.loads((out / "gtFine" / "cityscapes_panoptic_val.json").read_text())
    record = document["pseudo_label"]
    assert [t["name"] for t in record["teachers"]] == ["a", "b", "road", "det"]
    assert all(len(t["sha256"]) == 64 for t in record["teachers"])
    assert record["settings"]["min_confidence"] == 0.5
    assert {s["kind"] for s in record["sources"]} == {"folder", "bag"}
    assert {f["id"] for f in record["frames"]} == {
        "street-frames_000000_000000", "street-frames_000000_000001",
        "street-frames_000000_000002", "drive_000000_000000", "drive_000000_000001",
    }  # fmt: skip
    assert document["soft_targets"]["stride"] == 4
    # Read back as the trainer does: the labels are the labeller's.
    dataset = read_cityscapes_panoptic(out, "val")
    source = PanopticDatasetSource(dataset, CITYSCAPES, crowd="void")
    sample = next(
        source(i)
        for i in range(len(dataset))
        if dataset[i].image_id == "street-frames_000000_000000"
    )
    assert (sample.semantic[8:12, 2:10] == CITYSCAPES.index("car")).all()
    assert (sample.semantic[4:8, 16:32] == IGNORE_INDEX).all()
    assert len(np.unique(sample.instances[sample.instances > 0])) == 1
    soft = np.load(out / "softTargets" / "val" / "street-frames_000000_000000_probs.npy")
    assert soft.shape == (19, H // 4, W // 4) and soft.dtype == np.float16
    # Scored by eval against itself: PQ 1.0.
    gt_json = out / "gtFine" / "cityscapes_panoptic_val.json"
    gt_dir = out / "gtFine" / "cityscapes_panoptic_val"
    scored = subprocess.run(
        [sys.executable, "-m", "panoptic_ros", "eval", "--gt-json", str(gt_json), "--gt-dir",
         str(gt_dir), "--pred-json", str(gt_json), "--pred-dir", str(gt_dir), "--json",
         str(tmp_path / "pq.json")],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=300, check=False,
    )  # fmt: skip
    assert scored.returncode == 0, scored.stderr
    pq = json.loads((tmp_path / "pq.json").read_text())
    assert pq["all"]["pq"] == pytest.approx(1.0) and pq["all"]["n"] == 5
    assert pq["per_class"]["car"]["tp"] == 5  # one car in each labelled frame


def test_command_resumes_and_is_deterministic(tmp_path: Path, teachers_yaml: Path) -> None:
    folder, bag = _inputs(tmp_path)
    first, second = tmp_path / "first", tmp_path / "second"
    assert _label(teachers_yaml, folder, "-o", first).returncode == 0
    written = {
        p: p.stat().st_mtime_ns for p in first.rglob("*") if p.is_file() and "records" in str(p)
    }
    again = _label(teachers_yaml, folder, bag, "-o", first)
    assert again.returncode == 0, again.stderr
    summary = _summary(again.stdout)
    assert summary["skipped (done before)"] == "3" and summary["labelled"] == "2"
    assert all(p.stat().st_mtime_ns == t for p, t in written.items()), (
        "a labelled frame was rewritten"
    )
    document = json.loads((first / "gtFine" / "cityscapes_panoptic_train.json").read_text())
    assert len(document["annotations"]) == 5
    assert len(document["pseudo_label"]["sources"]) == 2
    # Other settings into the same folder are refused before anything is written.
    refused = _label(teachers_yaml, folder, "-o", first, "--flip")
    assert refused.returncode == 1
    assert "made with other settings; use a new output folder" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    # The same frames in another folder give the same bytes.
    assert _label(teachers_yaml, folder, bag, "-o", second).returncode == 0
    for path in (first / "gtFine" / "cityscapes_panoptic_train").iterdir():
        assert path.read_bytes() == (second / path.relative_to(first)).read_bytes()
    for path in (first / "softTargets" / "train").iterdir():
        assert path.read_bytes() == (second / path.relative_to(first)).read_bytes()


def test_command_refuses_bad_input_in_one_line(tmp_path: Path, teachers_yaml: Path) -> None:
    missing = _cli(tmp_path / "nope", "-o", tmp_path / "out", "--teachers", teachers_yaml)
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        f"panoptic-ros pseudo-label: error: input {str(tmp_path / 'nope')!r} does not exist"
    )
    folder, _ = _inputs(tmp_path)
    inside = _cli(folder, "-o", folder / "out", "--teachers", teachers_yaml)
    assert inside.returncode == 1 and "overlaps the input" in inside.stderr
    assert not (folder / "out").exists()


def test_undecodable_bag_frames_are_counted_and_skipped(
    tmp_path: Path, teachers_yaml: Path
) -> None:
    from bag_fixtures import make_bag_with_corrupt_frames

    bag = make_bag_with_corrupt_frames(tmp_path, corrupt=(1, 2), count=4)
    out = tmp_path / "pseudo"
    done = _label(teachers_yaml, bag, "-o", out)
    assert done.returncode == 0, done.stderr
    summary = _summary(done.stdout)
    assert summary["labelled"] == "2" and summary["bad frames"] == "2"
    warnings = [line for line in done.stderr.splitlines() if "skipped frame" in line]
    assert [w.split("skipped frame ")[1].split(" ")[0] for w in warnings] == ["1", "2"]
    document = json.loads((out / "gtFine" / "cityscapes_panoptic_train.json").read_text())
    assert [f["index"] for f in document["pseudo_label"]["frames"]] == [0, 3]
