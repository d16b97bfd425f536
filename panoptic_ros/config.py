"""The configuration tree: frozen dataclasses, one documented default per field.

One :class:`Config` holds everything a run needs. :func:`load_config` merges
defaults <- YAML file <- ``key=value`` overrides and validates the result, so the CLI, the
node (through ROS parameters) and tests all build configuration through one validator.

The YAML may be plain nested sections (``fusion: {center_threshold: 0.2}``) or a ROS 2
parameters file (``/**: {ros__parameters: {...}}``, nested or with dotted names), so the
same ``config/panoptic.yaml`` serves ``ros2 launch`` and ``panoptic-ros replay --config``.

Only ``build_*``/``from_config`` functions read a :class:`Config`; the modules they build
take plain arguments.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from panoptic_ros.errors import ConfigError, first_line

__all__ = [
    "BackendConfig",
    "BackendName",
    "CameraAugment",
    "Config",
    "DatasetConfig",
    "DatasetName",
    "FieldSpec",
    "FusionConfig",
    "GridConfig",
    "LabelsConfig",
    "ModelConfig",
    "NodeConfig",
    "ObjectsConfig",
    "Precision",
    "RenderConfig",
    "ReplayConfig",
    "ScaleReference",
    "TrainConfig",
    "UpsampleMode",
    "config_fields",
    "config_from_flat",
    "config_to_dict",
    "flatten_config",
    "load_config",
    "parse_category_entries",
    "parse_length_prior",
    "parse_override",
    "render_params_yaml",
]

BackendName = Literal["auto", "tensorrt", "onnxruntime", "torch"]
Precision = Literal["fp32", "fp16", "int8"]
#: Where training images come from.
DatasetName = Literal["synthetic", "cityscapes", "coco"]
#: What ``train.scale_min/max`` are relative to.
ScaleReference = Literal["auto", "inference", "stored"]
#: Whether hue and blur augmentation (for real cameras) is on.
CameraAugment = Literal["auto", "on", "off"]
#: How the stride-4 fusion result reaches camera pixels.
UpsampleMode = Literal["bilinear", "nearest"]
STRIDE = 32


def setting(
    default: Any,
    doc: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    read_only: bool = False,
) -> Any:
    """Declare a config field with its one-line doc, numeric range and restart-only flag."""
    return field(
        default=default,
        metadata={"doc": doc, "minimum": minimum, "maximum": maximum, "read_only": read_only},
    )


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Which model to run and at what input size."""

    model_file_path: str = setting(
        "",
        "ONNX model (or .safetensors checkpoint for the torch backend); '' = bundled default model",
        read_only=True,
    )
    network_height: int = setting(
        0,
        "network input height in px, a multiple of 32; 0 = the model's own",
        minimum=0,
        maximum=8192,
        read_only=True,
    )
    network_width: int = setting(
        0,
        "network input width in px, a multiple of 32; 0 = the model's own",
        minimum=0,
        maximum=8192,
        read_only=True,
    )
    engine_file_path: str = setting(
        "",
        "TensorRT plan to use; '' = derived from the model inside engine_cache_dir",
        read_only=True,
    )
    engine_cache_dir: str = setting(
        "",
        "writable folder for built TensorRT engines; '' = $ROS_HOME/panoptic_ros/engines",
        read_only=True,
    )
    force_engine_update: bool = setting(
        False, "rebuild the TensorRT engine even if a fresh one is cached", read_only=True
    )
    allow_engine_build: bool = setting(
        True,
        "build a missing or stale TensorRT engine at start-up (else refuse with a reason)",
        read_only=True,
    )
    dla_core: int = setting(
        -1,
        "DLA core the TensorRT engine is built for and runs on (Jetson; build-engine "
        "--dla-core), -1 = the GPU",
        minimum=-1,
        maximum=15,
        read_only=True,
    )
    workspace_mb: int = setting(
        2048,
        "TensorRT builder workspace limit in MiB (build-engine --workspace-mb)",
        minimum=16,
        maximum=1 << 20,
        read_only=True,
    )

    def __post_init__(self) -> None:
        for key in ("network_height", "network_width"):
            value = getattr(self, key)
            if value % STRIDE:
                raise ConfigError(f"model.{key}={value} must be a multiple of {STRIDE} (or 0)")
        if (self.network_height == 0) != (self.network_width == 0):
            raise ConfigError(
                "model.network_height and model.network_width must both be 0 or both set"
            )


@dataclass(frozen=True, slots=True)
class BackendConfig:
    """Which inference runtime runs the model, and where."""

    name: BackendName = setting(
        "auto",
        "inference backend: auto (tensorrt > torch on CUDA > onnxruntime), tensorrt, "
        "onnxruntime or torch",
        read_only=True,
    )
    device: str = setting("auto", "'auto', 'cpu', 'cuda' or 'cuda:N'", read_only=True)
    precision: Precision = setting(
        "fp32",
        "compute precision where the backend chooses it (torch autocast); TensorRT and "
        "ONNX take precision from the model file",
        read_only=True,
    )
    allow_fallback: bool = setting(
        True,
        "if the requested backend is unavailable, fall back to the next one (logged)",
        read_only=True,
    )
    num_threads: int = setting(
        0,
        "CPU threads for ONNX Runtime / torch; 0 = library default",
        minimum=0,
        maximum=256,
        read_only=True,
    )
    cuda_graph: bool = setting(
        False,
        "capture the torch CUDA forward pass in a CUDA graph (fixed input size)",
        read_only=True,
    )
    gpu_fusion: bool = setting(
        True, "run panoptic fusion on the GPU when the backend's outputs live there", read_only=True
    )

    def __post_init__(self) -> None:
        device = self.device
        ok = device in ("auto", "cpu", "cuda") or (
            device.startswith("cuda:") and device[5:].isdigit()
        )
        if not ok:
            raise ConfigError(
                f"backend.device={device!r} must be 'auto', 'cpu', 'cuda' or 'cuda:N'"
            )


@dataclass(frozen=True, slots=True)
class FusionConfig:
    """Panoptic fusion thresholds (Panoptic-DeepLab style grouping at stride 4)."""

    center_threshold: float = setting(
        0.1, "minimum centre-heatmap value for an instance centre", minimum=0.0, maximum=1.0
    )
    nms_kernel: int = setting(
        7, "max-pool window (cells, odd) for centre non-maximum suppression", minimum=1, maximum=31
    )
    top_k: int = setting(
        200, "at most this many instance centres per image", minimum=1, maximum=1000
    )
    score_threshold: float = setting(
        0.0, "drop instances whose score is below this", minimum=0.0, maximum=1.0
    )
    stuff_area_threshold_px: int = setting(
        256,
        "stuff regions smaller than this (network-input pixels) become void",
        minimum=0,
        maximum=1_000_000,
    )
    thing_area_threshold_px: int = setting(
        64,
        "instances smaller than this (network-input pixels) are dropped and become void",
        minimum=0,
        maximum=1_000_000,
    )
    upsample: UpsampleMode = setting(
        "bilinear",
        "maps to camera pixels: 'bilinear' class scores on class edges, 'nearest' 4x4 blocks",
    )

    def __post_init__(self) -> None:
        if self.nms_kernel % 2 == 0:
            raise ConfigError(f"fusion.nms_kernel={self.nms_kernel} must be odd")


@dataclass(frozen=True, slots=True)
class LabelsConfig:
    """Which of the model's classes matter to the planner."""

    drivable_classes: tuple[str, ...] = setting(
        ("road",), "class names whose pixels form the drivable mask"
    )


@dataclass(frozen=True, slots=True)
class RenderConfig:
    """How the overlay image for people (RViz, videos) is drawn."""

    overlay_alpha: float = setting(
        0.5, "weight of the panoptic colours over the camera image", minimum=0.0, maximum=1.0
    )
    draw_boxes: bool = setting(True, "draw each instance's box and label on the overlay")


Reliability = Literal["best_effort", "reliable"]
Transport = Literal["raw", "compressed"]


def _is_ros_name(name: str, *, absolute_ok: bool) -> bool:
    """True for a relative (or, if allowed, absolute) ROS name of word-character tokens."""
    body = name[1:] if absolute_ok and name.startswith("/") else name
    parts = body.split("/")
    return bool(body) and all(
        part and (part[0].isalpha() or part[0] == "_") and part.replace("_", "a").isalnum()
        for part in parts
    )


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """The ROS 2 node: cameras, topics, QoS, which outputs to publish, diagnostics."""

    camera_names: tuple[str, ...] = setting(
        ("front",),
        "one output namespace per camera, relative to the node (outputs appear as "
        "<name>/drivable_mask ...)",
        read_only=True,
    )
    image_topics: tuple[str, ...] = setting(
        ("/camera/image_raw",),
        "input image topic per camera, in the order of camera_names; "
        "the compressed transport subscribes to <topic>/compressed; CameraInfo is read from "
        "the sibling camera_info topic",
        read_only=True,
    )
    input_transport: Transport = setting(
        "raw",
        "raw = sensor_msgs/Image, compressed = sensor_msgs/CompressedImage (JPEG/PNG)",
        read_only=True,
    )
    input_reliability: Reliability = setting(
        "best_effort",
        "QoS reliability of the image subscriptions (sensor data: best_effort)",
        read_only=True,
    )
    input_depth: int = setting(
        1,
        "QoS history depth of the image subscriptions; 1 keeps only the newest frame",
        minimum=1,
        maximum=100,
        read_only=True,
    )
    output_reliability: Reliability = setting(
        "reliable",
        "QoS reliability of the outputs (RViz, rosbag2 and launch_testing subscribe reliably)",
        read_only=True,
    )
    output_depth: int = setting(
        1, "QoS history depth of the outputs", minimum=1, maximum=100, read_only=True
    )
    publish_drivable_mask: bool = setting(True, "publish <camera>/drivable_mask (mono8)")
    publish_semantic: bool = setting(True, "publish <camera>/semantic (mono8 class ids)")
    publish_instance_ids: bool = setting(True, "publish <camera>/instance_ids (16UC1)")
    publish_instances: bool = setting(
        True, "publish <camera>/instances (vision_msgs/Detection2DArray)"
    )
    publish_overlay: bool = setting(True, "publish <camera>/overlay (bgr8, for RViz)")
    publish_drivable_grid: bool = setting(
        False,
        "publish <camera>/drivable_grid (nav_msgs/OccupancyGrid; needs CameraInfo and TF, "
        "which are subscribed at start-up)",
        read_only=True,
    )
    publish_objects: bool = setting(
        False,
        "publish <camera>/objects (vision_msgs/Detection3DArray in grid.frame_id: detected "
        "things on the ground plane; needs CameraInfo and TF, which are subscribed at start-up)",
        read_only=True,
    )
    publish_objects_markers: bool = setting(
        False,
        "with publish_objects, also publish <camera>/objects_markers "
        "(visualization_msgs/MarkerArray: boxes and labels for RViz)",
        read_only=True,
    )
    track_min_overlap: float = setting(
        0.3,
        "mask overlap (IoU) needed to keep an object's id from the previous frame",
        minimum=0.0,
        maximum=1.0,
    )
    latency_warn_ms: float = setting(
        250.0, "diagnostics WARN when p99 processing latency exceeds this", minimum=0.0
    )
    latency_error_ms: float = setting(
        1000.0, "diagnostics ERROR when p99 processing latency exceeds this", minimum=0.0
    )
    input_timeout_s: float = setting(
        2.0, "diagnostics WARN when a camera has sent nothing for this long", minimum=0.0
    )
    drop_ratio_warn: float = setting(
        0.5,
        "diagnostics WARN when more than this share of frames is dropped",
        minimum=0.0,
        maximum=1.0,
    )
    log_throttle_s: float = setting(
        5.0, "at most one log line per camera and problem in this many seconds", minimum=0.0
    )

    def __post_init__(self) -> None:
        if not self.camera_names:
            raise ConfigError("node.camera_names must name at least one camera")
        if len(set(self.camera_names)) != len(self.camera_names):
            raise ConfigError(f"node.camera_names={list(self.camera_names)} has duplicates")
        if len(self.image_topics) != len(self.camera_names):
            raise ConfigError(
                f"node.image_topics has {len(self.image_topics)} entries but node.camera_names "
                f"has {len(self.camera_names)}; give one topic per camera"
            )
        for name in self.camera_names:
            if not _is_ros_name(name, absolute_ok=False):
                raise ConfigError(f"node.camera_names entry {name!r} is not a relative ROS name")
        for topic in self.image_topics:
            if not _is_ros_name(topic, absolute_ok=True):
                raise ConfigError(f"node.image_topics entry {topic!r} is not a valid ROS topic")
        if self.latency_error_ms < self.latency_warn_ms:
            raise ConfigError(
                f"node.latency_error_ms={self.latency_error_ms} is below "
                f"node.latency_warn_ms={self.latency_warn_ms}"
            )


@dataclass(frozen=True, slots=True)
class GridConfig:
    """The drivable mask projected onto the ground plane (nav_msgs/OccupancyGrid)."""

    frame_id: str = setting(
        "base_footprint",
        "ground frame of the grid (REP 105); its z=0 plane is the ground",
        read_only=True,
    )
    resolution_m: float = setting(
        0.2, "cell size in metres", minimum=0.01, maximum=10.0, read_only=True
    )
    length_m: float = setting(
        40.0,
        "grid extent along the frame's x axis (forward)",
        minimum=0.1,
        maximum=1000.0,
        read_only=True,
    )
    width_m: float = setting(
        20.0,
        "grid extent along y, centred on the frame's x axis",
        minimum=0.1,
        maximum=1000.0,
        read_only=True,
    )
    origin_x_m: float = setting(
        0.0,
        "x of the grid's rear edge in frame_id",
        minimum=-1000.0,
        maximum=1000.0,
        read_only=True,
    )
    image_is_rectified: bool = setting(
        False,
        "true if the input images are rectified (project with CameraInfo P), false for "
        "raw images (K and distortion D)",
        read_only=True,
    )
    tf_timeout_s: float = setting(
        0.05,
        "how long to wait for the camera pose at the image stamp",
        minimum=0.0,
        maximum=5.0,
    )


@dataclass(frozen=True, slots=True)
class ObjectsConfig:
    """Detected things placed on the ground plane of grid.frame_id (the objects output)."""

    max_range_m: float = setting(
        60.0,
        "objects whose ground contact is further than this (horizontally) are left out",
        minimum=1.0,
        maximum=1000.0,
    )
    tilt_sigma_deg: float = setting(
        1.0,
        "standard deviation of the real ground's tilt against the flat plane, in degrees "
        "(enters the range covariance)",
        minimum=0.0,
        maximum=30.0,
    )
    pixel_sigma_px: float = setting(
        1.0,
        "standard deviation of a mask's lower edge in image pixels (enters the range "
        "covariance); about 1.2 for masks from stride-4 cells at full resolution",
        minimum=0.0,
        maximum=100.0,
    )
    contact_percentile: float = setting(
        90.0,
        "percentile of the per-column lowest mask rows taken as the ground contact row",
        minimum=50.0,
        maximum=100.0,
    )
    length_prior: tuple[str, ...] = setting(
        (
            "car=4.5",
            "truck=8.0",
            "bus=12.0",
            "train=20.0",
            "person=0.6",
            "rider=1.8",
            "bicycle=1.8",
            "motorcycle=2.1",
        ),
        "object length in metres along the viewing ray per class, as 'NAME=METRES' entries "
        "(a monocular mask shows no depth)",
    )
    default_length_m: float = setting(
        1.0, "length of classes without a length_prior entry", minimum=0.01, maximum=100.0
    )

    def __post_init__(self) -> None:
        parse_length_prior(self.length_prior)


@dataclass(frozen=True, slots=True)
class ReplayConfig:
    """Offline replay of a rosbag2 through the pipeline."""

    output_namespace: str = setting(
        "/panoptic", "namespace of the output topics written to the output bag"
    )
    write_video: bool = setting(True, "also write the overlay as an MP4 video")
    video_fps: float = setting(
        0.0,
        "frame rate of the overlay video; 0 = from the input stamps",
        minimum=0.0,
        maximum=1000.0,
    )
    max_frames: int = setting(0, "stop after this many frames; 0 = all", minimum=0)
    write_objects: bool = setting(
        True,
        "write <namespace>/objects and objects_markers when the bag holds the camera's "
        "CameraInfo and /tf_static (ground frame and settings: grid.*, objects.*)",
    )

    def __post_init__(self) -> None:
        if not self.output_namespace.startswith("/"):
            raise ConfigError(
                f"replay.output_namespace={self.output_namespace!r} must start with '/'"
            )


def parse_length_prior(entries: Sequence[str]) -> dict[str, float]:
    """Read ``objects.length_prior`` entries: ``'NAME=METRES'`` -> {class name: metres}.

    Raises:
        ConfigError: An entry without ``=``, an empty or repeated name, or a length that is
            not a positive number.
    """
    lengths: dict[str, float] = {}
    for entry in entries:
        name, sep, value = str(entry).partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(
                f"objects.length_prior entry {entry!r} must look like NAME=METRES (car=4.5)"
            )
        try:
            metres = float(value)
        except ValueError:
            raise ConfigError(
                f"objects.length_prior entry {entry!r}: {value.strip()!r} is not a number"
            ) from None
        if not math.isfinite(metres) or metres <= 0:
            raise ConfigError(
                f"objects.length_prior entry {entry!r} must be a positive length in metres"
            )
        if name in lengths:
            raise ConfigError(f"objects.length_prior names {name!r} twice")
        lengths[name] = metres
    return lengths


def parse_category_entries(entries: Sequence[str]) -> list[tuple[int, str]]:
    """Read ``dataset.category_map`` entries: ``'ID=NAME'`` -> (dataset id, class name).

    Raises:
        ConfigError: An entry is malformed or repeats an id (one line naming it).
    """
    pairs: list[tuple[int, str]] = []
    seen: set[int] = set()
    for entry in entries:
        raw_id, sep, name = entry.partition("=")
        if not sep or not raw_id.strip().isdigit() or not name.strip():
            raise ConfigError(
                f"dataset.category_map entry {entry!r} must look like 'ID=NAME', e.g. '3=car'"
            )
        category = int(raw_id)
        if category in seen:
            raise ConfigError(
                f"dataset.category_map lists category {category} twice; give each id once"
            )
        seen.add(category)
        pairs.append((category, name.strip()))
    return pairs


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Training on synthetic scenes or a Cityscapes / COCO panoptic dataset."""

    steps: int = setting(3000, "optimizer steps", minimum=1)
    batch_size: int = setting(8, "images per step", minimum=1, maximum=1024)
    image_height: int = setting(
        288, "training crop (network input) height in px, a multiple of 32", minimum=32
    )
    image_width: int = setting(
        512, "training crop (network input) width in px, a multiple of 32", minimum=32
    )
    learning_rate: float = setting(2e-3, "peak AdamW learning rate", minimum=0.0, maximum=1.0)
    weight_decay: float = setting(1e-4, "AdamW weight decay", minimum=0.0, maximum=1.0)
    warmup_steps: int = setting(100, "linear learning-rate warm-up steps", minimum=0)
    seed: int = setting(0, "seed for model init, data order and synthetic scenes", minimum=0)
    num_workers: int = setting(1, "data-loading worker processes", minimum=0, maximum=64)
    eval_every: int = setting(
        500, "evaluate PQ every this many steps; 0 = only at the end", minimum=0
    )
    checkpoint_every: int = setting(
        200,
        "write the resumable checkpoint_last.safetensors every this many steps (and at the end)",
        minimum=1,
    )
    log_every: int = setting(
        10, "write the losses to metrics.jsonl every this many steps (and the last)", minimum=1
    )
    eval_images: int = setting(
        32,
        "images per evaluation: held-out synthetic scenes, or the first N of eval_split "
        "(0 = all of it)",
        minimum=0,
    )
    dataset: DatasetName = setting(
        "synthetic",
        "training data: synthetic scenes, cityscapes (createPanopticImgs' panoptic PNG + JSON) "
        "or coco (COCO panoptic PNG + JSON)",
    )
    dataset_root: str = setting(
        "",
        "cityscapes: the folder holding leftImg8bit/ and gtFine/; coco: the folder holding "
        "annotations/panoptic_<split>.json, its PNG folder and <split>/ images",
    )
    train_split: str = setting(
        "train", "dataset split to train on (Cityscapes 'train', COCO e.g. 'train2017')"
    )
    eval_split: str = setting(
        "val",
        "dataset split scored every eval_every steps and at the end (COCO e.g. 'val2017'); "
        "'' = no evaluation",
    )
    labels_file: str = setting(
        "",
        "the model's classes: '' = Cityscapes' 19, or a JSON/YAML list of {name, isthing, "
        "color, id} rows (a COCO 'categories' list works)",
    )
    backbone: str = setting("efficientnet_lite0", "backbone architecture name")
    backbone_weights: str = setting(
        "auto",
        "backbone init: 'auto' = bundled ImageNet EfficientNet-Lite0 weights, 'none', "
        "or a .safetensors path",
    )
    fpn_channels: int = setting(64, "channels of the two-way FPN", minimum=8, maximum=512)
    head_channels: int = setting(
        64, "channels inside the semantic and instance heads", minimum=8, maximum=512
    )
    scale_min: float = setting(
        0.5,
        "smallest random rescale of a training image before the crop to image_height x image_width",
        minimum=0.1,
        maximum=8.0,
    )
    scale_max: float = setting(
        2.0,
        "largest random rescale of a training image (1.0 and 1.0: none)",
        minimum=0.1,
        maximum=8.0,
    )
    scale_reference: ScaleReference = setting(
        "auto",
        "what scale_min/max multiply: inference = the letterbox scale that fits the stored "
        "image into inference_height x inference_width (the scale the network sees when "
        "deployed), stored = the stored image size; auto = inference for cityscapes/coco, "
        "stored for synthetic",
    )
    inference_height: int = setting(
        0,
        "network input height the model will run at (scale_reference=inference); 0 = image_height",
        minimum=0,
        maximum=8192,
    )
    inference_width: int = setting(
        0,
        "network input width the model will run at (scale_reference=inference); 0 = image_width",
        minimum=0,
        maximum=8192,
    )
    flip: float = setting(0.5, "probability of a horizontal flip", minimum=0.0, maximum=1.0)
    brightness: float = setting(
        0.2, "largest relative brightness change (0.2 = +-20%)", minimum=0.0, maximum=1.0
    )
    contrast: float = setting(0.2, "largest relative contrast change", minimum=0.0, maximum=1.0)
    saturation: float = setting(0.2, "largest relative saturation change", minimum=0.0, maximum=1.0)
    camera_augment: CameraAugment = setting(
        "auto",
        "hue shift and blur (hue, blur_probability, blur_max_px) for real cameras: "
        "auto = on for cityscapes/coco, off for synthetic",
    )
    hue: float = setting(
        0.03,
        "largest hue rotation as a fraction of the colour circle (0.03 = +-11 degrees)",
        minimum=0.0,
        maximum=0.5,
    )
    blur_probability: float = setting(
        0.3,
        "probability of blurring a training crop (half Gaussian, half motion blur)",
        minimum=0.0,
        maximum=1.0,
    )
    blur_max_px: float = setting(
        4.0,
        "strongest blur in crop pixels: Gaussian sigma up to a quarter of it, or a "
        "motion streak up to this long",
        minimum=1.0,
        maximum=64.0,
    )
    distill_weight: float = setting(
        1.0,
        "weight of the KL divergence to the teachers' soft targets, added to the hard-label "
        "losses where the dataset has them (0 = hard labels only)",
        minimum=0.0,
        maximum=100.0,
    )
    distill_temperature: float = setting(
        1.0,
        "distillation temperature T: student and teacher softened by T, loss scaled by T^2",
        minimum=0.1,
        maximum=20.0,
    )
    synthetic_ratio: float = setting(
        0.0,
        "share of training samples drawn as synthetic scenes (at the crop size) among a "
        "cityscapes/coco dataset's; 0 = none",
        minimum=0.0,
        maximum=0.95,
    )
    init_checkpoint: str = setting(
        "",
        "fine-tune: start from this panoptic_ros .safetensors checkpoint (a run's "
        "model.safetensors or checkpoint_last.safetensors) instead of backbone_weights; "
        "its classes must match the label space",
    )

    @property
    def inference_hw(self) -> tuple[int, int]:
        """(height, width) the model will run at: inference_height/width, else the crop."""
        return (
            self.inference_height or self.image_height,
            self.inference_width or self.image_width,
        )

    @property
    def scale_from_inference(self) -> bool:
        """True when scale_min/max multiply the letterbox scale of the inference size."""
        if self.scale_reference == "auto":
            return self.dataset != "synthetic"
        return self.scale_reference == "inference"

    @property
    def camera_augment_on(self) -> bool:
        """True when hue and blur augmentation applies (camera_augment, resolved)."""
        if self.camera_augment == "auto":
            return self.dataset != "synthetic"
        return self.camera_augment == "on"

    def __post_init__(self) -> None:
        for key in ("image_height", "image_width"):
            if getattr(self, key) % STRIDE:
                raise ConfigError(
                    f"train.{key}={getattr(self, key)} must be a multiple of {STRIDE}"
                )
        if self.dataset != "synthetic" and not self.dataset_root:
            raise ConfigError(
                f"train.dataset={self.dataset!r} needs train.dataset_root, the dataset's folder"
            )
        if self.dataset == "synthetic" and self.labels_file:
            raise ConfigError(
                "train.labels_file applies to cityscapes and coco; synthetic scenes are drawn "
                "in Cityscapes' 19 classes"
            )
        if self.dataset == "synthetic" and self.eval_images == 0:
            raise ConfigError("train.eval_images=0 (a whole split) needs a real train.dataset")
        if not self.train_split:
            raise ConfigError("train.train_split must name a split, e.g. 'train'")
        if self.dataset == "synthetic" and self.synthetic_ratio:
            raise ConfigError(
                "train.synthetic_ratio mixes synthetic scenes into a cityscapes or coco dataset; "
                "with train.dataset=synthetic leave it 0"
            )
        for key in ("inference_height", "inference_width"):
            if getattr(self, key) % STRIDE:
                raise ConfigError(
                    f"train.{key}={getattr(self, key)} must be a multiple of {STRIDE} (or 0)"
                )
        if self.scale_min > self.scale_max:
            raise ConfigError(
                f"train.scale_min={self.scale_min} is above train.scale_max={self.scale_max}; "
                "swap them"
            )


@dataclass(frozen=True, slots=True)
class DatasetConfig:
    """How a panoptic dataset's category ids map into the model's label space.

    Read by ``panoptic-ros train`` on Cityscapes or COCO folders and by ``panoptic-ros eval``
    when it runs a model over a dataset.
    """

    category_map: tuple[str, ...] = setting(
        (),
        "dataset category id to class name as 'ID=NAME' entries (several ids may name one "
        "class; categories not listed become void); empty: each class's own dataset id",
    )

    def __post_init__(self) -> None:
        parse_category_entries(self.category_map)


@dataclass(frozen=True, slots=True)
class Config:
    """Everything a run needs; every leaf has a default and a one-line doc."""

    model: ModelConfig = field(default_factory=ModelConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    node: NodeConfig = field(default_factory=NodeConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    objects: ObjectsConfig = field(default_factory=ObjectsConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One leaf of the configuration tree, as the node declares it as a ROS parameter."""

    name: str
    type: Any
    default: Any
    doc: str
    minimum: float | None
    maximum: float | None
    read_only: bool

    @property
    def choices(self) -> tuple[str, ...]:
        """Allowed values of a Literal field, else ()."""
        return tuple(get_args(self.type)) if get_origin(self.type) is Literal else ()


def _section_types() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def config_fields() -> Iterator[FieldSpec]:
    """Yield every leaf of :class:`Config` with its dotted name, type, default and doc."""
    for section, cls in _section_types().items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            meta = f.metadata
            yield FieldSpec(
                name=f"{section}.{f.name}",
                type=hints[f.name],
                default=f.default,
                doc=meta.get("doc", ""),
                minimum=meta.get("minimum"),
                maximum=meta.get("maximum"),
                read_only=bool(meta.get("read_only", False)),
            )


def _coerce(spec: FieldSpec, value: Any) -> Any:
    """Check ``value`` against the field's type and range; return it in canonical form."""
    kind = spec.type
    origin = get_origin(kind)
    if origin is Literal:
        if value not in spec.choices:
            raise ConfigError(f"{spec.name}={value!r} must be one of {list(spec.choices)}")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{spec.name}={value!r} must be true or false")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{spec.name}={value!r} must be an integer")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{spec.name}={value!r} must be a number")
        value = float(value)
    elif kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{spec.name}={value!r} must be a string")
        return value
    elif origin is tuple:
        (item,) = {a for a in get_args(kind) if a is not Ellipsis}
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise ConfigError(f"{spec.name}={value!r} must be a list")
        return tuple(_coerce(dataclasses.replace(spec, type=item), v) for v in value)
    else:  # pragma: no cover - a new field type without coercion is a programming error
        raise AssertionError(f"no coercion for {spec.name}: {kind!r}")
    if spec.minimum is not None and value < spec.minimum:
        raise ConfigError(f"{spec.name}={value!r} is below the minimum {spec.minimum}")
    if spec.maximum is not None and value > spec.maximum:
        raise ConfigError(f"{spec.name}={value!r} is above the maximum {spec.maximum}")
    return value


def config_from_flat(values: Mapping[str, Any], base: Config | None = None) -> Config:
    """Build a :class:`Config` from dotted names, on top of ``base`` (default: defaults).

    Raises:
        ConfigError: An unknown key, a value of the wrong type or out of range.
    """
    specs = {s.name: s for s in config_fields()}
    unknown = sorted(set(values) - set(specs))
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r}; see config/panoptic.yaml for the keys")
    base = base or Config()
    sections: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        section, key = name.split(".", 1)
        sections.setdefault(section, {})[key] = _coerce(specs[name], value)
    replaced = {
        section: dataclasses.replace(getattr(base, section), **changes)
        for section, changes in sections.items()
    }
    return dataclasses.replace(base, **replaced)


def flatten_config(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings to dotted names: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def config_to_dict(config: Config) -> dict[str, dict[str, Any]]:
    """Return the config as nested plain mappings (tuples become lists) for YAML/JSON."""
    out: dict[str, dict[str, Any]] = {}
    for spec in config_fields():
        section, key = spec.name.split(".", 1)
        value = getattr(getattr(config, section), key)
        out.setdefault(section, {})[key] = list(value) if isinstance(value, tuple) else value
    return out


def _ros_parameters(document: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Return the merged ``ros__parameters`` of a ROS 2 params file, or None if it is not one."""
    blocks = [
        v["ros__parameters"]
        for v in document.values()
        if isinstance(v, Mapping) and isinstance(v.get("ros__parameters"), Mapping)
    ]
    if not blocks:
        return None
    merged: dict[str, Any] = {}
    for block in blocks:
        merged.update(flatten_config(block))
    return merged


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``key=value`` (value in YAML syntax: ``0.2``, ``true``, ``[road, sidewalk]``).

    Raises:
        ConfigError: No ``=`` or an unparsable value.
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        # YAML errors quote the source over several lines.
        raise ConfigError(
            f"override {text!r}: value is not valid YAML ({first_line(err)})"
        ) from err
    return key.strip(), value


def load_config(
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    *,
    ignore_unknown_prefixes: tuple[str, ...] = ("use_sim_time", "qos_overrides."),
) -> Config:
    """Load defaults <- YAML file <- ``key=value`` overrides, validating every value.

    Args:
        path: A YAML file (nested sections or a ROS 2 params file); None for defaults only.
        overrides: ``section.key=value`` strings applied last.
        ignore_unknown_prefixes: Keys of a ROS params file that belong to rclpy, not to
            this tree (``use_sim_time``, QoS overrides); skipped here.

    Raises:
        ConfigError: Unreadable file, unknown key or bad value; the message names the
            dotted key and the file.
    """
    values: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"cannot read config file {source!r}: {err.strerror}") from err
        try:
            document = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            raise ConfigError(
                f"config file {source!r} is not valid YAML: {first_line(err)}"
            ) from err
        if not isinstance(document, Mapping):
            raise ConfigError(f"config file {source!r} must hold a mapping at the top level")
        ros = _ros_parameters(document)
        flat = dict(ros) if ros is not None else flatten_config(document)
        values.update({k: v for k, v in flat.items() if not k.startswith(ignore_unknown_prefixes)})
    override_values = dict(parse_override(o) for o in overrides)
    try:
        config = config_from_flat(values)
    except ConfigError as err:
        # A rule across fields that the overrides settle (a file naming train.dataset and
        # --set giving its dataset_root) holds for the merged values; report the file's
        # error only when the merge does not settle it.
        try:
            return config_from_flat({**values, **override_values})
        except ConfigError:
            raise ConfigError(f"{source}: {err}") from err
    try:
        return config_from_flat(override_values, base=config)
    except ConfigError as err:
        raise ConfigError(f"--set: {err}") from err


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_yaml_scalar(v) for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


#: Sections the node reads; ``replay`` and ``train`` belong to the command line only.
RUNTIME_SECTIONS = (
    "model",
    "backend",
    "fusion",
    "labels",
    "render",
    "node",
    "grid",
    "objects",
)


def render_params_yaml(
    extra_fields: Iterable[FieldSpec] = (), sections: tuple[str, ...] = RUNTIME_SECTIONS
) -> str:
    """Render settings as a documented ROS 2 parameters file (``/**: ros__parameters``).

    ``config/panoptic.yaml`` is this output; a test keeps the two identical.

    Args:
        extra_fields: Further leaves (the node's own settings) rendered after the core ones.
        sections: Which sections of :class:`Config` to include.
    """
    lines = [
        "# panoptic_ros parameters: every setting with its default and meaning.",
        "# Serves `ros2 launch panoptic_ros panoptic.launch.py params_file:=...` and",
        "# `panoptic-ros replay BAG --config config/panoptic.yaml` alike.",
        "# Generated from panoptic_ros/config.py (render_params_yaml); edit the defaults there.",
        "/**:",
        "  ros__parameters:",
    ]
    section = None
    core = [s for s in config_fields() if s.name.split(".", 1)[0] in sections]
    for spec in [*core, *extra_fields]:
        head, _, key = spec.name.rpartition(".")
        if head != section:
            section = head
            lines.append(f"    {section}:")
        bounds = []
        if spec.choices:
            bounds.append("one of " + ", ".join(spec.choices))
        if spec.minimum is not None or spec.maximum is not None:
            bounds.append(
                f"range {spec.minimum if spec.minimum is not None else '-inf'}.."
                f"{spec.maximum if spec.maximum is not None else 'inf'}"
            )
        if spec.read_only:
            bounds.append("read at start-up")
        suffix = f" ({'; '.join(bounds)})" if bounds else ""
        lines.append(f"      # {spec.doc}{suffix}")
        lines.append(f"      {key}: {_yaml_scalar(spec.default)}")
    return "\n".join(lines) + "\n"
