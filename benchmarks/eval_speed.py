"""Evaluation speed: ``evaluate_folders`` against the official tools, on the same files.

Generates N ground truth / prediction pairs (synthetic street scenes at 1024x2048 by
default, with perturbed predictions that exercise every PQ rule: shifted, grown, shrunk,
dropped and relabelled instances, stuff swaps, crowd regions, void, spurious predictions
mostly on void), writes them as panoptic PNG + JSON folders, then times in one run, on
the same files and the same machine:

* panopticapi's ``pq_compute`` as users run it: its own ``multiprocessing`` pool with one
  process per CPU (``multiprocessing.cpu_count()``),
* panopticapi's ``pq_compute_single_core``: the per-process loop alone, on one core,
* cityscapesscripts' ``evaluatePanoptic`` (``evalPanopticSemanticLabeling``), which also
  uses one process per CPU (``--no-cityscapes`` leaves it out),
* ``evaluate_folders`` with 1 worker and with ``--workers`` workers (default all CPUs).

Each result is checked against ``pq_compute_single_core`` (PQ/SQ/RQ/N of all, things and
stuff, and per category, to 1e-9); the table gives images/s and the ratios of ours to the
official tool at the same parallelism: 1 worker against the single-core loop, all workers
against ``pq_compute``. The exit status is 1 when any result differs.

    python benchmarks/eval_speed.py 500 --cache /tmp/eval_cases --json speed.json
    python benchmarks/eval_speed.py 8 --size 256x512   # a quick look
    python benchmarks/eval_speed.py 500 --cache /tmp/eval_cases --profile 20  # per stage

The cases are reused from ``--cache`` when present (same N, size and seed). Scenes are
drawn from at most ``--scenes`` distinct seeds (default 100; generating a 1024x2048 scene
costs about 0.4 s); every case still gets its own prediction perturbation. The machine
(CPU model, cores, load average before and after) and library versions go into the report:
a shared machine's other work shows up in the load average.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from panoptic_ros.data.panoptic_format import (
    dataset_categories,
    panoptic_from_maps,
    write_panoptic_png,
)
from panoptic_ros.data.synthetic import HELD_OUT_SEED_START, generate_scene
from panoptic_ros.evaluation.panoptic_quality import (
    PQResult,
    default_workers,
    evaluate_folders,
)
from panoptic_ros.labels import CITYSCAPES, IGNORE_INDEX, LabelSpace

_STUFF = list(CITYSCAPES.stuff_ids)
_THINGS = [i for i in CITYSCAPES.thing_ids if CITYSCAPES.names[i] != "train"]


@dataclass(frozen=True, slots=True)
class CaseFolders:
    """Where the generated cases are: the four arguments of ``evaluate_folders``."""

    gt_json: Path
    gt_dir: Path
    pred_json: Path
    pred_dir: Path


def _boxes(instances: npt.NDArray[np.int32]) -> dict[int, tuple[slice, slice]]:
    """Instance number -> bounding slices (rows, cols)."""
    height, width = instances.shape
    numbers, inverse = np.unique(instances, return_inverse=True)
    inverse = inverse.reshape(height, width)
    rows = np.zeros((len(numbers), height), bool)
    cols = np.zeros((len(numbers), width), bool)
    rows[inverse, np.arange(height)[:, None]] = True
    cols[inverse, np.arange(width)[None, :]] = True
    boxes = {}
    for position, number in enumerate(numbers.tolist()):
        if number == 0:
            continue
        ys, xs = np.flatnonzero(rows[position]), np.flatnonzero(cols[position])
        boxes[number] = (slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1))
    return boxes


def perturb(
    semantic: npt.NDArray[np.uint8], instances: npt.NDArray[np.int32], seed: int
) -> tuple[
    tuple[npt.NDArray[np.uint8], npt.NDArray[np.int32]],
    tuple[npt.NDArray[np.uint8], npt.NDArray[np.int32]],
]:
    """A ground truth with void and crowd regions, and a flawed prediction of it.

    Args:
        semantic: [H, W] uint8 class (CITYSCAPES), 255 void.
        instances: [H, W] int32 instance number, 0 none.
        seed: Seed of the perturbation.

    Returns:
        ((gt semantic, gt instances), (pred semantic, pred instances)). Ground truth thing
        pixels without an instance are crowd; the prediction has none (every predicted
        thing pixel carries an instance).
    """
    rng = np.random.default_rng(seed)
    height, width = semantic.shape
    gt_sem, gt_inst = semantic.copy(), instances.copy()
    # Void: an ego-vehicle bonnet at the bottom and a few blobs, as in Cityscapes.
    bonnet = np.zeros((height, width), np.uint8)
    cv2.ellipse(
        bonnet,
        (width // 2, height),
        (int(width * rng.uniform(0.3, 0.6)), int(height * rng.uniform(0.05, 0.15))),
        0,
        180,
        360,
        1,
        -1,
    )
    for _ in range(rng.integers(1, 4)):
        centre = (int(rng.integers(width)), int(rng.integers(height)))
        axes = (int(width * rng.uniform(0.01, 0.05)), int(height * rng.uniform(0.01, 0.05)))
        cv2.ellipse(bonnet, centre, axes, 0, 0, 360, 1, -1)
    gt_sem[bonnet > 0] = IGNORE_INDEX
    gt_inst[bonnet > 0] = 0
    boxes = _boxes(gt_inst)
    # Crowd: some instances lose their number (their pixels become their class's crowd).
    crowd = [k for k in boxes if rng.random() < 0.2]
    for k in crowd:
        box = boxes[k]
        gt_inst[box][gt_inst[box] == k] = 0

    pred_sem, pred_inst = gt_sem.copy(), gt_inst.copy()
    next_instance = int(gt_inst.max()) + 1
    # Predictions are made on the whole image: void and crowd pixels get labels too.
    pred_sem[pred_sem == IGNORE_INDEX] = _STUFF[0]
    for k in crowd:  # the crowd predicted as one instance (lies on crowd: not an fp)
        box = boxes[k]
        region = (pred_inst[box] == 0) & np.isin(pred_sem[box], _THINGS) & (instances[box] == k)
        pred_inst[box][region] = next_instance
        next_instance += 1
    for k, box in boxes.items():
        if k in crowd:
            continue
        rows, cols = box
        action = rng.choice(["keep", "shift", "grow", "shrink", "drop", "relabel"])
        mask = gt_inst[rows, cols] == k
        cls = int(np.bincount(gt_sem[rows, cols][mask]).argmax())
        if action == "keep":
            continue
        background = _STUFF[int(rng.integers(len(_STUFF)))]
        target = pred_inst[rows, cols] == k
        pred_sem[rows, cols][target] = background
        pred_inst[rows, cols][target] = 0
        if action == "drop":
            continue
        if action == "relabel":
            cls = int(rng.choice([c for c in _THINGS if c != cls]))
        h, w = mask.shape
        if action == "shift":
            dy = int(rng.integers(-h // 3, h // 3 + 1))
            dx = int(rng.integers(-w // 3, w // 3 + 1))
            y0, x0 = rows.start + dy, cols.start + dx
            ys, xs = slice(max(y0, 0), min(y0 + h, height)), slice(max(x0, 0), min(x0 + w, width))
            mask = mask[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
            rows, cols = ys, xs
        elif action in ("grow", "shrink"):
            pad = max(1, int(0.15 * min(h, w)))
            ys = slice(max(rows.start - pad, 0), min(rows.stop + pad, height))
            xs = slice(max(cols.start - pad, 0), min(cols.stop + pad, width))
            big = np.zeros((ys.stop - ys.start, xs.stop - xs.start), np.uint8)
            big[rows.start - ys.start : rows.stop - ys.start, cols.start - xs.start :][:, :w] = mask
            kernel = np.ones((2 * pad + 1, 2 * pad + 1), np.uint8)
            op = cv2.dilate if action == "grow" else cv2.erode
            mask = op(big, kernel).astype(bool)
            rows, cols = ys, xs
        if mask.any():
            pred_sem[rows, cols][mask] = cls
            pred_inst[rows, cols][mask] = next_instance
            next_instance += 1
    # Stuff swaps, unlabelled patches and spurious things (some mostly on void).
    void = np.argwhere(gt_sem == IGNORE_INDEX)
    for _ in range(rng.integers(2, 6)):
        kind = rng.choice(["swap", "unlabelled", "thing", "thing_on_void"])
        ph, pw = int(height * rng.uniform(0.02, 0.12)), int(width * rng.uniform(0.02, 0.12))
        if kind == "thing_on_void" and len(void):
            y, x = (int(v) for v in void[rng.integers(len(void))])
            y, x = max(0, y - ph // 2), max(0, x - pw // 2)
        else:
            y, x = int(rng.integers(height - ph)), int(rng.integers(width - pw))
        patch = (slice(y, y + ph), slice(x, x + pw))
        if kind == "swap":
            pred_sem[patch] = _STUFF[int(rng.integers(len(_STUFF)))]
            pred_inst[patch] = 0
        elif kind == "unlabelled":
            pred_sem[patch] = IGNORE_INDEX
            pred_inst[patch] = 0
        else:
            pred_sem[patch] = _THINGS[int(rng.integers(len(_THINGS)))]
            pred_inst[patch] = next_instance
            next_instance += 1
    # Stuff pixels carry no instance; thing pixels always one.
    thing = CITYSCAPES.is_thing_table()[pred_sem]
    pred_inst[~thing] = 0
    assert not (thing & (pred_inst == 0)).any()
    return (gt_sem, gt_inst), (pred_sem, pred_inst)


@functools.lru_cache(maxsize=2)
def _scene(seed: int, height: int, width: int) -> Any:
    """A synthetic scene, cached: consecutive cases may share one (``--scenes``)."""
    return generate_scene(seed, height, width)


def make_case(
    scene_seed: int, case_seed: int, height: int, width: int, labels: LabelSpace = CITYSCAPES
) -> tuple[
    npt.NDArray[np.uint32],
    list[dict[str, Any]],
    npt.NDArray[np.uint32],
    list[dict[str, Any]],
]:
    """One (gt ids, gt segments, pred ids, pred segments) case in Cityscapes labelIds.

    Predicted ids are random 24-bit values (as COCO's colour ids), not Cityscapes'.
    """
    scene = _scene(scene_seed, height, width)
    (gt_sem, gt_inst), (pred_sem, pred_inst) = perturb(scene.semantic, scene.instances, case_seed)
    gt_ids, gt_segments = panoptic_from_maps(gt_sem, gt_inst, labels)
    cityscapes_ids, segments = panoptic_from_maps(pred_sem, pred_inst, labels)
    rng = np.random.default_rng([case_seed, 1])
    new_ids = rng.choice(np.arange(1, 256**3, dtype=np.int64), size=len(segments), replace=False)
    table = {s["id"]: int(n) for s, n in zip(segments, new_ids, strict=True)}
    listed = np.array(sorted(table), np.int64)
    values = np.array([table[i] for i in listed.tolist()], np.uint32)
    position = np.searchsorted(listed, cityscapes_ids)
    pred_ids = np.where(cityscapes_ids == 0, 0, values[np.minimum(position, len(values) - 1)])
    pred_segments = [{"id": table[s["id"]], "category_id": s["category_id"]} for s in segments]
    return gt_ids, gt_segments, pred_ids.astype(np.uint32), pred_segments


def _case_job(args: tuple[int, int, int, int]) -> tuple[int, Any]:
    index, scene_seed, height, width = args
    return index, make_case(scene_seed, 10_000 + index, height, width)


def write_cases(
    root: Path,
    count: int,
    height: int,
    width: int,
    *,
    scenes: int = 100,
    workers: int = 1,
    labels: LabelSpace = CITYSCAPES,
) -> CaseFolders:
    """Generate ``count`` cases and write them as COCO panoptic folders under ``root``.

    Ground truth: ``gt.json`` + ``gt/`` (segments with ``area``, ``bbox``, ``iscrowd``);
    predictions: ``pred.json`` + ``pred/``. Case i uses scene seed
    ``HELD_OUT_SEED_START + i * scenes // count`` and its own perturbation.
    """
    folders = CaseFolders(root / "gt.json", root / "gt", root / "pred.json", root / "pred")
    folders.gt_dir.mkdir(parents=True, exist_ok=True)
    folders.pred_dir.mkdir(parents=True, exist_ok=True)
    scenes = max(1, min(scenes, count))
    # Consecutive cases share a scene (cached), each with its own perturbation.
    jobs = [(i, HELD_OUT_SEED_START + i * scenes // count, height, width) for i in range(count)]
    images: list[dict[str, Any]] = []
    gt_annotations: list[dict[str, Any]] = []
    pred_annotations: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        cases: Iterable[tuple[int, Any]]
        if workers > 1:
            pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(workers))
            cases = pool.imap(_case_job, jobs, chunksize=max(1, count // scenes))
        else:
            cases = map(_case_job, jobs)
        from tqdm import tqdm

        bar = stack.enter_context(
            tqdm(total=count, desc="cases", unit="img", file=sys.stderr, disable=None)
        )
        for index, (gt_ids, gt_segments, pred_ids, pred_segments) in cases:
            bar.update()
            name = f"case_{index:05d}"
            write_panoptic_png(folders.gt_dir / f"{name}.png", gt_ids)
            write_panoptic_png(folders.pred_dir / f"{name}.png", pred_ids)
            images.append({"id": name, "height": height, "width": width, "file_name": name})
            gt_annotations.append(
                {"image_id": name, "file_name": f"{name}.png", "segments_info": gt_segments}
            )
            pred_annotations.append(
                {"image_id": name, "file_name": f"{name}.png", "segments_info": pred_segments}
            )
    categories = dataset_categories(labels)
    for path, entries in (
        (folders.gt_json, gt_annotations),
        (folders.pred_json, pred_annotations),
    ):
        data = {"images": images, "annotations": entries, "categories": categories}
        path.write_text(json.dumps(data), encoding="utf-8")
    return folders


def _official_json(folders: CaseFolders) -> tuple[dict[str, Any], dict[str, Any]]:
    return json.loads(folders.gt_json.read_text()), json.loads(folders.pred_json.read_text())


def official_single_core(folders: CaseFolders) -> dict[str, Any]:
    """Run panopticapi's ``pq_compute_single_core`` and ``pq_average`` (as ``pq_compute``).

    Returns:
        ``{"All" | "Things" | "Stuff": {...}, "per_class": {...}}`` as ``pq_compute``.
    """
    from panopticapi.evaluation import pq_compute_single_core

    gt, pred = _official_json(folders)
    categories = {row["id"]: row for row in gt["categories"]}
    predictions = {ann["image_id"]: ann for ann in pred["annotations"]}
    pairs = [(ann, predictions[ann["image_id"]]) for ann in gt["annotations"]]
    with contextlib.redirect_stdout(io.StringIO()):  # it prints every 100 images
        stat = pq_compute_single_core(
            0, pairs, str(folders.gt_dir), str(folders.pred_dir), categories
        )
    results: dict[str, Any] = {}
    for name, isthing in (("All", None), ("Things", True), ("Stuff", False)):
        results[name], per_class = stat.pq_average(categories, isthing=isthing)
        if name == "All":
            results["per_class"] = per_class
    return results


def official_pq_compute(folders: CaseFolders) -> dict[str, Any]:
    """Run panopticapi's ``pq_compute`` (one process per CPU), as its users do."""
    from panopticapi.evaluation import pq_compute

    with contextlib.redirect_stdout(io.StringIO()):  # progress and a table
        results: dict[str, Any] = pq_compute(
            str(folders.gt_json), str(folders.pred_json), str(folders.gt_dir), str(folders.pred_dir)
        )
    return results


def official_cityscapes(folders: CaseFolders) -> dict[str, Any]:
    """Run cityscapesscripts' ``evaluatePanoptic`` (one process per CPU).

    Its results file goes to a temporary folder.
    """
    from cityscapesscripts.evaluation.evalPanopticSemanticLabeling import evaluatePanoptic

    with (
        tempfile.TemporaryDirectory(prefix="cityscapes_eval_") as folder,
        contextlib.redirect_stdout(io.StringIO()),
    ):
        results: dict[str, Any] = evaluatePanoptic(
            str(folders.gt_json),
            str(folders.gt_dir),
            str(folders.pred_json),
            str(folders.pred_dir),
            str(Path(folder) / "results.json"),
        )
    return results


def _summary_of(official: Mapping[str, Any]) -> dict[str, Any]:
    """An official result in the shape of ``PQResult`` for comparisons (per class by id)."""
    return {
        "summary": {key.lower(): dict(official[key]) for key in ("All", "Things", "Stuff")},
        "per_class": {int(k): dict(v) for k, v in official["per_class"].items()},
    }


def official_difference(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """Largest |a - b| over PQ/SQ/RQ/N of all/things/stuff and per-category PQ/SQ/RQ."""
    first, second = _summary_of(a), _summary_of(b)
    worst = 0.0
    for key in ("all", "things", "stuff"):
        for metric in ("pq", "sq", "rq", "n"):
            worst = max(worst, abs(first["summary"][key][metric] - second["summary"][key][metric]))
    for category in set(first["per_class"]) | set(second["per_class"]):
        for metric in ("pq", "sq", "rq"):
            x = first["per_class"].get(category, {}).get(metric, 0.0)
            y = second["per_class"].get(category, {}).get(metric, 0.0)
            worst = max(worst, abs(x - y))
    return worst


def max_difference(ours: PQResult, official: Mapping[str, Any]) -> float:
    """Largest |ours - official| over PQ/SQ/RQ of all/things/stuff and every category."""
    worst = 0.0
    for key, name in (("all", "All"), ("things", "Things"), ("stuff", "Stuff")):
        for metric in ("pq", "sq", "rq", "n"):
            worst = max(worst, abs(ours.summary[key][metric] - official[name][metric]))
    return worst


def per_class_difference(
    ours: PQResult, official: Mapping[str, Any], categories: Mapping[Any, Mapping[str, Any]]
) -> float:
    """Largest |ours - official| of per-category PQ/SQ/RQ (absent in ours = 0)."""
    worst = 0.0
    for category, values in official["per_class"].items():
        quality = ours.per_class.get(categories[int(category)]["name"])
        for metric in ("pq", "sq", "rq"):
            mine = getattr(quality, metric) if quality is not None else 0.0
            worst = max(worst, abs(mine - values[metric]))
    return worst


def _timed(function: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _versions() -> dict[str, str]:
    from importlib import metadata

    from PIL import __version__ as pillow

    versions = {"python": platform.python_version(), "numpy": np.__version__}
    versions.update({"opencv": cv2.__version__, "pillow": pillow})
    for name in ("panopticapi-lite", "cityscapesScripts"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


#: (report key, table label, runs with all CPUs) of every evaluator, in the order timed.
EVALUATORS = (
    ("official_pq_compute", "panopticapi pq_compute (all CPUs)", True),
    ("official_single_core", "panopticapi pq_compute_single_core (1 core)", False),
    ("official_cityscapes", "cityscapesscripts evaluatePanoptic (all CPUs)", True),
    ("ours_1_worker", "evaluate_folders, 1 worker", False),
    ("ours_n_workers", "evaluate_folders, {workers} workers", True),
)


def run_benchmark(
    folders: CaseFolders,
    count: int,
    workers: int,
    *,
    cityscapes: bool = True,
    repeat: int = 1,
    progress: Any = None,
) -> dict[str, Any]:
    """Time every evaluator of :data:`EVALUATORS` on ``folders``; check equality.

    With ``repeat`` > 1 the evaluators run in that many interleaved rounds and each keeps
    its best time, so a burst of other work on a shared machine hits one round, not one
    evaluator; every round's result is checked.

    Args:
        folders: The generated cases.
        count: Their number (for images/s).
        workers: Our processes in the parallel run.
        cityscapes: Also time cityscapesscripts.
        repeat: Rounds (best time kept).
        progress: Called with each evaluator's label before it runs (e.g. ``print``).

    Returns:
        A JSON-able report: seconds and images/s per evaluator, the ratios, the largest
        difference of each result from ``pq_compute_single_core``, machine and versions.
    """
    gt = json.loads(folders.gt_json.read_text())
    categories = {row["id"]: row for row in gt["categories"]}
    # Warm the page cache so no evaluator pays for the first read from disk.
    for folder in (folders.gt_dir, folders.pred_dir):
        for path in folder.iterdir():
            path.read_bytes()
    jobs: dict[str, Any] = {
        "official_pq_compute": functools.partial(official_pq_compute, folders),
        "official_single_core": functools.partial(official_single_core, folders),
        "official_cityscapes": functools.partial(official_cityscapes, folders),
        "ours_1_worker": functools.partial(evaluate_folders, *_args(folders), workers=1),
        "ours_n_workers": functools.partial(evaluate_folders, *_args(folders), workers=workers),
    }
    if not cityscapes:
        del jobs["official_cityscapes"]
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    results: dict[str, list[Any]] = {key: [] for key in jobs}
    rounds: dict[str, list[float]] = {key: [] for key in jobs}
    load_at_start: dict[str, list[float]] = {key: [] for key in jobs}
    for round_index in range(repeat):
        for key, label, _ in EVALUATORS:
            if key in jobs:
                if progress is not None:
                    progress(f"{label.format(workers=workers)} (round {round_index + 1}/{repeat})")
                if hasattr(os, "getloadavg"):
                    load_at_start[key].append(os.getloadavg()[0])
                result, elapsed = _timed(jobs[key])
                results[key].append(result)
                rounds[key].append(elapsed)
    seconds = {key: min(values) for key, values in rounds.items()}
    load_after = os.getloadavg() if hasattr(os, "getloadavg") else None
    reference = results["official_single_core"][0]
    differences = {}
    for key, outcomes in results.items():
        for result in outcomes:
            if isinstance(result, PQResult):
                difference = max(
                    max_difference(result, reference),
                    per_class_difference(result, reference, categories),
                )
            else:
                difference = official_difference(result, reference)
            differences[key] = max(differences.get(key, 0.0), difference)
    ours = results["ours_n_workers"][0]
    return {
        "images": count,
        "cpu": cpu_name(),
        "cpus_available": default_workers(),
        "cpu_count": multiprocessing.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "versions": _versions(),
        "workers": workers,
        "repeat": repeat,
        "seconds": seconds,
        "seconds_per_round": rounds,
        "load_average_at_start": load_at_start,
        "images_per_s": {key: count / value for key, value in seconds.items()},
        # Ours against the official tool at the same parallelism.
        "ratio_1_worker_vs_single_core": seconds["official_single_core"] / seconds["ours_1_worker"],
        "ratio_n_workers_vs_pq_compute": seconds["official_pq_compute"] / seconds["ours_n_workers"],
        "differences": differences,
        "max_abs_difference": max(differences.values()),
        "pq": ours.pq,
        "sq": ours.sq,
        "rq": ours.rq,
        "miou": ours.miou,
    }


def profile_stages(folders: CaseFolders, count: int) -> dict[str, float]:
    """Milliseconds per image of each stage of both evaluators, on the first ``count`` cases.

    In one process, one core, best of three passes per stage: PNG decoding alone (OpenCV
    ``IMREAD_UNCHANGED``, Pillow), our read (decode and ids), our scoring of decoded ids,
    the official tool's read (Pillow to a uint32 array and its ``rgb2id``) and its two
    ``np.unique`` sorts.
    """
    from panopticapi.utils import rgb2id as official_rgb2id
    from PIL import Image

    from panoptic_ros.data.panoptic_format import read_panoptic_png
    from panoptic_ros.evaluation.panoptic_quality import score_panoptic_image

    cv2.setNumThreads(1)
    gt, pred = _official_json(folders)
    categories = {row["id"]: row for row in gt["categories"]}
    pairs = list(zip(gt["annotations"], pred["annotations"], strict=True))[:count]
    paths = [
        (str(folders.gt_dir / g["file_name"]), str(folders.pred_dir / q["file_name"]))
        for g, q in pairs
    ]

    def best(stage: Any) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            for index in range(len(pairs)):
                stage(index)
            times.append(time.perf_counter() - start)
        return 1e3 * min(times) / len(pairs)

    ids = [(read_panoptic_png(g), read_panoptic_png(q)) for g, q in paths]

    def official_sorts(index: int) -> None:
        gt_ids, pred_ids = ids[index]
        np.unique(pred_ids, return_counts=True)
        keys = gt_ids.astype(np.uint64) * np.uint64(256**3) + pred_ids.astype(np.uint64)
        np.unique(keys, return_counts=True)

    stages = {
        "decode_opencv": lambda i: [cv2.imread(f, cv2.IMREAD_UNCHANGED) for f in paths[i]],
        "decode_pillow": lambda i: [np.asarray(Image.open(f)) for f in paths[i]],
        "ours_read": lambda i: [read_panoptic_png(f) for f in paths[i]],
        "ours_score": lambda i: score_panoptic_image(
            ids[i][0],
            pairs[i][0]["segments_info"],
            ids[i][1],
            pairs[i][1]["segments_info"],
            categories,
            check_ids=False,
        ),
        "official_read": lambda i: [
            official_rgb2id(np.array(Image.open(f), dtype=np.uint32)) for f in paths[i]
        ],
        "official_sorts": official_sorts,
    }
    return {name: best(stage) for name, stage in stages.items()}


def format_report(report: Mapping[str, Any]) -> str:
    """The report as a table: seconds, images/s, ratio to the official tool, difference."""
    lines = [
        f"{'evaluator':48s} {'seconds':>8s} {'images/s':>9s} {'vs official':>11s} {'diff':>8s}"
    ]
    seconds = report["seconds"]
    for key, label, parallel in EVALUATORS:
        if key not in seconds:
            continue
        baseline = "official_pq_compute" if parallel else "official_single_core"
        ratio = seconds[baseline] / seconds[key]
        lines.append(
            f"{label.format(workers=report['workers']):48s} {seconds[key]:8.2f} "
            f"{report['images_per_s'][key]:9.1f} {ratio:10.2f}x "
            f"{report['differences'][key]:8.1e}"
        )
    before, after = report["load_average_before"], report["load_average_after"]
    load = f", load average {before[0]:.2f} -> {after[0]:.2f}" if before and after else ""
    lines.append(
        f"{report['images']} images {report.get('size', '')}, {report['cpus_available']} CPUs "
        f"({report['cpu']}){load}, best of {report['repeat']}; "
        f"PQ {100 * report['pq']:.2f}; largest difference from pq_compute_single_core "
        f"{report['max_abs_difference']:.1e}"
    )
    return "\n".join(lines)


def _args(folders: CaseFolders) -> tuple[Path, Path, Path, Path]:
    return folders.gt_json, folders.gt_dir, folders.pred_json, folders.pred_dir


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print a table (and write JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("count", type=int, help="number of cases (images)")
    parser.add_argument("--size", default="1024x2048", help="HxW of the cases")
    parser.add_argument("--workers", type=int, default=default_workers(), help="our processes")
    parser.add_argument("--scenes", type=int, default=100, help="distinct scene seeds at most")
    parser.add_argument(
        "--no-cityscapes", action="store_true", help="do not time cityscapesscripts"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="interleaved rounds; each evaluator's best counts"
    )
    parser.add_argument("--cache", type=Path, help="folder to keep the generated cases in")
    parser.add_argument("--json", type=Path, help="also write the numbers as JSON")
    parser.add_argument(
        "--profile",
        type=int,
        metavar="K",
        help="instead of timing the evaluators, print ms per image of each stage on K cases",
    )
    args = parser.parse_args(argv)
    height, width = (int(v) for v in args.size.lower().split("x"))
    with contextlib.ExitStack() as stack:
        if args.cache is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="eval_speed_")))
        else:
            root = args.cache / f"{args.count}_{height}x{width}_{args.scenes}"
        folders = CaseFolders(root / "gt.json", root / "gt", root / "pred.json", root / "pred")
        if not (folders.gt_json.is_file() and folders.pred_json.is_file()):
            root.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            folders = write_cases(
                root,
                args.count,
                height,
                width,
                scenes=min(args.scenes, args.count),
                workers=default_workers(),
            )
            print(
                f"generated {args.count} cases at {height}x{width} in "
                f"{time.perf_counter() - start:.1f} s",
                flush=True,
            )
        if args.profile:
            stages = profile_stages(folders, args.profile)
            for name, ms in stages.items():
                print(f"{name:16s} {ms:7.1f} ms per image (2 PNGs where it reads)")
            if args.json:
                args.json.write_text(json.dumps(stages, indent=2) + "\n", encoding="utf-8")
            return 0
        report = run_benchmark(
            folders,
            args.count,
            args.workers,
            cityscapes=not args.no_cityscapes,
            repeat=max(1, args.repeat),
            progress=lambda label: print(f"timing {label} ...", file=sys.stderr, flush=True),
        )
        report["size"] = f"{height}x{width}"
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0 if report["max_abs_difference"] <= 1e-9 else 1


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
