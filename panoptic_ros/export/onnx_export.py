"""PanopticNet -> ONNX under the output contract, with the model metadata embedded.

Input ``image`` uint8 [N, H, W, 3] RGB (N dynamic; H, W dynamic unless ``dynamic=False``);
outputs ``semantic_logits``, ``center_heatmap``, ``offsets`` at stride 4. The metadata JSON
goes into the graph's ``metadata_props`` under ``panoptic_ros`` and into a ``.json`` sidecar.
The file is written to a temporary name and renamed, so a failed export leaves nothing.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
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
from panoptic_ros.errors import ModelFileError

__all__ = ["check_onnx_contract", "export_onnx", "read_onnx_metadata"]

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
        proto = onnx.load(str(temporary))
        stored = {
            **metadata.to_dict(),
            "input_hw": list(input_hw),
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


def read_onnx_metadata(path: Path) -> ModelMetadata:
    """Read the metadata embedded in an ONNX file (no external data loaded).

    Raises:
        ModelFileError: Unreadable file or missing/invalid metadata.
    """
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except (OSError, onnx.onnx_cpp2py_export.checker.ValidationError, Exception) as err:
        raise ModelFileError(f"cannot read ONNX model {str(path)!r}: {err}") from err
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
    proto = onnx.load(str(path), load_external_data=False)
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
