"""Checkpoints as safetensors only: weights + architecture + model metadata, resumable.

``path`` holds the network's tensors with the architecture and ModelMetadata as JSON in the
safetensors header. Training state (optimizer tensors, step, RNG) goes beside it in
``<stem>.train.safetensors``. Files are written to a temporary name and renamed, so a crash
never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Final

import torch

from panoptic_ros.contract import ModelMetadata
from panoptic_ros.errors import ConfigError, ModelFileError
from panoptic_ros.modeling.network import PanopticNet, build_network_from_architecture

__all__ = ["load_checkpoint", "save_checkpoint", "training_state_path"]

logger = logging.getLogger(__name__)

FORMAT = "panoptic_ros.checkpoint.v1"
#: Header keys of the checkpoint itself; ``extra`` entries may not use them.
RESERVED_KEYS: Final = frozenset({"format", "architecture", "metadata", "step", "optimizer"})


def training_state_path(path: Path) -> Path:
    """Where the optimizer state of checkpoint ``path`` lives."""
    return path.with_name(path.stem + ".train.safetensors")


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
        temporary = Path(tmp.name)
    try:
        save_file(tensors, str(temporary), metadata=metadata)
        # NamedTemporaryFile creates 0600 files; a model must be readable like any file.
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split a torch optimizer state dict into tensors and a JSON-able skeleton."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for param_id, values in state["state"].items():
        entry: dict[str, Any] = {}
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                key = f"optimizer.{param_id}.{name}"
                tensors[key] = value.detach().cpu().contiguous()
                entry[name] = {"tensor": key}
            else:
                entry[name] = value
        skeleton["state"][str(param_id)] = entry
    return tensors, skeleton


def _unflatten_optimizer(
    tensors: dict[str, torch.Tensor], skeleton: dict[str, Any]
) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for param_id, entry in skeleton["state"].items():
        state[int(param_id)] = {
            name: tensors[value["tensor"]] if isinstance(value, dict) else value
            for name, value in entry.items()
        }
    # JSON turned tuples (Adam's betas) into lists; "params" is the only list torch keeps.
    groups = [
        {k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in group.items()}
        for group in skeleton["param_groups"]
    ]
    return {"state": state, "param_groups": groups}


def save_checkpoint(
    path: Path,
    model: PanopticNet,
    *,
    metadata: ModelMetadata,
    extra: dict[str, str] | None = None,
    optimizer_state: dict[str, Any] | None = None,
    step: int = 0,
) -> Path:
    """Write ``model`` (and optionally the optimizer state) as safetensors.

    Args:
        path: The checkpoint (``.safetensors``); the training state goes to
            :func:`training_state_path` beside it.
        model: The network; its ``architecture`` is stored so it can be rebuilt.
        metadata: Labels, sizes and provenance (the ONNX export embeds the same).
        extra: Free-form string entries for the header (returned by :func:`load_checkpoint`
            under ``extras["extra"]``).
        optimizer_state: ``optimizer.state_dict()`` to resume training; its tensors are
            stored flat, the rest as JSON; the torch CPU RNG state is stored with it.
        step: Training step, stored in both files so a stale training state is detected.

    Returns:
        ``path``.

    Raises:
        ModelFileError: An ``extra`` key collides with the checkpoint's own header keys.
    """
    path = Path(path)
    clashes = sorted(RESERVED_KEYS & set(extra or {}))
    if clashes:
        raise ModelFileError(
            f"checkpoint extra keys {clashes} are reserved; rename them "
            f"(reserved: {sorted(RESERVED_KEYS)})"
        )
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    header = {
        **(extra or {}),
        "format": FORMAT,
        "architecture": json.dumps(model.architecture),
        "metadata": metadata.to_json(),
        "step": str(step),
    }
    if optimizer_state is not None:
        # Training state first: a crash between the two writes then leaves a newer
        # training state beside an older checkpoint, which load_checkpoint ignores by step.
        tensors, skeleton = _flatten_optimizer(optimizer_state)
        tensors["rng.torch"] = torch.get_rng_state()  # [B] uint8: the CPU generator's bytes
        _atomic_save(
            tensors,
            training_state_path(path),
            {"format": FORMAT, "optimizer": json.dumps(skeleton), "step": str(step)},
        )
    _atomic_save(weights, path, header)
    return path


def load_checkpoint(path: Path) -> tuple[PanopticNet, ModelMetadata, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Returns:
        (network in eval mode, metadata, extras): extras hold ``step``, ``extra`` (the
        ``extra`` strings given at save time) and, when a training state of the same step
        lies beside it, ``optimizer_state`` (for ``optimizer.load_state_dict``) and
        ``rng_state`` ([B] uint8, for ``torch.set_rng_state``).

    Raises:
        ModelFileError: Missing, unreadable or foreign file, or weights that do not fit.
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"checkpoint {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        weights = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ModelFileError(f"cannot read checkpoint {str(path)!r}: {err}") from err
    if header.get("format") != FORMAT:
        raise ModelFileError(f"{str(path)!r} is not a panoptic_ros checkpoint (no {FORMAT} header)")
    try:
        architecture = json.loads(header["architecture"])
        metadata = ModelMetadata.from_json(header["metadata"])
        step = int(header.get("step", "0"))
        network = build_network_from_architecture(architecture)
    except (KeyError, ValueError, ConfigError) as err:
        raise ModelFileError(f"checkpoint {str(path)!r} has a corrupt header: {err}") from err
    try:
        result = network.load_state_dict(weights, strict=False)
    except RuntimeError as err:  # shape mismatches
        detail = " ".join(str(err).split())[:300]
        raise ModelFileError(
            f"checkpoint {str(path)!r} does not fit its architecture: {detail}"
        ) from err
    if result.missing_keys or result.unexpected_keys:
        raise ModelFileError(
            f"checkpoint {str(path)!r} does not fit its architecture (written by another "
            f"version?): missing {result.missing_keys[:3]}, unknown {result.unexpected_keys[:3]}"
        )
    extras: dict[str, Any] = {
        "step": step,
        "extra": {k: v for k, v in header.items() if k not in RESERVED_KEYS},
    }
    state_path = training_state_path(path)
    if state_path.is_file():
        try:
            with safe_open(str(state_path), framework="pt") as handle:
                state_header = handle.metadata() or {}
            tensors = load_file(str(state_path))
            skeleton = json.loads(state_header["optimizer"])
            state_step = int(state_header.get("step", "-1"))
        except (SafetensorError, OSError, KeyError, ValueError) as err:
            raise ModelFileError(f"cannot read training state {str(state_path)!r}: {err}") from err
        if state_step == step:
            extras["optimizer_state"] = _unflatten_optimizer(tensors, skeleton)
            extras["rng_state"] = tensors.get("rng.torch")
        else:
            logger.warning(
                "ignoring training state %s: step %d, checkpoint step %d",
                state_path,
                state_step,
                step,
            )
    return network.eval(), metadata, extras
