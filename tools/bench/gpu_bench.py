#!/usr/bin/env python3
"""Data and the torchvision side of tools/bench/gpu.sh.

Subcommands:
  data DIR        synthetic COCO training set (images/, instances.json), predict images
                  (predict/), an 8-bit RGB GeoTIFF raster (raster.tif, EPSG:3857) and a
                  randomly initialised torchvision maskrcnn_resnet50_fpn checkpoint (model.pth)
                  that both sides load, so both run the same weights.
  tv-predict DIR  torchvision eager fp32 inference over DIR/predict, images/s.
  tv-train DIR    torchvision training steps on DIR/images, steps/s and peak memory.
  tv-detect DIR   torchvision over DIR/raster.tif in tiles (the model part of `detect`), km^2/h.

Sizes come from the environment (gpu.sh sets them): BENCH_IMAGES, BENCH_IMAGE_SIZE, BENCH_STEPS,
BENCH_BATCH, BENCH_TRAIN_SIZE, BENCH_RASTER, BENCH_TILE, BENCH_OVERLAP, BENCH_PIXEL_M. Each
torchvision subcommand prints one JSON line.
"""

import json
import math
import os
import sys
import time

import numpy as np


def env(name, default):
    return type(default)(os.environ.get(name, default))


def shapes_image(rng, size, n_objects):
    """An RGB image of noisy background with filled ellipses; returns image and instance masks."""
    img = (rng.random((size, size, 3)) * 60 + 60).astype(np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    masks = []
    for _ in range(n_objects):
        cy, cx = rng.uniform(0.15, 0.85, 2) * size
        ry, rx = rng.uniform(0.04, 0.12, 2) * size
        m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        img[m] = rng.integers(150, 255, 3)
        masks.append(m)
    return img, masks


def polygon_of(mask):
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()
    ry, rx = (ys.max() - ys.min() + 1) / 2, (xs.max() - xs.min() + 1) / 2
    pts = []
    for k in range(24):
        a = 2 * math.pi * k / 24
        pts += [float(cx + rx * math.cos(a)), float(cy + ry * math.sin(a))]
    return pts, [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def cmd_data(out):
    from PIL import Image

    rng = np.random.default_rng(0)
    n_train = max(env("BENCH_BATCH", 4) * 4, 8)
    size = env("BENCH_TRAIN_SIZE", 1024)
    os.makedirs(f"{out}/images", exist_ok=True)
    images, annotations = [], []
    for i in range(n_train):
        img, masks = shapes_image(rng, size, 6)
        name = f"train_{i:03d}.png"
        Image.fromarray(img).save(f"{out}/images/{name}")
        images.append({"id": i + 1, "file_name": name, "width": size, "height": size})
        for m in masks:
            seg, bbox = polygon_of(m)
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": 1,
                                "segmentation": [seg], "bbox": bbox, "area": float(m.sum()), "iscrowd": 0})
    with open(f"{out}/instances.json", "w") as f:
        json.dump({"images": images, "annotations": annotations,
                   "categories": [{"id": 1, "name": "object"}]}, f)

    os.makedirs(f"{out}/predict", exist_ok=True)
    psize = env("BENCH_IMAGE_SIZE", 800)
    for i in range(env("BENCH_IMAGES", 20)):
        img, _ = shapes_image(rng, psize, 8)
        Image.fromarray(img).save(f"{out}/predict/img_{i:03d}.png")

    side = env("BENCH_RASTER", 8192)
    write_raster(f"{out}/raster.tif", side, rng)

    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2)
    torch.save(model.state_dict(), f"{out}/model.pth")
    print(json.dumps({"train_images": n_train, "train_size": size, "predict_size": psize, "raster": side}))


def write_raster(path, side, rng):
    """A tiled, georeferenced RGB GeoTIFF (EPSG:3857, BENCH_PIXEL_M metres per pixel)."""
    import tifffile

    pixel = env("BENCH_PIXEL_M", 0.3)
    data = np.empty((side, side, 3), np.uint8)
    block = 1024
    for y in range(0, side, block):
        for x in range(0, side, block):
            h, w = min(block, side - y), min(block, side - x)
            img, _ = shapes_image(rng, max(h, w), 12)
            data[y:y + h, x:x + w] = img[:h, :w]
    origin_x, origin_y = 500000.0, 5000000.0
    geokeys = [1, 1, 0, 3,
               1024, 0, 1, 1,      # GTModelTypeGeoKey: projected
               1025, 0, 1, 1,      # GTRasterTypeGeoKey: pixel is area
               3072, 0, 1, 3857]   # ProjectedCSTypeGeoKey: EPSG:3857
    extratags = [
        (33550, "d", 3, (pixel, pixel, 0.0), False),
        (33922, "d", 6, (0.0, 0.0, 0.0, origin_x, origin_y, 0.0), False),
        (34735, "H", len(geokeys), tuple(geokeys), False),
    ]
    tifffile.imwrite(path, data, photometric="rgb", tile=(512, 512), compression=None, extratags=extratags)


def load_tv_model(out, device, train):
    import torch
    import torchvision

    model = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2)
    model.load_state_dict(torch.load(f"{out}/model.pth", map_location="cpu"))
    model.to(device)
    model.train(train)
    return model


def device_and_sync():
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda"), torch.cuda.synchronize
    return torch.device("cpu"), (lambda: None)


def cmd_tv_predict(out):
    import torch
    from PIL import Image

    device, sync = device_and_sync()
    model = load_tv_model(out, device, False)
    files = sorted(os.listdir(f"{out}/predict"))
    tensors = [torch.from_numpy(np.asarray(Image.open(f"{out}/predict/{f}").convert("RGB"))).permute(2, 0, 1)
               .float().div(255) for f in files]
    with torch.no_grad():
        for t in tensors[:2]:
            model([t.to(device)])
        sync()
        start = time.perf_counter()
        dets = 0
        for t in tensors:
            dets += len(model([t.to(device)])[0]["scores"])
        sync()
    seconds = time.perf_counter() - start
    print(json.dumps({"side": "torchvision", "device": str(device), "images": len(tensors), "seconds": seconds,
                      "images_per_s": len(tensors) / seconds, "detections": dets}))


def cmd_tv_train(out):
    import torch
    from PIL import Image

    device, sync = device_and_sync()
    model = load_tv_model(out, device, True)
    coco = json.load(open(f"{out}/instances.json"))
    size = env("BENCH_TRAIN_SIZE", 1024)
    model.transform.min_size = (size,)
    model.transform.max_size = size
    by_image = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    samples = []
    for info in coco["images"]:
        img = torch.from_numpy(np.asarray(Image.open(f"{out}/images/{info['file_name']}").convert("RGB")))
        img = img.permute(2, 0, 1).float().div(255)
        anns = by_image.get(info["id"], [])
        boxes = torch.tensor([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                              for a in anns], dtype=torch.float32)
        masks = torch.zeros((len(anns), info["height"], info["width"]), dtype=torch.uint8)
        for k, a in enumerate(anns):
            x0, y0, w, h = [int(round(v)) for v in a["bbox"]]
            masks[k, y0:y0 + h, x0:x0 + w] = 1
        samples.append((img, {"boxes": boxes, "labels": torch.ones(len(anns), dtype=torch.int64), "masks": masks}))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.005, momentum=0.9, weight_decay=1e-4)
    batch = env("BENCH_BATCH", 4)
    steps = env("BENCH_STEPS", 50)
    warm = min(3, steps)

    def step(k):
        chunk = [samples[(k * batch + j) % len(samples)] for j in range(batch)]
        imgs = [c[0].to(device) for c in chunk]
        tg = [{key: v.to(device) for key, v in c[1].items()} for c in chunk]
        loss = sum(model(imgs, tg).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss)

    for k in range(warm):
        step(k)
    sync()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    losses = [step(warm + k) for k in range(steps)]
    sync()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    print(json.dumps({"side": "torchvision", "device": str(device), "steps": steps, "batch": batch, "size": size,
                      "seconds": seconds, "steps_per_s": steps / seconds, "peak_gib": peak,
                      "first_loss": losses[0], "last_loss": losses[-1]}))


def cmd_tv_detect(out):
    import tifffile
    import torch

    device, sync = device_and_sync()
    model = load_tv_model(out, device, False)
    raster = tifffile.imread(f"{out}/raster.tif")
    side = raster.shape[0]
    tile, overlap = env("BENCH_TILE", 512), env("BENCH_OVERLAP", 64)
    stride = tile - overlap
    pixel = env("BENCH_PIXEL_M", 0.3)
    tiles, dets = 0, 0
    start = time.perf_counter()
    with torch.no_grad():
        for y in range(0, max(side - overlap, 1), stride):
            for x in range(0, max(side - overlap, 1), stride):
                t = torch.from_numpy(np.ascontiguousarray(raster[y:y + tile, x:x + tile])).permute(2, 0, 1)
                out_ = model([t.to(device).float().div(255)])[0]
                dets += int((out_["scores"] >= 0.5).sum())
                tiles += 1
    sync()
    seconds = time.perf_counter() - start
    km2 = side * side * pixel * pixel / 1e6
    print(json.dumps({"side": "torchvision", "device": str(device), "tiles": tiles, "seconds": seconds,
                      "km2": km2, "km2_per_h": km2 / seconds * 3600, "detections": dets}))


if __name__ == "__main__":
    cmd, out = sys.argv[1], sys.argv[2]
    {"data": cmd_data, "tv-predict": cmd_tv_predict, "tv-train": cmd_tv_train, "tv-detect": cmd_tv_detect}[cmd](out)
