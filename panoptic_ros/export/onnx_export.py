"""PanopticNet -> ONNX under the output contract, with the model metadata embedded.

Input ``image`` uint8 [N, H, W, 3] RGB (N dynamic; H, W dynamic unless ``dynamic=False``);
outputs ``semantic_logits``, ``center_heatmap``, ``offsets`` at stride 4. The metadata JSON
goes into the graph's ``metadata_props`` under ``panoptic_ros`` and into a ``.json`` sidecar.
The file is written to a temporary name and renamed, so a failed export leaves nothing.

Models from elsewhere may keep weights in external data files; :func:`check_external_data`
refuses any such location that is absolute or resolves (symbolic links included) outside
the model's folder, before ONNX Runtime, TensorRT or ``onnx.load`` read a byte of it.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from panoptic_ros.contract import (
    FUSED_OUTPUTS,
    HEAD_OUTPUTS,
    INPUT_NAME,
    METADATA_KEY,
    ContractKind,
    ModelMetadata,
    write_sidecar,
)
from panoptic_ros.errors import ModelFileError, first_line

__all__ = ["check_external_data", "check_onnx_contract", "export_onnx", "read_onnx_metadata"]

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 17


def export_onnx(
    model: Any,
    path: Path,
    *,
    metadata: ModelMetadata,
    input_hw: tuple[int, int],
    dynamic: bool = True,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Export a PanopticNet (eval mode, CPU) to ONNX.

    Args:
        model: The network.
        path: Output ``.onnx`` path; the sidecar is written beside it.
        metadata: Labels, sizes and provenance to embed.
        input_hw: Example (and, when not dynamic, fixed) input size, multiples of 32.
        dynamic: Let height and width vary at run time.
        opset: ONNX opset.

    Returns:
        ``path``.

    Raises:
        ConfigError: ``input_hw`` is not a pair of positive multiples of 32.
        ModelFileError: The exporter failed (nothing is left at ``path``).
    """
    import onnx
    import torch

    from panoptic_ros.modeling.network import check_input_hw

    check_input_hw(*input_hw)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    example = torch.zeros((1, *input_hw, 3), dtype=torch.uint8)
    fused = metadata.contract is ContractKind.FUSED
    names = FUSED_OUTPUTS if fused else HEAD_OUTPUTS
    # Spatial dimensions of each output: heads are [N, C, h, w], fused maps [N, h, w].
    spatial = {"semantic": (1, 2), "instance": (1, 2), "instance_table": (), "instance_count": ()}
    axes: dict[str, dict[int, str]] = {INPUT_NAME: {0: "batch"}}
    for name in names:
        axes[name] = {0: "batch"}
    if dynamic:
        axes[INPUT_NAME].update({1: "height", 2: "width"})
        for name in names:
            dims = spatial.get(name, (2, 3))
            axes[name].update(dict(zip(dims, ("height_4", "width_4"), strict=False)))
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".onnx.tmp", delete=False) as tmp:
        temporary = Path(tmp.name)
    try:
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                # The TorchScript exporter gives a compact graph of standard ops at opset 17.
                torch.onnx.export(
                    model,
                    (example,),
                    str(temporary),
                    input_names=[INPUT_NAME],
                    output_names=list(names),
                    dynamic_axes=axes,
                    opset_version=opset,
                    do_constant_folding=True,
                    dynamo=False,
                )
        # torch's exporter raises many types (RuntimeError, OnnxExporterError, ...).
        except Exception as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ModelFileError(
                f"ONNX export to {str(path)!r} failed: {first}; the model must trace with "
                f"a uint8 [1, {input_hw[0]}, {input_hw[1]}, 3] input"
            ) from err
        proto = onnx.load(str(temporary))
        stored = {
            **metadata.to_dict(),
            "input_size": list(input_hw),  # the size exported, whatever metadata said
            "dynamic_input": dynamic,
        }
        embedded = ModelMetadata.from_dict(stored)
        del proto.metadata_props[:]
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, embedded.to_json()
        proto.producer_name = "panoptic_ros"
        onnx.checker.check_model(proto)
        onnx.save(proto, str(temporary))
        # NamedTemporaryFile creates 0600 files; a model must be readable like any file.
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    write_sidecar(path, embedded)
    logger.info("exported %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path


def _load_proto(path: Path) -> Any:
    """The ModelProto of ``path`` without its external data.

    Raises:
        ModelFileError: Missing, unreadable or not an ONNX file.
    """
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf DecodeError, OSError, onnx's ValidationError
        raise ModelFileError(f"cannot read ONNX model {str(path)!r}: {first_line(err)}") from err


def _tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto of a graph: initializers, sparse ones, node attributes, subgraphs."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _tensors(subgraph)


def check_external_data(path: Path, proto: Any = None) -> None:
    """Refuse external-data locations that leave the model's folder.

    Args:
        path: The ONNX file.
        proto: Its ModelProto loaded without external data (read from ``path`` when None).

    Raises:
        ModelFileError: A location is absolute, missing, or resolves (after following
            symbolic links) outside the folder holding ``path``; or the file is unreadable.
    """
    import onnx

    model = proto if proto is not None else _load_proto(path)
    folder = Path(path).resolve().parent
    for tensor in _tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = {entry.key: entry.value for entry in tensor.external_data}.get("location", "")
        target = (folder / location).resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(folder):
            raise ModelFileError(
                f"ONNX model {str(path)!r}: external data {location!r} of tensor "
                f"{tensor.name!r} is outside the model's folder; refusing to read it (keep "
                "external data files beside the model)"
            )


def read_onnx_metadata(path: Path) -> ModelMetadata:
    """Read the metadata embedded in an ONNX file (no external data loaded).

    Raises:
        ModelFileError: Unreadable file, external data outside the model's folder, or
            missing/invalid metadata.
    """
    proto = _load_proto(path)
    check_external_data(path, proto)
    for entry in proto.metadata_props:
        if entry.key == METADATA_KEY:
            return ModelMetadata.from_json(entry.value, str(path))
    raise ModelFileError(
        f"ONNX model {str(path)!r} has no {METADATA_KEY!r} metadata; export it with "
        "panoptic-ros export or add the JSON sidecar"
    )


def check_onnx_contract(path: Path) -> ModelMetadata:
    """Check names, element types and ranks of the model's input and outputs.

    Returns:
        The embedded metadata.

    Raises:
        ModelFileError: Naming the first mismatch.
    """
    import onnx

    metadata = read_onnx_metadata(path)
    proto = _load_proto(path)
    graph = proto.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if [i.name for i in inputs] != [INPUT_NAME]:
        raise ModelFileError(
            f"{path}: inputs {[i.name for i in inputs]} break the contract; expected ['image']"
        )
    image_type = inputs[0].type.tensor_type
    if image_type.elem_type != onnx.TensorProto.UINT8 or len(image_type.shape.dim) != 4:
        raise ModelFileError(f"{path}: input 'image' must be uint8 [N, H, W, 3]")
    outputs = {o.name: o.type.tensor_type for o in graph.output}
    float_types = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    int32 = (onnx.TensorProto.INT32,)
    if metadata.contract is ContractKind.FUSED:
        expected = {
            "semantic": (int32, 3),
            "instance": (int32, 3),
            "instance_table": (float_types, 3),
            "instance_count": (int32, 1),
        }
    else:
        expected = dict.fromkeys(HEAD_OUTPUTS, (float_types, 4))
    for name, (types, rank) in expected.items():
        if name not in outputs:
            raise ModelFileError(
                f"{path}: output {name!r} is missing (outputs: {sorted(outputs)}); the "
                f"{metadata.contract.value!r} contract needs {list(expected)}"
            )
        if outputs[name].elem_type not in types or len(outputs[name].shape.dim) != rank:
            raise ModelFileError(
                f"{path}: output {name!r} has the wrong type or rank for the "
                f"{metadata.contract.value!r} contract (see README, output contract)"
            )
    return metadata
