#!/usr/bin/env bash
# One GPU session: CUDA tests and the bench matrix, reports into $OUT (default ./gpu_out).
# Used with the project's lent H100 (no TensorRT there; PyTorch CUDA and ONNX Runtime CPU).
#   bash benchmarks/gpu_session.sh [MODEL.safetensors]
# Without a model a random-weight EfficientNet-Lite0 network of the default architecture is
# timed (weights do not change the speed). PYTHONPATH picks up .devdeps (rosbags for cp312)
# when the machine lacks it.
set -uo pipefail
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/.devdeps:$PWD${PYTHONPATH:+:$PYTHONPATH}"
MODEL=${1:-}
if [[ -z "$MODEL" ]]; then
  MODEL=/tmp/panoptic_bench/lite0_random.safetensors
  python3 - "$MODEL" <<'PY'
import sys, torch
from pathlib import Path
from panoptic_ros.contract import ModelMetadata
from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.modeling.checkpoint import save_checkpoint
from panoptic_ros.modeling.network import build_network
torch.manual_seed(0)
net = build_network(num_classes=19)
path = Path(sys.argv[1]); path.parent.mkdir(parents=True, exist_ok=True)
save_checkpoint(path, net, metadata=ModelMetadata(labels=CITYSCAPES.with_drivable(["road"]), input_hw=(512, 1024)))
print("random checkpoint", path)
PY
fi
{
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  python3 -c "import torch, onnxruntime, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'ort', onnxruntime.__version__, 'numpy', numpy.__version__)"
} | tee "$OUT/environment.txt"

python3 -m pytest -q -o addopts="" -p no:cacheprovider test/test_fusion_torch.py test/test_device_ops.py 2>&1 | tail -4 | tee "$OUT/tests.txt"
if [[ -n "${1:-}" && "${ACCURACY:-1}" == "1" ]]; then
  python3 benchmarks/gpu_accuracy.py "$MODEL" 32 2>&1 | tail -1 | tee "$OUT/accuracy.txt"
fi

bench() {  # name, input size, extra args...
  local name=$1 size=$2; shift 2
  python3 -m panoptic_ros bench --input-size "$size" --frames 60 --warmup 15 -q \
    --json "$OUT/$name-$size.json" "$@" > "$OUT/$name-$size.txt" 2>&1 || echo "FAILED $name $size" | tee -a "$OUT/failures.txt"
  tail -3 "$OUT/$name-$size.txt"
}
TORCH=(--set backend.name=torch --set backend.device=cuda --set "model.model_file_path=$MODEL")
# The default network size (the model's own, 256x512) fed by full-resolution cameras.
for size in 1024x2048 540x960; do
  bench default-fp16-graph "$size" "${TORCH[@]}" --network-size model --set backend.precision=fp16 --set backend.cuda_graph=true
  bench default-fp32 "$size" "${TORCH[@]}" --network-size model --set backend.precision=fp32
  bench default-fp16-hostfusion "$size" "${TORCH[@]}" --network-size model --set backend.precision=fp16 --set backend.cuda_graph=true --set backend.gpu_fusion=false
done
if [[ "${QUICK:-0}" == "1" ]]; then SIZES=""; else SIZES="512x1024 1024x2048"; fi
for size in $SIZES; do
  bench torch-fp32 "$size" "${TORCH[@]}" --set backend.precision=fp32
  bench torch-fp16 "$size" "${TORCH[@]}" --set backend.precision=fp16
  bench torch-fp16-graph "$size" "${TORCH[@]}" --set backend.precision=fp16 --set backend.cuda_graph=true
  bench torch-fp16-hostfusion "$size" "${TORCH[@]}" --set backend.precision=fp16 --set backend.gpu_fusion=false
  bench torch-fp16-jpeg "$size" "${TORCH[@]}" --set backend.precision=fp16 --encoding jpeg
done
# ONNX Runtime on the host CPU for comparison (this ORT build has no CUDA provider).
ONNX=${ONNX_MODEL:-models/panoptic_lite0_synthetic.onnx}
for size in $SIZES; do
  bench ort-cpu "$size" --set backend.name=onnxruntime --set "model.model_file_path=$ONNX" --frames 10 --warmup 2
done
# The matrix: every backend that starts here (TensorRT where it imports) on the FP32, FP16
# and INT8 models from quantize, network at camera size and at the model's own size.
MATRIX_Q=/tmp/panoptic_bench/q
python3 -m panoptic_ros quantize "$ONNX" --calibration samples/synthetic_street --frames 16 \
  -o "$MATRIX_Q" --overwrite -q > "$OUT/quantize.txt" 2>&1 || echo "FAILED quantize" | tee -a "$OUT/failures.txt"
for net in input model; do
  python3 -m panoptic_ros bench --matrix --model "$ONNX" --variants "$MATRIX_Q" --network-size "$net" \
    --frames 30 --warmup 5 -q --json "$OUT/matrix-$net.json" > "$OUT/matrix-$net.txt" 2>&1 \
    || echo "FAILED matrix $net" | tee -a "$OUT/failures.txt"
  tail -12 "$OUT/matrix-$net.txt"
done
# One combined report (the device tool returns a limited number of files).
python3 - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
runs = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json")) if p.name != "bench_all.json"}
texts = {p.stem: p.read_text() for p in sorted(out.glob("*.txt"))}
(out / "bench_all.json").write_text(json.dumps({"runs": runs, "logs": texts}, indent=1))
for p in list(out.glob("*-*.json")) + list(out.glob("*-*.txt")):
    p.unlink()
for name, run in runs.items():
    if "stages" not in run:  # a matrix: its table is in the logs
        continue
    s = run["stages"]
    print(f"{name:32s} fps {run['fps']:7.1f}  total p50 {run['total']['p50_ms']:6.1f}  p99 {run['total']['p99_ms']:6.1f}  "
          f"inf {s['inference']['p50_ms']:6.2f}  fus {s['fusion']['p50_ms']:5.2f}  pre {s['preprocess']['p50_ms']:5.2f}  "
          f"dec {s['decode']['p50_ms']:5.2f}  msg {s['messages']['p50_ms']:6.2f}  outside {100*run['outside_network_share']:4.1f}%")
PY
ls "$OUT"
