#!/usr/bin/env python3
"""Spatial train/dev split of the SpaceNet Atlanta sample for the plain-vs-PointRend comparison.

    python3 spacenet_split.py TRAIN_CHIPS_DIR DEV_CHIPS_DIR OUT_DIR [--split-x 600]

TRAIN_CHIPS_DIR and DEV_CHIPS_DIR are `maskrcnn export-chips --format coco` outputs of the same raster (the training
export with overlapping chips, the dev export without). Chips lying entirely left of --split-x (pixels) train, chips
entirely right of it are dev, so no dev pixel is ever seen in training. Writes OUT_DIR/{train,dev}.json whose
file_names point into the two chip folders.
"""
import argparse
import json
import os


def subset(coco, keep, images_dir):
    images = [dict(im, file_name=os.path.join(images_dir, im["file_name"])) for im in coco["images"] if keep(im)]
    ids = {im["id"] for im in images}
    return {"images": images, "categories": coco["categories"], "annotations": [a for a in coco["annotations"] if a["image_id"] in ids]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("train_chips")
    ap.add_argument("dev_chips")
    ap.add_argument("out")
    ap.add_argument("--split-x", type=int, default=600)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name, chips, keep in [
        ("train", args.train_chips, lambda im: im["window"][0] + im["window"][2] <= args.split_x),
        ("dev", args.dev_chips, lambda im: im["window"][0] >= args.split_x),
    ]:
        with open(os.path.join(chips, "annotations.json")) as f:
            coco = json.load(f)
        out = subset(coco, keep, os.path.abspath(os.path.join(chips, "images")))
        with open(os.path.join(args.out, f"{name}.json"), "w") as f:
            json.dump(out, f)
        print(f"{name}: {len(out['images'])} chips, {len(out['annotations'])} objects")


if __name__ == "__main__":
    main()
