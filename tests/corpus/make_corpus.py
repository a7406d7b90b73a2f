"""Write the bad-input corpus (and the odd-but-valid inputs that must work) into a folder.

Every file named in ``cases.tsv`` is made here, deterministically, from the upstream fixtures and a real
``msf-export`` output, so that the corpus stays small in git and each case says how it was made::

    python tests/corpus/make_corpus.py --fixtures ../shared/fixtures --onnx tiny.onnx OUT_DIR

Needs numpy, onnx and Pillow (tests/python/requirements.txt); the checkpoints are written with
``tests/python/torchfmt.py`` (no PyTorch). ``--ffmpeg PATH`` also writes the video cases.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import torchfmt  # noqa: E402

RNG = np.random.default_rng(20251126)


def write(out: str, name: str, data: bytes) -> None:
    with open(os.path.join(out, name), "wb") as fh:
        fh.write(data)


def random_bytes(n: int) -> bytes:
    return RNG.integers(0, 256, n, dtype=np.uint8).tobytes()


# ------------------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------------------


def rezip(src: str, dst: str, edit) -> None:
    """Copy the torch zip ``src`` to ``dst``; ``edit(name, data)`` returns new bytes or None to drop."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = edit(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info.filename, data)


def pickle_global(module: str, name: str) -> bytes:
    """A protocol-2 pickle that calls ``module.name('echo pwned')``: what a malicious checkpoint holds."""
    return b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"X\x0a\x00\x00\x00echo pwned\x85R."


def pickle_nested(depth: int) -> bytes:
    """``[[[…]]]`` nested ``depth`` deep (EMPTY_LIST, then APPEND to close each level)."""
    return b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."


def checkpoints(fx: str, out: str) -> None:
    src = os.path.join(fx, "tiny-slate-msf.pth")
    raw = open(src, "rb").read()
    shutil.copyfile(src, os.path.join(out, "ckpt-good.pth"))  # for the output-side cases
    write(out, "ckpt-empty.pth", b"")
    write(out, "ckpt-trunc-100.pth", raw[:100])
    write(out, "ckpt-trunc-half.pth", raw[: len(raw) // 2])
    write(out, "ckpt-trunc-tail.pth", raw[:-22])  # no end-of-central-directory record
    write(out, "ckpt-random.pth", random_bytes(65536))
    write(out, "ckpt-text.pth", b"this is a README, not a checkpoint\n")
    write(out, "ckpt-html.pth", b"<!DOCTYPE html><html><body>404 Not Found</body></html>\n")
    # A zip that is not a torch archive at all.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("notes.txt", "hello")
    write(out, "ckpt-other-zip.pth", buf.getvalue())

    prefix = "tiny-slate-msf/"
    pkl = prefix + "data.pkl"
    rezip(src, os.path.join(out, "ckpt-no-data-pkl.pth"), lambda n, d: None if n == pkl else d)
    rezip(src, os.path.join(out, "ckpt-no-storage.pth"), lambda n, d: None if n == prefix + "data/1" else d)
    rezip(src, os.path.join(out, "ckpt-short-storage.pth"), lambda n, d: d[:8] if n == prefix + "data/1" else d)
    rezip(src, os.path.join(out, "ckpt-big-endian.pth"), lambda n, d: b"big" if n == prefix + "byteorder" else d)
    # data.pkl cut mid-stream, and data.pkl with garbage in the middle.
    rezip(src, os.path.join(out, "ckpt-pkl-trunc.pth"), lambda n, d: d[: len(d) // 3] if n == pkl else d)
    rezip(src, os.path.join(out, "ckpt-pkl-garbage.pth"),
          lambda n, d: d[:200] + random_bytes(300) + d[500:] if n == pkl else d)
    for name, (mod, fn) in {
        "os-system": ("os", "system"),
        "posix-system": ("posix", "system"),
        "builtins-eval": ("builtins", "eval"),
        "builtins-exec": ("builtins", "exec"),
        "subprocess-popen": ("subprocess", "Popen"),
        "builtin-getattr": ("__builtin__", "getattr"),
        "shutil-rmtree": ("shutil", "rmtree"),
        "webbrowser-open": ("webbrowser", "open"),
    }.items():
        rezip(src, os.path.join(out, f"ckpt-global-{name}.pth"), lambda n, d, m=mod, f=fn: pickle_global(m, f) if n == pkl else d)
    rezip(src, os.path.join(out, "ckpt-deep-nesting.pth"), lambda n, d: pickle_nested(200_000) if n == pkl else d)
    # BINUNICODE claiming 4 GiB - 1 bytes, BINBYTES claiming 4 GiB - 1, LONG4 claiming 2 GiB.
    rezip(src, os.path.join(out, "ckpt-huge-string.pth"), lambda n, d: b"\x80\x02X\xff\xff\xff\xffabc" if n == pkl else d)
    rezip(src, os.path.join(out, "ckpt-huge-bytes.pth"), lambda n, d: b"\x80\x03B\xff\xff\xff\xffabc" if n == pkl else d)
    rezip(src, os.path.join(out, "ckpt-huge-long.pth"), lambda n, d: b"\x80\x02\x8b\xff\xff\xff\x7f\x00" if n == pkl else d)
    # The pickle is a plain list, not a state dict.
    rezip(src, os.path.join(out, "ckpt-not-a-dict.pth"), lambda n, d: pickle.dumps([1, 2, 3], protocol=2) if n == pkl else d)
    # Legacy (torch < 1.6) checkpoints are a bare pickle stream, not a zip.
    write(out, "ckpt-legacy.pth", pickle.dumps({"m.initializ.mean": [0.0] * 4}, protocol=2))

    tensors = torchfmt.load(src)

    def save_edited(name: str, edit) -> None:
        t = dict(tensors)
        edit(t)
        torchfmt.save(os.path.join(out, name), t, archive=os.path.splitext(name)[0])

    def set_nan(t):
        a = t["m.initializ.mean"].copy()
        a.flat[3] = np.nan
        t["m.initializ.mean"] = a

    def set_inf(t):
        k = next(k for k in t if k.endswith("blocks.1.mlp.fc1.weight"))
        a = t[k].copy()
        a.flat[0] = np.inf
        t[k] = a

    save_edited("ckpt-nan-weight.pth", set_nan)
    save_edited("ckpt-inf-weight.pth", set_inf)
    save_edited("ckpt-missing-key.pth", lambda t: t.pop("m.aggregat.proj_k.weight"))
    save_edited("ckpt-wrong-shape.pth", lambda t: t.update({"m.aggregat.proj_q.weight": np.zeros((3, 7), np.float32)}))
    save_edited("ckpt-transposed.pth", lambda t: t.update({"m.encode_project.1.weight": t["m.encode_project.1.weight"].T.copy()}))
    # A state dict of another model (ResNet-like keys), and an empty one.
    torchfmt.save(os.path.join(out, "ckpt-wrong-model.pth"), {
        "conv1.weight": RNG.standard_normal((64, 3, 7, 7)).astype(np.float32),
        "bn1.weight": np.ones(64, np.float32),
        "fc.weight": RNG.standard_normal((10, 64)).astype(np.float32),
    })
    torchfmt.save(os.path.join(out, "ckpt-empty-dict.pth"), {})
    # A stage-1 MSF VQ-VAE: encoder/quantiser/decoder, no backbone or slot attention.
    torchfmt.save(os.path.join(out, "ckpt-stage1-vae.pth"), {
        "m.encode.0.weight": RNG.standard_normal((64, 3, 3, 3)).astype(np.float32),
        "m.encode.0.bias": np.zeros(64, np.float32),
        "m.quant.codebook.weight": RNG.standard_normal((512, 64)).astype(np.float32),
        "m.decode.0.weight": RNG.standard_normal((64, 64, 3, 3)).astype(np.float32),
    })
    with zipfile.ZipFile(src) as z:
        p = z.read(pkl)
    # Every storage declared as int64 (the pickle memoises the class, so one rename covers all).
    rezip(src, os.path.join(out, "ckpt-int64-tensor.pth"),
          lambda n, d: p.replace(b"FloatStorage", b"LongStorage", 1) if n == pkl else d)
    # The same key twice in the state dict: overwrite another key of the same length in place.
    keys = list(tensors)
    a, b = next((a, b) for i, a in enumerate(keys) for b in keys[i + 1:] if len(a) == len(b) and a != b)
    assert p.count(b.encode()) == 1
    rezip(src, os.path.join(out, "ckpt-duplicate-key.pth"), lambda n, d: p.replace(b.encode(), a.encode()) if n == pkl else d)

    # Class 4 (tiny files that allocate gigabytes). A real key viewed with stride 0 over one float:
    # 2^31 elements (8 GiB as f32) from 4 bytes of storage.
    one = torchfmt.Storage.of(np.ones(1, np.float32))
    save_edited("ckpt-stride0-huge.pth", lambda t: t.update({"m.initializ.mean": torchfmt.View(one, offset=0, shape=(32768, 65536), stride=(0, 0))}))
    # A weight's storage entry deflated and padded with zeros to 1 GiB (~1 MB more in the file;
    # torch.save never deflates). The tensor still reads only its own bytes at the start.
    data = tensors["m.encode_project.1.weight"].tobytes()
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(os.path.join(out, "ckpt-zip-bomb.pth"), "w") as zout:
        for info in zin.infolist():
            body = zin.read(info.filename)
            if body != data:
                zout.writestr(info, body)
                continue
            zi = zipfile.ZipInfo(info.filename)
            zi.compress_type = zipfile.ZIP_DEFLATED
            with zout.open(zi, "w", force_zip64=True) as dst:
                dst.write(body)
                for _ in range(256):
                    dst.write(bytes(4 << 20))

    # safetensors: header length far past the file, and a header that is not JSON.
    write(out, "ckpt-bad-header.safetensors", struct.pack("<Q", 1 << 40) + b"{}")
    write(out, "ckpt-not-json.safetensors", struct.pack("<Q", 16) + b"this is not json" + b"\0" * 8)
    hdr = b'{"m.initializ.mean":{"dtype":"F32","shape":[1,5,64],"data_offsets":[0,1280]}}'
    write(out, "ckpt-short-data.safetensors", struct.pack("<Q", len(hdr)) + hdr + b"\0" * 100)


# ------------------------------------------------------------------------------------------------------
# ONNX models
# ------------------------------------------------------------------------------------------------------


def varint(n: int) -> bytes:
    """A protobuf base-128 varint."""
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def models(fx: str, exported: str, out: str) -> None:
    import onnx
    from onnx import TensorProto, helper

    good = open(exported, "rb").read()
    write(out, "model-empty.onnx", b"")
    write(out, "model-random.onnx", random_bytes(4096))
    write(out, "model-trunc.onnx", good[: len(good) // 2])
    write(out, "model-text.onnx", b"ir_version: 8\nproducer_name: \"not binary\"\n")
    # A valid ONNX graph that is not an MSF model (Y = X + X).
    g = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["y"])], "add",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 224, 224])],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    write(out, "model-not-msf.onnx", m.SerializeToString())
    # The real export with its metadata damaged in three ways.
    base = onnx.load_from_string(good)

    def with_props(name: str, edit) -> None:
        mm = onnx.ModelProto()
        mm.CopyFrom(base)
        props = {p.key: p.value for p in mm.metadata_props}
        edit(props)
        del mm.metadata_props[:]
        for k, v in props.items():
            mm.metadata_props.add(key=k, value=v)
        write(out, name, mm.SerializeToString())

    with_props("model-meta-future.onnx", lambda p: p.update({"msf.spec_version": "99"}))
    with_props("model-meta-garbage.onnx", lambda p: p.update({"msf.config": "{not json"}))
    with_props("model-meta-missing.onnx", lambda p: p.pop("msf.config"))
    # Metadata says MSF, but the graph's outputs are not the contract's.
    mm = onnx.ModelProto()
    mm.CopyFrom(base)
    for o in mm.graph.output:
        if o.name == "masks":
            o.name = "segments"
    write(out, "model-renamed-output.onnx", mm.SerializeToString())
    # A checkpoint given where a model belongs.
    shutil.copyfile(os.path.join(fx, "tiny-slate-msf.pth"), os.path.join(out, "model-is-checkpoint.onnx"))
    # Initializer encodings the runtimes' weights-from-the-file loading must follow or refuse: the
    # largest weight's raw_data given twice (zeros, then the real bytes: protobuf keeps the last),
    # and cut to half its shape's size.
    def ld(tag: int, payload: bytes) -> bytes:
        return varint(tag << 3 | 2) + varint(len(payload)) + payload

    mm = onnx.ModelProto()
    mm.CopyFrom(base)
    big = max(range(len(mm.graph.initializer)), key=lambda i: len(mm.graph.initializer[i].raw_data))
    t = onnx.TensorProto()
    t.CopyFrom(mm.graph.initializer[big])
    real, t.raw_data = t.raw_data, bytes(len(t.raw_data))
    del mm.graph.initializer[big]
    graph = mm.graph.SerializeToString() + ld(5, t.SerializeToString() + ld(9, real))
    mm.ClearField("graph")
    write(out, "model-init-raw-twice.onnx", mm.SerializeToString() + ld(7, graph))
    mm = onnx.ModelProto()
    mm.CopyFrom(base)
    t = mm.graph.initializer[big]
    t.raw_data = t.raw_data[: len(t.raw_data) // 2]
    write(out, "model-init-short.onnx", mm.SerializeToString())
    # A reference for `msf-export --reference` whose input is the 256 image, for a --no-resize model
    # (which takes the 224 one).
    ref = os.path.join(fx, "ref")
    # Class 5: a reference whose `input` header claims 2^40 floats (a few bytes of data follow).
    with zipfile.ZipFile(os.path.join(out, "ref-huge.npz"), "w") as z:
        z.writestr("input.npy", npy_header((1 << 40,)) + bytes(64))
        for name in ("slots", "attn", "masks"):
            z.writestr(f"{name}.npy", npy_header((1,)) + bytes(4))
    np.savez(os.path.join(out, "ref-256.npz"), input=np.load(os.path.join(ref, "camera.input.npy")),
             slots=np.load(os.path.join(ref, "camera.tiny-slate-msf.slots.npy")),
             attn=np.load(os.path.join(ref, "camera.tiny-slate-msf.attn.npy")),
             masks=np.load(os.path.join(ref, "camera.tiny-slate-msf.segment.npy"))[None].astype(np.int64))


def hostile_models(exported: str, out: str) -> None:
    """Graphs with valid MSF metadata whose ops crash, hang or exhaust a runtime (issue 13 classes 1-3, 8)."""
    import onnx
    from onnx import TensorProto as T, helper as h, numpy_helper

    base = onnx.load_from_string(open(exported, "rb").read())
    props = {p.key: p.value for p in base.metadata_props}
    import json
    cfg = json.loads(props["msf.config"])
    pre = json.loads(props["msf.preprocess"])
    k, d = cfg["slots"]["num_slots"], cfg["slots"]["slot_dim"]
    s, g = pre["image_size"], cfg["vit"]["grid"]

    def model(name: str, nodes, inits=(), props_edit=None, outputs=None, opset=17, s=s, k=k, external=None) -> None:
        """``nodes`` compute ``hostile`` (any float tensor) from ``image``; slots add its sum, attn and
        masks are constants, so the outputs keep the contract's names and shapes. ``external``:
        (initializer name, location) to store that initializer as external data."""
        c = lambda n, a: numpy_helper.from_array(np.asarray(a), n)  # noqa: E731
        tail = [
            h.make_node("Cast", ["hostile"], ["hostile_f"], to=T.FLOAT),
            h.make_node("ReduceSum", ["hostile_f"], ["hsum"], keepdims=0),
            h.make_node("Add", ["slots_zero", "hsum"], ["slots"]),
            h.make_node("Expand", ["f0", "attn_shape"], ["attn"]),
            h.make_node("Expand", ["i0", "masks_shape"], ["masks"]),
        ]
        inits = list(inits) + [c("slots_zero", np.zeros((1, k, d), np.float32)), c("f0", np.float32(0)),
                               c("i0", np.int64(0)), c("attn_shape", np.array([1, k, g, g], np.int64)),
                               c("masks_shape", np.array([1, s, s], np.int64))]
        graph = h.make_graph(
            list(nodes) + tail, "hostile",
            [h.make_tensor_value_info("image", T.FLOAT, ["batch", 3, s, s])],
            outputs or [h.make_tensor_value_info("slots", T.FLOAT, ["batch", k, d]),
                        h.make_tensor_value_info("attn", T.FLOAT, ["batch", k, g, g]),
                        h.make_tensor_value_info("masks", T.INT64, ["batch", s, s])],
            initializer=inits,
        )
        if external:
            t = next(t for t in graph.initializer if t.name == external[0])
            t.ClearField("raw_data")
            t.ClearField("float_data")
            t.data_location = onnx.TensorProto.EXTERNAL
            t.external_data.add(key="location", value=external[1])
        m = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)])
        m.ir_version = 8
        p = dict(props)
        # These graphs take only `image`; exports carry `slots_init` by default.
        p["msf.slots_input"] = "false"
        if props_edit:
            props_edit(p)
        for kk, v in p.items():
            m.metadata_props.add(key=kk, value=v)
        write(out, name, m.SerializeToString())

    c = lambda n, a: numpy_helper.from_array(np.asarray(a), n)  # noqa: E731
    # An integer made from the pixels: ~1e6 for a photo, far outside any index range.
    from_pixels = [
        h.make_node("ReduceMax", ["image"], ["mx"], keepdims=0),
        h.make_node("Mul", ["mx", "big"], ["mxb"]),
        h.make_node("Cast", ["mxb"], ["px"], to=T.INT64),
    ]
    big = c("big", np.float32(1e6))
    # Class 1: ops that index or divide by data.
    model("model-op-gather-oob.onnx", from_pixels + [h.make_node("Reshape", ["px", "one"], ["idx"]),
          h.make_node("Gather", ["table", "idx"], ["hostile"])],
          [big, c("one", np.array([1], np.int64)), c("table", np.arange(10, dtype=np.float32))])
    model("model-op-gathernd-oob.onnx", from_pixels + [h.make_node("Reshape", ["px", "one2"], ["idx"]),
          h.make_node("GatherND", ["table2", "idx"], ["hostile"])],
          [big, c("one2", np.array([1, 1], np.int64)), c("table2", np.ones((4, 4), np.float32))])
    model("model-op-scatter-oob.onnx", from_pixels + [h.make_node("Reshape", ["px", "one"], ["idx"]),
          h.make_node("ScatterElements", ["table", "idx", "upd"], ["hostile"])],
          [big, c("one", np.array([1], np.int64)), c("table", np.arange(10, dtype=np.float32)),
           c("upd", np.ones(1, np.float32))])
    model("model-op-mod-zero.onnx", from_pixels + [h.make_node("Mul", ["px", "zero"], ["z"]),
          h.make_node("Mod", ["px", "z"], ["hostile"])], [big, c("zero", np.int64(0))])
    model("model-op-div-zero.onnx", from_pixels + [h.make_node("Mul", ["px", "zero"], ["z"]),
          h.make_node("Div", ["px", "z"], ["hostile"])], [big, c("zero", np.int64(0))])
    # Shapes taken from the pixels: the output size is only known while running.
    model("model-op-range-data.onnx", from_pixels + [h.make_node("Mul", ["px", "kilo"], ["lim"]),
          h.make_node("Range", ["zero", "lim", "step"], ["hostile"])],
          [big, c("kilo", np.int64(100000)), c("zero", np.int64(0)), c("step", np.int64(1))])
    model("model-op-expand-data.onnx", from_pixels + [h.make_node("Reshape", ["px", "one"], ["shape"]),
          h.make_node("Mul", ["shape", "kilo"], ["shape2"]), h.make_node("Concat", ["shape2", "shape2"], ["sh"], axis=0),
          h.make_node("Expand", ["onef", "sh"], ["hostile"])],
          [big, c("one", np.array([1], np.int64)), c("kilo", np.int64(1000)), c("onef", np.ones(1, np.float32))])
    model("model-op-einsum.onnx", [h.make_node("Einsum", ["image", "image"], ["hostile"], equation="bchw,bcxy->bhwxy")])
    # A one-number output that costs 3·256⁶ multiply-adds: hours of arithmetic, no large tensor.
    model("model-op-einsum-work.onnx", [h.make_node("Einsum", ["image", "image", "image"], ["hostile"], equation="bchw,bcxy,bcuv->b")])
    # Class 2: sizes that explode while loading or per frame.
    model("model-op-resize-huge.onnx", [h.make_node("Resize", ["image", "", "scales"], ["hostile"], mode="nearest")],
          [c("scales", np.array([1, 1, 4096, 4096], np.float32))])
    model("model-op-resize-const.onnx", [h.make_node("Resize", ["table", "", "scales1"], ["hostile"], mode="nearest")],
          [c("table", np.ones((1, 1, 4, 4), np.float32)), c("scales1", np.array([1, 1, 65536, 65536], np.float32))])
    # Sizes computed from Shape(image), which runtimes fold into constants while loading: 1.2 GB.
    model("model-op-shape-constofshape.onnx", [h.make_node("Relu", ["image"], ["r"]), h.make_node("Shape", ["r"], ["sh"]),
          h.make_node("Mul", ["sh", "m"], ["sh2"]),
          h.make_node("ConstantOfShape", ["sh2"], ["hostile"], value=h.make_tensor("v", T.FLOAT, [1], [1.0]))],
          [c("m", np.array([1, 1, 40, 40], np.int64))])
    model("model-op-transpose-repeat.onnx", [h.make_node("Transpose", ["image"], ["hostile"], perm=[0, 0, 0, 3])])
    model("model-op-tile-huge.onnx", [h.make_node("Tile", ["image", "reps"], ["hostile"])],
          [c("reps", np.array([1, 1, 1000, 1000], np.int64))])
    model("model-op-constofshape.onnx", [h.make_node("ConstantOfShape", ["shp"], ["hostile"],
          value=h.make_tensor("v", T.FLOAT, [1], [1.0]))], [c("shp", np.array([1 << 20, 1 << 20], np.int64))])
    model("model-meta-image-8192.onnx", [h.make_node("Identity", ["image"], ["hostile"])], s=8192,
          props_edit=lambda p: p.update({"msf.preprocess": json.dumps({**pre, "image_size": 8192, "backbone_resize_in_graph": False})}))
    # Class 8: more slots than an 8-bit mask can name (slot 299 would be written as 43).
    many = {**cfg, "slots": {**cfg["slots"], "num_slots": 300}}
    model("model-slots-300.onnx", [h.make_node("Identity", ["image"], ["hostile"])], k=300,
          props_edit=lambda p: p.update({"msf.config": json.dumps(many)}))
    # Class 3: external data that names a FIFO (reading it blocks forever) or leaves the folder.
    gather = from_pixels[:1] + [h.make_node("Gather", ["table", "zero_idx"], ["hostile"])]
    table = [c("table", np.arange(16, dtype=np.float32)), c("zero_idx", np.array([0], np.int64))]
    model("model-extdata-fifo.onnx", gather, table, external=("table", "model-extdata-fifo.bin"))
    if hasattr(os, "mkfifo") and not os.path.exists(os.path.join(out, "model-extdata-fifo.bin")):
        os.mkfifo(os.path.join(out, "model-extdata-fifo.bin"))
    model("model-extdata-escape.onnx", gather, table, external=("table", "../../etc/passwd"))
    # Class 3: a graph of many nodes (a chain of Identity ops), quadratic to load in some runtimes.
    chain = [h.make_node("Identity", ["image" if i == 0 else f"n{i - 1}"], [f"n{i}"]) for i in range(40000)]
    chain.append(h.make_node("Identity", ["n39999"], ["hostile"]))
    model("model-nodes-40k.onnx", chain)


# ------------------------------------------------------------------------------------------------------
# Images
# ------------------------------------------------------------------------------------------------------


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(w: int, h: int) -> bytes:
    """A PNG whose header claims w×h RGB but whose data is a few bytes (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b"")


def jpeg_with_size(jpeg: bytes, w: int, h: int) -> bytes:
    """A real baseline JPEG whose SOF0 header is patched to claim w×h (a decompression bomb's header)."""
    i = jpeg.index(b"\xff\xc0")
    return jpeg[: i + 5] + struct.pack(">HH", h, w) + jpeg[i + 9:]


def jpeg_many_scans(progressive: bytes, n: int, w: int, h: int) -> bytes:
    """A real progressive JPEG claiming w×h, with n empty DC scans before its end: each scan walks the
    whole image, so a few KB ask the decoder for minutes of work."""
    i = progressive.index(b"\xff\xc2")
    ids = [progressive[i + 10 + 3 * k] for k in range(progressive[i + 9])]
    sos = b"\xff\xda" + struct.pack(">HB", 6 + 2 * len(ids), len(ids)) + b"".join(bytes([c, 0]) for c in ids) + b"\0\0\0"
    end = progressive.rindex(b"\xff\xd9")
    scans = progressive[:end] + sos * n + progressive[end:]
    return scans[: i + 5] + struct.pack(">HH", h, w) + scans[i + 9:]


def gif_with_size(w: int, h: int) -> bytes:
    """A GIF whose screen and first image claim w×h, with a few bytes of pixel data."""
    screen = b"GIF89a" + struct.pack("<HHBBB", w, h, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    image = b"," + struct.pack("<HHHHB", 0, 0, w, h, 0) + b"\x02\x02\x44\x01\x00"
    return screen + image + b";"


def images(fx: str, out: str) -> None:
    from PIL import Image

    photo = Image.open(os.path.join(fx, "images", "motorcycle_left.png")).convert("RGB")
    small = photo.resize((160, 120))
    png_bytes = open(os.path.join(fx, "images", "motorcycle_left.png"), "rb").read()
    jpg_bytes = open(os.path.join(fx, "images", "hubble_deep_field.jpg"), "rb").read()

    # Bad: must fail with a decode / size error.
    write(out, "img-empty.png", b"")
    write(out, "img-trunc.png", png_bytes[: len(png_bytes) // 2])
    write(out, "img-trunc-header.png", png_bytes[:20])
    write(out, "img-trunc.jpg", jpg_bytes[:300])
    write(out, "img-text.jpg", b"just text pretending to be an image\n")
    write(out, "img-random.png", random_bytes(2048))
    bad_crc = bytearray(png_bytes[:4096] + png_bytes[4096:])
    bad_crc[29] ^= 0xFF  # inside IHDR: its CRC no longer matches
    write(out, "img-bad-crc.png", bytes(bad_crc))
    write(out, "img-bomb-60000.png", png_header_only(60000, 60000))
    small_jpg = io.BytesIO()
    small.save(small_jpg, format="JPEG", quality=80)
    write(out, "img-bomb-60000.jpg", jpeg_with_size(small_jpg.getvalue(), 60000, 60000))
    # Within the size limit but a few KB of data: decoded (768 MB of pixels), then refused as cut short.
    write(out, "img-bomb-16000.jpg", jpeg_with_size(small_jpg.getvalue(), 16000, 16000))
    write(out, "img-trunc-scan.jpg", jpg_bytes[: len(jpg_bytes) // 2])  # cut inside the entropy-coded data
    progressive = io.BytesIO()
    small.save(progressive, format="JPEG", quality=80, progressive=True)
    write(out, "img-many-scans.jpg", jpeg_many_scans(progressive.getvalue(), 5000, 16000, 16000))
    write(out, "img-bomb-wide.png", png_header_only(1_000_000, 1))
    write(out, "img-bomb-60000.gif", gif_with_size(60000, 60000))
    bmp_hdr = b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, 60000, 60000, 1, 24, 0, 0, 0, 0, 0, 0)
    write(out, "img-bomb-60000.bmp", bmp_hdr)
    write(out, "img-zero-width.png", png_header_only(0, 10))
    # Class 10: an iCCP chunk whose profile inflates to 1 GiB, in a ~1 MB file.
    small_png = io.BytesIO()
    small.save(small_png, format="PNG")
    raw = small_png.getvalue()
    z = zlib.compressobj(9)
    profile = b"".join(z.compress(bytes(1 << 24)) for _ in range(64)) + z.flush()
    write(out, "img-iccp-bomb.png", raw[:33] + png_chunk(b"iCCP", b"icc\0\0" + profile) + raw[33:])
    # Class 3: a FIFO where an image is expected (opening it blocks until someone writes).
    if hasattr(os, "mkfifo") and not os.path.exists(os.path.join(out, "img-fifo.png")):
        os.mkfifo(os.path.join(out, "img-fifo.png"))

    # Odd but valid: must decode and decompose.
    Image.new("RGB", (1, 1), (200, 30, 30)).save(os.path.join(out, "ok-1x1.png"))
    small.convert("L").save(os.path.join(out, "ok-grey.png"))
    small.convert("LA").save(os.path.join(out, "ok-grey-alpha.png"))
    rgba = small.convert("RGBA")
    rgba.putalpha(Image.new("L", small.size, 90))
    rgba.save(os.path.join(out, "ok-rgba.png"))
    a16 = (np.asarray(small.convert("L"), np.uint16) * 257).astype(np.uint16)
    Image.fromarray(a16).save(os.path.join(out, "ok-16bit-grey.png"))
    small.convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(os.path.join(out, "ok-palette.png"))
    small.convert("CMYK").save(os.path.join(out, "ok-cmyk.jpg"), quality=90)
    ex = Image.Exif()
    ex[0x0112] = 6  # orientation: rotate 90° clockwise to display
    small.save(os.path.join(out, "ok-exif-rotated.jpg"), exif=ex, quality=90)
    small.resize((1000, 2)).save(os.path.join(out, "ok-1000x2.png"))
    small.save(os.path.join(out, "ok-jpeg-named.png"), format="JPEG")  # sniffed from the content
    small.save(os.path.join(out, "ok-photo.webp"))
    small.save(os.path.join(out, "ok-photo.bmp"))
    # A folder with a damaged image between good ones (for --on-error).
    mixed = os.path.join(out, "mixed")
    os.makedirs(mixed, exist_ok=True)
    small.save(os.path.join(mixed, "a1.png"))
    write(mixed, "a2.png", png_bytes[: len(png_bytes) // 2])
    small.save(os.path.join(mixed, "a3.png"))
    # Class 10: a legal 248-byte file name (output and temporary names must still fit 255 bytes).
    small.save(os.path.join(out, "ok-" + "n" * 241 + ".png"))


def eval_inputs(out: str) -> None:
    """An msf-eval --data folder whose images/ holds a FIFO beside a good image."""
    from PIL import Image

    d = os.path.join(out, "eval-fifo")
    os.makedirs(os.path.join(d, "images"), exist_ok=True)
    os.makedirs(os.path.join(d, "masks"), exist_ok=True)
    Image.new("RGB", (64, 48), (120, 30, 30)).save(os.path.join(d, "images", "a.png"))
    Image.new("L", (64, 48), 1).save(os.path.join(d, "masks", "a.png"))
    Image.new("L", (64, 48), 1).save(os.path.join(d, "masks", "b.png"))
    if hasattr(os, "mkfifo") and not os.path.exists(os.path.join(d, "images", "b.png")):
        os.mkfifo(os.path.join(d, "images", "b.png"))


def coco_inputs(out: str) -> None:
    """--coco-images files that give no image id: not JSON, cut short, and one without the frame."""
    write(out, "coco-not-json.json", b"this is not json\n")
    write(out, "coco-truncated.json", b'{"images": [{"id": 1, "file_na')
    other = {"images": [{"id": 7, "file_name": "000000000007.jpg", "width": 64, "height": 48}], "annotations": [],
             "categories": [{"id": 1, "name": "object"}]}
    write(out, "coco-other-images.json", json.dumps(other).encode())


def npy_header(shape: tuple) -> bytes:
    """An .npy v1 header for float32 ``shape`` (padded to 64 bytes like numpy's)."""
    d = ("{'descr': '<f4', 'fortran_order': False, 'shape': %r, }" % (shape,)).encode()
    d += b" " * (63 - (10 + len(d)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(d)) + d


# ------------------------------------------------------------------------------------------------------
# Videos
# ------------------------------------------------------------------------------------------------------


def videos(ffmpeg: str, out: str) -> None:
    def run(*args: str) -> None:
        subprocess.run([ffmpeg, "-nostdin", "-loglevel", "error", "-y", *args], check=True)

    good = os.path.join(out, "video-good.mp4")
    run("-f", "lavfi", "-i", "testsrc=size=160x120:rate=10", "-t", "3", "-pix_fmt", "yuv420p", "-c:v", "libx264",
        "-g", "5", "-movflags", "+faststart", good)
    data = open(good, "rb").read()
    # moov first (faststart), so a cut in the mdat leaves the first frames decodable.
    write(out, "video-trunc.mp4", data[: int(len(data) * 0.6)])
    # mdat bytes overwritten in the middle: corrupt packets after some good frames.
    corrupt = bytearray(data)
    mid = len(data) // 2
    corrupt[mid: mid + 4000] = random_bytes(4000)
    write(out, "video-corrupt.mp4", bytes(corrupt))
    write(out, "video-empty.mp4", b"")
    # Class 10: a y4m cut inside its 4th frame (the y4m demuxer reports a plain end of file).
    y4m = os.path.join(out, ".video-good.y4m")
    run("-f", "lavfi", "-i", "testsrc=size=160x120:rate=10", "-frames:v", "5", "-pix_fmt", "yuv420p", y4m)
    y = open(y4m, "rb").read()
    frame = 6 + 160 * 120 * 3 // 2
    write(out, "video-trunc.y4m", y[: len(y) - frame - frame // 2])
    os.remove(y4m)
    write(out, "video-random.mkv", random_bytes(8192))
    write(out, "video-header-only.mp4", data[:48])
    run("-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", os.path.join(out, "video-audio-only.mp4"))
    os.remove(good)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--fixtures", required=True)
    ap.add_argument("--onnx", required=True, help="a model written by msf-export (variants are derived from it)")
    ap.add_argument("--ffmpeg", help="the ffmpeg program, for the video cases")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    checkpoints(a.fixtures, a.out)
    models(a.fixtures, a.onnx, a.out)
    hostile_models(a.onnx, a.out)
    images(a.fixtures, a.out)
    eval_inputs(a.out)
    coco_inputs(a.out)
    if a.ffmpeg:
        videos(a.ffmpeg, a.out)
    print(len(os.listdir(a.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
