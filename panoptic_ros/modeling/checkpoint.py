"""Checkpoints as safetensors only: weights + architecture + model metadata, resumable.

``path`` holds the network's tensors with the architecture and ModelMetadata as JSON in the
safetensors header. Training state (optimizer tensors, step, the GradScaler's state and the
random generators of Python, NumPy, torch's CPU and every CUDA device) goes beside it in
``<stem>.train.safetensors``, so a resumed run continues as the uninterrupted one would.
Files are written to a temporary name and renamed, so a crash never leaves a half-written
checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import random
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch

from panoptic_ros.contract import ModelMetadata
from panoptic_ros.errors import ConfigError, ModelFileError
from panoptic_ros.modeling.network import PanopticNet, build_network_from_architecture

__all__ = [
    "capture_rng_state",
    "load_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
    "training_state_path",
]

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


def capture_rng_state() -> dict[str, Any]:
    """The state of every random generator a training run may draw from.

    Returns:
        ``python`` (``random.getstate()``), ``numpy`` (the legacy global generator's
        ``get_state()``), ``torch`` ([B] uint8 CPU generator) and ``cuda`` (one [B] uint8
        per device; empty without CUDA).
    """
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Set the generators to a :func:`capture_rng_state` result (absent parts are skipped).

    CUDA states are restored only onto the same number of devices (logged otherwise).
    """
    if state.get("python") is not None:
        random.setstate(state["python"])
    if state.get("numpy") is not None:
        np.random.set_state(state["numpy"])
    if state.get("torch") is not None:
        torch.set_rng_state(state["torch"])
    cuda = list(state.get("cuda") or [])
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    elif cuda:
        logger.warning(
            "not restoring %d CUDA generator states on %d devices",
            len(cuda),
            torch.cuda.device_count() if torch.cuda.is_available() else 0,
        )


def _flatten_rng(state: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split :func:`capture_rng_state` into tensors and a JSON-able rest."""
    version, internal, gauss = state["python"]
    kind, keys, position, has_gauss, cached = state["numpy"]
    tensors = {
        "rng.torch": state["torch"].contiguous(),
        "rng.numpy": torch.from_numpy(np.asarray(keys, dtype=np.int64)),  # 624 uint32 words
        **{f"rng.cuda.{i}": t.contiguous() for i, t in enumerate(state["cuda"])},
    }
    rest = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, int(position), int(has_gauss), float(cached)],
        "cuda_devices": len(state["cuda"]),
    }
    return tensors, rest


def _unflatten_rng(tensors: Mapping[str, torch.Tensor], rest: Mapping[str, Any]) -> dict[str, Any]:
    version, internal, gauss = rest["python"]
    kind, position, has_gauss, cached = rest["numpy"]
    keys = tensors["rng.numpy"].numpy().astype(np.uint32)
    return {
        "python": (version, tuple(internal), gauss),
        "numpy": (kind, keys, position, has_gauss, cached),
        "torch": tensors["rng.torch"],
        "cuda": [tensors[f"rng.cuda.{i}"] for i in range(int(rest["cuda_devices"]))],
    }


def save_checkpoint(
    path: Path,
    model: PanopticNet,
    *,
    metadata: ModelMetadata,
    extra: dict[str, str] | None = None,
    optimizer_state: dict[str, Any] | None = None,
    scaler_state: Mapping[str, Any] | None = None,
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
            stored flat, the rest as JSON; the state of every random generator
            (:func:`capture_rng_state`, taken now) is stored with it.
        scaler_state: ``GradScaler.state_dict()`` (mixed precision), stored with the
            optimizer state; ``{}`` for a disabled scaler.
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
        rng_tensors, rng_rest = _flatten_rng(capture_rng_state())
        _atomic_save(
            {**tensors, **rng_tensors},
            training_state_path(path),
            {
                "format": FORMAT,
                "optimizer": json.dumps(skeleton),
                "rng": json.dumps(rng_rest),
                "scaler": json.dumps(dict(scaler_state or {})),
                "step": str(step),
            },
        )
    _atomic_save(weights, path, header)
    return path


def load_checkpoint(path: Path) -> tuple[PanopticNet, ModelMetadata, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Returns:
        (network in eval mode, metadata, extras): extras hold ``step``, ``extra`` (the
        ``extra`` strings given at save time) and, when a training state of the same step
        lies beside it, ``optimizer_state`` (for ``optimizer.load_state_dict``),
        ``scaler_state`` (for ``GradScaler.load_state_dict``; ``{}`` if none was saved)
        and ``rng_state`` (for :func:`restore_rng_state`; None in files written before
        it was saved).

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
            scaler_state = json.loads(state_header.get("scaler", "{}"))
            rng_state = None
            if "rng" in state_header:
                rng_state = _unflatten_rng(tensors, json.loads(state_header["rng"]))
            elif "rng.torch" in tensors:  # written before the other generators were saved
                rng_state = {"torch": tensors["rng.torch"]}
        except (SafetensorError, OSError, KeyError, ValueError, TypeError) as err:
            raise ModelFileError(f"cannot read training state {str(state_path)!r}: {err}") from err
        if state_step == step:
            extras["optimizer_state"] = _unflatten_optimizer(tensors, skeleton)
            extras["scaler_state"] = scaler_state
            extras["rng_state"] = rng_state
        else:
            logger.warning(
                "ignoring training state %s: step %d, checkpoint step %d",
                state_path,
                state_step,
                step,
            )
    return network.eval(), metadata, extras
