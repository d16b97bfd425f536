"""Checkpoints as safetensors only: weights + architecture + model metadata, resumable.

``path`` holds the network's tensors with the architecture and ModelMetadata as JSON in the
safetensors header. Training state (optimizer tensors, step, RNG) goes beside it in
``<stem>.train.safetensors``. Files are written to a temporary name and renamed, so a crash
never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from panoptic_ros.contract import ModelMetadata
from panoptic_ros.errors import ModelFileError
from panoptic_ros.modeling.network import PanopticNet, build_network_from_architecture

__all__ = ["load_checkpoint", "save_checkpoint", "training_state_path"]

FORMAT = "panoptic_ros.checkpoint.v1"


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
    return {"state": state, "param_groups": skeleton["param_groups"]}


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

    Returns:
        ``path``.
    """
    path = Path(path)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    header = {
        "format": FORMAT,
        "architecture": json.dumps(model.architecture),
        "metadata": metadata.to_json(),
        "step": str(step),
        **(extra or {}),
    }
    _atomic_save(weights, path, header)
    if optimizer_state is not None:
        tensors, skeleton = _flatten_optimizer(optimizer_state)
        tensors["rng.torch"] = torch.get_rng_state()
        _atomic_save(
            tensors,
            training_state_path(path),
            {"format": FORMAT, "optimizer": json.dumps(skeleton), "step": str(step)},
        )
    return path


def load_checkpoint(path: Path) -> tuple[PanopticNet, ModelMetadata, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Returns:
        (network in eval mode, metadata, extras with ``step`` and, when the training state
        file exists, ``optimizer_state`` and ``rng_state``).

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
    except (KeyError, ValueError) as err:
        raise ModelFileError(f"checkpoint {str(path)!r} has a corrupt header: {err}") from err
    network = build_network_from_architecture(architecture)
    try:
        network.load_state_dict(weights)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise ModelFileError(
            f"checkpoint {str(path)!r} does not fit its architecture: {first}"
        ) from err
    extras: dict[str, Any] = {"step": int(header.get("step", "0"))}
    state_path = training_state_path(path)
    if state_path.is_file():
        try:
            with safe_open(str(state_path), framework="pt") as handle:
                state_header = handle.metadata() or {}
            tensors = load_file(str(state_path))
        except (SafetensorError, OSError) as err:
            raise ModelFileError(f"cannot read training state {str(state_path)!r}: {err}") from err
        extras["optimizer_state"] = _unflatten_optimizer(
            tensors, json.loads(state_header["optimizer"])
        )
        extras["rng_state"] = tensors.get("rng.torch")
    return network.eval(), metadata, extras
