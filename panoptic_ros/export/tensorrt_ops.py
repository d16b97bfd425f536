"""Which ONNX operators TensorRT's ONNX parser (TensorRT 10.x) can build.

The set follows onnx-tensorrt's operator support matrix (``docs/operators.md``) for
TensorRT 10: operators marked supported there, including Q/DQ for explicit INT8. It is a
static list, checked against every model we export and quantize, so an unsupported operator
shows up at export time on any machine, not at engine build time on the vehicle. A model
that passes may still hit a per-operator restriction (a dynamic TopK K, a non-initialiser
weight): the engine build reports those.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Final

__all__ = ["TENSORRT_ONNX_OPS", "unsupported_tensorrt_ops"]

_SUPPORTED = """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool
    BatchNormalization Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv
    ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal
    Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gelu Gemm
    GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample
    GroupNormalization GRU HardSigmoid HardSwish Hardmax Identity If ImageScaler
    InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log
    LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean Min Mish Mod Mul
    Neg NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu
    QuantizeLinear RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range
    Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin
    ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign
    Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign
    Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum
    Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
"""
TENSORRT_ONNX_OPS: Final = frozenset(_SUPPORTED.split())


def unsupported_tensorrt_ops(model_path: Path) -> dict[str, int]:
    """Operators of the model (main graph and subgraphs) TensorRT 10 cannot parse, with counts."""
    import onnx

    proto = onnx.load(str(model_path), load_external_data=False)
    counts: Counter[str] = Counter()

    def visit(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            if node.domain not in ("", "ai.onnx"):
                counts[f"{node.domain}::{node.op_type}"] += 1
            elif node.op_type not in TENSORRT_ONNX_OPS:
                counts[node.op_type] += 1
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    visit(attribute.g)

    visit(proto.graph)
    return dict(counts)
