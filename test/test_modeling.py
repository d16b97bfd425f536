"""The network: compound scaling, real ImageNet weights, timm key names, checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from panoptic_ros.contract import ModelMetadata  # noqa: E402
from panoptic_ros.errors import ModelFileError  # noqa: E402
from panoptic_ros.labels import CITYSCAPES  # noqa: E402
from panoptic_ros.modeling.backbone import BACKBONES, EfficientNet  # noqa: E402
from panoptic_ros.modeling.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from panoptic_ros.modeling.network import build_network  # noqa: E402
from panoptic_ros.modeling.pretrained import (  # noqa: E402
    LITE0_FILE,
    _bundled_lite0,
    cached_lite0_weights,
    from_timm_names,
    load_backbone_weights,
)

VEHICLE_CLASSES = {
    407,
    436,
    468,
    511,
    555,
    569,
    573,
    581,
    609,
    627,
    656,
    661,
    675,
    705,
    717,
    734,
    751,
    757,
    779,
    817,
    864,
    867,
    874,
    920,
}


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_gives_four_strides(name: str) -> None:
    backbone = EfficientNet(name).eval()
    strides = [info.stride for info in backbone.feature_info]
    assert strides == [4, 8, 16, 32]
    channels = [info.channels for info in backbone.feature_info]
    assert channels == sorted(channels)
    with torch.no_grad():
        features = backbone(torch.zeros(1, 3, 64, 64))
    for info in backbone.feature_info:
        assert features[info.stride].shape == (
            1,
            info.channels,
            64 // info.stride,
            64 // info.stride,
        )


def test_default_network_size() -> None:
    network = build_network(num_classes=19)
    parameters = sum(p.numel() for p in network.parameters())
    assert parameters < 4.8e6
    with torch.no_grad():
        outputs = network.eval()(torch.zeros(1, 256, 512, 3, dtype=torch.uint8))
    assert [tuple(o.shape) for o in outputs] == [(1, 19, 64, 128), (1, 1, 64, 128), (1, 2, 64, 128)]


class Lite0Classifier(nn.Module):
    """Our Lite0 trunk plus the checkpoint's own classifier head (test only)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = EfficientNet("efficientnet_lite0")
        load_backbone_weights(self.backbone, "auto")
        state = torch.load(_bundled_lite0(), map_location="cpu", weights_only=True)
        self.head = nn.Conv2d(320, 1280, 1, bias=False)
        self.head.weight.data = state["_conv_head.weight"]
        self.norm = nn.BatchNorm2d(1280, eps=1e-3)
        for key in ("weight", "bias", "running_mean", "running_var"):
            getattr(self.norm, key).data = state[f"_bn1.{key}"]
        self.fc = nn.Linear(1280, 1000)
        self.fc.weight.data, self.fc.bias.data = state["_fc.weight"], state["_fc.bias"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)[32]
        pooled = nn.functional.relu6(self.norm(self.head(features))).mean((2, 3))
        return torch.softmax(self.fc(pooled), dim=1)


def test_imagenet_weights_recognise_a_real_car(shared_images: Path) -> None:
    import cv2

    photo = cv2.imread(str(shared_images / "udacity_highway_1280x720.jpg"))[..., ::-1]
    crop = photo[360:720, 640:1280]  # the cars in the right lane
    classifier = Lite0Classifier().eval()

    def probabilities(rgb: np.ndarray, mean: float, std: float) -> torch.Tensor:
        resized = cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32)
        tensor = torch.from_numpy((resized - mean) / std).permute(2, 0, 1)[None]
        with torch.no_grad():
            return classifier(tensor)[0]

    real = probabilities(crop, 127.0, 128.0)
    noise = probabilities(np.random.default_rng(0).integers(0, 255, crop.shape, np.uint8), 127, 128)
    top5 = set(torch.topk(real, 5).indices.tolist())
    print(
        "top-5 ImageNet classes:", sorted(top5), "p", float(real.max()), "noise", float(noise.max())
    )
    # Four of five vehicle classes, and far more confident than on noise; a wrong key
    # mapping or normalisation gives noise-like answers.
    assert len(top5 & VEHICLE_CLASSES) >= 4
    assert float(real[list(VEHICLE_CLASSES)].sum()) > 0.5
    assert float(noise[list(VEHICLE_CLASSES)].sum()) < 0.3


def test_lite0_conversion_is_checksummed() -> None:
    path = cached_lite0_weights()
    assert path.with_name(path.name + ".sha256").read_text().strip()
    assert LITE0_FILE.endswith(".pth")


def _timm_state(backbone: EfficientNet) -> dict[str, torch.Tensor]:
    """Our weights under timm's names (the inverse of from_timm_names)."""
    out = {}
    for key, tensor in backbone.state_dict().items():
        if key.startswith("stem.0."):
            out["conv_stem." + key[7:]] = tensor
        elif key.startswith("stem.1."):
            out["bn1." + key[7:]] = tensor
        else:
            _, s, j, part, index, rest = key.split(".", 5)
            separable = isinstance(backbone.stages[int(s)][int(j)].conv_pw, nn.Identity)
            names = (
                {
                    "conv_dw0": "conv_dw",
                    "conv_dw1": "bn1",
                    "conv_pwl0": "conv_pw",
                    "conv_pwl1": "bn2",
                }
                if separable
                else {
                    "conv_pw0": "conv_pw",
                    "conv_pw1": "bn1",
                    "conv_dw0": "conv_dw",
                    "conv_dw1": "bn2",
                    "conv_pwl0": "conv_pwl",
                    "conv_pwl1": "bn3",
                }
            )
            out[f"blocks.{s}.{j}.{names[part + index]}.{rest}"] = tensor
    out["classifier.weight"] = torch.zeros(1000, 1280)
    return out


def test_timm_named_checkpoints_load(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    source = EfficientNet("efficientnet_lite0")
    load_backbone_weights(source, "auto")
    path = tmp_path / "timm_lite0.safetensors"
    save_file({k: v.contiguous() for k, v in _timm_state(source).items()}, str(path))
    target = EfficientNet("efficientnet_lite0")
    load_backbone_weights(target, path)
    for (name, a), b in zip(source.state_dict().items(), target.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    with pytest.raises(ModelFileError, match="neither timm's nor"):
        from_timm_names({"weird.key": torch.zeros(1)}, target)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    network = build_network(num_classes=19, fpn_channels=16, head_channels=16).eval()
    metadata = ModelMetadata(labels=CITYSCAPES, input_hw=(128, 256))
    path = save_checkpoint(tmp_path / "c.safetensors", network, metadata=metadata, step=7)
    loaded, loaded_metadata, extras = load_checkpoint(path)
    assert extras["step"] == 7
    assert loaded_metadata.input_hw == (128, 256)
    image = torch.zeros(1, 128, 256, 3, dtype=torch.uint8)
    with torch.no_grad():
        for a, b in zip(network(image), loaded(image), strict=True):
            assert torch.equal(a, b)
    (tmp_path / "bad.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFileError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "bad.safetensors")
