"""Read and write PyTorch zip checkpoints (``torch.save(state_dict)``) with only the stdlib and numpy.

This is test tooling, independent of the Rust code in this repository: it lets the test suite make
upstream-format checkpoints (full-size random models, odd storage layouts for reader tests) and read the
upstream fixtures without installing PyTorch.

The format, as written by torch >= 1.6 (default ``_use_new_zipfile_serialization=True``):

* a zip archive (entries stored, not compressed) whose entries all live under one folder ``<archive>/``
  (torch names it after the file's stem);
* ``<archive>/data.pkl``: a protocol-2 pickle of the state dict. Each tensor is pickled as
  ``torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, OrderedDict())``,
  and each storage as a *persistent id* ``('storage', torch.FloatStorage, '<key>', 'cpu', numel)``;
* ``<archive>/data/<key>``: the raw little-endian bytes of each storage (aligned to 64 bytes in the file);
* ``<archive>/version`` (``3``), ``<archive>/byteorder`` (``little``) and, since torch 2.x,
  ``.format_version``, ``.storage_alignment`` and ``.data/serialization_id``.

Reading uses a ``pickle.Unpickler`` subclass with ``persistent_load`` and a strict ``find_class`` (only the
few globals a state dict needs are accepted; anything else is refused, so a malicious pickle cannot run code).
Writing uses a ``pickle.Pickler`` subclass with ``persistent_id`` and small stand-in objects whose
``__reduce__`` makes the pickle contain exactly the opcodes torch emits, so that PyTorch (and any reader
written against PyTorch's files) loads the result. The zip container mimics torch's writer (miniz): stored
entries with data descriptors, 64-byte aligned payloads via ``FB`` padding extra fields, zip64 end records.

Command line (a self-check)::

    python torchfmt.py --self-check [FIXTURE_DIR]   # round-trips the fixture checkpoints
    python torchfmt.py --dump FILE.pth              # lists keys, dtypes, shapes, storage layout
"""

from __future__ import annotations

import collections
import hashlib
import io
import os
import pickle
import pickletools
import struct
import sys
import zipfile
import zlib
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Storage",
    "TensorRecord",
    "BFloat16",
    "View",
    "load",
    "load_records",
    "save",
    "float32_to_bfloat16_bits",
    "bfloat16_bits_to_float32",
]

# Storage class name (in module ``torch``) -> numpy dtype of its raw elements. bfloat16 is kept as its
# uint16 bit pattern; ``load`` widens it to float32 (exactly).
STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype("<u2"),
    "DoubleStorage": np.dtype("<f8"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}
# Storage kinds this module writes: dtype name used in the API -> (storage class name, raw numpy dtype).
WRITE_KINDS = {
    "float32": ("FloatStorage", np.dtype("<f4")),
    "float16": ("HalfStorage", np.dtype("<f2")),
    "bfloat16": ("BFloat16Storage", np.dtype("<u2")),
}
ALIGNMENT = 64


# ----------------------------------------------------------------------------------------------------------
# bfloat16 helpers
# ----------------------------------------------------------------------------------------------------------

def float32_to_bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """Round float32 values to bfloat16 (round to nearest, ties to even, like torch) and return the bits."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounding = ((bits >> 16) & 1) + 0x7FFF
    out = ((bits + rounding) >> 16).astype(np.uint16)
    nan = np.isnan(np.asarray(x, dtype=np.float32))
    out[nan] = 0x7FC0
    return out


def bfloat16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """Widen bfloat16 bit patterns (uint16) to float32; exact."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


# ----------------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------------

@dataclass
class Storage:
    """One storage record of a checkpoint: a flat array of raw elements.

    ``kind`` is the torch class name (``FloatStorage``, ...). For writing, several :class:`View` objects may
    refer to the same ``Storage`` instance: they then share one ``data/<key>`` record.
    """

    kind: str
    data: np.ndarray  # 1-D, raw element dtype (uint16 for bfloat16)
    key: str | None = None

    @staticmethod
    def of(array: np.ndarray, dtype: str = "float32") -> "Storage":
        """A storage holding ``array`` flattened, in ``dtype`` (float32, float16 or bfloat16)."""
        kind, raw = WRITE_KINDS[dtype]
        a = np.asarray(array)
        if dtype == "bfloat16" and a.dtype != np.uint16:
            flat = float32_to_bfloat16_bits(a.reshape(-1))
        else:
            flat = np.ascontiguousarray(a.reshape(-1), dtype=raw)
        return Storage(kind, flat)


@dataclass
class TensorRecord:
    """A tensor as stored: which storage, at which element offset, with which size and strides."""

    storage: Storage
    offset: int
    shape: tuple
    stride: tuple
    requires_grad: bool = False

    @property
    def dtype(self) -> str:
        return {
            "FloatStorage": "float32",
            "HalfStorage": "float16",
            "BFloat16Storage": "bfloat16",
        }.get(self.storage.kind, self.storage.kind)

    def raw(self) -> np.ndarray:
        """The tensor's elements in raw storage dtype, gathered through offset/strides into a C array."""
        base = self.storage.data
        shape = tuple(int(s) for s in self.shape)
        stride = tuple(int(s) for s in self.stride)
        if len(shape) != len(stride):
            raise ValueError(f"size {shape} and stride {stride} differ in rank")
        numel = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if numel == 0:
            return np.zeros(shape, dtype=base.dtype)
        if any(s < 0 for s in stride) or self.offset < 0:
            raise ValueError("negative offset or stride")
        last = self.offset + sum((n - 1) * s for n, s in zip(shape, stride))
        if last >= base.size:
            raise ValueError(
                f"tensor (offset {self.offset}, size {shape}, stride {stride}) reaches element {last} "
                f"of a storage of {base.size}"
            )
        view = np.lib.stride_tricks.as_strided(
            base[self.offset:],
            shape=shape,
            strides=tuple(s * base.itemsize for s in stride),
            writeable=False,
        )
        return np.array(view, order="C")  # a copy; keeps 0-d tensors 0-d

    def numpy(self) -> np.ndarray:
        """The tensor as a numpy array; bfloat16 is widened to float32."""
        r = self.raw()
        if self.storage.kind == "BFloat16Storage":
            return bfloat16_bits_to_float32(r)
        return r


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    if not isinstance(storage, Storage):
        raise pickle.UnpicklingError("_rebuild_tensor_v2 called without a storage")
    return TensorRecord(storage, int(storage_offset), tuple(size), tuple(stride), bool(requires_grad))


def _rebuild_parameter(data, requires_grad, backward_hooks, *rest):
    return data


class _StorageType:
    """What ``find_class('torch', 'FloatStorage')`` returns while reading: just the name."""

    def __init__(self, name: str):
        self.name = name


class _Reader(pickle.Unpickler):
    ALLOWED = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }

    def __init__(self, fh, zf: zipfile.ZipFile, prefix: str):
        super().__init__(fh)
        self._zf = zf
        self._prefix = prefix
        self._storages: dict[str, Storage] = {}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a state dict")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, stype, key, location, numel = pid
        if not isinstance(stype, _StorageType):
            raise pickle.UnpicklingError(f"unexpected storage type {stype!r}")
        key = str(key)
        if key not in self._storages:
            dtype = STORAGE_DTYPES[stype.name]
            raw = self._zf.read(f"{self._prefix}data/{key}")
            if len(raw) != int(numel) * dtype.itemsize:
                raise pickle.UnpicklingError(
                    f"storage {key}: {len(raw)} bytes, expected {numel} x {dtype.itemsize}"
                )
            self._storages[key] = Storage(stype.name, np.frombuffer(raw, dtype=dtype), key)
        return self._storages[key]


def _archive_prefix(zf: zipfile.ZipFile) -> str:
    pkls = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pkls) != 1:
        raise ValueError(f"expected exactly one <archive>/data.pkl, found {pkls}")
    prefix = pkls[0][: -len("data.pkl")]
    bo = prefix + "byteorder"
    if bo in zf.namelist() and zf.read(bo).strip() != b"little":
        raise ValueError("big-endian checkpoints are not supported")
    return prefix


def load_records(path) -> dict:
    """Load a checkpoint as ``name -> TensorRecord`` (storage layout preserved)."""
    with zipfile.ZipFile(path) as zf:
        prefix = _archive_prefix(zf)
        with zf.open(prefix + "data.pkl") as fh:
            obj = _Reader(io.BytesIO(fh.read()), zf, prefix).load()
    if not isinstance(obj, dict):
        raise ValueError(f"top-level object is a {type(obj).__name__}, not a state dict")
    for k, v in obj.items():
        if not isinstance(k, str) or not isinstance(v, TensorRecord):
            raise ValueError(f"entry {k!r} is not a tensor")
    return dict(obj)


def load(path) -> dict:
    """Load a checkpoint as ``name -> numpy array`` (C-contiguous copies; bfloat16 widened to float32)."""
    return {k: v.numpy() for k, v in load_records(path).items()}


# ----------------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------------

@dataclass
class View:
    """A tensor to write as a view into a (possibly shared) storage, with offset and strides in elements."""

    storage: Storage
    offset: int
    shape: tuple
    stride: tuple | None = None  # None: C-contiguous

    def __post_init__(self):
        self.shape = tuple(int(s) for s in self.shape)
        if self.stride is None:
            st, acc = [], 1
            for n in reversed(self.shape):
                st.append(acc)
                acc *= n
            self.stride = tuple(reversed(st))
        self.stride = tuple(int(s) for s in self.stride)


@dataclass
class BFloat16:
    """Marks an array to be written as a bfloat16 tensor (float values are rounded; uint16 taken as bits)."""

    array: np.ndarray


class _Global:
    """A stand-in for a torch global (function or class); the writer pickles it as ``GLOBAL module name``."""

    def __init__(self, module: str, qualname: str):
        self.__module__ = module
        self.__qualname__ = qualname
        self.__name__ = qualname

    def __repr__(self):
        return f"<stand-in {self.__module__}.{self.__qualname__}>"

    def __call__(self, *args, **kwargs):  # callable, as pickle requires of a reduce function
        raise TypeError(f"{self!r} is only a name to pickle")


# The globals a state dict pickle references; each stand-in is written as GLOBAL '<module> <name>'.
REBUILD_TENSOR_V2 = _Global("torch._utils", "_rebuild_tensor_v2")
STORAGE_CLASSES = {kind: _Global("torch", kind) for kind, _ in WRITE_KINDS.values()}

_STORAGE_TAG = "storage"  # one object, so the pickle memoizes it like torch does
_LOCATION = "cpu"


class _TensorOut:
    """Stand-in for a torch.Tensor: reduces to ``_rebuild_tensor_v2(storage, offset, size, stride, False, OD())``."""

    def __init__(self, storage: Storage, offset: int, shape: tuple, stride: tuple):
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride

    def __reduce__(self):
        return (
            REBUILD_TENSOR_V2,
            (self.storage, self.offset, self.shape, self.stride, False, collections.OrderedDict()),
        )


class _Writer(pickle._Pickler):  # the pure-Python pickler, so that stand-ins can be written as globals
    """Pickler that emits torch's opcodes. ``persistent_id`` turns storages into ``('storage', ...)`` tuples.

    Stand-ins (:class:`_Global`) are written as ``GLOBAL`` by their own dispatch entry: the stock
    ``save_global`` would import ``torch`` to check that the global exists, which this module avoids.
    """

    def __init__(self, fh):
        super().__init__(fh, protocol=2)
        self.keys: dict[int, str] = {}
        self.storages: list[Storage] = []

    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            key = self.keys.get(id(obj))
            if key is None:
                key = str(len(self.keys))
                self.keys[id(obj)] = key
                self.storages.append(obj)
            return (_STORAGE_TAG, STORAGE_CLASSES[obj.kind], key, _LOCATION, int(obj.data.size))
        return None

    def save_standin_global(self, obj):
        module, name = obj.__module__, obj.__qualname__
        self.write(pickle.GLOBAL + module.encode("utf-8") + b"\n" + name.encode("utf-8") + b"\n")
        self.memoize(obj)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[_Global] = save_standin_global


def _tensor_out(value) -> _TensorOut:
    if isinstance(value, View):
        if value.storage.kind not in STORAGE_CLASSES:
            raise ValueError(f"cannot write storage kind {value.storage.kind}")
        rec = TensorRecord(value.storage, value.offset, value.shape, value.stride)
        rec.raw()  # bounds check
        return _TensorOut(value.storage, value.offset, value.shape, value.stride)
    if isinstance(value, BFloat16):
        a = np.asarray(value.array)
        st = Storage.of(a, "bfloat16")
        return _tensor_out(View(st, 0, a.shape))
    if isinstance(value, TensorRecord):
        return _tensor_out(View(value.storage, value.offset, value.shape, value.stride))
    a = np.asarray(value)
    if a.dtype == np.float16:
        st = Storage.of(a, "float16")
    elif a.dtype in (np.float32, np.float64):
        st = Storage.of(a, "float32")
    else:
        raise ValueError(f"unsupported dtype {a.dtype}")
    return _tensor_out(View(st, 0, a.shape))


def dumps_state_dict(tensors: dict) -> tuple[bytes, list]:
    """Pickle a state dict the way torch does; returns (data.pkl bytes, storages in key order)."""
    out = {}
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise TypeError("keys must be strings")
        out[name] = _tensor_out(value)
    buf = io.BytesIO()
    w = _Writer(buf)
    w.dump(out)
    return buf.getvalue(), w.storages


class _TorchZipWriter:
    """A zip writer laid out like torch's (miniz-based) ``PyTorchFileWriter``."""

    def __init__(self, fh):
        self.fh = fh
        self.pos = 0
        self.entries = []  # (name bytes, crc, size, offset)

    def _write(self, b: bytes):
        self.fh.write(b)
        self.pos += len(b)

    def add(self, name: str, chunks):
        """Add a stored entry; ``chunks`` is bytes or an iterable of bytes-like objects."""
        if isinstance(chunks, (bytes, bytearray, memoryview)):
            chunks = [chunks]
        nb = name.encode("utf-8")
        offset = self.pos
        header_len = 30 + len(nb)
        pad = (-(offset + header_len + 4)) % ALIGNMENT  # 4 = 'FB' tag + length of the extra field
        extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
        self._write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 0, 0x0808, 0, 0, 0, 0, 0, 0, len(nb), len(extra)))
        self._write(nb + extra)
        assert self.pos % ALIGNMENT == 0
        crc, size = 0, 0
        for c in chunks:
            c = memoryview(c).cast("B")
            crc = zlib.crc32(c, crc)
            size += len(c)
            self._write(c)
        if size >= 0xFFFFFFFF:
            raise ValueError("entries of 4 GiB or more are not supported by this writer")
        self._write(struct.pack("<IIII", 0x08074B50, crc, size, size))
        self.entries.append((nb, crc, size, offset))

    def close(self):
        cd_start = self.pos
        for nb, crc, size, offset in self.entries:
            if offset >= 0xFFFFFFFF:
                raise ValueError("archives of 4 GiB or more are not supported by this writer")
            self._write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0, 0, 0x0808, 0, 0, 0, crc, size, size,
                                    len(nb), 0, 0, 0, 0, 0, offset))
            self._write(nb)
        cd_size = self.pos - cd_start
        n = len(self.entries)
        z64 = self.pos
        self._write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 0x031E, 0x2D, 0, 0, n, n, cd_size, cd_start))
        self._write(struct.pack("<IIQI", 0x07064B50, 0, z64, 1))
        self._write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, min(n, 0xFFFF), min(n, 0xFFFF),
                                min(cd_size, 0xFFFFFFFF), min(cd_start, 0xFFFFFFFF), 0))


def save(path, tensors: dict, archive: str | None = None, serialization_id: str | None = None) -> None:
    """Write ``tensors`` (name -> numpy array | View | BFloat16 | TensorRecord) like ``torch.save``.

    float32/float64 arrays become FloatStorage, float16 HalfStorage, ``BFloat16(...)`` BFloat16Storage. Views
    sharing one :class:`Storage` object share one storage record. ``archive`` defaults to the file's stem,
    as torch does. ``serialization_id`` (40 digits; torch's is random) defaults to one derived from the pickle.
    """
    if archive is None:
        archive = os.path.splitext(os.path.basename(os.fspath(path)))[0] or "archive"
    pkl, storages = dumps_state_dict(tensors)
    tmp = os.fspath(path) + ".tmp"
    with open(tmp, "wb") as fh:
        zw = _TorchZipWriter(fh)
        zw.add(f"{archive}/data.pkl", pkl)
        zw.add(f"{archive}/.format_version", b"1")
        zw.add(f"{archive}/.storage_alignment", b"64")
        zw.add(f"{archive}/byteorder", b"little")
        for key, st in enumerate(storages):
            zw.add(f"{archive}/data/{key}", [np.ascontiguousarray(st.data).view(np.uint8)])
        zw.add(f"{archive}/version", b"3\n")
        if serialization_id is None:
            sid = int.from_bytes(hashlib.sha256(pkl).digest()[:16], "little")
            serialization_id = str(sid).rjust(40, "0")[-40:]
        zw.add(f"{archive}/.data/serialization_id", serialization_id.encode())
        zw.close()
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------------------
# Self-checks
# ----------------------------------------------------------------------------------------------------------

def _opcodes(pkl: bytes) -> list:
    """(opcode name, argument) pairs, memo indices dropped: what must match torch's pickle."""
    return [(op.name, arg) for op, arg, _ in pickletools.genops(pkl) if op.name not in ("BINPUT", "LONG_BINPUT")]


def _self_check(fixture_dir: str) -> int:
    import tempfile

    failures = 0
    names = ["tiny-slate-msf.pth", "tiny-slotdiffusion-msf.pth"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            src = os.path.join(fixture_dir, name)
            recs = load_records(src)
            arrays = {k: r.numpy() for k, r in recs.items()}
            dst = os.path.join(tmp, name)
            with zipfile.ZipFile(src) as za:
                sid_name = [n for n in za.namelist() if n.endswith("/.data/serialization_id")]
                sid = za.read(sid_name[0]).decode() if sid_name else None
            save(dst, arrays, archive=os.path.splitext(name)[0], serialization_id=sid)
            back = load(dst)
            same = list(back) == list(arrays) and all(
                back[k].dtype == arrays[k].dtype and back[k].shape == arrays[k].shape
                and np.array_equal(back[k], arrays[k]) for k in arrays
            )
            with zipfile.ZipFile(src) as za, zipfile.ZipFile(dst) as zb:
                pa = za.read(_archive_prefix(za) + "data.pkl")
                pb = zb.read(_archive_prefix(zb) + "data.pkl")
                names_a = [i.filename for i in za.infolist()]
                names_b = [i.filename for i in zb.infolist()]
            ident = pa == pb
            ops = _opcodes(pa) == _opcodes(pb)
            with open(src, "rb") as fa, open(dst, "rb") as fb:
                whole = fa.read() == fb.read()
            print(f"{name}: {len(arrays)} tensors round-trip {'identical' if same else 'DIFFER'}; "
                  f"data.pkl {'byte-identical' if ident else ('same opcodes' if ops else 'OPCODES DIFFER')} "
                  f"to torch's; zip entries {'same' if names_a == names_b else 'differ'}; "
                  f"whole file {'byte-identical' if whole else 'differs'}")
            failures += (not same) + (not ops) + (names_a != names_b)

        # Shared storage, offsets, strides, float16 and bfloat16.
        base = np.arange(60, dtype=np.float32) / 7
        st = Storage.of(base)
        half = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
        tensors = {
            "m.a": View(st, 0, (6, 10)),
            "m.t": View(st, 0, (10, 6), (1, 10)),  # transpose of m.a
            "m.s": View(st, 13, (3, 4), (10, 2)),  # offset and gaps
            "m.h": half.astype(np.float16),
            "m.b": BFloat16(half),
            "m.scalar": np.array(2.5, dtype=np.float32),
        }
        p = os.path.join(tmp, "views.pth")
        save(p, tensors)
        recs = load_records(p)
        got = {k: r.numpy() for k, r in recs.items()}
        a = base.reshape(6, 10)
        ok = (
            np.array_equal(got["m.a"], a)
            and np.array_equal(got["m.t"], a.T)
            and np.array_equal(got["m.s"], base[13 + 10 * np.arange(3)[:, None] + 2 * np.arange(4)])
            and got["m.h"].dtype == np.float16 and np.array_equal(got["m.h"], half.astype(np.float16))
            and recs["m.b"].dtype == "bfloat16" and np.max(np.abs(got["m.b"] - half)) <= 2 ** -7 * 3
            and got["m.scalar"].shape == () and float(got["m.scalar"]) == 2.5
            and recs["m.a"].storage is recs["m.t"].storage is recs["m.s"].storage
            and len({id(r.storage) for r in recs.values()}) == 4
        )
        print(f"views/float16/bfloat16/shared storage: {'ok' if ok else 'FAILED'}")
        failures += not ok
    return failures


def _dump(path: str) -> None:
    for k, r in load_records(path).items():
        print(f"{k}\t{list(r.shape)}\t{r.dtype}\tstorage {r.storage.key} off {r.offset} stride {list(r.stride)}")


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--self-check":
        here = os.path.dirname(os.path.abspath(__file__))
        default = os.path.join(here, "..", "..", "..", "shared", "fixtures")
        d = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("MSF_FIXTURES", default)
        sys.exit(1 if _self_check(d) else 0)
    elif len(sys.argv) == 3 and sys.argv[1] == "--dump":
        _dump(sys.argv[2])
    else:
        print(__doc__)
        sys.exit(2)
