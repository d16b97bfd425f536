"""The evaluation speed benchmark's evaluators agree; pytest-benchmark timing cases.

Speed is measured by ``benchmarks/eval_speed.py`` (500 images at 1024x2048, every official
tool in one run), never asserted here. These tests check what the benchmark relies on: every
evaluator it times gives the same numbers on the same files, at the size it times. The
pytest-benchmark cases time only with ``-m benchmark --benchmark-enable``; with the default
``--benchmark-disable`` each runs once, as a correctness check.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from official_tools import import_official_tool

import_official_tool("panopticapi.evaluation", "panopticapi-lite")
import_official_tool(
    "cityscapesscripts.evaluation.evalPanopticSemanticLabeling", "cityscapesScripts"
)

from test_panoptic_format import load_eval_speed  # noqa: E402

from panoptic_ros.evaluation.panoptic_quality import evaluate_folders  # noqa: E402

COUNT, HEIGHT, WIDTH = 8, 256, 512


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Eight 256x512 ground truth / perturbed prediction pairs as panoptic folders."""
    root = tmp_path_factory.mktemp("speed")
    return load_eval_speed().write_cases(root, COUNT, HEIGHT, WIDTH, scenes=4)


def folders(cases: Any) -> tuple[Path, Path, Path, Path]:
    return cases.gt_json, cases.gt_dir, cases.pred_json, cases.pred_dir


@pytest.mark.benchmark
def test_speed_evaluate_folders(benchmark: Any, cases: Any) -> None:
    result = benchmark(evaluate_folders, *folders(cases), workers=1)
    official = load_eval_speed().official_single_core(cases)
    assert abs(result.pq - official["All"]["pq"]) <= 1e-9


@pytest.mark.benchmark
def test_speed_official_single_core(benchmark: Any, cases: Any) -> None:
    official = benchmark(load_eval_speed().official_single_core, cases)
    assert official["All"]["n"] > 0


def test_every_timed_evaluator_gives_the_official_numbers(cases: Any) -> None:
    # The benchmark's own harness, on small cases: the five evaluators it times agree with
    # pq_compute_single_core to 1e-9, and its report names the machine.
    eval_speed = load_eval_speed()
    report = eval_speed.run_benchmark(cases, COUNT, workers=2)
    assert set(report["differences"]) == {key for key, _, _ in eval_speed.EVALUATORS}
    assert report["max_abs_difference"] <= 1e-9, report["differences"]
    assert 0.0 < report["pq"] < 1.0
    assert report["cpu"] and report["versions"]["numpy"]
    table = eval_speed.format_report(report)
    assert "pq_compute (all CPUs)" in table and "evaluate_folders, 2 workers" in table


def test_the_stage_profile_covers_both_evaluators(cases: Any) -> None:
    stages = load_eval_speed().profile_stages(cases, 2)
    assert set(stages) == {
        "decode_opencv",
        "decode_pillow",
        "ours_read",
        "ours_score",
        "official_read",
        "official_sorts",
    }
    assert all(ms > 0 for ms in stages.values())


@pytest.fixture(scope="module")
def large_cases(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Three 1024x2048 pairs (one scene, three perturbations): the size the issue times."""
    root = tmp_path_factory.mktemp("speed_large")
    return load_eval_speed().write_cases(root, 3, 1024, 2048, scenes=1)


def test_one_worker_equals_the_official_loop_at_cityscapes_size(large_cases: Any) -> None:
    eval_speed = load_eval_speed()
    ours = evaluate_folders(*folders(large_cases), workers=1)
    official = eval_speed.official_single_core(large_cases)
    categories = {c["id"]: c for c in json.loads(large_cases.gt_json.read_text())["categories"]}
    assert eval_speed.max_difference(ours, official) <= 1e-9
    assert eval_speed.per_class_difference(ours, official, categories) <= 1e-9
    assert sum(q.tp for q in ours.per_class.values()) > 0
