"""FP16 and INT8 (Q/DQ) variants of an FP32 model, for TensorRT 10 and 11 alike.

TensorRT 11 builds only strongly typed networks: precision must live in the ONNX file. So:

* :func:`convert_fp16` stores weights and arithmetic in float16 (input stays uint8, outputs
  float32: ``keep_io_types``), optionally with static shapes for Jetson DLA cores, which
  need fixed dimensions.
* :func:`quantize_int8` inserts explicit QuantizeLinear/DequantizeLinear pairs by
  post-training calibration with ONNX Runtime's static quantizer: symmetric int8
  activations, per-channel symmetric int8 weights, float biases (TensorRT's parser refuses
  the int32 bias DequantizeLinear that ONNX Runtime writes by default). TensorRT accepts
  only int8 zero points of 0, so every zero point's type and value are checked. The three
  head output convolutions stay in float: the offsets span hundreds of pixels and the
  logits feed an argmax, both sensitive to a per-tensor activation scale.

Both keep the output contract and the embedded metadata (with ``precision`` updated) and
run in ONNX Runtime on the CPU, where their accuracy is measured. ONNX Runtime's CPU FP16
runs through casts, so it says little about TensorRT FP16 speed or rounding: re-measure on
an engine.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from panoptic_ros.contract import (
    HEAD_OUTPUTS,
    INPUT_NAME,
    METADATA_KEY,
    ModelMetadata,
    write_sidecar,
)
from panoptic_ros.errors import ModelFileError
from panoptic_ros.export.onnx_export import check_external_data
from panoptic_ros.geometry import Letterbox

__all__ = [
    "DEFAULT_FLOAT_PATTERNS",
    "calibration_frames",
    "check_symmetric_zero_points",
    "convert_fp16",
    "quantize_int8",
]

logger = logging.getLogger(__name__)

CalibrationMethod = Literal["minmax", "percentile", "entropy"]
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _letterboxed(image: npt.NDArray[np.uint8], input_hw: tuple[int, int]) -> npt.NDArray[np.uint8]:
    image_hw = (int(image.shape[0]), int(image.shape[1]))
    return Letterbox.fit(image_hw, input_hw).apply(np.ascontiguousarray(image))


def calibration_frames(
    source: Path, input_hw: tuple[int, int], count: int = 64
) -> list[npt.NDArray[np.uint8]]:
    """Frames for calibration, letterboxed to the network input, evenly spread over the source.

    Args:
        source: A folder of JPEG/PNG images or a rosbag2 with an image topic.
        input_hw: Network input size.
        count: How many frames at most.

    Returns:
        [H, W, 3] uint8 RGB network inputs.

    Raises:
        ModelFileError: The source has no usable images.
    """
    from panoptic_ros.codec import decode_compressed, decode_image

    source = Path(source)
    images: list[npt.NDArray[np.uint8]] = []
    if source.is_dir() and not (source / "metadata.yaml").exists():
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
        step = max(1, len(files) // max(count, 1))
        for path in files[::step][:count]:
            images.append(decode_compressed(format=path.suffix, data=path.read_bytes()))
    else:
        from panoptic_ros.bags import choose_image_topic, iter_messages, open_reader

        with open_reader(source) as reader:
            topic = choose_image_topic(reader)
            total = int(reader.topics[topic].msgcount) or count
            step = max(1, total // max(count, 1))
            for index, (_, message) in enumerate(iter_messages(reader, topic)):
                if index % step == 0:
                    images.append(decode_image(message))
                if len(images) >= count:
                    break
    if not images:
        raise ModelFileError(
            f"calibration source {str(source)!r} holds no JPEG/PNG images or frames"
        )
    return [_letterboxed(image, input_hw) for image in images]


def _metadata_entry(proto: Any) -> Any:
    entry = next((e for e in proto.metadata_props if e.key == METADATA_KEY), None)
    if entry is None:
        raise ModelFileError(
            f"the model has no {METADATA_KEY!r} metadata; export it with panoptic-ros"
        )
    return entry


def _metadata_of(proto: Any) -> ModelMetadata:
    return ModelMetadata.from_json(_metadata_entry(proto).value)


def _update_metadata(proto: Any, precision: str, input_hw: tuple[int, int] | None) -> ModelMetadata:
    entry = _metadata_entry(proto)
    data = ModelMetadata.from_json(entry.value).to_dict()
    data["precision"] = precision
    if input_hw is not None:
        data["input_size"] = list(input_hw)
        data["dynamic_input"] = False
    metadata = ModelMetadata.from_dict(data)
    entry.value = metadata.to_json()
    return metadata


def _atomic_save(proto: Any, path: Path) -> None:
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".onnx.tmp", delete=False) as tmp:
        temporary = Path(tmp.name)
    try:
        onnx.save(proto, str(temporary))
        # NamedTemporaryFile creates 0600 files; a model must be readable like any file.
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _make_static(proto: Any, input_hw: tuple[int, int]) -> None:
    """Fix batch 1 and the spatial size on the input and outputs (DLA needs static shapes).

    Heads are [N, C, h, w], fused maps [N, h, w]; the fused table and count only have a
    fixed batch.
    """
    height, width = input_hw
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    for dim, value in zip(dims, (1, height, width, 3), strict=True):
        dim.ClearField("dim_param")
        dim.dim_value = value
    spatial = {"semantic": slice(1, 3), "instance": slice(1, 3)}
    for output in proto.graph.output:
        out_dims = output.type.tensor_type.shape.dim
        out_dims[0].ClearField("dim_param")
        out_dims[0].dim_value = 1
        if output.name in ("instance_table", "instance_count"):
            continue
        cells = out_dims[spatial.get(output.name, slice(2, 4))]
        for dim, value in zip(cells, (height // 4, width // 4), strict=True):
            dim.ClearField("dim_param")
            dim.dim_value = value


def _sort_topologically(graph: Any) -> None:
    """Order ``graph.node`` so every node follows the producers of its inputs (stable).

    ONNX Runtime's float16 converter appends the Cast nodes it inserts around blocked
    operators (TopK, as in a fused model's centre selection) at the end of the list, which
    the ONNX checker rejects ("Nodes in a graph must be topologically sorted").

    Raises:
        ModelFileError: The graph has a cycle.
    """
    nodes = list(graph.node)
    producer = {name: index for index, node in enumerate(nodes) for name in node.output if name}
    waiting = [0] * len(nodes)
    users: list[list[int]] = [[] for _ in nodes]
    for index, node in enumerate(nodes):
        for source in {producer[name] for name in node.input if name in producer}:
            if source != index:
                waiting[index] += 1
                users[source].append(index)
    ready = [index for index, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        index = heapq.heappop(ready)
        order.append(index)
        for user in users[index]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, user)
    if len(order) != len(nodes):
        raise ModelFileError("the converted graph has a cycle; report this model")
    del graph.node[:]
    graph.node.extend(nodes[index] for index in order)


def _fused_fp16(proto: Any, source: Path) -> Any:
    """Convert only the network of a fused model to float16; the fusion stays float32.

    The graph is split at the tensors the network hands to the fusion; the network part is
    converted (float32 at its outputs) and joined again to the untouched fusion part.
    (ONNX Runtime's converter cannot do this with a node block list: it casts every blocked
    node's output to float16 and back, so each tensor between two fusion nodes would still
    be rounded to float16.)

    Raises:
        ModelFileError: The model has no network scope, or the parts cannot be split.
    """
    import onnx
    import onnx.compose
    from onnx.utils import Extractor
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from panoptic_ros.fusion.fused_outputs import NETWORK_SCOPE

    graph = proto.graph
    network_outputs = {o for n in graph.node if n.name.startswith(NETWORK_SCOPE) for o in n.output}
    boundary: list[str] = []
    for node in graph.node:
        if node.name.startswith(NETWORK_SCOPE):
            continue
        if INPUT_NAME in node.input:
            raise ModelFileError(
                f"fused model {str(source)!r}: node {node.name!r} outside {NETWORK_SCOPE!r} "
                "reads the image; export it with panoptic-ros export --fused"
            )
        boundary += [i for i in node.input if i in network_outputs and i not in boundary]
    if not boundary:
        raise ModelFileError(
            f"fused model {str(source)!r} has no nodes under {NETWORK_SCOPE!r}; export it with "
            "panoptic-ros export --fused (or append_fusion)"
        )
    extractor = Extractor(onnx.shape_inference.infer_shapes(proto))  # types of the cut edges
    network = extractor.extract_model([INPUT_NAME], boundary)
    fusion = extractor.extract_model(boundary, [o.name for o in graph.output])
    # Resize's scales must stay float32 in ONNX; the converter knows to skip them.
    network = convert_float_to_float16(network, keep_io_types=True, disable_shape_infer=False)
    _sort_topologically(network.graph)
    for node in network.graph.node:  # the converter's casts belong to the network too
        if not node.name.startswith(NETWORK_SCOPE):
            node.name = NETWORK_SCOPE + node.name
    for part in (network, fusion):  # the joined graph types them once, as edges
        kept = [v for v in part.graph.value_info if v.name not in boundary]
        del part.graph.value_info[:]
        part.graph.value_info.extend(kept)
    joined = onnx.compose.merge_models(
        network, fusion, io_map=[(name, name) for name in boundary], producer_name="panoptic_ros"
    )
    joined.metadata_props.extend(proto.metadata_props)
    return joined


def convert_fp16(
    source: Path, target: Path, *, static_hw: tuple[int, int] | None = None
) -> ModelMetadata:
    """Write a float16 copy of ``source`` (uint8 input and float32 outputs kept).

    In a ``fused``-contract model only the network goes to float16: every node outside
    :data:`~panoptic_ros.fusion.fused_outputs.NETWORK_SCOPE` (the fusion: softmax, votes, squared
    distances, one-hot sums) stays float32, as the contract requires (squared distances
    of megapixel frames overflow float16, and float16 one-hot sums lose counts above 2048).

    Args:
        source: FP32 ONNX model under the contract.
        target: Output path (its ``.json`` sidecar is written too).
        static_hw: Fix batch 1 and this input size (for Jetson DLA).

    Returns:
        The metadata written.

    Raises:
        ModelFileError: The model has no metadata, or a fused model has no network scope.
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from panoptic_ros.contract import ContractKind

    check_external_data(Path(source))
    proto = onnx.load(str(source))
    if static_hw is not None:
        _make_static(proto, static_hw)
    if _metadata_of(proto).contract is ContractKind.FUSED:
        converted = _fused_fp16(proto, Path(source))
    else:
        # Resize's scales must stay float32 in ONNX; the converter knows to skip them.
        converted = convert_float_to_float16(proto, keep_io_types=True, disable_shape_infer=False)
        _sort_topologically(converted.graph)
    metadata = _update_metadata(converted, "fp16", static_hw)
    onnx.checker.check_model(converted)
    _atomic_save(converted, Path(target))
    write_sidecar(target, metadata)
    return metadata


class _FrameReader:
    """ONNX Runtime CalibrationDataReader over letterboxed frames, one batch-1 feed each."""

    def __init__(self, frames: Sequence[npt.NDArray[np.uint8]]) -> None:
        from tqdm import tqdm

        # ONNX Runtime pulls frames one by one while it runs the model over them, so a bar
        # on the reader is the calibration's progress (minutes at 2 megapixels on a CPU).
        self._frames: Iterator[npt.NDArray[np.uint8]] = iter(
            tqdm(
                frames,
                desc="calibrating",
                unit="frame",
                leave=False,
                disable=not sys.stderr.isatty(),
                file=sys.stderr,
            )
        )

    def get_next(self) -> dict[str, npt.NDArray[np.uint8]] | None:
        frame = next(self._frames, None)
        return None if frame is None else {INPUT_NAME: frame[None]}

    def __iter__(self) -> Iterator[dict[str, npt.NDArray[np.uint8]]]:
        while (item := self.get_next()) is not None:
            yield item


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """Hold ONNX Runtime's quantiser to warnings while it runs.

    It logs on the root logger at INFO once per adjusted bias channel (hundreds of lines for
    one model) and nothing in them needs action; with -v (DEBUG) they stay visible.
    """
    root = logging.getLogger()
    previous = root.level
    if not root.isEnabledFor(logging.DEBUG):
        root.setLevel(max(previous, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(previous)


def _output_convolutions(proto: Any) -> list[str]:
    producers = {out: node for node in proto.graph.node for out in node.output}
    return [
        producers[name].name
        for name in HEAD_OUTPUTS
        if name in producers and producers[name].op_type == "Conv"
    ]


def check_symmetric_zero_points(proto: Any) -> int:
    """Count the Q/DQ zero points; raise unless each is int8 and 0 (what TensorRT accepts).

    Zero points given as initialisers and as Constant nodes are both checked.

    Raises:
        ModelFileError: Naming the first zero point of another type or with a non-zero value.
    """
    import onnx

    constants = {i.name: i for i in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant":
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None:
                constants[node.output[0]] = value
    checked = 0
    for node in proto.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        zero_point = constants.get(node.input[2])
        if zero_point is None:
            continue
        checked += 1
        if zero_point.data_type != onnx.TensorProto.INT8:
            type_name = onnx.TensorProto.DataType.Name(zero_point.data_type).lower()
            raise ModelFileError(
                f"zero point {node.input[2]!r} of {node.name!r} is {type_name}; TensorRT accepts "
                "only int8 zero points (quantize with symmetric int8 activations and weights)"
            )
        if np.any(onnx.numpy_helper.to_array(zero_point)):
            raise ModelFileError(
                f"zero point {node.input[2]!r} of {node.name!r} is not 0; TensorRT accepts only "
                "symmetric quantization"
            )
    return checked


# Module paths left in float by default. Measured on the demo model (24 held-out scenes,
# 32 calibration frames, FP32 PQ 70.7): everything quantised 63.4; the first inverted-residual
# block (stages.0: depthwise 3x3 + linear 1x1, 0.1% of the MACs) in float 70.4; its depthwise
# or its pointwise convolution alone in float 61.7 / 61.3; the stem alone 62.9; the whole
# backbone in float 70.9. Only the block as a whole recovers the accuracy, so it stays float
# (TensorRT runs it in the model's float type).
DEFAULT_FLOAT_PATTERNS: tuple[str, ...] = ("/backbone/stages.0/",)


def quantize_int8(
    source: Path,
    target: Path,
    frames: Iterable[npt.NDArray[np.uint8]],
    *,
    method: CalibrationMethod = "percentile",
    keep_head_outputs_float: bool = True,
    op_types: Sequence[str] | None = None,
    exclude_patterns: Sequence[str] = DEFAULT_FLOAT_PATTERNS,
) -> ModelMetadata:
    """Write an INT8 Q/DQ copy of ``source`` calibrated on ``frames``.

    Args:
        source: FP32 ONNX model under the contract.
        target: Output path (its ``.json`` sidecar is written too).
        frames: [H, W, 3] uint8 network inputs (see :func:`calibration_frames`).
        method: Calibration of activation ranges (percentile 99.999 by default: robust to
            the rare outliers of real frames).
        keep_head_outputs_float: Leave the three output convolutions unquantised.
        exclude_patterns: Leave nodes whose name contains any of these substrings in float
            (module paths such as ``/instance_head/``; default: the backbone's first block,
            see ``DEFAULT_FLOAT_PATTERNS``; ``()`` quantises everything).
        op_types: Quantise only these operator types (default: every type ONNX Runtime
            quantises: convolutions, additions, concatenations, pooling, resizes ...).

    Returns:
        The metadata written.

    Raises:
        ModelFileError: Quantization failed or produced a non-zero zero point.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod as OrtMethod,
    )
    from onnxruntime.quantization import (
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {
        "minmax": OrtMethod.MinMax,
        "percentile": OrtMethod.Percentile,
        "entropy": OrtMethod.Entropy,
    }
    check_external_data(Path(source))
    frame_list = list(frames)
    if not frame_list:
        raise ModelFileError("INT8 calibration needs at least one frame")
    with tempfile.TemporaryDirectory(prefix="panoptic_quant_") as workdir:
        prepared = Path(workdir) / "prepared.onnx"
        quantized = Path(workdir) / "quantized.onnx"
        try:
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=False)
            prepared_proto = onnx.load(str(prepared))
            excluded = _output_convolutions(prepared_proto) if keep_head_outputs_float else []
            kept_float = [
                node.name
                for node in prepared_proto.graph.node
                if any(pattern in node.name for pattern in exclude_patterns)
            ]
            unmatched = [p for p in exclude_patterns if not any(p in n for n in kept_float)]
            if unmatched:
                logger.warning("no node of %s matches %s: quantised anyway", source, unmatched)
            excluded += kept_float
            with _quiet_root_logger():
                quantize_static(
                    str(prepared),
                    str(quantized),
                    _FrameReader(frame_list),
                    quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=methods[method],
                    nodes_to_exclude=excluded,
                    op_types_to_quantize=list(op_types) if op_types else None,
                    extra_options={
                        "ActivationSymmetric": True,
                        "WeightSymmetric": True,
                        "CalibPercentile": 99.999,
                        # Biases stay float: an int32 bias behind a DequantizeLinear is what
                        # ONNX Runtime writes by default, and TensorRT's parser refuses it
                        # ("only activation types allowed as input to this layer").
                        "QuantizeBias": False,
                    },
                )
        except (RuntimeError, ValueError, KeyError) as err:
            raise ModelFileError(f"INT8 quantization of {source} failed: {err}") from err
        proto = onnx.load(str(quantized))
    checked = check_symmetric_zero_points(proto)
    metadata = _update_metadata(proto, "int8", None)
    _atomic_save(proto, Path(target))
    write_sidecar(target, metadata)
    logger.info(
        "INT8 model %s: %d Q/DQ zero points, all 0; %d nodes left float",
        target,
        checked,
        len(excluded),
    )
    return metadata
