"""The Python path's decoded pixels, for `runtime/tests/decode_parity.rs` (independent of msf).

OpenCV (opencv-python-headless, with the libjpeg-turbo and FFmpeg it bundles) is the reference:
upstream and most PyTorch data loaders read images with ``cv2.imread`` and videos with
``cv2.VideoCapture``. Every output is an RGB uint8 ``.npy`` (BGR from OpenCV, reversed)::

    python tests/python/cv2_decode.py make-jpegs DIR          # the generated JPEG variants (Pillow)
    python tests/python/cv2_decode.py images OUT FILE...      # OUT/<i>.npy = cv2.imread(FILE[i]) (H×W×3)
    python tests/python/cv2_decode.py video OUT.npy FILE      # every frame of cv2.VideoCapture (N×H×W×3)

``cv2.imread``'s default (IMREAD_COLOR) applies the EXIF orientation, as msf does.
"""

import os
import sys

import cv2
import numpy as np
from PIL import Image


def photo_like(w: int, h: int, seed: int) -> np.ndarray:
    """Smooth gradients, sharp edges and noise: every DCT band and chroma detail is exercised."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(x / 17.0) * np.cos(y / 23.0)
    g = 255 * x / max(w - 1, 1)
    b = np.where((x // 24 + y // 24) % 2 == 0, 40.0, 220.0)
    img = np.stack([r, g, b], axis=-1) + rng.normal(0, 12, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_jpegs(d: str) -> None:
    os.makedirs(d, exist_ok=True)
    odd = Image.fromarray(photo_like(333, 217, 1))
    even = Image.fromarray(photo_like(320, 240, 2))
    for name, img, kw in [
        ("s444.jpg", odd, dict(quality=92, subsampling="4:4:4")),
        ("s422.jpg", odd, dict(quality=90, subsampling="4:2:2")),
        ("s420.jpg", odd, dict(quality=85, subsampling="4:2:0")),
        ("s420_even.jpg", even, dict(quality=75, subsampling="4:2:0")),
        ("progressive.jpg", odd, dict(quality=88, subsampling="4:2:0", progressive=True)),
        ("progressive444.jpg", even, dict(quality=95, subsampling="4:4:4", progressive=True)),
        ("optimized_q50.jpg", odd, dict(quality=50, optimize=True)),
        ("tiny.jpg", Image.fromarray(photo_like(7, 5, 3)), dict(quality=90)),
        ("grey.jpg", odd.convert("L"), dict(quality=90)),
        ("grey_progressive.jpg", even.convert("L"), dict(quality=80, progressive=True)),
    ]:
        img.save(os.path.join(d, name), "JPEG", **kw)
    # EXIF orientation 6 (rotate 90° clockwise to display): cv2.imread and msf both turn it upright.
    exif = Image.Exif()
    exif[0x0112] = 6
    odd.save(os.path.join(d, "exif_rot6.jpg"), "JPEG", quality=90, exif=exif.tobytes())
    print(f"cv2_decode: JPEG variants in {d}")


def images(out: str, files: list) -> None:
    os.makedirs(out, exist_ok=True)
    for i, f in enumerate(files):
        bgr = cv2.imread(f, cv2.IMREAD_COLOR)
        if bgr is None:
            raise SystemExit(f"cv2_decode: cv2.imread cannot read {f}")
        np.save(os.path.join(out, f"{i}.npy"), np.ascontiguousarray(bgr[:, :, ::-1]))
    print(f"cv2_decode: {len(files)} images decoded with OpenCV {cv2.__version__}")


def video(out: str, path: str) -> None:
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    if not cap.isOpened():
        raise SystemExit(f"cv2_decode: cv2.VideoCapture cannot open {path}")
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(bgr[:, :, ::-1])
    if not frames:
        raise SystemExit(f"cv2_decode: no frame from {path}")
    np.save(out, np.ascontiguousarray(np.stack(frames)))
    print(f"cv2_decode: {len(frames)} frames of {path} decoded with OpenCV {cv2.__version__}")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "make-jpegs":
        make_jpegs(sys.argv[2])
    elif cmd == "images":
        images(sys.argv[2], sys.argv[3:])
    elif cmd == "video":
        video(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(f"cv2_decode: unknown command {cmd!r}")
