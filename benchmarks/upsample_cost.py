"""Host fusion cost of ``fusion.upsample``: nearest against bilinear, in one run.

Heads come from the bundled model on one frame (a synthetic street scene, or a real image
given with ``--image``), at 256x512 for a 960x540 camera and at 512x1024 for a 1024x2048
camera. The two modes run alternately on the same heads, so the ratio holds even on a busy
machine. Both wall time and this process's CPU time (all its threads) are taken: on a
shared machine the wall time mostly measures the queue for a core, the CPU time the work.
Prints one line per camera size; ``--json`` also writes them.

python benchmarks/upsample_cost.py [--image frame.jpg] [--repeats 15] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from panoptic_ros.config import config_from_flat
from panoptic_ros.data.synthetic import HELD_OUT_SEED_START, generate_scene
from panoptic_ros.fusion import FusionParams, fuse_cells, fuse_panoptic
from panoptic_ros.fusion.refine import refine_pixels
from panoptic_ros.pipeline import PanopticPipeline

CASES = (((540, 960), (256, 512)), ((1024, 2048), (512, 1024)))


def frame(path: str | None, camera_hw: tuple[int, int]) -> np.ndarray:
    """[H, W, 3] uint8 RGB camera frame of the wanted size."""
    if path is None:
        return generate_scene(HELD_OUT_SEED_START + 3, *camera_hw).image
    bgr = cv2.imread(path)
    if bgr is None:
        raise SystemExit(f"cannot read {path}")
    resized = cv2.resize(bgr, (camera_hw[1], camera_hw[0]), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(resized[..., ::-1])


def measure(image_path: str | None, repeats: int) -> list[dict[str, Any]]:
    """Time fuse_panoptic in both modes per camera size; return one record per size."""
    records = []
    for camera_hw, network_hw in CASES:
        config = config_from_flat(
            {
                "backend.name": "onnxruntime",
                "model.network_height": network_hw[0],
                "model.network_width": network_hw[1],
            }
        )
        with PanopticPipeline.from_config(config) as pipeline:
            letterbox = pipeline.letterbox_for(camera_hw)
            heads = pipeline.backend.infer(letterbox.apply(frame(image_path, camera_hw))[None])
            labels = pipeline.labels
        params = {mode: FusionParams(upsample=mode) for mode in ("nearest", "bilinear")}
        times: dict[str, list[float]] = {mode: [] for mode in params}
        cpu: dict[str, list[float]] = {mode: [] for mode in params}
        for _ in range(2):  # warm caches (letterbox grids, coordinates)
            for mode_params in params.values():
                fuse_panoptic(heads, letterbox, labels, mode_params)
        for _ in range(repeats):
            for mode, mode_params in params.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                fuse_panoptic(heads, letterbox, labels, mode_params)
                cpu[mode].append((time.process_time() - start_cpu) * 1000)
                times[mode].append((time.perf_counter() - start) * 1000)
        valid = letterbox.valid_cells_hw(4)
        cells = fuse_cells(heads, labels, params["bilinear"], valid_hw=valid)
        logits = heads.semantic_logits[0, :, : valid[0], : valid[1]]
        refined = refine_pixels(logits, cells, letterbox, labels)
        nearest, bilinear = (float(np.median(times[m])) for m in ("nearest", "bilinear"))
        nearest_cpu, bilinear_cpu = (float(np.median(cpu[m])) for m in ("nearest", "bilinear"))
        records.append(
            {
                "camera_hw": camera_hw,
                "network_hw": network_hw,
                "nearest_ms": round(nearest, 2),
                "bilinear_ms": round(bilinear, 2),
                "ratio": round(bilinear / nearest, 2),
                "nearest_cpu_ms": round(nearest_cpu, 2),
                "bilinear_cpu_ms": round(bilinear_cpu, 2),
                "cpu_ratio": round(bilinear_cpu / nearest_cpu, 2),
                "boundary_cells": round(float(refined.boundary.mean()), 3),
                "refined_pixels": len(refined.index),
            }
        )
    return records


def main() -> None:
    """Parse the flags, measure, print (and write) the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", help="a real frame (default: a synthetic street scene)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", type=Path, help="also write the records here")
    args = parser.parse_args()
    records = measure(args.image, args.repeats)
    for record in records:
        print(
            "camera {camera_hw} heads {network_hw}: wall nearest {nearest_ms} ms, bilinear "
            "{bilinear_ms} ms (x{ratio}); CPU nearest {nearest_cpu_ms} ms, bilinear "
            "{bilinear_cpu_ms} ms (x{cpu_ratio}); boundary cells {boundary_cells}, refined "
            "pixels {refined_pixels}".format(**record)
        )
    if args.json:
        meta = {
            "machine": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
            "image": Path(args.image).name if args.image else None,
            "repeats": args.repeats,
        }
        args.json.write_text(json.dumps({"meta": meta, "records": records}, indent=2) + "\n")


if __name__ == "__main__":
    main()
