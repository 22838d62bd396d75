"""Deterministic 440/80 train/dev split of NWPU VHR-10 (seeded shuffle of image ids).

Writes the split ids to tools/bench/train_nwpu/split.json (committed) and the two COCO JSONs
(never committed: the data's licence is research-only) to the output folder.
Usage: python make_split.py <instances.json> <out_dir>
"""
import json
import random
import sys
from pathlib import Path

DEV_COUNT = 80
SEED = 0

src, out = Path(sys.argv[1]), Path(sys.argv[2])
coco = json.loads(src.read_text())
ids = sorted(im["id"] for im in coco["images"])
random.Random(SEED).shuffle(ids)
dev = set(ids[:DEV_COUNT])
here = Path(__file__).resolve().parent
(here / "split.json").write_text(json.dumps({"seed": SEED, "source": "nwpu-vhr10-train/instances.json", "dev_image_ids": sorted(dev), "train_image_ids": sorted(set(ids) - dev)}) + "\n")
out.mkdir(parents=True, exist_ok=True)
for name, keep in (("train", lambda i: i not in dev), ("dev", lambda i: i in dev)):
    part = dict(coco)
    part["images"] = [im for im in coco["images"] if keep(im["id"])]
    part["annotations"] = [a for a in coco["annotations"] if keep(a["image_id"])]
    (out / f"{name}.json").write_text(json.dumps(part))
    print(name, len(part["images"]), "images", len(part["annotations"]), "annotations")
