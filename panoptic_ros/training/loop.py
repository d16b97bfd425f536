"""The training loop: AdamW with warm-up and poly decay, periodic PQ, resumable checkpoints.

Outputs in ``output_dir``: ``checkpoint_last.safetensors`` (+ the optimizer, GradScaler and
random generator states beside it: resumable, written every ``train.checkpoint_every`` steps),
``model.safetensors`` (final weights), ``model.onnx`` + ``model.json`` (heads contract),
``metrics.jsonl`` (one JSON line per log/eval step), ``config.yaml`` and
``environment.json`` (versions), so every run can be reproduced and compared.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from panoptic_ros.config import Config, TrainConfig, config_to_dict
from panoptic_ros.contract import ModelMetadata
from panoptic_ros.data.panoptic_format import SoftTargetSpec
from panoptic_ros.errors import ConfigError
from panoptic_ros.labels import LabelSpace
from panoptic_ros.training.data import AugmentParams, SampleSource, TargetDataset, collate

__all__ = ["TrainOutcome", "augment_params", "initial_network", "learning_rate_at", "train"]

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint_last.safetensors"


@dataclass(slots=True)
class TrainOutcome:
    """What a training run produced.

    Attributes:
        steps: Optimizer steps completed (including resumed ones).
        seconds: Wall time of this invocation.
        losses: Mean total loss of the first and the last logging windows.
        evaluations: (step, PQ result dict) for every evaluation.
        files: Files written.
    """

    steps: int
    seconds: float
    losses: dict[str, float] = field(default_factory=dict)
    evaluations: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def learning_rate_at(
    step: int, *, peak: float, warmup: int, total: int, power: float = 0.9
) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` steps, then poly decay to 0 at ``total``."""
    if warmup and step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return float(peak * (1.0 - progress) ** power)


def augment_params(cfg: TrainConfig) -> AugmentParams:
    """The augmentation ``cfg`` describes (scale reference and camera effects resolved)."""
    camera = cfg.camera_augment_on
    return AugmentParams(
        flip=cfg.flip,
        brightness=cfg.brightness,
        contrast=cfg.contrast,
        saturation=cfg.saturation,
        scale_min=cfg.scale_min,
        scale_max=cfg.scale_max,
        crop_hw=(cfg.image_height, cfg.image_width),
        reference_hw=cfg.inference_hw if cfg.scale_from_inference else None,
        hue=cfg.hue if camera else 0.0,
        blur_probability=cfg.blur_probability if camera else 0.0,
        blur_max_px=cfg.blur_max_px,
    )


def initial_network(path: Path, labels: LabelSpace, cfg: TrainConfig) -> Any:
    """The network of a checkpoint, to fine-tune (``train.init_checkpoint``).

    Its architecture (backbone, FPN and head channels) is the checkpoint's; its classes
    must be the label space's, in order.

    Raises:
        ConfigError: The file is not a readable checkpoint, or its classes differ.
    """
    from panoptic_ros.errors import ModelFileError
    from panoptic_ros.modeling.checkpoint import load_checkpoint

    try:
        network, metadata, _ = load_checkpoint(path)
    except ModelFileError as err:
        raise ConfigError(f"train.init_checkpoint={str(path)!r}: {err}") from err
    if metadata.labels.names != labels.names:
        raise ConfigError(
            f"train.init_checkpoint={str(path)!r} has classes {list(metadata.labels.names)[:6]}"
            f"..., the label space {list(labels.names)[:6]}...; they must match"
        )
    architecture = network.architecture
    own = {"backbone": cfg.backbone, "fpn": cfg.fpn_channels, "head": cfg.head_channels}
    theirs = {
        "backbone": architecture["backbone"],
        "fpn": architecture["fpn_channels"],
        "head": architecture["head_channels"],
    }
    if own != theirs:
        logger.info("train.init_checkpoint sets the architecture: %s (config: %s)", theirs, own)
    logger.info("fine-tuning from %s", path)
    return network


def _environment() -> dict[str, Any]:
    import torch

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(0)
        if torch.cuda.is_available()
        else platform.processor(),
        "cpu_threads": torch.get_num_threads(),
    }


@dataclass(frozen=True, slots=True)
class _Distributed:
    """This process's place in a torchrun job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _distributed_from_environment() -> _Distributed:
    """Read RANK, WORLD_SIZE and LOCAL_RANK, which torchrun sets (plain runs have none)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Distributed()
    return _Distributed(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def _tensorboard_writer(folder: Path) -> Any:
    """A TensorBoard SummaryWriter, or None (with one log line) when tensorboard is absent."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        logger.info("tensorboard is not installed: scalars go to metrics.jsonl only")
        return None
    return SummaryWriter(str(folder))


def _batches(
    dataset: TargetDataset,
    batch_size: int,
    start_step: int,
    num_workers: int,
    steps: int,
    dist: _Distributed,
) -> Iterator[dict[str, Any]]:
    """Yield this process's batches from ``start_step`` on.

    Sample positions are ``(step * world + rank) * batch + i``: every process gets its own
    slice of each global batch, and a resumed or re-run job sees the same samples.
    """
    import torch
    from torch.utils.data import DataLoader, Subset

    positions = [
        (step * dist.world + dist.rank) * batch_size + i
        for step in range(start_step, steps)
        for i in range(batch_size)
    ]
    subset: Subset[dict[str, Any]] = Subset(dataset, positions)  # type: ignore[arg-type]
    loader = DataLoader(
        subset,
        batch_size=batch_size,
        shuffle=False,  # samples are already i.i.d. scenes; order must be reproducible
        num_workers=num_workers,
        collate_fn=collate,
        drop_last=True,
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
    )
    yield from loader


def train(
    config: Config,
    labels: LabelSpace,
    source: SampleSource,
    source_indices: Sequence[int],
    output_dir: Path,
    *,
    evaluate: Callable[[Any, ModelMetadata], dict[str, Any]] | None = None,
    resume: bool = False,
    progress: bool = True,
    device: str = "auto",
    export_onnx: bool = True,
    stop_at: int | None = None,
    soft_targets: SoftTargetSpec | None = None,
) -> TrainOutcome:
    """Train a panoptic network and write its checkpoint, ONNX model and metrics.

    Args:
        config: The run's configuration (``train`` section used; saved beside outputs).
        labels: Label space of the data and model (drivable classes included).
        source: Function from a source index to a sample (image, semantic, instances).
        source_indices: Source index for every sample position; its length must cover
            ``steps * batch_size`` samples.
        output_dir: Folder for checkpoints, model and logs (created).
        evaluate: Optional function (network in eval mode, metadata) -> PQ result dict; it
            runs every ``train.eval_every`` steps and at the end.
        resume: Continue from ``output_dir/checkpoint_last.safetensors``.
        progress: Show a progress bar on stderr.
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        export_onnx: Write ``model.onnx`` at the end.
        stop_at: Stop after this step as an interruption would (the resumable checkpoint is
            written, nothing final); for tests of ``resume``.
        soft_targets: The dataset's soft-target entry when the source's samples carry
            teacher probabilities to distil (``train.distill_weight`` > 0); None: hard
            labels only.

    Raises:
        ConfigError: Too few samples for the configured steps, or nothing to resume.
    """
    import torch
    from tqdm import tqdm

    from panoptic_ros.modeling.checkpoint import (
        load_checkpoint,
        restore_rng_state,
        save_checkpoint,
    )
    from panoptic_ros.modeling.network import build_network_from_config
    from panoptic_ros.modeling.pretrained import load_backbone_weights
    from panoptic_ros.training.losses import LossWeights, panoptic_loss

    cfg = config.train
    dist = _distributed_from_environment()
    needed = cfg.steps * cfg.batch_size * dist.world
    if len(source_indices) < needed:
        raise ConfigError(
            f"train: {len(source_indices)} samples cannot fill {cfg.steps} steps of "
            f"{cfg.batch_size}"
        )
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dist.world > 1:
        import torch.distributed

        if dev.type == "cuda":
            dev = torch.device("cuda", dist.local_rank)
            torch.cuda.set_device(dev)
        torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        logger.info("process %d of %d on %s", dist.rank, dist.world, dev)
    output_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)

    network = build_network_from_config(cfg, labels)
    metadata = ModelMetadata(
        labels=labels,
        input_hw=(cfg.image_height, cfg.image_width),
        mean_rgb=tuple(float(v) for v in network.mean_rgb),  # type: ignore[arg-type]
        std_rgb=tuple(float(v) for v in network.std_rgb),  # type: ignore[arg-type]
        architecture=network.architecture,
    )
    start_step = 0
    optimizer_state: dict[str, Any] | None = None
    scaler_state: dict[str, Any] = {}
    rng_state: dict[str, Any] | None = None
    checkpoint_path = output_dir / CHECKPOINT_NAME
    if resume:
        if not checkpoint_path.is_file():
            raise ConfigError(f"train: nothing to resume, {str(checkpoint_path)!r} does not exist")
        network, metadata, extras = load_checkpoint(checkpoint_path)
        start_step = int(extras.get("step", 0))
        optimizer_state = extras.get("optimizer_state")
        scaler_state = extras.get("scaler_state") or {}
        rng_state = extras.get("rng_state")
        logger.info("resuming from %s at step %d", checkpoint_path, start_step)
    elif cfg.init_checkpoint:
        network = initial_network(Path(cfg.init_checkpoint).expanduser(), labels, cfg)
        metadata = ModelMetadata(
            labels=labels,
            input_hw=(cfg.image_height, cfg.image_width),
            mean_rgb=tuple(float(v) for v in network.mean_rgb),  # type: ignore[arg-type]
            std_rgb=tuple(float(v) for v in network.std_rgb),  # type: ignore[arg-type]
            architecture=network.architecture,
        )
    else:
        load_backbone_weights(network.backbone, cfg.backbone_weights)

    network = network.to(dev).train()
    model: Any = network
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        if dev.type == "cuda":  # batch statistics over all GPUs, not per GPU
            network = torch.nn.SyncBatchNorm.convert_sync_batchnorm(network)  # type: ignore[no-untyped-call]
        model = DistributedDataParallel(
            network, device_ids=[dev.index] if dev.type == "cuda" else None
        )
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
    )
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)

    if dist.main:
        (output_dir / "config.yaml").write_text(
            yaml.safe_dump(config_to_dict(config), sort_keys=False), encoding="utf-8"
        )
        environment = {**_environment(), "world_size": dist.world}
        (output_dir / "environment.json").write_text(json.dumps(environment, indent=2) + "\n")

    distil = soft_targets is not None and cfg.distill_weight > 0
    dataset = TargetDataset(
        source,
        source_indices[:needed],
        seed=cfg.seed,
        augment_params=augment_params(cfg),
        stride=metadata.output_stride,
        soft_classes=labels.num_classes if distil else None,
    )
    loss_weights = LossWeights(
        distill=cfg.distill_weight,
        temperature=cfg.distill_temperature,
        teacher_temperature=soft_targets.temperature if soft_targets is not None else 1.0,
    )
    outcome = TrainOutcome(steps=start_step, seconds=0.0)
    # Only the first process writes metrics, checkpoints and the model.
    metrics_file = (output_dir / "metrics.jsonl" if dist.main else Path(os.devnull)).open(
        "a", encoding="utf-8"
    )
    use_amp = dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    if scaler_state and scaler.is_enabled():  # a CPU run's (disabled) scaler saves {}
        scaler.load_state_dict(scaler_state)
    started = time.monotonic()
    window: list[float] = []
    bar = tqdm(
        total=cfg.steps,
        initial=start_step,
        desc="train",
        unit="step",
        dynamic_ncols=True,
        disable=not progress or not sys.stderr.isatty() or not dist.main,
        file=sys.stderr,
    )

    scalars = _tensorboard_writer(output_dir / "tensorboard") if dist.main else None

    def log(record: dict[str, Any]) -> None:
        metrics_file.write(json.dumps(record) + "\n")
        metrics_file.flush()
        if scalars is not None:
            step_of = int(record["step"])
            for key, value in record.items():
                if key != "step" and isinstance(value, int | float):
                    scalars.add_scalar(f"train/{key}", value, step_of)
            for group in ("all", "things", "stuff"):
                if "eval" in record:
                    scalars.add_scalar(f"eval/pq_{group}", record["eval"][group]["pq"], step_of)

    def run_evaluation(step: int) -> None:
        if evaluate is None or not dist.main:
            return
        network.eval()
        with torch.no_grad():
            result = evaluate(network, metadata)
        network.train()
        outcome.evaluations.append((step, result))
        log({"step": step, "eval": result})
        logger.info(
            "step %d: PQ %.3f (things %.3f, stuff %.3f)",
            step,
            result["all"]["pq"],
            result["things"]["pq"],
            result["stuff"]["pq"],
        )

    try:
        step = start_step
        for host_batch in _batches(
            dataset, cfg.batch_size, start_step, cfg.num_workers, cfg.steps, dist
        ):
            if step >= cfg.steps or (stop_at is not None and step >= stop_at):
                break
            if rng_state is not None:
                # Restored after the loader has started (it draws its workers' base seed),
                # so every generator is where the uninterrupted run had it at this step.
                restore_rng_state(rng_state)
                rng_state = None
            lr = learning_rate_at(
                step, peak=cfg.learning_rate, warmup=cfg.warmup_steps, total=cfg.steps
            )
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = {k: v.to(dev, non_blocking=True) for k, v in host_batch.items()}
            with torch.autocast(dev.type, dtype=torch.float16, enabled=use_amp):
                outputs = model(batch.pop("image"))
            losses = panoptic_loss(outputs, batch, loss_weights)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(losses["total"]).backward()  # type: ignore[no-untyped-call]
            scaler.step(optimizer)
            scaler.update()
            step += 1
            total = float(losses["total"].detach())
            if not math.isfinite(total):
                raise FloatingPointError(f"train: loss became {total} at step {step}")
            window.append(total)
            record = {"step": step, "lr": lr, **{k: float(v.detach()) for k, v in losses.items()}}
            if step == start_step + 1:
                outcome.losses["first"] = total
            if step % cfg.log_every == 0 or step == cfg.steps:
                log(record)
            bar.update(1)
            if bar.disable and dist.main and step % 50 == 0:
                # No terminal (CI, nohup): progress goes to the log instead of a bar.
                elapsed = time.monotonic() - started
                logger.info(
                    "step %d/%d  loss %.3f  lr %.1e  %.2f s/step",
                    step,
                    cfg.steps,
                    float(np.mean(window[-20:])),
                    lr,
                    elapsed / max(step - start_step, 1),
                )
            bar.set_postfix(loss=f"{np.mean(window[-20:]):.3f}", lr=f"{lr:.1e}")
            if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps:
                run_evaluation(step)
            if step % cfg.checkpoint_every == 0 and step < cfg.steps and dist.main:
                save_checkpoint(
                    checkpoint_path,
                    network,
                    metadata=metadata,
                    optimizer_state=optimizer.state_dict(),
                    scaler_state=scaler.state_dict(),
                    step=step,
                )
        outcome.steps = step
        outcome.losses["last"] = float(np.mean(window[-20:])) if window else float("nan")
        if dist.world > 1:
            digest = hashlib.sha256()
            # Parameters only: BatchNorm running statistics are per process until DDP
            # broadcasts rank 0's at the next forward pass.
            for parameter in network.parameters():
                digest.update(parameter.detach().cpu().numpy().tobytes())
            logger.info(
                "rank %d of %d: parameters sha256 %s",
                dist.rank,
                dist.world,
                digest.hexdigest()[:16],
            )
            if not dist.main:
                return outcome
        save_checkpoint(
            checkpoint_path,
            network,
            metadata=metadata,
            optimizer_state=optimizer.state_dict(),
            scaler_state=scaler.state_dict(),
            step=step,
        )
        if step < cfg.steps:  # stopped early (stop_at): resumable, nothing final written
            outcome.files.append(checkpoint_path)
            outcome.seconds = time.monotonic() - started
            return outcome
        run_evaluation(step)
        final = output_dir / "model.safetensors"
        provenance = {"steps": step, "train": config_to_dict(config)["train"]}
        if outcome.evaluations:
            provenance["eval"] = outcome.evaluations[-1][1]
        metadata = ModelMetadata(**{**_fields(metadata), "provenance": provenance})
        save_checkpoint(final, network, metadata=metadata, step=step)
        outcome.files += [checkpoint_path, final, output_dir / "metrics.jsonl"]
        if export_onnx:
            from panoptic_ros.export.onnx_export import export_onnx as export

            network.eval().cpu()
            onnx_path = export(
                network,
                output_dir / "model.onnx",
                metadata=metadata,
                input_hw=metadata.input_hw,
                dynamic=True,
            )
            outcome.files += [onnx_path, onnx_path.with_suffix(".json")]
    finally:
        bar.close()
        metrics_file.close()
        if scalars is not None:
            scalars.close()
        if dist.world > 1:
            import torch.distributed

            if torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()
    outcome.seconds = time.monotonic() - started
    return outcome


def _fields(metadata: ModelMetadata) -> dict[str, Any]:
    return {name: getattr(metadata, name) for name in metadata.__dataclass_fields__}
