#!/usr/bin/env python
"""Reference numbers for crates/maskrcnn-eval, computed with pycocotools' COCOeval.

Regenerate (from the repository root, with shared/ beside the repo as ../shared):

    /work/venv/bin/python tools/reference/eval/make_eval_fixtures.py \
        --gt ../shared/data/coco128-permissive/instances.json --out fixtures/eval

Writes into fixtures/eval/:
  coco128_results_<name>.json   detection sets built deterministically (seed 20240611) from the
                                coco128-permissive ground truth: perfect, shifted, dropped,
                                duplicates, misclassed, crowd, random_scores, segm_only, many
  coco128_expected.json         pycocotools stats per set, iou type (bbox, segm, boundary) and
                                maxDets ([1,10,100] and [1,10,300]) plus per-class AP
  coco128_gt_rles.json          pycocotools annToRLE compressed string of every GT annotation
  synthetic_gt.json, synthetic_results.json, synthetic_expected.json
                                a tiny hand-made case that needs no shared data

Notes on the expected numbers:
* With maxDets [1,10,300] pycocotools' summarize() looks up maxDets=100 for stats[0] and so
  reports AP = -1; "stats" here uses maxDets[2] for AP (as detectron2's COCOevalMaxDets does)
  and "pycocotools_stats" keeps the raw output.
* Boundary AP: boundary_iou_api (bowenc0221/boundary-iou-api) is not on PyPI and needs cv2, so
  its two relevant pieces are ported below: mask_to_boundary (cv2.erode of the zero-padded mask
  with a 3x3 kernel, `dilation` iterations, written with numpy min-filters; outside the padded
  image counts as foreground as cv2's erode border does) and computeBoundaryIoU (min of mask IoU
  and boundary IoU for non-crowd ground truth, mask IoU for crowd).
"""
import argparse
import contextlib
import copy
import io
import json
import os

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

SEED = 20240611


# ---------------------------------------------------------------- boundary IoU port
def erode3x3(mask):
    """One cv2.erode iteration with a 3x3 kernel; pixels beyond the array are ignored."""
    h, w = mask.shape
    big = np.ones((h + 2, w + 2), dtype=mask.dtype)
    big[1:-1, 1:-1] = mask
    out = mask.copy()
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            out = np.minimum(out, big[dy:dy + h, dx:dx + w])
    return out


def mask_to_boundary(mask, dilation_ratio=0.02):
    h, w = mask.shape
    img_diag = np.sqrt(h ** 2 + w ** 2)
    dilation = int(round(dilation_ratio * img_diag))
    if dilation < 1:
        dilation = 1
    new_mask = np.zeros((h + 2, w + 2), dtype=np.uint8)
    new_mask[1:-1, 1:-1] = mask
    for _ in range(dilation):
        new_mask = erode3x3(new_mask)
    mask_erode = new_mask[1:h + 1, 1:w + 1]
    return mask - mask_erode


class BoundaryCOCOeval(COCOeval):
    """pycocotools COCOeval with boundary_iou_api's computeBoundaryIoU."""

    def __init__(self, gt, dt, dilation_ratio=0.02):
        super().__init__(gt, dt, 'segm')
        self.dilation_ratio = dilation_ratio
        self._boundary_cache = {}

    def _boundary(self, rle):
        key = (rle['counts'], tuple(rle['size']))
        if key not in self._boundary_cache:
            m = mask_utils.decode(rle)
            b = mask_to_boundary(m, self.dilation_ratio)
            self._boundary_cache[key] = mask_utils.encode(np.asfortranarray(b.astype(np.uint8)))
        return self._boundary_cache[key]

    def computeIoU(self, imgId, catId):
        p = self.params
        gt = self._gts[imgId, catId]
        dt = self._dts[imgId, catId]
        if len(gt) == 0 and len(dt) == 0:
            return []
        inds = np.argsort([-d['score'] for d in dt], kind='mergesort')
        dt = [dt[i] for i in inds]
        if len(dt) > p.maxDets[-1]:
            dt = dt[0:p.maxDets[-1]]
        g_m = [g['segmentation'] for g in gt]
        d_m = [d['segmentation'] for d in dt]
        g_b = [self._boundary(g) for g in g_m]
        d_b = [self._boundary(d) for d in d_m]
        iscrowd = [int(o['iscrowd']) for o in gt]
        mask_ious = np.array(mask_utils.iou(d_m, g_m, iscrowd))
        boundary_ious = np.array(mask_utils.iou(d_b, g_b, iscrowd))
        iscrowd = np.array(iscrowd)
        ious = mask_ious
        if len(gt) and len(dt):
            ious[:, iscrowd == 0] = np.minimum(mask_ious[:, iscrowd == 0], boundary_ious[:, iscrowd == 0])
        else:
            ious = np.minimum(mask_ious, boundary_ious)
        return ious


# ---------------------------------------------------------------- evaluation
def run_eval(coco_gt, results, iou_type, max_dets):
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        if iou_type == 'boundary':
            ev = BoundaryCOCOeval(coco_gt, coco_dt)
        else:
            ev = COCOeval(coco_gt, coco_dt, iou_type)
        ev.params.maxDets = list(max_dets)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    raw = [float(x) for x in ev.stats]
    stats = list(raw)
    s = ev.eval['precision'][:, :, :, 0, -1]
    stats[0] = float(np.mean(s[s > -1])) if (s > -1).any() else -1.0
    per_class = {}
    for k, cat_id in enumerate(ev.params.catIds):
        entry = {}
        for name, t in (('AP', None), ('AP50', 0), ('AP75', 5)):
            pk = ev.eval['precision'][:, :, k, 0, -1] if t is None else ev.eval['precision'][t, :, k, 0, -1]
            pk = pk[pk > -1]
            entry[name] = float(np.mean(pk)) if pk.size else None
        per_class[str(cat_id)] = entry
    return {'stats': stats, 'pycocotools_stats': raw, 'per_class': per_class}


# ---------------------------------------------------------------- result sets
def rle_str(rle):
    return {'size': [int(rle['size'][0]), int(rle['size'][1])], 'counts': rle['counts'].decode('ascii')}


def shift_mask(m, dx, dy):
    h, w = m.shape
    out = np.zeros_like(m)
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = m[ys, xs]
    return out


def detection(image_id, category_id, bbox, score, mask=None):
    d = {'image_id': int(image_id), 'category_id': int(category_id),
         'bbox': [round(float(v), 2) for v in bbox], 'score': round(float(score), 4)}
    if mask is not None:
        d['segmentation'] = rle_str(mask_utils.encode(np.asfortranarray(mask.astype(np.uint8))))
    return d


def build_sets(coco):
    rng = np.random.default_rng(SEED)
    anns = [a for a in coco.dataset['annotations'] if not a['iscrowd']]
    crowds = [a for a in coco.dataset['annotations'] if a['iscrowd']]
    cat_ids = sorted(coco.getCatIds())
    masks = {a['id']: coco.annToMask(a) for a in coco.dataset['annotations']}
    sets = {}
    sets['perfect'] = [detection(a['image_id'], a['category_id'], a['bbox'], 1.0, masks[a['id']]) for a in anns]

    shifted = []
    for a in anns:
        dx, dy = (int(v) for v in rng.integers(-6, 7, size=2))
        x, y, w, h = a['bbox']
        shifted.append(detection(a['image_id'], a['category_id'], [x + dx, y + dy, w, h], rng.random(),
                                 shift_mask(masks[a['id']], dx, dy)))
    sets['shifted'] = shifted
    sets['dropped'] = [d for d in shifted if rng.random() > 0.3]

    duplicates = []
    for d in shifted:
        duplicates.append(d)
        dup = copy.deepcopy(d)
        dup['score'] = round(d['score'] * 0.9, 4)
        dup['bbox'][0] += 1.5
        duplicates.append(dup)
    sets['duplicates'] = duplicates

    misclassed = []
    for d in shifted:
        d = copy.deepcopy(d)
        if rng.random() < 0.25:
            d['category_id'] = int(rng.choice(cat_ids))
        misclassed.append(d)
    sets['misclassed'] = misclassed

    crowd_set = list(sets['perfect'][:])
    for c in crowds:
        m = masks[c['id']]
        x, y, w, h = c['bbox']
        for _ in range(6):
            bw, bh = rng.uniform(0.15, 0.5) * w, rng.uniform(0.15, 0.5) * h
            bx, by = x + rng.uniform(0, w - bw), y + rng.uniform(0, h - bh)
            box_mask = np.zeros_like(m)
            box_mask[int(by):int(by + bh), int(bx):int(bx + bw)] = 1
            crowd_set.append(detection(c['image_id'], c['category_id'], [bx, by, bw, bh], rng.random(), m & box_mask))
    sets['crowd'] = crowd_set

    random_scores = []
    for d in shifted + sets['perfect']:
        d = copy.deepcopy(d)
        d['score'] = round(float(rng.random()), 1)  # many ties: exercises the stable order
        random_scores.append(d)
    sets['random_scores'] = random_scores

    segm_only = []
    for d in shifted:
        d = copy.deepcopy(d)
        del d['bbox']
        segm_only.append(d)
    sets['segm_only'] = segm_only

    # More than 100 detections per image and category (maxDets counts per image *and*
    # category in COCOeval) so maxDets matters; box-only results are rasterised as box
    # polygons for segm, as pycocotools' loadRes does.
    many = []
    for img in coco.dataset['images']:
        img_anns = [a for a in coco.imgToAnns[img['id']] if not a['iscrowd']]
        for a in img_anns:
            many.append({'image_id': img['id'], 'category_id': a['category_id'],
                         'bbox': [round(float(v), 2) for v in a['bbox']], 'score': round(float(rng.uniform(0.05, 0.6)), 4)})
        if not img_anns:
            continue
        busy_category = img_anns[0]['category_id']
        for _ in range(130):
            w, h = rng.uniform(4, 120, size=2)
            x, y = rng.uniform(0, img['width'] - w), rng.uniform(0, img['height'] - h)
            many.append({'image_id': img['id'], 'category_id': busy_category,
                         'bbox': [round(float(v), 2) for v in (x, y, w, h)], 'score': round(float(rng.random()), 4)})
    sets['many'] = many
    return sets


def synthetic():
    """A tiny case with a crowd region, an unused category, areas on range borders and ties."""
    h, w = 48, 64
    images = [{'id': 1, 'width': w, 'height': h, 'file_name': 'a.png'},
              {'id': 2, 'width': w, 'height': h, 'file_name': 'b.png'},
              {'id': 5, 'width': w, 'height': h, 'file_name': 'c.png'}]
    cats = [{'id': 1, 'name': 'building'}, {'id': 2, 'name': 'pool'}, {'id': 7, 'name': 'unused'}]
    crowd = np.zeros((h, w), np.uint8)
    crowd[30:46, 2:40] = 1
    crowd_rle = mask_utils.encode(np.asfortranarray(crowd))
    crowd_counts = mask_utils.decode(crowd_rle)  # noqa: F841 (kept for clarity)
    # Uncompressed counts for the crowd region, column-major.
    flat = crowd.flatten(order='F')
    counts, prev, run = [], 0, 0
    for v in flat:
        if v != prev:
            counts.append(run)
            run, prev = 0, v
        run += 1
    counts.append(run)
    anns = [
        {'id': 1, 'image_id': 1, 'category_id': 1, 'segmentation': [[2, 2, 20, 2, 20, 20, 2, 20]], 'area': 324.0, 'bbox': [2, 2, 18, 18], 'iscrowd': 0},
        {'id': 2, 'image_id': 1, 'category_id': 1, 'segmentation': [[30, 4, 62, 4, 62, 40, 30, 40]], 'area': 1152.0, 'bbox': [30, 4, 32, 36], 'iscrowd': 0},
        {'id': 3, 'image_id': 1, 'category_id': 2, 'segmentation': [[22, 22, 54, 22, 54, 54, 22, 54]], 'area': 1024.0, 'bbox': [22, 22, 32, 26], 'iscrowd': 0},
        {'id': 4, 'image_id': 2, 'category_id': 1, 'segmentation': {'size': [h, w], 'counts': counts}, 'area': float(crowd.sum()), 'bbox': [2, 30, 38, 16], 'iscrowd': 1},
        {'id': 5, 'image_id': 2, 'category_id': 1, 'segmentation': [[44, 4, 60, 4, 60, 16, 44, 16]], 'area': 192.0, 'bbox': [44, 4, 16, 12], 'iscrowd': 0},
        {'id': 6, 'image_id': 5, 'category_id': 2, 'segmentation': [[5, 5, 15, 5, 15, 9, 5, 9], [20, 5, 30, 5, 30, 9, 20, 9]], 'area': 80.0, 'bbox': [5, 5, 25, 4], 'iscrowd': 0},
    ]
    gt = {'images': images, 'categories': cats, 'annotations': anns}

    def box_det(image_id, cat, box, score):
        m = np.zeros((h, w), np.uint8)
        x, y, bw, bh = box
        m[y:y + bh, x:x + bw] = 1
        return {'image_id': image_id, 'category_id': cat, 'bbox': [float(v) for v in box], 'score': score,
                'segmentation': rle_str(mask_utils.encode(np.asfortranarray(m))), 'file_name': 'ignored.png'}

    results = [
        box_det(1, 1, (2, 2, 18, 18), 0.9),
        box_det(1, 1, (3, 3, 18, 18), 0.9),      # duplicate with a tied score
        box_det(1, 1, (31, 6, 30, 33), 0.8),
        box_det(1, 2, (22, 22, 32, 24), 0.7),
        box_det(1, 2, (0, 30, 10, 10), 0.95),    # false positive
        box_det(2, 1, (4, 32, 10, 10), 0.85),    # inside crowd: ignored
        box_det(2, 1, (20, 33, 12, 12), 0.6),    # inside crowd: ignored
        box_det(2, 1, (45, 5, 15, 11), 0.5),
        box_det(5, 2, (5, 5, 25, 4), 0.3),
        box_det(5, 1, (5, 5, 25, 4), 0.4),       # wrong class
    ]
    return gt, results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--gt', default='../shared/data/coco128-permissive/instances.json')
    ap.add_argument('--out', default='fixtures/eval')
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(args.gt)
    gt_rles = {str(a['id']): rle_str(coco.annToRLE(a)) for a in coco.dataset['annotations']}
    for v in gt_rles.values():
        if isinstance(v['counts'], bytes):
            v['counts'] = v['counts'].decode('ascii')
    with open(os.path.join(args.out, 'coco128_gt_rles.json'), 'w') as f:
        json.dump(gt_rles, f, separators=(',', ':'))

    sets = build_sets(coco)
    expected = {}
    for name, results in sets.items():
        with open(os.path.join(args.out, f'coco128_results_{name}.json'), 'w') as f:
            json.dump(results, f, separators=(',', ':'))
        expected[name] = {}
        for iou_type in ('bbox', 'segm', 'boundary'):
            for max_dets in ([1, 10, 100], [1, 10, 300]):
                if iou_type == 'boundary' and max_dets[2] != 100:
                    continue
                key = f'{iou_type}_maxdets_{max_dets[2]}'
                expected[name][key] = run_eval(coco, results, iou_type, max_dets)
                print(name, key, ' '.join(f'{v:.4f}' for v in expected[name][key]['stats']))
    with open(os.path.join(args.out, 'coco128_expected.json'), 'w') as f:
        json.dump(expected, f, separators=(',', ':'))

    gt, results = synthetic()
    with open(os.path.join(args.out, 'synthetic_gt.json'), 'w') as f:
        json.dump(gt, f)
    with open(os.path.join(args.out, 'synthetic_results.json'), 'w') as f:
        json.dump(results, f)
    syn_path = os.path.join(args.out, 'synthetic_gt.json')
    with contextlib.redirect_stdout(io.StringIO()):
        syn = COCO(syn_path)
    syn_expected = {}
    for iou_type in ('bbox', 'segm', 'boundary'):
        for max_dets in ([1, 10, 100], [1, 2, 3]):
            key = f'{iou_type}_maxdets_{max_dets[2]}'
            syn_expected[key] = run_eval(syn, results, iou_type, max_dets)
            print('synthetic', key, ' '.join(f'{v:.4f}' for v in syn_expected[key]['stats']))
    with open(os.path.join(args.out, 'synthetic_expected.json'), 'w') as f:
        json.dump(syn_expected, f, indent=1)


if __name__ == '__main__':
    main()
