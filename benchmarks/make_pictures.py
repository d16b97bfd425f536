"""Draw the default model's overlays of real frames into small JPEGs for the docs.

Each picture is the camera frame (left) beside the panoptic overlay with the instance boxes
(right), at most ``--width`` pixels wide. The frames are named on the command line (real
recordings are not part of the repository); the README and docs/MODEL_CARD.md show the
results from docs/images/:

    python benchmarks/make_pictures.py -o docs/images \
        dashcam=../shared/data/bags/dashcam_compressed_mcap@40 \
        nuscenes_front=../shared/data/images/nuscenes_CAM_FRONT.jpg \
        kitti=../shared/data/images/kitti_000008_1242x375.png

``NAME=BAG@N`` takes the N-th image of a rosbag2; ``NAME=FILE`` reads an image file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from panoptic_ros.config import config_from_flat
from panoptic_ros.pipeline import PanopticPipeline


def _frame(spec: str) -> npt.NDArray[np.uint8]:
    """Read ``FILE`` or the N-th image of ``BAG@N`` as [H, W, 3] RGB."""
    if "@" in spec:
        from panoptic_ros.bags import choose_image_topic, iter_messages, open_reader
        from panoptic_ros.codec import decode_image

        path, index = spec.rsplit("@", 1)
        with open_reader(Path(path)) as reader:
            topic = choose_image_topic(reader)
            for number, (_, message) in enumerate(iter_messages(reader, topic)):
                if number == int(index):
                    return np.ascontiguousarray(decode_image(message))
        raise SystemExit(f"{path} has fewer than {int(index) + 1} images")
    image = cv2.imread(spec, cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read {spec}")
    return np.ascontiguousarray(image[:, :, ::-1])


def main() -> int:
    """Write one side-by-side JPEG per NAME=SOURCE argument."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("frames", nargs="+", help="NAME=FILE or NAME=BAG@N")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--model", type=Path, help="default: the bundled default model")
    parser.add_argument("--width", type=int, default=1280, help="picture width in px")
    parser.add_argument("--quality", type=int, default=80, help="JPEG quality")
    args = parser.parse_args()
    flat: dict[str, object] = {"backend.name": "onnxruntime"}
    if args.model:
        flat["model.model_file_path"] = str(args.model)
    args.output.mkdir(parents=True, exist_ok=True)
    with PanopticPipeline.from_config(config_from_flat(flat)) as pipeline:
        for item in args.frames:
            name, source = item.split("=", 1)
            image = _frame(source)
            overlay_bgr = pipeline.render(image, pipeline.process(image))
            both = np.concatenate([image[:, :, ::-1], overlay_bgr], axis=1)
            scale = min(1.0, args.width / both.shape[1])
            size = (round(both.shape[1] * scale), round(both.shape[0] * scale))
            small = cv2.resize(both, size, interpolation=cv2.INTER_AREA)
            path = args.output / f"{name}.jpg"
            cv2.imwrite(str(path), small, [cv2.IMWRITE_JPEG_QUALITY, args.quality])
            print(f"{path}  {path.stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
