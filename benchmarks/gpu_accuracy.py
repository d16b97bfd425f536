"""Accuracy and fusion parity on a CUDA device (run by gpu_session.sh).

For the given checkpoint: PQ on held-out synthetic scenes with the torch backend in FP32
and FP16 (GPU fusion), and, per scene, whether the GPU fusion's cell maps equal the NumPy
reference run on the same heads. Prints one JSON object.

    python benchmarks/gpu_accuracy.py CHECKPOINT.safetensors [SCENES]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from panoptic_ros.backends.torch_backend import TorchBackend
from panoptic_ros.evaluation.model_eval import evaluate_pipeline, held_out_synthetic
from panoptic_ros.fusion import FusionParams, fuse_cells
from panoptic_ros.fusion.torch_fusion import fuse_cells_torch
from panoptic_ros.pipeline import PanopticPipeline
from panoptic_ros.results import HeadOutputs


def main() -> None:
    """Compare the GPU fusion with NumPy on held-out scenes; print the report."""
    checkpoint = Path(sys.argv[1])
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    scenes = held_out_synthetic(count, 256, 512)
    report: dict[str, object] = {"gpu": torch.cuda.get_device_name(0), "scenes": count}
    for precision in ("fp32", "fp16"):
        backend = TorchBackend.from_checkpoint(checkpoint, device="cuda", precision=precision)
        pipeline = PanopticPipeline(
            backend, backend.metadata.labels.with_drivable(["road"]), FusionParams()
        )
        result = evaluate_pipeline(pipeline, scenes)
        report[f"pq_{precision}"] = result.summary["all"]["pq"]
        report[f"miou_{precision}"] = result.miou
        identical = 0
        for scene in scenes:
            image = np.ascontiguousarray(scene.image[None])
            tensors = backend.infer_tensors(image)
            heads = HeadOutputs(*(t.cpu().numpy() for t in tensors))
            reference = fuse_cells(heads, pipeline.labels, pipeline.fusion)
            device = fuse_cells_torch(*tensors, pipeline.labels, pipeline.fusion)
            identical += int(
                np.array_equal(reference.semantic, device.semantic)
                and np.array_equal(reference.instances, device.instances)
                and np.array_equal(reference.classes, device.classes)
            )
        report[f"gpu_fusion_identical_{precision}"] = f"{identical}/{count}"
    print(json.dumps(report))


if __name__ == "__main__":
    main()
