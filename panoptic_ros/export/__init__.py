"""Model files: ONNX export and contract checks, quantisation, fused graphs, TensorRT engines.

Only the ONNX export's entry points are re-exported here; its heavy imports (torch, onnx)
happen inside the functions, so importing this package stays cheap.
"""

from __future__ import annotations

from panoptic_ros.export.onnx_export import check_onnx_contract, export_onnx, read_onnx_metadata

__all__ = ["check_onnx_contract", "export_onnx", "read_onnx_metadata"]
