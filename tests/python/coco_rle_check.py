"""Check an msf-run output folder with pycocotools, the ecosystem's own RLE code (independent of msf).

For every frame of OUT/decomposition.json and every slot: ``pycocotools.mask.decode`` of the slot's
``rle`` as it is must equal (mask PNG == slot id), and ``mask.area`` / ``mask.toBbox`` must equal
the record's ``area`` / ``bbox``. Prints one line; exits 1 on the first mismatch::

    python tests/python/coco_rle_check.py OUT_DIR
"""

import json
import os
import sys

import numpy as np
from PIL import Image
from pycocotools import mask as cocomask


def main(out: str) -> int:
    log = json.load(open(os.path.join(out, "decomposition.json")))
    if log.get("schema") != 3:
        print(f"coco_rle_check: schema {log.get('schema')!r}, expected 3")
        return 1
    checked = 0
    for f in log["frames"]:
        labels = np.asarray(Image.open(os.path.join(out, f["files"]["mask"])))  # palette indices
        for s in f["slots"]:
            rle = s["rle"]
            got = cocomask.decode(rle)
            want = (labels == s["id"]).astype(np.uint8)
            if got.shape != want.shape or not np.array_equal(got, want):
                print(f"coco_rle_check: {f['name']} slot {s['id']}: pycocotools decodes another mask")
                return 1
            if int(cocomask.area(rle)) != s["area"]:
                print(f"coco_rle_check: {f['name']} slot {s['id']}: area {cocomask.area(rle)} != {s['area']}")
                return 1
            if s["bbox"] is not None and [int(v) for v in cocomask.toBbox(rle)] != s["bbox"]:
                print(f"coco_rle_check: {f['name']} slot {s['id']}: bbox {cocomask.toBbox(rle)} != {s['bbox']}")
                return 1
            checked += 1
    print(f"coco_rle_check: {checked} slot masks of {len(log['frames'])} frames read by pycocotools as they are")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
