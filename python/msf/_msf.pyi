"""Types of the msf extension module (Rust, pyo3). Import from `msf`, not from `msf._msf`."""

from __future__ import annotations

import os
from typing import Iterator, Literal, Optional, Sequence, TypedDict, Union

import numpy as np
import numpy.typing as npt

__version__: str
#: The optional parts of this build: "ort" (backend="ort"), "video" (msf.frames on videos and
#: network streams), "camera" (msf.frames("/dev/video0")).
FEATURES: list[str]

StrPath = Union[str, "os.PathLike[str]"]
#: An H×W×3 (RGB, or BGR with bgr=True), H×W×4 (RGBA/BGRA, alpha ignored), H×W×1 or H×W (grey)
#: uint8 array; any strides (packed pixels are read in place, anything else is copied once).
Image = npt.NDArray[np.uint8]
Fit = Literal["crop", "stretch", "pad", "tiles"]

class MsfError(RuntimeError):
    """An error of the MSF runtime or exporter: the model (missing, not ONNX, not an MSF graph),
    an input (unreadable file, unsupported source), inference, writing. The message is the
    library's, with its causes."""

class RleDict(TypedDict):
    size: list[int]
    counts: str

class ViewDict(TypedDict):
    frame: list[int]
    input: list[int]
    size: int
    tiled: bool

class ExportReport(TypedDict):
    output: os.PathLike[str]
    data_file: Optional[os.PathLike[str]]
    num_slots: int
    slot_dim: int
    inference_params: int
    bytes: int
    unexpected_keys: list[str]
    seconds: float

class Decomposition:
    """One frame's objects. Every property returns a new numpy array."""

    @property
    def masks(self) -> npt.NDArray[np.uint8]:
        """H×W: the slot id of every frame pixel; 255 where no model view covers the frame
        (outside the centre crop of fit="crop"). What msf-run writes to masks/<name>.png."""
    @property
    def view_mask(self) -> npt.NDArray[np.uint8]:
        """M×M: the model's own mask of its (first) view, before it is mapped to the frame."""
    @property
    def slots(self) -> npt.NDArray[np.float32]:
        """K×D slot vectors."""
    @property
    def attention(self) -> npt.NDArray[np.float32]:
        """K×G×G: the last slot-attention iteration's softmax over slots, per grid cell."""
    @property
    def boxes(self) -> npt.NDArray[np.int64]:
        """K×4 `[x, y, width, height]` of each slot's pixels in `masks`; zeros for an empty slot."""
    @property
    def areas(self) -> npt.NDArray[np.int64]:
        """K: pixels of `masks` each slot has."""
    @property
    def num_slots(self) -> int:
        """K (with fit="tiles": the merged count, which may exceed the model's K)."""
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def covers_frame(self) -> bool:
        """Whether every frame pixel has a slot (no 255 in `masks`)."""
    @property
    def view(self) -> ViewDict:
        """Where the model's view lies in the frame and in its S×S input."""
    def coco_rle(self) -> list[RleDict]:
        """COCO compressed RLE of each slot's mask, as decomposition.json holds them
        (`pycocotools.mask.decode` reads them as they are)."""
    def save_mask(self, path: StrPath, *, davis: bool = False) -> None:
        """Write `masks` as msf-run does: a palette PNG of slot ids, or with davis=True the
        `--layout davis` form (slot id + 1, 0 = none). Atomic; the folder must exist."""
    def save_slots(self, path: StrPath) -> None:
        """Write `slots` as a K×D float32 .npy (msf-run's slots/<name>.npy)."""
    def save_attention(self, path: StrPath) -> None:
        """Write `attention` as a K×G×G float32 .npy (msf-run --save-attn)."""

class Decomposer:
    """A loaded model. Share one between threads: the GIL is released while frames are decomposed.

        dec = msf.Decomposer("slate.onnx")
        d = dec.decompose(rgb)            # H×W×3 uint8
        d.masks, d.slots, d.areas
    """

    def __init__(
        self,
        model: Union[StrPath, bytes],
        backend: Literal["tract", "ort", "onnxruntime"] = "tract",
        threads: Optional[int] = None,
        fit: Optional[Fit] = None,
        concurrency: int = 1,
        provider: Literal["cpu", "cuda", "tensorrt"] = "cpu",
        allow_fallback: bool = False,
    ) -> None:
        """Load an ONNX model written by msf-export / msf.export (a path, or the file's bytes).

        backend: "tract" (pure Rust, the default) or "ort" (onnxruntime, loaded from
        ORT_DYLIB_PATH; builds with the `ort` feature). threads: kernel threads per call (None: the
        backend's default). fit: how frames that are not square go into the model's square input,
        None = the library's default, "stretch" (see msf-run --fit). concurrency: how many threads
        will call at once (onnxruntime keeps that many sessions). provider/allow_fallback: the
        onnxruntime execution provider, and whether to fall back to the CPU.
        Raises MsfError for a missing or unusable model, ValueError for an unknown option."""
    def decompose(self, image: Image, *, bgr: bool = False) -> Decomposition:
        """Decompose one frame. Raises ValueError/TypeError for an array that is not an image."""
    def decompose_batch(self, images: Sequence[Image], *, bgr: bool = False) -> list[Decomposition]:
        """Decompose several frames (of any sizes) in one inference call."""
    @property
    def num_slots(self) -> int: ...
    @property
    def slot_dim(self) -> int: ...
    @property
    def grid(self) -> int: ...
    @property
    def mask_size(self) -> int: ...
    @property
    def slots_input(self) -> bool:
        """Whether the model has the slots_init input (a Tracker then carries slots)."""
    @property
    def backend(self) -> str:
        """tract or onnxruntime."""
    @property
    def provider(self) -> str: ...
    @property
    def fit(self) -> str: ...
    @property
    def default_slots(self) -> Optional[npt.NDArray[np.float32]]:
        """The learned initial slots (K×D), when the model has the slots_init input."""

class Tracker:
    """One video stream: slots carried from frame to frame (temporal mode), slot ids kept by
    Hungarian matching, as msf-run --temporal."""

    def __init__(self, decomposer: Decomposer, *, temporal: Optional[bool] = None, matching: bool = True,
                 iou_weight: float = 0.5) -> None:
        """temporal=None: carry slots when the model has the slots_init input. Raises MsfError for
        temporal=True without that input, fit="tiles", or iou_weight outside [0, 1]."""
    def step(self, image: Image, *, bgr: bool = False) -> Decomposition:
        """Decompose the stream's next frame; slot k is the same object as in the previous frame."""
    def reset(self) -> None:
        """Forget the stream (a new video, a scene cut)."""
    @property
    def frames(self) -> int: ...
    @property
    def temporal(self) -> bool: ...
    @property
    def last_order(self) -> list[int]:
        """Output slot i of the last frame is the model's slot last_order[i]."""

class Frame:
    """One decoded frame."""

    @property
    def image(self) -> npt.NDArray[np.uint8]:
        """H×W×3 RGB."""
    @property
    def name(self) -> str:
        """The image's file stem, or frame_000123 for video and camera frames."""
    @property
    def index(self) -> int:
        """Position in the source, counting skipped frames."""
    @property
    def pts(self) -> Optional[float]:
        """Presentation time in seconds (video, camera)."""

class Frames(Iterator[Frame]):
    """The frames of a source, decoded one at a time (the GIL released meanwhile)."""

    def __iter__(self) -> Frames: ...
    def __next__(self) -> Frame: ...
    @property
    def len_hint(self) -> Optional[int]:
        """Frames the source will yield, when known up front."""

def frames(source: StrPath, *, every: int = 1, start: int = 0, max_frames: Optional[int] = None) -> Frames:
    """Read an image file, a folder or glob of images (natural order), a video file or stream
    (rtsp://, http(s)://, udp://…; `video` feature) or a camera /dev/videoN (`camera` feature), as
    msf-run reads its inputs. Raises MsfError for a missing or unsupported source; a frame that
    cannot be decoded raises MsfError when it is reached."""

def sequence_names(inputs: Sequence[StrPath]) -> list[str]:
    """The sequence name msf-run --layout davis gives each input's stream (a folder's name, a
    video's stem; consecutive image files are one stream), before repeats are made unique."""

def export(
    ckpt: StrPath,
    onnx: StrPath,
    *,
    slots_in: bool = True,
    resize_in_graph: bool = True,
    precision: Literal["fp32", "int8"] = "fp32",
    opset: Optional[int] = None,
    external_data: bool = False,
) -> ExportReport:
    """An upstream checkpoint (PyTorch zip or safetensors; no pickle code runs) → the ONNX
    decomposition graph, as msf-export. Raises MsfError for a checkpoint that is not an MSF model."""
