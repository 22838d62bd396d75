"""Train torchvision's Mask R-CNN (R18-FPN, from scratch) with the recipe `maskrcnn train` uses,
then score it on the dev split with pycocotools.

The recipe mirrors src/train/optim.rs and src/train/trainer.rs of this repository:
- backbone: resnet_fpn_backbone('resnet18', weights=None, trainable_layers=5, norm_layer=...):
  `--norm batch` is nn.BatchNorm2d (torchvision's from-scratch choice; ours `maskrcnn train --norm batch`, the
  default without --init), `--norm frozen` is FrozenBatchNorm2d with identity statistics (ours `--norm frozen`);
- AdamW(betas=(0.9, 0.99), weight_decay=0.01, eps=1e-5), fastai one-cycle (cosine warm-up from
  lr/25 over round(0.3 * steps), cosine decay to lr/25e4), the lr a pure function of the step;
- clip_grad_norm_(10) every step (our default --clip-grad-norm 10);
- pixels / 255, no augmentation, crowd and empty boxes dropped;
- batches of `--batch-size` images drawn in a seeded random order per epoch. Our trainer
  shuffles with ChaCha8 and this one with torch.Generator, so the two runs see the same images
  per epoch but in a different order.

Usage:
  python train_torchvision.py --train train.json --dev dev.json --images DIR --output RUN \
      --steps 640 --batch-size 2 --size 256 --lr 1e-3 --seed 0 --norm batch
Writes RUN/losses.jsonl (one line per step: losses, lr, seconds), RUN/model.pt,
RUN/dev_results.json (COCO results, masks as RLE) and RUN/metrics.json (pycocotools AP).
"""
import argparse
import contextlib
import io
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops.misc import FrozenBatchNorm2d

ONECYCLE_DIV = 25.0
ONECYCLE_FINAL_DIV = 25e4
ONECYCLE_PCT_START = 0.3


def onecycle_lr(step, total, peak):
    """Schedule::lr for ScheduleKind::Onecycle in src/train/optim.rs."""
    total = max(total, 1)
    warm = max(round(total * ONECYCLE_PCT_START), 1.0)
    start, end = peak / ONECYCLE_DIV, peak / ONECYCLE_FINAL_DIV

    def cosine(a, b, pct):
        return b + (a - b) / 2.0 * (math.cos(math.pi * pct) + 1.0)

    if step < warm:
        return cosine(start, peak, step / warm)
    rest = max(total - warm, 1.0)
    return cosine(peak, end, min((step - warm) / rest, 1.0))


def build_model(num_classes, size, norm):
    # torchvision's own from-scratch choice (weights=None) is a trainable BatchNorm2d.
    norm_layer = torch.nn.BatchNorm2d if norm == "batch" else FrozenBatchNorm2d
    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5, norm_layer=norm_layer)
    return MaskRCNN(backbone, num_classes=num_classes, min_size=size, max_size=size)


def load_image(images_dir, info):
    with Image.open(Path(images_dir) / info["file_name"]) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def load_example(coco, images_dir, image_id, label_of):
    info = coco.imgs[image_id]
    image = load_image(images_dir, info)
    boxes, labels, masks = [], [], []
    for ann in coco.imgToAnns[image_id]:
        x, y, w, h = ann["bbox"]
        if ann.get("iscrowd", 0) or not (w > 0 and h > 0):
            continue
        boxes.append([x, y, x + w, y + h])
        labels.append(label_of[ann["category_id"]])
        masks.append(coco.annToMask(ann))
    height, width = info["height"], info["width"]
    target = {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "masks": torch.from_numpy(np.stack(masks)) if masks else torch.zeros((0, height, width), dtype=torch.uint8),
    }
    return image, target


def quiet(fn):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn()


def coco_eval(gt, results, iou_type):
    if not results:
        return [0.0] * 12
    dt = quiet(lambda: gt.loadRes(results))
    ev = COCOeval(gt, dt, iou_type)
    quiet(ev.evaluate)
    quiet(ev.accumulate)
    print(f"--- pycocotools {iou_type}")
    ev.summarize()
    return [float(v) for v in ev.stats]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True)
    ap.add_argument("--dev", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--size", type=int, required=True, help="min_size = max_size")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--clip-grad-norm", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--norm", choices=["frozen", "batch"], default="frozen", help="ResNet norm layer (maskrcnn train --norm)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)

    train = quiet(lambda: COCO(args.train))
    cat_ids = sorted(train.cats)
    label_of = {c: i + 1 for i, c in enumerate(cat_ids)}
    model = build_model(len(cat_ids) + 1, args.size, args.norm)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01)

    # Same dataset order as our COCO reader: the JSON's image order.
    image_ids = [im["id"] for im in train.dataset["images"]]
    steps_per_epoch = math.ceil(len(image_ids) / args.batch_size)
    log = open(out / "losses.jsonl", "w")
    seconds = []
    for step in range(args.steps):
        t0 = time.perf_counter()
        epoch, position = divmod(step, steps_per_epoch)
        g = torch.Generator().manual_seed(args.seed * 1_000_003 + epoch)
        order = [image_ids[i] for i in torch.randperm(len(image_ids), generator=g).tolist()]
        batch = order[position * args.batch_size:(position + 1) * args.batch_size]
        images, targets = zip(*(load_example(train, args.images, i, label_of) for i in batch))
        lr = onecycle_lr(step, args.steps, args.lr)
        for group in opt.param_groups:
            group["lr"] = lr
        losses = model(list(images), list(targets))
        total = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, args.clip_grad_norm)
        opt.step()
        dt = time.perf_counter() - t0
        seconds.append(dt)
        line = {"step": step + 1, "epoch": epoch, "lr": lr, "loss": float(total), "grad_norm": float(grad_norm), "seconds": dt}
        line.update({k: float(v) for k, v in losses.items()})
        log.write(json.dumps(line) + "\n")
        log.flush()
        if (step + 1) % 8 == 0 or step + 1 == args.steps:
            print(f"step {step + 1}/{args.steps} loss {float(total):.4f} lr {lr:.3e} {dt:.2f} s/step", flush=True)
    torch.save(model.state_dict(), out / "model.pt")

    # Dev evaluation: torchvision's own postprocessing (score 0.05, NMS 0.5, 100 per image), masks
    # pasted at full resolution and thresholded at 0.5, as torchvision's reference evaluation does.
    dev = quiet(lambda: COCO(args.dev))
    model.eval()
    results = []
    t_eval = time.perf_counter()
    with torch.no_grad():
        for image_id in sorted(dev.imgs):
            out_img = model([load_image(args.images, dev.imgs[image_id])])[0]
            masks = (out_img["masks"][:, 0] > 0.5).numpy().astype(np.uint8)
            for k in range(len(out_img["scores"])):
                x0, y0, x1, y1 = (float(v) for v in out_img["boxes"][k])
                rle = mask_utils.encode(np.asfortranarray(masks[k]))
                rle["counts"] = rle["counts"].decode("ascii")
                results.append({
                    "image_id": image_id,
                    "category_id": cat_ids[int(out_img["labels"][k]) - 1],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "score": float(out_img["scores"][k]),
                    "segmentation": rle,
                })
    eval_seconds = time.perf_counter() - t_eval
    (out / "dev_results.json").write_text(json.dumps(results))
    segm = coco_eval(dev, results, "segm")
    bbox = coco_eval(dev, results, "bbox")
    metrics = {
        "steps": args.steps,
        "size": args.size,
        "norm": args.norm,
        "median_seconds_per_step": statistics.median(seconds),
        "mean_seconds_per_step": statistics.fmean(seconds),
        "total_train_seconds": sum(seconds),
        "dev_inference_seconds": eval_seconds,
        "detections": len(results),
        "segm_stats": segm,
        "bbox_stats": bbox,
        "segm_AP": segm[0], "segm_AP50": segm[1], "bbox_AP": bbox[0], "bbox_AP50": bbox[1],
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    print(json.dumps({k: v for k, v in metrics.items() if not k.endswith("_stats")}))


if __name__ == "__main__":
    main()
