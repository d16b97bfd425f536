"""The training loop: AdamW with warm-up and poly decay, periodic PQ, resumable checkpoints.

:func:`train` runs the stages of a :class:`Trainer`: set-up, restore, prepare, one
:meth:`~Trainer.step` per batch with its bookkeeping, evaluation, finish.

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

__all__ = [
    "Restored",
    "TrainOutcome",
    "Trainer",
    "augment_params",
    "initial_network",
    "learning_rate_at",
    "train",
]

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


def _select_device(device: str, dist: _Distributed) -> Any:
    """The torch device of this process (``auto``: CUDA when there is one); joins torchrun."""
    import torch

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
    return dev


def _metadata(network: Any, labels: LabelSpace, cfg: TrainConfig) -> ModelMetadata:
    return ModelMetadata(
        labels=labels,
        input_hw=(cfg.image_height, cfg.image_width),
        mean_rgb=tuple(float(v) for v in network.mean_rgb),  # type: ignore[arg-type]
        std_rgb=tuple(float(v) for v in network.std_rgb),  # type: ignore[arg-type]
        architecture=network.architecture,
    )


@dataclass(slots=True)
class Restored:
    """What :meth:`Trainer.restore` read from a resumable checkpoint (empty for a new run).

    Attributes:
        step: Steps already done.
        optimizer_state: For ``optimizer.load_state_dict``, or None.
        scaler_state: For ``GradScaler.load_state_dict`` (``{}``: none saved).
        rng_state: Generator states for :func:`restore_rng_state`, or None.
    """

    step: int = 0
    optimizer_state: dict[str, Any] | None = None
    scaler_state: dict[str, Any] = field(default_factory=dict)
    rng_state: dict[str, Any] | None = None


class Trainer:
    """One training run in its stages; :func:`train` calls them in order.

    1. construction (set-up): torchrun rank and device, output folder, seeded network;
    2. :meth:`restore`: the resumable checkpoint, or the initial weights;
    3. :meth:`prepare`: device placement, DDP, optimizer, scaler, run files, logging;
    4. :meth:`step` per batch, then :meth:`after_step` (metrics, progress, periodic
       evaluation and checkpoint);
    5. :meth:`evaluate` (also periodic), :meth:`finish` (final checkpoint, evaluation,
       ``model.safetensors``, ONNX) and :meth:`close`.

    Args:
        config: The run's configuration.
        labels: Label space of the data and model.
        output_dir: Folder for checkpoints, model and logs (created).
        evaluate: Optional function (network in eval mode, metadata) -> result dict.
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        soft_targets: The dataset's soft-target entry when the run distils, else None.
    """

    def __init__(
        self,
        config: Config,
        labels: LabelSpace,
        output_dir: Path,
        *,
        evaluate: Callable[[Any, ModelMetadata], dict[str, Any]] | None = None,
        device: str = "auto",
        soft_targets: SoftTargetSpec | None = None,
    ) -> None:
        import torch

        from panoptic_ros.modeling.network import build_network_from_config
        from panoptic_ros.training.losses import LossWeights

        self.config = config
        self.cfg = cfg = config.train
        self.labels = labels
        self.output_dir = output_dir
        self.evaluate_fn = evaluate
        self.dist = _distributed_from_environment()
        self.dev = _select_device(device, self.dist)
        output_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed)
        self.network: Any = build_network_from_config(cfg, labels)
        self.metadata = _metadata(self.network, labels, cfg)
        self.checkpoint_path = output_dir / CHECKPOINT_NAME
        self.distil = soft_targets is not None and cfg.distill_weight > 0
        self.loss_weights = LossWeights(
            distill=cfg.distill_weight,
            temperature=cfg.distill_temperature,
            teacher_temperature=soft_targets.temperature if soft_targets is not None else 1.0,
        )
        self.outcome = TrainOutcome(steps=0, seconds=0.0)
        self.start_step = 0
        self.rng_state: dict[str, Any] | None = None
        self.window: list[float] = []
        self.started = time.monotonic()
        # Set by prepare():
        self.model: Any = None
        self.optimizer: Any = None
        self.scaler: Any = None
        self.use_amp = False
        self.metrics_file: Any = None
        self.scalars: Any = None
        self.bar: Any = None

    # -- 2. restore ---------------------------------------------------------------------------

    def restore(self, resume: bool) -> Restored:
        """Load ``checkpoint_last`` (resume), else ``train.init_checkpoint`` or the backbone's.

        Raises:
            ConfigError: ``resume`` without a checkpoint, or an unusable init checkpoint.
        """
        from panoptic_ros.modeling.checkpoint import load_checkpoint
        from panoptic_ros.modeling.pretrained import load_backbone_weights

        cfg = self.cfg
        if resume:
            path = self.checkpoint_path
            if not path.is_file():
                raise ConfigError(f"train: nothing to resume, {str(path)!r} does not exist")
            self.network, self.metadata, extras = load_checkpoint(path)
            restored = Restored(
                step=int(extras.get("step", 0)),
                optimizer_state=extras.get("optimizer_state"),
                scaler_state=extras.get("scaler_state") or {},
                rng_state=extras.get("rng_state"),
            )
            logger.info("resuming from %s at step %d", path, restored.step)
        else:
            restored = Restored()
            if cfg.init_checkpoint:
                self.network = initial_network(
                    Path(cfg.init_checkpoint).expanduser(), self.labels, cfg
                )
                self.metadata = _metadata(self.network, self.labels, cfg)
            else:
                load_backbone_weights(self.network.backbone, cfg.backbone_weights)
        self.start_step = self.outcome.steps = restored.step
        self.rng_state = restored.rng_state
        return restored

    # -- 3. prepare ---------------------------------------------------------------------------

    def prepare(self, restored: Restored, *, progress: bool = True) -> None:
        """Place the network, build DDP, optimizer and scaler, write the run's files."""
        import torch
        from tqdm import tqdm

        cfg, dist, dev = self.cfg, self.dist, self.dev
        self.network = self.network.to(dev).train()
        self.model = self.network
        if dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            if dev.type == "cuda":  # batch statistics over all GPUs, not per GPU
                self.network = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.network)  # type: ignore[no-untyped-call]
            self.model = DistributedDataParallel(
                self.network, device_ids=[dev.index] if dev.type == "cuda" else None
            )
        self.optimizer = torch.optim.AdamW(
            self.network.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
        )
        if restored.optimizer_state is not None:
            self.optimizer.load_state_dict(restored.optimizer_state)
        if dist.main:
            (self.output_dir / "config.yaml").write_text(
                yaml.safe_dump(config_to_dict(self.config), sort_keys=False), encoding="utf-8"
            )
            environment = {**_environment(), "world_size": dist.world}
            (self.output_dir / "environment.json").write_text(
                json.dumps(environment, indent=2) + "\n"
            )
        # Only the first process writes metrics, checkpoints and the model.
        metrics = self.output_dir / "metrics.jsonl" if dist.main else Path(os.devnull)
        self.metrics_file = metrics.open("a", encoding="utf-8")
        self.use_amp = dev.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        if restored.scaler_state and self.scaler.is_enabled():  # a CPU run's scaler saves {}
            self.scaler.load_state_dict(restored.scaler_state)
        self.started = time.monotonic()
        self.bar = tqdm(
            total=cfg.steps,
            initial=self.start_step,
            desc="train",
            unit="step",
            dynamic_ncols=True,
            disable=not progress or not sys.stderr.isatty() or not dist.main,
            file=sys.stderr,
        )
        self.scalars = _tensorboard_writer(self.output_dir / "tensorboard") if dist.main else None

    def dataset(self, source: SampleSource, indices: Sequence[int]) -> TargetDataset:
        """The run's augmented target dataset over ``source``."""
        return TargetDataset(
            source,
            indices,
            seed=self.cfg.seed,
            augment_params=augment_params(self.cfg),
            stride=self.metadata.output_stride,
            soft_classes=self.labels.num_classes if self.distil else None,
        )

    # -- 4. steps -----------------------------------------------------------------------------

    def restore_generators(self) -> None:
        """Put back the saved random generators, once, after the loader has started.

        The loader draws its workers' base seed when it starts, so restoring afterwards
        leaves every generator where the uninterrupted run had it at this step.
        """
        from panoptic_ros.modeling.checkpoint import restore_rng_state

        if self.rng_state is not None:
            restore_rng_state(self.rng_state)
            self.rng_state = None

    def step(self, host_batch: dict[str, Any], step: int) -> dict[str, float]:
        """One optimizer step on a batch; returns ``{"lr", loss name: value}``.

        Raises:
            FloatingPointError: The total loss is not finite.
        """
        import torch

        from panoptic_ros.training.losses import panoptic_loss

        cfg = self.cfg
        lr = learning_rate_at(
            step, peak=cfg.learning_rate, warmup=cfg.warmup_steps, total=cfg.steps
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = {k: v.to(self.dev, non_blocking=True) for k, v in host_batch.items()}
        with torch.autocast(self.dev.type, dtype=torch.float16, enabled=self.use_amp):
            outputs = self.model(batch.pop("image"))
        losses = panoptic_loss(outputs, batch, self.loss_weights)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses["total"]).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        total = float(losses["total"].detach())
        if not math.isfinite(total):
            raise FloatingPointError(f"train: loss became {total} at step {step + 1}")
        return {"lr": lr, **{k: float(v.detach()) for k, v in losses.items()}}

    def after_step(self, step: int, values: dict[str, float]) -> None:
        """Bookkeeping after step ``step`` (1-based): metrics, progress, evaluation, checkpoint."""
        cfg, dist = self.cfg, self.dist
        total = values["total"]
        self.window.append(total)
        if step == self.start_step + 1:
            self.outcome.losses["first"] = total
        if step % cfg.log_every == 0 or step == cfg.steps:
            self.log({"step": step, **values})
        self.bar.update(1)
        recent = float(np.mean(self.window[-20:]))
        if self.bar.disable and dist.main and step % 50 == 0:
            # No terminal (CI, nohup): progress goes to the log instead of a bar.
            elapsed = time.monotonic() - self.started
            logger.info(
                "step %d/%d  loss %.3f  lr %.1e  %.2f s/step",
                step,
                cfg.steps,
                recent,
                values["lr"],
                elapsed / max(step - self.start_step, 1),
            )
        self.bar.set_postfix(loss=f"{recent:.3f}", lr=f"{values['lr']:.1e}")
        if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps:
            self.evaluate(step)
        if step % cfg.checkpoint_every == 0 and step < cfg.steps and dist.main:
            self.save(step)

    def log(self, record: dict[str, Any]) -> None:
        """Append a record to metrics.jsonl and its numbers to TensorBoard."""
        self.metrics_file.write(json.dumps(record) + "\n")
        self.metrics_file.flush()
        if self.scalars is None:
            return
        step_of = int(record["step"])
        for key, value in record.items():
            if key != "step" and isinstance(value, int | float):
                self.scalars.add_scalar(f"train/{key}", value, step_of)
        result = record.get("eval")
        if result is not None:
            for group in ("all", "things", "stuff"):
                self.scalars.add_scalar(f"eval/pq_{group}", result[group]["pq"], step_of)
            for key in ("pq_gt_classes", "miou_gt_classes"):
                if isinstance(result.get(key), float) and math.isfinite(result[key]):
                    self.scalars.add_scalar(f"eval/{key}", result[key], step_of)

    def save(self, step: int) -> None:
        """Write the resumable checkpoint (weights, optimizer, scaler, generators)."""
        from panoptic_ros.modeling import checkpoint

        checkpoint.save_checkpoint(
            self.checkpoint_path,
            self.network,
            metadata=self.metadata,
            optimizer_state=self.optimizer.state_dict(),
            scaler_state=self.scaler.state_dict(),
            step=step,
        )

    # -- 5. evaluation and finish ---------------------------------------------------------------

    def evaluate(self, step: int) -> None:
        """Score the network with ``evaluate`` (first process only) and log the result."""
        import torch

        if self.evaluate_fn is None or not self.dist.main:
            return
        self.network.eval()
        with torch.no_grad():
            result = self.evaluate_fn(self.network, self.metadata)
        self.network.train()
        self.outcome.evaluations.append((step, result))
        self.log({"step": step, "eval": result})
        logger.info(
            "step %d: PQ %.3f (things %.3f, stuff %.3f)",
            step,
            result["all"]["pq"],
            result["things"]["pq"],
            result["stuff"]["pq"],
        )
        if "pq_gt_classes" in result:
            logger.info(
                "step %d: over the %d classes present in the evaluation ground truth: "
                "PQ %.3f, mIoU %.3f",
                step,
                result["n_gt_classes"],
                result["pq_gt_classes"],
                result["miou_gt_classes"],
            )

    def finish(self, step: int, *, export_onnx: bool = True) -> TrainOutcome:
        """End the run after ``step``: checkpoint, and when complete the final model files.

        A non-main torchrun process only reports its parameter digest. A run stopped
        before ``train.steps`` (``stop_at``) writes the resumable checkpoint only.
        """
        outcome, dist = self.outcome, self.dist
        outcome.steps = step
        outcome.losses["last"] = float(np.mean(self.window[-20:])) if self.window else float("nan")
        if dist.world > 1:
            digest = hashlib.sha256()
            # Parameters only: BatchNorm running statistics are per process until DDP
            # broadcasts rank 0's at the next forward pass.
            for parameter in self.network.parameters():
                digest.update(parameter.detach().cpu().numpy().tobytes())
            logger.info(
                "rank %d of %d: parameters sha256 %s",
                dist.rank,
                dist.world,
                digest.hexdigest()[:16],
            )
            if not dist.main:
                return outcome
        self.save(step)
        outcome.files.append(self.checkpoint_path)
        if step < self.cfg.steps:  # stopped early (stop_at): resumable, nothing final written
            return outcome
        self.evaluate(step)
        self._write_model(step, export_onnx)
        return outcome

    def _write_model(self, step: int, export_onnx: bool) -> None:
        from panoptic_ros.modeling import checkpoint

        outcome = self.outcome
        final = self.output_dir / "model.safetensors"
        provenance = {"steps": step, "train": config_to_dict(self.config)["train"]}
        if outcome.evaluations:
            provenance["eval"] = outcome.evaluations[-1][1]
        self.metadata = ModelMetadata(**{**_fields(self.metadata), "provenance": provenance})
        checkpoint.save_checkpoint(final, self.network, metadata=self.metadata, step=step)
        outcome.files += [final, self.output_dir / "metrics.jsonl"]
        if export_onnx:
            from panoptic_ros.export.onnx_export import export_onnx as export

            self.network.eval().cpu()
            onnx_path = export(
                self.network,
                self.output_dir / "model.onnx",
                metadata=self.metadata,
                input_hw=self.metadata.input_hw,
                dynamic=True,
            )
            outcome.files += [onnx_path, onnx_path.with_suffix(".json")]

    def close(self) -> None:
        """Close the progress bar, metrics and TensorBoard files and the process group."""
        if self.bar is not None:
            self.bar.close()
        if self.metrics_file is not None:
            self.metrics_file.close()
        if self.scalars is not None:
            self.scalars.close()
        if self.dist.world > 1:
            import torch.distributed

            if torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()
        self.outcome.seconds = time.monotonic() - self.started


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
    cfg = config.train
    world = _distributed_from_environment().world
    needed = cfg.steps * cfg.batch_size * world
    if len(source_indices) < needed:
        raise ConfigError(
            f"train: {len(source_indices)} samples cannot fill {cfg.steps} steps of "
            f"{cfg.batch_size}"
        )
    trainer = Trainer(
        config, labels, output_dir, evaluate=evaluate, device=device, soft_targets=soft_targets
    )
    try:
        restored = trainer.restore(resume)
        trainer.prepare(restored, progress=progress)
        dataset = trainer.dataset(source, source_indices[:needed])
        step = trainer.start_step
        for host_batch in _batches(
            dataset, cfg.batch_size, step, cfg.num_workers, cfg.steps, trainer.dist
        ):
            if step >= cfg.steps or (stop_at is not None and step >= stop_at):
                break
            trainer.restore_generators()
            values = trainer.step(host_batch, step)
            step += 1
            trainer.after_step(step, values)
        return trainer.finish(step, export_onnx=export_onnx)
    finally:
        trainer.close()


def _fields(metadata: ModelMetadata) -> dict[str, Any]:
    return {name: getattr(metadata, name) for name in metadata.__dataclass_fields__}
