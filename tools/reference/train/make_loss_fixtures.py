#!/usr/bin/env python3
"""Write the torchvision training-loss fixture the Rust `forward_train` is tested against.

Regenerate (CPU, one thread, deterministic; a few seconds):

    /work/venv/bin/python tools/reference/train/make_loss_fixtures.py

It loads the committed parity model `fixtures/parity/r18_tiny` (config.json + model.safetensors) into
torchvision's MaskRCNN (built by tools/reference/parity/make_parity_fixtures.py's `build_model`), puts it in train
mode and runs one forward/backward on a batch of two images with ground truth:
  image 0: the parity photo (COCO train2017 #165, CC BY 2.0) with its person/tie/scissors instances;
  image 1: a crop of its left 70 % flipped upside down, so the batch is padded and the second image has other sizes.
Random sampling is made reproducible by recording what BalancedPositiveNegativeSampler returned (the RPN's and the
RoI heads' positive/negative index lists per image); the Rust test injects those indices.

Writes fixtures/train/loss_r18_tiny.safetensors with:
  image.{i}                 [3, H, W] u8 (the input is this / 255 in f32, before the transform)
  target.{i}.boxes/labels/masks  (labels i64, masks u8 [K, H, W])
  rpn.pos.{i}, rpn.neg.{i}  sampled anchor indices (i64, ascending) per image
  roi.pos.{i}, roi.neg.{i}  sampled indices into proposals+GT per image
  proposals.{i}             RPN proposals (train mode, before GT boxes are appended)
  losses                    [5]: loss_classifier, loss_box_reg, loss_mask, loss_objectness, loss_rpn_box_reg
  grad.<param name>         gradients of the summed loss for a few parameters
and loss_r18_tiny.json with the same losses and the versions used.
"""

import json
import os
import sys
from collections import OrderedDict

import numpy as np
import torch
import torchvision
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "parity"))
import make_parity_fixtures as parity  # noqa: E402

REPO_ROOT = parity.REPO_ROOT
OUT_DIR = os.path.join(REPO_ROOT, "fixtures", "train")
LOSS_ORDER = ["loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"]
GRAD_PARAMS = [
    "rpn.head.cls_logits.weight",
    "rpn.head.bbox_pred.weight",
    "rpn.head.conv.0.0.weight",
    "roi_heads.box_predictor.cls_score.weight",
    "roi_heads.box_predictor.bbox_pred.weight",
    "roi_heads.box_head.fc7.weight",
    "roi_heads.mask_predictor.mask_fcn_logits.weight",
    "roi_heads.mask_head.0.0.weight",
    "backbone.fpn.layer_blocks.0.0.weight",
    "backbone.fpn.inner_blocks.1.0.weight",
    "backbone.body.layer2.0.conv1.weight",
]


class RecordingSampler:
    """Wraps a BalancedPositiveNegativeSampler and keeps the index lists it returned."""

    def __init__(self, inner):
        self.inner = inner
        self.calls = []

    def __call__(self, matched_idxs):
        pos, neg = self.inner(matched_idxs)
        self.calls.append(([torch.where(p)[0] for p in pos], [torch.where(n)[0] for n in neg]))
        return pos, neg


def second_image(image, target):
    """Left 70 % of the photo, flipped upside down, with targets recomputed from the masks."""
    _, H, W = image.shape
    w = int(W * 0.7)
    img = image[:, :, :w].flip(1).contiguous()
    masks = target["masks"][:, :, :w].flip(1).contiguous()
    boxes, labels, kept = [], [], []
    for k in range(masks.shape[0]):
        ys, xs = torch.where(masks[k] > 0)
        if len(xs) == 0:
            continue
        boxes.append([xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1])
        labels.append(int(target["labels"][k]))
        kept.append(k)
    return img, {
        "boxes": torch.tensor(boxes, dtype=torch.float32),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "masks": masks[kept].contiguous(),
    }


def main():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    folder = os.path.join(REPO_ROOT, "fixtures", "parity", "r18_tiny")
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    model = parity.build_model(cfg)
    model.load_state_dict(load_file(os.path.join(folder, "model.safetensors")), strict=True)

    coco = parity.load_coco()
    pil, target0 = parity.photo_and_targets(coco, parity.PHOTO_ID, 184, list(parity.PHOTO_CLASSES))
    image0 = parity.image_tensor(pil)
    image1, target1 = second_image(image0, target0)
    images, targets = [image0, image1], [target0, target1]

    model.rpn.fg_bg_sampler = RecordingSampler(model.rpn.fg_bg_sampler)
    model.roi_heads.fg_bg_sampler = RecordingSampler(model.roi_heads.fg_bg_sampler)
    recorded_proposals = []
    original_filter = model.rpn.filter_proposals

    def filter_and_record(*args, **kwargs):
        boxes, scores = original_filter(*args, **kwargs)
        recorded_proposals.extend(b.detach().clone() for b in boxes)
        return boxes, scores

    model.rpn.filter_proposals = filter_and_record
    model.train()
    losses = model([im.clone() for im in images], [{k: v.clone() for k, v in t.items()} for t in targets])
    total = sum(losses.values())
    model.zero_grad()
    total.backward()

    out = OrderedDict()
    for i, (im, t) in enumerate(zip(images, targets)):
        # u8 on disk: the input is u8 / 255 in f32, which the Rust side reproduces exactly.
        out[f"image.{i}"] = (im * 255.0).round().to(torch.uint8)
        assert torch.equal(out[f"image.{i}"].float() / 255.0, im)
        out[f"target.{i}.boxes"] = t["boxes"]
        out[f"target.{i}.labels"] = t["labels"]
        out[f"target.{i}.masks"] = t["masks"].to(torch.uint8)
        out[f"proposals.{i}"] = recorded_proposals[i]
    (rpn_pos, rpn_neg), = model.rpn.fg_bg_sampler.calls
    (roi_pos, roi_neg), = model.roi_heads.fg_bg_sampler.calls
    for i in range(len(images)):
        out[f"rpn.pos.{i}"] = rpn_pos[i]
        out[f"rpn.neg.{i}"] = rpn_neg[i]
        out[f"roi.pos.{i}"] = roi_pos[i]
        out[f"roi.neg.{i}"] = roi_neg[i]
    out["losses"] = torch.stack([losses[k].detach() for k in LOSS_ORDER])
    params = dict(model.named_parameters())
    for name in GRAD_PARAMS:
        out[f"grad.{name}"] = params[name].grad.detach().clone()
    os.makedirs(OUT_DIR, exist_ok=True)
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(OUT_DIR, "loss_r18_tiny.safetensors"),
              metadata={"format": "pt"})
    meta = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "generator": "tools/reference/train/make_loss_fixtures.py",
        "model": "fixtures/parity/r18_tiny",
        "losses": {k: losses[k].item() for k in LOSS_ORDER},
        "total": total.item(),
        "sampled": {
            "rpn": [[len(p), len(n)] for p, n in zip(rpn_pos, rpn_neg)],
            "roi": [[len(p), len(n)] for p, n in zip(roi_pos, roi_neg)],
        },
        "proposals": [len(p) for p in recorded_proposals],
        "image_sizes": [list(im.shape) for im in images],
        "num_gt": [len(t["labels"]) for t in targets],
    }
    with open(os.path.join(OUT_DIR, "loss_r18_tiny.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
