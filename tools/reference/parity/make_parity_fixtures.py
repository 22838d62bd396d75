#!/usr/bin/env python3
"""Write the torchvision Mask R-CNN parity fixtures the Rust model is tested against, stage by stage.

Regenerate (CPU only, one thread, deterministic: a rerun reproduces the files bit for bit; ~4 min on 1 core):

    /work/venv/bin/python tools/reference/parity/make_parity_fixtures.py          # committed fixtures
    /work/venv/bin/python tools/reference/parity/make_parity_fixtures.py --full   # + fixtures/generated/r50_full
    /work/venv/bin/python tools/reference/parity/make_parity_fixtures.py --only r18_tiny   # one of ops, r18_tiny,
                                                                # r50_small, loader, r50_full

Generated with torch 2.15.0 / torchvision 0.29.2 (each fixture folder's meta.json records the versions actually
used). Other versions may differ in the last bits; the fixtures are only meaningful together with their meta.json.

What it writes (see fixtures/parity/README.md for the key list):
  fixtures/parity/<name>/{config.json, meta.json, image.png, model.safetensors, outputs.safetensors}
      name = r18_tiny, r50_small (models trained a few hundred SGD steps on one photo so detections are confident).
  fixtures/parity/loader/{config.json, model.safetensors, model.pth, model_legacy_wrapped.pth}: one small random
      model saved as safetensors, as torch.save(state_dict) (zip format), and with pre-0.13 key names wrapped as
      {"model": sd, "opt": ..., "epoch": ...}; kept apart from the parity models to keep the repo small.
  fixtures/parity/ops/{ops.safetensors, ops.json}: standalone op cases (roi_align, nms, box coder, paste masks,
      resize interpolation, point_sample, level mapper, cell anchors).
  fixtures/generated/r50_full/ (git-ignored, --full): the real maskrcnn_resnet50_fpn architecture with seeded
      random weights on a full-size COCO photo.

The config dict mirrors src/config.rs (serde field names); `default_config()` is torchvision's
maskrcnn_resnet50_fpn default, and every fixture's config.json spells out every field.
"""

import argparse
import copy
import json
import math
import os
import sys
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from safetensors.torch import save_file
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import maskrcnn_inference, paste_masks_in_image
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.ops import MultiScaleRoIAlign, boxes as box_ops
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d
from torchvision.ops.poolers import LevelMapper

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
COCO_DIR = os.path.join(REPO_ROOT, "..", "shared", "data", "coco128-permissive")
PARITY_DIR = os.path.join(REPO_ROOT, "fixtures", "parity")
GENERATED_DIR = os.path.join(REPO_ROOT, "fixtures", "generated")

# COCO train2017 image 165 (CC BY 2.0): two people cutting a ribbon: person x2, tie, scissors.
PHOTO_ID = 165
# Model label for each COCO category used (0 is background, torchvision's convention).
PHOTO_CLASSES = OrderedDict([(1, "person"), (32, "tie"), (87, "scissors")])


# ----------------------------------------------------------------------------------------------------------------
# Config (same field names and defaults as src/config.rs)


def default_config():
    return {
        "num_classes": 91,
        "class_names": [],
        "backbone": {
            "depth": 50,
            "returned_layers": [1, 2, 3, 4],
            "trainable_layers": 3,
            "fpn_out_channels": 256,
            "in_channels": 3,
        },
        "transform": {
            "min_size": 800,
            "max_size": 1333,
            "image_mean": [0.485, 0.456, 0.406],
            "image_std": [0.229, 0.224, 0.225],
            "size_divisible": 32,
        },
        "rpn": {
            "anchor_sizes": [[32.0], [64.0], [128.0], [256.0], [512.0]],
            "aspect_ratios": [0.5, 1.0, 2.0],
            "pre_nms_top_n_train": 2000,
            "pre_nms_top_n_test": 1000,
            "post_nms_top_n_train": 2000,
            "post_nms_top_n_test": 1000,
            "nms_thresh": 0.7,
            "fg_iou_thresh": 0.7,
            "bg_iou_thresh": 0.3,
            "batch_size_per_image": 256,
            "positive_fraction": 0.5,
            "score_thresh": 0.0,
        },
        "roi_heads": {
            "box_roi_output_size": 7,
            "mask_roi_output_size": 14,
            "sampling_ratio": 2,
            "representation_size": 1024,
            "box_score_thresh": 0.05,
            "box_nms_thresh": 0.5,
            "box_detections_per_img": 100,
            "box_fg_iou_thresh": 0.5,
            "box_bg_iou_thresh": 0.5,
            "box_batch_size_per_image": 512,
            "box_positive_fraction": 0.25,
            "bbox_reg_weights": [10.0, 10.0, 5.0, 5.0],
            "mask_layers": [256, 256, 256, 256],
            "mask_dilation": 1,
            "mask_predictor_channels": 256,
        },
        "pointrend": False,
    }


def tiny_config(depth, fpn_out_channels, returned_layers, anchor_sizes):
    """The committed parity configs: a ResNet cut after its last returned stage, small heads, 160/256 px."""
    cfg = default_config()
    cfg["num_classes"] = 1 + len(PHOTO_CLASSES)
    cfg["class_names"] = ["__background__"] + list(PHOTO_CLASSES.values())
    cfg["backbone"].update(depth=depth, returned_layers=returned_layers, fpn_out_channels=fpn_out_channels)
    cfg["transform"].update(min_size=160, max_size=256)
    cfg["rpn"]["anchor_sizes"] = anchor_sizes
    # 100 proposals (not 1000) keeps box_roi_pool in outputs.safetensors small; pre-NMS top-n stays 1000 so the
    # per-level top-k still cuts level '0'.
    cfg["rpn"]["post_nms_top_n_test"] = 100
    cfg["roi_heads"].update(
        representation_size=64, mask_layers=[32, 32], mask_predictor_channels=32, box_detections_per_img=20
    )
    return cfg


def to_anchor_tuple(sizes):
    # Anchor sizes are ints in torchvision's own configs; integral floats give identical anchors.
    return tuple(tuple(int(s) if float(s).is_integer() else float(s) for s in level) for level in sizes)


def build_model(cfg):
    bb, tf, rpn, rh = cfg["backbone"], cfg["transform"], cfg["rpn"], cfg["roi_heads"]
    if cfg["pointrend"]:
        raise ValueError("PointRend has no torchvision reference; this script only builds the plain mask head")
    resnet = torchvision.models.resnet.__dict__[f"resnet{bb['depth']}"](weights=None, norm_layer=FrozenBatchNorm2d)
    if bb["in_channels"] != 3:
        resnet.conv1 = nn.Conv2d(bb["in_channels"], 64, kernel_size=7, stride=2, padding=3, bias=False)

    # Same as torchvision's _resnet_fpn_extractor, except that it hard-codes 256 FPN channels.
    trainable = bb["trainable_layers"]
    layers_to_train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable]
    if trainable == 5:
        layers_to_train.append("bn1")
    for name, parameter in resnet.named_parameters():
        if all(not name.startswith(layer) for layer in layers_to_train):
            parameter.requires_grad_(False)
    returned = bb["returned_layers"]
    return_layers = {f"layer{k}": str(v) for v, k in enumerate(returned)}
    in_channels_stage2 = resnet.inplanes // 8
    in_channels_list = [in_channels_stage2 * 2 ** (i - 1) for i in returned]
    C = bb["fpn_out_channels"]
    backbone = BackboneWithFPN(resnet, return_layers, in_channels_list, C, extra_blocks=LastLevelMaxPool())

    n_maps = len(returned) + 1
    if len(rpn["anchor_sizes"]) != n_maps:
        raise ValueError(f"need one anchor size list per feature map ({n_maps}), got {rpn['anchor_sizes']}")
    anchor_generator = AnchorGenerator(to_anchor_tuple(rpn["anchor_sizes"]), (tuple(rpn["aspect_ratios"]),) * n_maps)
    level_names = [str(i) for i in range(len(returned))]
    box_roi_pool = MultiScaleRoIAlign(level_names, rh["box_roi_output_size"], rh["sampling_ratio"])
    mask_roi_pool = MultiScaleRoIAlign(level_names, rh["mask_roi_output_size"], rh["sampling_ratio"])
    res = rh["box_roi_output_size"]
    model = MaskRCNN(
        backbone,
        num_classes=None,
        min_size=tf["min_size"],
        max_size=tf["max_size"],
        image_mean=tf["image_mean"],
        image_std=tf["image_std"],
        size_divisible=tf["size_divisible"],
        rpn_anchor_generator=anchor_generator,
        rpn_pre_nms_top_n_train=rpn["pre_nms_top_n_train"],
        rpn_pre_nms_top_n_test=rpn["pre_nms_top_n_test"],
        rpn_post_nms_top_n_train=rpn["post_nms_top_n_train"],
        rpn_post_nms_top_n_test=rpn["post_nms_top_n_test"],
        rpn_nms_thresh=rpn["nms_thresh"],
        rpn_fg_iou_thresh=rpn["fg_iou_thresh"],
        rpn_bg_iou_thresh=rpn["bg_iou_thresh"],
        rpn_batch_size_per_image=rpn["batch_size_per_image"],
        rpn_positive_fraction=rpn["positive_fraction"],
        rpn_score_thresh=rpn["score_thresh"],
        box_roi_pool=box_roi_pool,
        box_head=TwoMLPHead(C * res * res, rh["representation_size"]),
        box_predictor=FastRCNNPredictor(rh["representation_size"], cfg["num_classes"]),
        box_score_thresh=rh["box_score_thresh"],
        box_nms_thresh=rh["box_nms_thresh"],
        box_detections_per_img=rh["box_detections_per_img"],
        box_fg_iou_thresh=rh["box_fg_iou_thresh"],
        box_bg_iou_thresh=rh["box_bg_iou_thresh"],
        box_batch_size_per_image=rh["box_batch_size_per_image"],
        box_positive_fraction=rh["box_positive_fraction"],
        bbox_reg_weights=tuple(rh["bbox_reg_weights"]),
        mask_roi_pool=mask_roi_pool,
        mask_head=MaskRCNNHeads(C, rh["mask_layers"], rh["mask_dilation"]),
        mask_predictor=MaskRCNNPredictor(rh["mask_layers"][-1], rh["mask_predictor_channels"], cfg["num_classes"]),
    )
    return model


def randomise_frozen_bn(model, generator):
    """Non-trivial BN buffers so the Rust side really has to fold running stats, not just pass through."""
    for module in model.modules():
        if isinstance(module, FrozenBatchNorm2d):
            n = module.weight.numel()
            module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)


# ----------------------------------------------------------------------------------------------------------------
# Data


def load_coco():
    path = os.path.join(COCO_DIR, "instances.json")
    if not os.path.exists(path):
        sys.exit(f"missing {path}: the shared COCO sample must sit at ../shared/data beside the repo")
    with open(path) as f:
        return json.load(f)


def photo_and_targets(coco, image_id, width, classes):
    """The photo resized to `width` (photo aspect kept, Lanczos) plus its boxes/masks remapped to model classes."""
    from pycocotools import mask as mask_utils

    info = next(im for im in coco["images"] if im["id"] == image_id)
    src = Image.open(os.path.join(COCO_DIR, "images", info["file_name"])).convert("RGB")
    W0, H0 = src.size
    W, H = width, round(H0 * width / W0)
    img = src if (W, H) == (W0, H0) else src.resize((W, H), Image.LANCZOS)
    label_of = {cat: i + 1 for i, cat in enumerate(classes)}
    boxes, labels, masks = [], [], []
    for ann in coco["annotations"]:
        if ann["image_id"] != info["id"] or ann["iscrowd"] or ann["category_id"] not in label_of:
            continue
        rles = mask_utils.frPyObjects(ann["segmentation"], H0, W0)
        m = mask_utils.decode(mask_utils.merge(rles))
        m = np.array(Image.fromarray(m * 255).resize((W, H), Image.BILINEAR)) >= 128
        x, y, w, h = ann["bbox"]
        boxes.append([x * W / W0, y * H / H0, (x + w) * W / W0, (y + h) * H / H0])
        labels.append(label_of[ann["category_id"]])
        masks.append(m)
    target = {
        "boxes": torch.tensor(boxes, dtype=torch.float32),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "masks": torch.from_numpy(np.stack(masks).astype(np.uint8)),
    }
    return img, target


def image_tensor(pil_image):
    arr = np.asarray(pil_image, dtype=np.uint8)
    # u8 / 255 in f32: the Rust side can reproduce this bit-for-bit from the PNG.
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous().float() / 255.0


# ----------------------------------------------------------------------------------------------------------------
# Training to peaked outputs


def train_to_peaked(model, image, target, steps, lr):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    model.train()
    for step in range(steps):
        losses = model([image], [target])
        loss = sum(losses.values())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"  step {step:4d} loss {loss.item():.4f} " + " ".join(f"{k}={v.item():.3f}" for k, v in losses.items()))
    model.eval()


# ----------------------------------------------------------------------------------------------------------------
# Stage-by-stage inference dump (mirrors GeneralizedRCNN.forward and RoIHeads.forward in eval mode)


@torch.no_grad()
def run_stages(model, image):
    out = OrderedDict()
    diag = {}
    out["input_image"] = image
    original_sizes = [tuple(image.shape[-2:])]
    images, _ = model.transform([image])
    out["transformed_image"] = images.tensors
    out["image_size_after_resize"] = torch.tensor(images.image_sizes[0], dtype=torch.int64)

    features = model.backbone(images.tensors)
    for name, f in features.items():
        out[f"features.{name}"] = f

    rpn = model.rpn
    feature_list = list(features.values())
    objectness, deltas = rpn.head(feature_list)
    for level, (o, d) in enumerate(zip(objectness, deltas)):
        out[f"rpn.objectness.{level}"] = o
        out[f"rpn.deltas.{level}"] = d
    anchors = rpn.anchor_generator(images, feature_list)
    out["anchors"] = anchors[0]
    num_anchors_per_level = [o[0].numel() for o in objectness]
    obj_flat, deltas_flat = concat_box_prediction_layers(objectness, deltas)
    decoded = rpn.box_coder.decode(deltas_flat, anchors).view(1, -1, 4)
    out["rpn.decoded_proposals"] = decoded[0]
    proposals, proposal_scores = rpn.filter_proposals(decoded, obj_flat, images.image_sizes, num_anchors_per_level)
    check_equal(proposals[0], rpn(images, features)[0][0], "proposals vs rpn.forward")
    out["proposals"] = proposals[0]
    out["proposals.scores"] = proposal_scores[0]
    diag["rpn_topk_margins"] = topk_margins(obj_flat.view(1, -1)[0], num_anchors_per_level, rpn.pre_nms_top_n())
    diag["rpn_nms_iou_margin"] = rpn_nms_margin(rpn, decoded, obj_flat, images.image_sizes, num_anchors_per_level)

    rh = model.roi_heads
    image_sizes = images.image_sizes
    box_features = rh.box_roi_pool(features, proposals, image_sizes)
    out["box_roi_pool"] = box_features
    out["box_roi_pool.levels"] = rh.box_roi_pool.map_levels(proposals)
    box_features = rh.box_head(box_features)
    out["box_head"] = box_features
    class_logits, box_regression = rh.box_predictor(box_features)
    out["class_logits"] = class_logits
    out["box_regression"] = box_regression
    boxes, scores, labels = rh.postprocess_detections(class_logits, box_regression, proposals, image_sizes)
    out["detections.boxes"] = boxes[0]
    out["detections.scores"] = scores[0]
    out["detections.labels"] = labels[0]

    mask_features = rh.mask_roi_pool(features, boxes, image_sizes)
    out["mask_roi_pool"] = mask_features
    out["mask_roi_pool.levels"] = rh.mask_roi_pool.map_levels(boxes)
    mask_features = rh.mask_head(mask_features)
    out["mask_head"] = mask_features
    mask_logits = rh.mask_predictor(mask_features)
    out["mask_logits"] = mask_logits
    mask_probs = maskrcnn_inference(mask_logits, labels)
    out["mask_probs"] = mask_probs[0]

    result = [{"boxes": boxes[0], "labels": labels[0], "scores": scores[0], "masks": mask_probs[0]}]
    result = model.transform.postprocess(result, image_sizes, original_sizes)
    for k in ["boxes", "scores", "labels", "masks"]:
        out[f"final.{k}"] = result[0][k]

    reference = model([image])[0]
    for k in ["boxes", "scores", "labels", "masks"]:
        check_equal(out[f"final.{k}"], reference[k], f"final.{k} vs model.forward")
    diag.update(decision_margins(model, out, class_logits, box_regression, proposals, image_sizes))
    return out, diag


def check_equal(a, b, what):
    if a.shape != b.shape or not torch.equal(a, b):
        raise AssertionError(f"stage-by-stage replay differs from torchvision's own forward: {what}")


def nms_iou_margin(boxes, scores, groups, iou_threshold, limit):
    """Smallest |IoU - threshold| over the comparisons greedy NMS makes until `limit` boxes are kept, and how many
    boxes were already kept then (a flip there only changes outputs from that rank on)."""
    order = scores.sort(descending=True, stable=True).indices
    kept = []
    margin, kept_before = float("inf"), None
    for i in order.tolist():
        same = [k for k in kept if groups[k] == groups[i]]
        if same:
            iou = box_ops.box_iou(boxes[i : i + 1], boxes[same])[0]
            closest = float((iou - iou_threshold).abs().min())
            if closest < margin:
                margin, kept_before = closest, len(kept)
            if bool((iou > iou_threshold).any()):
                continue
        kept.append(i)
        if len(kept) == limit:
            break
    return {"iou_margin": margin, "kept_before": kept_before}


def rpn_nms_margin(rpn, decoded, objectness, image_sizes, num_anchors_per_level):
    """Replays RegionProposalNetwork.filter_proposals for image 0 up to its batched NMS."""
    ob = objectness.reshape(1, -1)
    levels = torch.cat([torch.full((n,), i, dtype=torch.int64) for i, n in enumerate(num_anchors_per_level)])
    top = rpn._get_top_n_idx(ob, num_anchors_per_level)[0]
    boxes = box_ops.clip_boxes_to_image(decoded[0][top], image_sizes[0])
    scores, lvl = torch.sigmoid(ob[0][top]), levels[top]
    keep = box_ops.remove_small_boxes(boxes, rpn.min_size)
    boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
    keep = torch.where(scores >= rpn.score_thresh)[0]
    return nms_iou_margin(boxes[keep], scores[keep], lvl[keep], rpn.nms_thresh, rpn.post_nms_top_n())


def topk_margins(objectness, num_anchors_per_level, k):
    """Logit gap between the k-th and (k+1)-th anchor of each level: how safe the pre-NMS top-k cut is."""
    margins = []
    for ob in objectness.split(num_anchors_per_level):
        if ob.numel() <= k:
            margins.append(None)
            continue
        top = ob.topk(k + 1).values
        margins.append(float(top[k - 1] - top[k]))
    return margins


def decision_margins(model, out, class_logits, box_regression, proposals, image_sizes):
    """How close the eval decisions are to a threshold, so a tiny float difference cannot flip them."""
    rh = model.roi_heads
    scores = F.softmax(class_logits, -1)[:, 1:].reshape(-1)
    thresh = rh.score_thresh
    score_margin = float((scores - thresh).abs().min())
    det_boxes = out["detections.boxes"]
    det_scores = out["detections.scores"]
    det_labels = out["detections.labels"]
    # Largest IoU any detection has with another kept box of the same class (must be clearly under nms_thresh).
    same_class_iou = 0.0
    for c in det_labels.unique():
        b = det_boxes[det_labels == c]
        if len(b) > 1:
            iou = box_ops.box_iou(b, b)
            iou.fill_diagonal_(0)
            same_class_iou = max(same_class_iou, float(iou.max()))
    # Replay postprocess_detections' candidate list for the box NMS margin.
    boxes = box_ops.clip_boxes_to_image(rh.box_coder.decode(box_regression, proposals)[:, 1:].reshape(-1, 4),
                                        image_sizes[0])
    labels = torch.arange(1, class_logits.shape[-1]).repeat(class_logits.shape[0])
    keep = torch.where(scores > thresh)[0]
    boxes, cand_scores, labels = boxes[keep], scores[keep], labels[keep]
    keep = box_ops.remove_small_boxes(boxes, 1e-2)
    box_nms_margin = nms_iou_margin(boxes[keep], cand_scores[keep], labels[keep], rh.nms_thresh, rh.detections_per_img)
    sorted_scores = det_scores.sort(descending=True).values
    gaps = (sorted_scores[:-1] - sorted_scores[1:]) if len(sorted_scores) > 1 else torch.zeros(0)
    return {
        "box_score_thresh_min_distance": score_margin,
        "detections_max_same_class_iou": same_class_iou,
        "box_nms_iou_margin": box_nms_margin,
        "detections_min_score_gap": float(gaps.min()) if len(gaps) else None,
    }


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints


def legacy_state_dict(sd):
    """Key names as torchvision < 0.13 wrote them (what e.g. maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth holds).

    0.13 moved these convs into Conv2dNormActivation blocks; RPNHead, MaskRCNNHeads and FeaturePyramidNetwork
    (all `_version = 2`) rename the old keys in `_load_from_state_dict` when the checkpoint has no version metadata.
    """
    out = OrderedDict()
    for key, value in sd.items():
        parts = key.split(".")
        new = key
        if key.startswith("rpn.head.conv.0.0."):
            new = "rpn.head.conv." + parts[-1]
        elif key.startswith("roi_heads.mask_head.") and parts[3] == "0" and parts[2].isdigit():
            new = f"roi_heads.mask_head.mask_fcn{int(parts[2]) + 1}.{parts[-1]}"
        elif key.startswith("backbone.fpn.inner_blocks.") or key.startswith("backbone.fpn.layer_blocks."):
            # backbone.fpn.inner_blocks.<i>.0.<weight|bias>
            new = ".".join(parts[:4] + parts[5:])
        out[new] = value
    return out


def save_checkpoints(model, folder, with_pth, with_legacy):
    sd = OrderedDict((k, v.detach().contiguous().clone()) for k, v in model.state_dict().items())
    save_file(dict(sd), os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    files = ["model.safetensors"]
    if with_pth:
        torch.save(model.state_dict(), os.path.join(folder, "model.pth"))
        files.append("model.pth")
    if with_legacy:
        legacy = legacy_state_dict(sd)
        wrapped = {
            "model": legacy,
            "opt": {"name": "sgd", "lr": 0.02, "momentum": 0.9, "weight_decay": 1e-4},
            "epoch": 26,
        }
        path = os.path.join(folder, "model_legacy_wrapped.pth")
        torch.save(wrapped, path)
        files.append("model_legacy_wrapped.pth")
        # torchvision itself must accept the legacy names and produce the same tensors.
        fresh = copy.deepcopy(model)
        for p in fresh.state_dict().values():
            p.zero_()
        fresh.load_state_dict(torch.load(path, weights_only=True)["model"], strict=True)
        for k, v in fresh.state_dict().items():
            check_equal(v, sd[k], f"legacy checkpoint round trip: {k}")
        renamed = sorted(k for k in legacy if k not in sd)
        print(f"  legacy checkpoint: {len(renamed)} renamed keys, e.g. {renamed[:3]}")
    return files


def write_fixture(folder, cfg, model, image_pil, image_t, extra_meta, with_pth, with_legacy):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    if image_pil is not None:
        image_pil.save(os.path.join(folder, "image.png"), optimize=True)
    outputs, diag = run_stages(model, image_t)
    tensors = OrderedDict()
    for k, v in outputs.items():
        v = v.detach()
        tensors[k] = (v if v.dtype == torch.int64 else v.float()).contiguous().clone()
    save_file(dict(tensors), os.path.join(folder, "outputs.safetensors"), metadata={"format": "pt"})
    files = save_checkpoints(model, folder, with_pth, with_legacy)
    meta = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "generator": "tools/reference/parity/make_parity_fixtures.py",
        "weights": files,
        "decision_margins": diag,
        "outputs": {k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")} for k, v in tensors.items()},
    }
    meta.update(extra_meta)
    with open(os.path.join(folder, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    print_detections(outputs, cfg)
    print(f"  margins: {json.dumps(diag)}")
    return outputs


def print_detections(outputs, cfg):
    names = cfg["class_names"]
    print(f"  input {tuple(outputs['input_image'].shape)} -> resized {outputs['image_size_after_resize'].tolist()}"
          f", batched {tuple(outputs['transformed_image'].shape)}, {len(outputs['proposals'])} proposals")
    for b, s, l in zip(outputs["final.boxes"], outputs["final.scores"], outputs["final.labels"]):
        name = names[l] if l < len(names) else str(int(l))
        print(f"    {name:>10s} {float(s):.4f}  [{', '.join(f'{x:.2f}' for x in b.tolist())}]")


# ----------------------------------------------------------------------------------------------------------------
# The three model fixtures


def make_small(name, cfg, photo_width, steps, seed, coco, with_pth=False, with_legacy=False):
    print(f"== {name}")
    torch.manual_seed(seed)
    model = build_model(cfg)
    with torch.no_grad():
        randomise_frozen_bn(model, torch.Generator().manual_seed(seed + 1))
    pil, target = photo_and_targets(coco, PHOTO_ID, photo_width, list(PHOTO_CLASSES))
    image = image_tensor(pil)
    train_to_peaked(model, image, target, steps=steps, lr=0.02)
    info = next(im for im in coco["images"] if im["id"] == PHOTO_ID)
    meta = {
        "image": {
            "file": "image.png",
            "source": f"COCO train2017 {info['file_name']} ({info['flickr_url']}), CC BY 2.0, resized",
            "size_hw": [pil.size[1], pil.size[0]],
        },
        "training": {"steps": steps, "seed": seed, "gt_labels": target["labels"].tolist(),
                     "gt_boxes": target["boxes"].tolist()},
    }
    return write_fixture(os.path.join(PARITY_DIR, name), cfg, model, pil, image, meta, with_pth, with_legacy)


def make_loader(seed=3):
    """Checkpoint-format fixtures of one small random model: safetensors, torch zip pickle, legacy names + wrapper."""
    print("== loader")
    torch.manual_seed(seed)
    cfg = tiny_config(18, 16, [1], [[32.0], [64.0]])
    cfg["roi_heads"].update(representation_size=16, mask_layers=[16], mask_predictor_channels=16)
    model = build_model(cfg)
    with torch.no_grad():
        randomise_frozen_bn(model, torch.Generator().manual_seed(seed + 1))
    folder = os.path.join(PARITY_DIR, "loader")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    files = save_checkpoints(model, folder, with_pth=True, with_legacy=True)
    meta = {"torch": torch.__version__, "torchvision": torchvision.__version__, "weights": files,
            "generator": "tools/reference/parity/make_parity_fixtures.py",
            "note": "random weights, no outputs: only for checkpoint parsing and key-renaming tests"}
    with open(os.path.join(folder, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")


def make_full(coco, seed=7):
    print("== r50_full (not committed)")
    torch.manual_seed(seed)
    cfg = default_config()
    model = build_model(cfg)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        randomise_frozen_bn(model, g)
    model.eval()
    info = next(im for im in coco["images"] if im["id"] == PHOTO_ID)
    pil = Image.open(os.path.join(COCO_DIR, "images", info["file_name"])).convert("RGB")
    image = image_tensor(pil)
    # Untrained heads give near-uniform softmax (no detection passes 0.05) and near-equal objectness. Rescale the
    # last layers from the statistics of their inputs so logits spread over several units.
    with torch.no_grad():
        images, _ = model.transform([image])
        features = model.backbone(images.tensors)
        rpn_head = model.rpn.head
        t = [rpn_head.conv(f) for f in features.values()]
        std = torch.cat([rpn_head.cls_logits(x).flatten() for x in t]).std()
        rpn_head.cls_logits.weight.mul_(3.0 / std)
        proposals, _ = model.rpn(images, features)
        rh = model.roi_heads
        x = rh.box_head(rh.box_roi_pool(features, proposals, images.image_sizes))
        std = rh.box_predictor.cls_score(x).std()
        rh.box_predictor.cls_score.weight.mul_(6.0 / std)
        rh.box_predictor.bbox_pred.weight.mul_(0.5 / rh.box_predictor.bbox_pred(x).std())
        boxes, _, _ = rh.postprocess_detections(*rh.box_predictor(x), proposals, images.image_sizes)
        m = rh.mask_predictor(rh.mask_head(rh.mask_roi_pool(features, boxes, images.image_sizes)))
        rh.mask_predictor.mask_fcn_logits.weight.mul_(4.0 / m.std())
    meta = {"image": {"file": os.path.join("../shared/data/coco128-permissive/images", info["file_name"]),
                      "size_hw": [pil.size[1], pil.size[0]]}}
    write_fixture(os.path.join(GENERATED_DIR, "r50_full"), cfg, model, None, image, meta, True, False)


# ----------------------------------------------------------------------------------------------------------------
# Standalone op cases


def point_sample(input, point_coords, **kwargs):
    """PointRend's point_sample (detectron2): coords in [0, 1] x [0, 1] of the whole map, grid_sample underneath."""
    add_dim = point_coords.dim() == 3
    if add_dim:
        point_coords = point_coords.unsqueeze(2)
    output = F.grid_sample(input, 2.0 * point_coords - 1.0, **kwargs)
    return output.squeeze(3) if add_dim else output


def make_ops(seed=1234):
    print("== ops")
    g = torch.Generator().manual_seed(seed)
    t = OrderedDict()
    cases = OrderedDict()

    # roi_align: two images, boxes inside, partly outside, fully outside, tiny, degenerate (x2 < x1).
    feat = torch.randn(2, 3, 13, 17, generator=g)
    t["roi_align.input"] = feat
    scale = 0.25
    H, W = 13 / scale, 17 / scale
    rand_boxes = []
    for _ in range(12):
        x1, y1 = float(torch.rand(1, generator=g)) * W * 0.8, float(torch.rand(1, generator=g)) * H * 0.8
        w, h = 2 + float(torch.rand(1, generator=g)) * W * 0.5, 2 + float(torch.rand(1, generator=g)) * H * 0.5
        rand_boxes.append([x1, y1, x1 + w, y1 + h])
    special = [
        [-10.0, -6.0, 20.0, 15.0],  # partly outside top-left
        [50.0, 40.0, 90.0, 70.0],  # partly outside bottom-right
        [-40.0, -40.0, -20.0, -30.0],  # fully outside
        [10.0, 10.0, 10.3, 10.2],  # tiny
        [5.0, 5.0, 5.0, 5.0],  # zero size
        [30.0, 20.0, 25.0, 18.0],  # x2 < x1
        [0.0, 0.0, W, H],  # whole map
        [-2.0, 3.0, 100.0, 60.0],  # wider than the map
    ]
    all_boxes = torch.tensor(rand_boxes + special, dtype=torch.float32)
    batch_idx = torch.tensor([i % 2 for i in range(len(all_boxes))], dtype=torch.float32)
    rois = torch.cat([batch_idx[:, None], all_boxes], dim=1)
    t["roi_align.rois"] = rois
    for aligned in [False, True]:
        for sr in [-1, 0, 1, 2, 3]:
            for out_hw in [(7, 7), (5, 3)]:
                key = f"roi_align.aligned{int(aligned)}.sr{sr}.out{out_hw[0]}x{out_hw[1]}"
                t[key] = torchvision.ops.roi_align(feat, rois, out_hw, spatial_scale=scale, sampling_ratio=sr,
                                                   aligned=aligned)
                cases[key] = {"op": "roi_align", "input": "roi_align.input", "rois": "roi_align.rois",
                              "output_size": list(out_hw), "spatial_scale": scale, "sampling_ratio": sr,
                              "aligned": aligned}

    # nms: random boxes with duplicated scores, plus hand-made IoU = threshold cases (IoU > thresh suppresses).
    n = 60
    xy = torch.rand(n, 2, generator=g) * 50
    wh = torch.rand(n, 2, generator=g) * 30 + 1
    boxes = torch.cat([xy, xy + wh], dim=1)
    scores = torch.rand(n, generator=g)
    scores[10:20] = scores[0:10]  # exact ties
    scores[30:33] = 0.5
    t["nms.random.boxes"] = boxes
    t["nms.random.scores"] = scores
    for thr in [0.3, 0.5, 0.7]:
        key = f"nms.random.keep.iou{thr}"
        t[key] = torchvision.ops.nms(boxes, scores, thr)
        cases[key] = {"op": "nms", "boxes": "nms.random.boxes", "scores": "nms.random.scores", "iou_threshold": thr}
    # Pairs with IoU exactly 0.5 (inter 2, union 4) and exactly 1/3; the second box of each pair must survive
    # at threshold 0.5 (only IoU > threshold suppresses).
    exact = torch.tensor([[0, 0, 3, 1], [1, 0, 4, 1], [10, 0, 12, 1], [11, 0, 13, 1],
                          [20, 20, 24, 22], [20, 20, 24, 22]], dtype=torch.float32)
    exact_scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.5])
    t["nms.exact.boxes"] = exact
    t["nms.exact.scores"] = exact_scores
    for thr in [0.5, 1.0 / 3.0, 0.49]:
        key = f"nms.exact.keep.iou{thr:.4f}"
        t[key] = torchvision.ops.nms(exact, exact_scores, thr)
        cases[key] = {"op": "nms", "boxes": "nms.exact.boxes", "scores": "nms.exact.scores", "iou_threshold": thr}
    idxs = torch.randint(0, 4, (n,), generator=g)
    t["batched_nms.idxs"] = idxs
    key = "batched_nms.keep.iou0.5"
    t[key] = box_ops.batched_nms(boxes, scores, idxs, 0.5)
    cases[key] = {"op": "batched_nms", "boxes": "nms.random.boxes", "scores": "nms.random.scores",
                  "idxs": "batched_nms.idxs", "iou_threshold": 0.5,
                  "note": "<= 1000 boxes on CPU: torchvision offsets boxes per class (coordinate trick)"}
    # > 1000 boxes takes torchvision's per-class loop (_batched_nms_vanilla); distinct scores so order is defined.
    nb = 1200
    xy = torch.rand(nb, 2, generator=g) * 300
    wh = torch.rand(nb, 2, generator=g) * 60 + 1
    big_boxes = torch.cat([xy, xy + wh], dim=1)
    big_scores = torch.randperm(nb, generator=g).float() / nb
    big_idxs = torch.randint(0, 5, (nb,), generator=g)
    t["batched_nms.big.boxes"] = big_boxes
    t["batched_nms.big.scores"] = big_scores
    t["batched_nms.big.idxs"] = big_idxs
    key = "batched_nms.big.keep.iou0.7"
    t[key] = box_ops.batched_nms(big_boxes, big_scores, big_idxs, 0.7)
    cases[key] = {"op": "batched_nms", "boxes": "batched_nms.big.boxes", "scores": "batched_nms.big.scores",
                  "idxs": "batched_nms.big.idxs", "iou_threshold": 0.7,
                  "note": "> 1000 boxes on CPU: torchvision runs nms per class, then sorts by score"}

    # BoxCoder decode/encode, deltas including ones past the log(1000/16) clamp.
    m = 40
    xy = torch.rand(m, 2, generator=g) * 100
    wh = torch.rand(m, 2, generator=g) * 50 + 2
    ref = torch.cat([xy, xy + wh], dim=1)
    t["box_coder.reference_boxes"] = ref
    codes = torch.randn(m, 4 * 3, generator=g) * 2
    codes[0, 2] = 10.0
    codes[1, 3] = 30.0
    codes[2, 2:4] = math.log(1000.0 / 16) * 5 + 1e-3
    t["box_coder.rel_codes"] = codes
    gt_xy = torch.rand(m, 2, generator=g) * 100
    gt_wh = torch.rand(m, 2, generator=g) * 50 + 2
    gt = torch.cat([gt_xy, gt_xy + gt_wh], dim=1)
    t["box_coder.gt_boxes"] = gt
    for weights in [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]:
        coder = det_utils.BoxCoder(weights)
        wname = "w" + "_".join(str(int(w)) for w in weights)
        key = f"box_coder.decode.{wname}"
        t[key] = coder.decode_single(codes, ref)
        cases[key] = {"op": "box_decode", "rel_codes": "box_coder.rel_codes", "boxes": "box_coder.reference_boxes",
                      "weights": list(weights), "bbox_xform_clip": math.log(1000.0 / 16)}
        key = f"box_coder.encode.{wname}"
        t[key] = coder.encode_single(gt, ref)
        cases[key] = {"op": "box_encode", "reference_boxes": "box_coder.gt_boxes",
                      "proposals": "box_coder.reference_boxes", "weights": list(weights)}

    # paste_masks_in_image: fractional, negative, outside and tiny boxes.
    masks = torch.rand(7, 1, 28, 28, generator=g)
    pboxes = torch.tensor([[3.3, 4.7, 30.2, 25.9], [-5.5, -3.2, 12.1, 40.0], [40.2, 20.0, 70.0, 45.0],
                           [10.0, 10.0, 10.4, 10.6], [0.0, 0.0, 52.0, 36.0], [-20.0, -20.0, -2.0, -1.0],
                           [25.5, 2.5, 26.5, 30.5]], dtype=torch.float32)
    t["paste_masks.masks"] = masks
    t["paste_masks.boxes"] = pboxes
    key = "paste_masks.out"
    t[key] = paste_masks_in_image(masks, pboxes, (37, 53), padding=1)
    cases[key] = {"op": "paste_masks_in_image", "masks": "paste_masks.masks", "boxes": "paste_masks.boxes",
                  "image_hw": [37, 53], "padding": 1}

    # GeneralizedRCNNTransform resize: scale = min(min_size/short, max_size/long) in f64, out = floor(in * scale).
    for (h, w, mn, mx) in [(37, 53, 32, 64), (40, 23, 64, 80), (23, 31, 26, 64), (41, 30, 20, 26)]:
        img = torch.rand(3, h, w, generator=g)
        scale = min(mn / min(h, w), mx / max(h, w))
        outimg = F.interpolate(img[None], scale_factor=scale, mode="bilinear", recompute_scale_factor=True,
                               align_corners=False)[0]
        base = f"resize.{h}x{w}.min{mn}.max{mx}"
        t[base + ".input"] = img
        t[base + ".output"] = outimg
        cases[base + ".output"] = {"op": "resize_bilinear", "input": base + ".input", "min_size": mn, "max_size": mx,
                                   "scale_factor_f64": scale, "output_hw": list(outimg.shape[-2:])}

    # point_sample (grid_sample bilinear, zeros padding, align_corners=False), points on and past the borders.
    fm = torch.randn(2, 4, 9, 11, generator=g)
    pts = torch.rand(2, 30, 2, generator=g) * 1.2 - 0.1
    pts[0, 0] = torch.tensor([0.0, 0.0])
    pts[0, 1] = torch.tensor([1.0, 1.0])
    pts[0, 2] = torch.tensor([0.5 / 11, 0.5 / 9])  # exactly a pixel centre
    t["point_sample.input"] = fm
    t["point_sample.points"] = pts
    key = "point_sample.out"
    t[key] = point_sample(fm, pts, align_corners=False)
    cases[key] = {"op": "point_sample", "input": "point_sample.input", "points": "point_sample.points",
                  "note": "points are (x, y) in [0,1] of the whole map; grid_sample(2p-1, align_corners=False)"}

    # LevelMapper (k_min 2, k_max 5): boxes with sqrt(area) at and next to 224 * 2^k.
    sides = torch.tensor([1.0, 20.0, 55.99, 56.0, 111.99, 112.0, 112.01, 223.99, 224.0, 448.0, 447.9, 1000.0])
    lboxes = torch.stack([torch.zeros_like(sides), torch.zeros_like(sides), sides, sides], dim=1)
    t["level_mapper.boxes"] = lboxes
    t["level_mapper.levels"] = LevelMapper(2, 5)([lboxes])
    cases["level_mapper.levels"] = {"op": "level_mapper", "boxes": "level_mapper.boxes", "k_min": 2, "k_max": 5,
                                    "canonical_scale": 224, "canonical_level": 4, "eps": 1e-6,
                                    "note": "result is level - k_min"}

    # Cell anchors (zero-centred, rounded half-to-even) of the default generator, one tensor per level.
    ag = AnchorGenerator(((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5)
    for i, a in enumerate(ag.cell_anchors):
        key = f"cell_anchors.default.{i}"
        t[key] = a
        cases[key] = {"op": "cell_anchors", "sizes": [[32, 64, 128, 256, 512][i]], "aspect_ratios": [0.5, 1.0, 2.0]}
    ag = AnchorGenerator(((16, 24.5),), ((0.25, 0.7, 1.0, 3.0),))
    t["cell_anchors.odd.0"] = ag.cell_anchors[0]
    cases["cell_anchors.odd.0"] = {"op": "cell_anchors", "sizes": [16, 24.5], "aspect_ratios": [0.25, 0.7, 1.0, 3.0]}

    folder = os.path.join(PARITY_DIR, "ops")
    os.makedirs(folder, exist_ok=True)
    tensors = {k: (v if v.dtype == torch.int64 else v.float()).contiguous() for k, v in t.items()}
    save_file(tensors, os.path.join(folder, "ops.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(folder, "ops.json"), "w") as f:
        json.dump({"torch": torch.__version__, "torchvision": torchvision.__version__, "cases": cases}, f, indent=2)
        f.write("\n")
    print(f"  {len(cases)} cases, {len(tensors)} tensors")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="also write fixtures/generated/r50_full (~350 MB)")
    parser.add_argument("--only", choices=["ops", "r18_tiny", "r50_small", "loader", "r50_full"],
                        help="write just one fixture")
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    coco = load_coco()
    if args.only in (None, "ops"):
        make_ops()
    # 154 px high: 154 * (160 / 154) is 159.99999999999997 in f64, so torchvision resizes to 159 rows, not 160.
    if args.only in (None, "r18_tiny"):
        cfg = tiny_config(18, 32, [1, 2], [[16.0], [32.0], [64.0]])
        make_small("r18_tiny", cfg, 184, steps=300, seed=18, coco=coco)
    # 200 x 168: a downscale (scale 160/168) instead of r18_tiny's upscale. Only layer1 (Bottlenecks with a
    # projection shortcut) so the weights stay ~1 MB; one FPN level means MultiScaleRoIAlign's single-level path.
    if args.only in (None, "r50_small"):
        cfg = tiny_config(50, 64, [1], [[32.0], [64.0]])
        # Smaller box head and fewer proposals than r18_tiny: 64-channel RoI features are what make this folder big.
        cfg["rpn"]["post_nms_top_n_test"] = 50
        cfg["roi_heads"]["representation_size"] = 32
        make_small("r50_small", cfg, 200, steps=300, seed=50, coco=coco)
    if args.only in (None, "loader"):
        make_loader()
    if args.full or args.only == "r50_full":
        make_full(coco)


if __name__ == "__main__":
    main()
