"""The ROS 2 side of msf-ros2's test (ros2/tests/ros.rs), on a real ROS 2 (rclpy, Fast DDS).

Publishes the PNG frames of a folder as sensor_msgs/Image (cycling rgb8, bgr8, rgba8 and bgra8 with
padded rows) at a fixed rate, then one of them as a sensor_msgs/CompressedImage (the PNG file's
bytes), and checks what msf-ros2 publishes back:
  - ~/masks: mono8 at the frame's size, equal pixel for pixel to msf-run's masks/<frame>.png;
  - the input's header kept (stamp and frame_id) on ~/masks and in ~/objects' JSON;
  - ~/objects: ids, areas and boxes that match the mask; ~/slots: K x D with its layout;
  - every frame answered (nothing dropped at this rate).
Prints one `latency ms median .. p90 ..` line (stamp -> received here). Exit 0 when all holds,
1 with one line per failure.

  python ros_node_check.py --frames F --expected M --image /cam/image_raw --compressed /cam/c
      --masks /msf/cam/image_raw --compressed-out /msf/cam/c [--rate 5] [--timeout 60]

With --measure RATE[,RATE..] it checks nothing: it publishes the frames at each rate and prints
the frames answered and the latency per rate, all frames rgb8 (for the README's numbers).
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import rclpy
from PIL import Image as PILImage
from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Float32MultiArray, String

ENCODINGS = ["rgb8", "bgr8", "rgba8", "bgra8"]


def image_msg(rgb, encoding, stamp, frame_id, pad=0):
    h, w, _ = rgb.shape
    px = {
        "rgb8": rgb,
        "bgr8": rgb[..., ::-1],
        "rgba8": np.dstack([rgb, np.full((h, w), 255, np.uint8)]),
        "bgra8": np.dstack([rgb[..., ::-1], np.full((h, w), 7, np.uint8)]),
    }[encoding]
    rows = px.reshape(h, -1)
    if pad:
        rows = np.hstack([rows, np.full((h, pad), 0xAB, np.uint8)])
    m = Image()
    m.header.stamp = stamp
    m.header.frame_id = frame_id
    m.height, m.width, m.encoding, m.is_bigendian = h, w, encoding, 0
    m.step = rows.shape[1]
    m.data = np.ascontiguousarray(rows).tobytes()
    return m


def key(stamp):
    return (stamp.sec, stamp.nanosec)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", required=True)
    ap.add_argument("--expected")
    ap.add_argument("--image", required=True)
    ap.add_argument("--compressed")
    ap.add_argument("--masks", required=True, help="output namespace of the --image input")
    ap.add_argument("--compressed-out", help="output namespace of the --compressed input")
    ap.add_argument("--rate", type=float, default=5.0)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--measure")
    a = ap.parse_args()
    deadline = time.monotonic() + a.timeout

    names = sorted(f for f in os.listdir(a.frames) if f.endswith(".png"))
    frames = [np.asarray(PILImage.open(os.path.join(a.frames, f)).convert("RGB")) for f in names]

    rclpy.init()
    node = rclpy.create_node("msf_ros2_check")
    clock = node.get_clock()
    got = {}  # (output namespace, kind) -> {stamp key: (msg, receive time)}

    def on(ns, kind):
        def cb(m):
            if kind == "slots":  # Float32MultiArray has no header: kept in order of arrival
                got.setdefault((ns, kind), []).append(m)
                return
            if kind == "objects":
                d = json.loads(m.data)
                k = (d["stamp"]["sec"], d["stamp"]["nanosec"])
            else:
                k = key(m.header.stamp)
            got.setdefault((ns, kind), {})[k] = (m, time.monotonic())
        return cb

    reliable = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=100)
    outs = [a.masks] + ([a.compressed_out] if a.compressed else [])
    for ns in outs:
        node.create_subscription(Image, ns + "/masks", on(ns, "masks"), reliable)
        node.create_subscription(Float32MultiArray, ns + "/slots", on(ns, "slots"), reliable)
        node.create_subscription(String, ns + "/objects", on(ns, "objects"), reliable)
    pub = node.create_publisher(Image, a.image, qos_profile_sensor_data)
    cpub = node.create_publisher(CompressedImage, a.compressed, qos_profile_sensor_data) if a.compressed else None

    def spin_until(pred, seconds):
        end = min(deadline, time.monotonic() + seconds)
        while time.monotonic() < end:
            if pred():
                return True
            rclpy.spin_once(node, timeout_sec=0.02)
        return pred()

    def answered(ns, stamp):
        return key(stamp) in got.get((ns, "masks"), {})

    def fail(msg):
        print(f"ros_node_check: {msg}", file=sys.stderr)
        sys.exit(1)

    def compressed(name, stamp, frame_id):
        m = CompressedImage()
        m.header.stamp, m.header.frame_id, m.format = stamp, frame_id, "png"
        with open(os.path.join(a.frames, name), "rb") as f:
            m.data = f.read()
        return m

    # Warm-up: repeat a frame until it comes back, so that every endpoint is matched both ways
    # before the frames that count (best-effort frames sent before that are lost by design).
    for ns, send in [(a.masks, lambda s: pub.publish(image_msg(frames[0], "rgb8", s, "warmup")))] + (
        [(a.compressed_out, lambda s: cpub.publish(compressed(names[0], s, "warmup")))] if cpub else []
    ):
        ok = False
        while time.monotonic() < deadline and not ok:
            s = clock.now().to_msg()
            send(s)
            ok = spin_until(lambda: answered(ns, s), 1.0)
        if not ok:
            fail(f"no answer on {ns}/masks within {a.timeout:.0f} s (is msf-ros2 running on this ROS_DOMAIN_ID?)")

    def run_at(rate, tag):
        """Publishes every frame at `rate`; returns [(index, encoding, stamp)]."""
        sent = []
        period = 1.0 / rate
        t = time.monotonic()
        for i, rgb in enumerate(frames):
            enc = "rgb8" if a.measure else ENCODINGS[i % len(ENCODINGS)]
            s = clock.now().to_msg()
            pub.publish(image_msg(rgb, enc, s, f"{tag}_optical_frame", pad=8 if enc == "bgra8" else 0))
            sent.append((i, enc, s, time.monotonic()))
            t += period
            spin_until(lambda: False, max(0.0, t - time.monotonic()))
        last = sent[-1][2]
        spin_until(lambda: answered(a.masks, last), 3.0 + 5 * period)
        spin_until(lambda: False, 0.2)
        return sent

    def latencies(ns, sent):
        res = got.get((ns, "masks"), {})
        return sorted((res[key(s)][1] - t0) * 1e3 for _, _, s, t0 in sent if key(s) in res)

    def q(v, p):
        return v[min(len(v) - 1, int(round((len(v) - 1) * p)))] if v else float("nan")

    if a.measure:
        for rate in [float(r) for r in a.measure.split(",")]:
            sent = run_at(rate, "measure")
            lat = latencies(a.masks, sent)
            print(f"rate {rate:g} Hz: {len(lat)}/{len(sent)} frames answered, latency ms median {q(lat, 0.5):.1f} p90 {q(lat, 0.9):.1f}")
            sys.stdout.flush()
        node.destroy_node()
        rclpy.shutdown()
        return

    sent = run_at(a.rate, "camera")
    errors = []
    masks = got.get((a.masks, "masks"), {})
    for i, enc, s, _ in sent:
        if key(s) not in masks:
            errors.append(f"frame {i} ({enc}, stamp {s.sec}.{s.nanosec:09d}): no mask came back")
            continue
        m = masks[key(s)][0]
        errors += check(m, names[i], frames[i], a.expected, f"frame {i} ({enc})", "camera_optical_frame")
        if key(s) not in got.get((a.masks, "objects"), {}):
            errors.append(f"frame {i}: no ~/objects with its stamp")
        elif not errors:
            errors += check_objects(got[(a.masks, "objects")][key(s)][0], m, f"frame {i}")
    slots = got.get((a.masks, "slots"), [])
    if len(slots) < len(masks):
        errors.append(f"{len(slots)} ~/slots messages for {len(masks)} masks")
    for m in slots[-1:]:
        dims = [(d.label, d.size, d.stride) for d in m.layout.dim]
        ok = len(dims) == 2 and dims[0][0] == "slots" and dims[1][0] == "dim"
        if not ok or dims[0][2] != dims[0][1] * dims[1][1] or dims[1][2] != dims[1][1] or len(m.data) != dims[0][2]:
            errors.append(f"~/slots layout {dims} with {len(m.data)} values")

    if cpub:
        k = len(names) // 2
        s = clock.now().to_msg()
        cpub.publish(compressed(names[k], s, "compressed_frame"))
        if not spin_until(lambda: answered(a.compressed_out, s), 10.0):
            errors.append(f"CompressedImage {names[k]}: no mask came back")
        else:
            m = got[(a.compressed_out, "masks")][key(s)][0]
            errors += check(m, names[k], frames[k], a.expected, f"CompressedImage {names[k]}", "compressed_frame")

    lat = latencies(a.masks, sent)
    print(f"ros_node_check: {len(lat)}/{len(sent)} frames at {a.rate:g} Hz answered; latency (stamp -> mask received) ms median {q(lat, 0.5):.1f} p90 {q(lat, 0.9):.1f}")
    node.destroy_node()
    rclpy.shutdown()
    for e in errors[:20]:
        print(f"ros_node_check: {e}", file=sys.stderr)
    sys.exit(1 if errors else 0)


def check(m, name, rgb, expected_dir, what, frame_id):
    h, w, _ = rgb.shape
    errs = []
    if m.header.frame_id != frame_id:
        errs.append(f"{what}: frame_id {m.header.frame_id!r}, sent {frame_id!r}")
    if (m.encoding, m.width, m.height, m.step) != ("mono8", w, h, w):
        errs.append(f"{what}: mask is {m.encoding} {m.width}x{m.height} step {m.step}, expected mono8 {w}x{h} step {w}")
        return errs
    got = np.frombuffer(bytes(m.data), np.uint8).reshape(h, w)
    want = np.asarray(PILImage.open(os.path.join(expected_dir, name)))
    if want.shape != got.shape:
        errs.append(f"{what}: msf-run's mask is {want.shape}, the node's {got.shape}")
    elif not np.array_equal(want, got):
        errs.append(f"{what}: {int((want != got).sum())} of {w * h} pixels differ from msf-run's mask {name}")
    return errs


def check_objects(objects, mask, what):
    errs = []
    o = json.loads(objects.data)
    labels = np.frombuffer(bytes(mask.data), np.uint8).reshape(mask.height, mask.width)
    if o["frame_id"] != mask.header.frame_id or (o["width"], o["height"]) != (mask.width, mask.height):
        errs.append(f"{what}: ~/objects {o['frame_id']!r} {o['width']}x{o['height']} vs the mask's")
    for obj in o["objects"]:
        ys, xs = np.nonzero(labels == obj["id"])
        bbox = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)] if len(xs) else None
        if obj["area"] != len(xs) or obj["bbox"] != bbox:
            errs.append(f"{what}: ~/objects id {obj['id']} area {obj['area']} bbox {obj['bbox']}, the mask has {len(xs)} {bbox}")
    if sum(obj["area"] for obj in o["objects"]) != int((labels != 255).sum()):
        errs.append(f"{what}: ~/objects areas do not add up to the labelled pixels")
    return errs


if __name__ == "__main__":
    main()
