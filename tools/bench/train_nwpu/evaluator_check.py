"""Evaluator agreement on non-trivial numbers: jittered dev ground truth as 'predictions'.

From-scratch models after a few dozen steps score 0 AP, where any two evaluators agree
trivially. This turns the dev ground truth into results with a known-imperfect quality (drops,
shifted masks/boxes, a few wrong classes, random scores), writes them as COCO results (RLE),
and prints pycocotools' segm and bbox AP so they can be compared with
`maskrcnn evaluate --predictions <out> --annotations <dev.json>`.
Usage: python evaluator_check.py <dev.json> <out_results.json>
"""
import contextlib
import io
import json
import sys

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

dev_path, out_path = sys.argv[1], sys.argv[2]
with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(dev_path)
rng = np.random.default_rng(0)
cats = sorted(gt.cats)
results = []
for ann in gt.dataset["annotations"]:
    if rng.random() < 0.2:
        continue
    info = gt.imgs[ann["image_id"]]
    m = gt.annToMask(ann)
    dy, dx = (int(v) for v in rng.integers(-4, 5, size=2))
    m = np.roll(np.roll(m, dy, axis=0), dx, axis=1)
    rle = mask_utils.encode(np.asfortranarray(m))
    rle["counts"] = rle["counts"].decode("ascii")
    x, y, w, h = ann["bbox"]
    cat = ann["category_id"] if rng.random() > 0.1 else int(rng.choice(cats))
    results.append({"image_id": ann["image_id"], "category_id": cat, "bbox": [x + dx, y + dy, w, h], "score": float(rng.random()), "segmentation": rle})
Path = __import__("pathlib").Path
Path(out_path).write_text(json.dumps(results))
for iou_type in ("segm", "bbox"):
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    print(iou_type, "AP AP50 AP75 APs APm APl AR1 AR10 AR100 ARs ARm ARl =", " ".join(f"{v:.6f}" for v in ev.stats))
