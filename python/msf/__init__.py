"""msf: object-centric decomposition with Multi-Scale Fusion models, on the msf Rust runtime.

    import msf, numpy as np
    from PIL import Image
    dec = msf.Decomposer("slate.onnx")                        # msf-export's ONNX file
    d = dec.decompose(np.asarray(Image.open("photo.jpg")))    # H×W×3 uint8, RGB
    print(d.masks.shape, d.slots.shape, d.areas)              # H×W slot ids, K×D slots

`Decomposer` loads a model once and may be shared by threads (the GIL is released while a frame
is decomposed); `Tracker` follows one video stream; `frames()` reads images, folders, videos and
cameras as `msf-run` does; `export()` turns an upstream checkpoint into the ONNX file. Library
errors raise `MsfError` (a `RuntimeError`), bad arrays `ValueError`/`TypeError`.
"""

from ._msf import (
    FEATURES,
    Decomposer,
    Decomposition,
    Frame,
    Frames,
    MsfError,
    Tracker,
    __version__,
    export,
    frames,
    sequence_names,
)

__all__ = [
    "FEATURES",
    "Decomposer",
    "Decomposition",
    "Frame",
    "Frames",
    "MsfError",
    "Tracker",
    "__version__",
    "export",
    "frames",
    "sequence_names",
]
