#!/usr/bin/env python3
"""Ours and torchvision side by side in one run, on the same CPU, the same weights and the same images.

    /work/venv-torch/bin/python tools/bench/side_by_side.py            # writes bench/side_by_side.{md,json}
    ... --parts predict,folder,train --rounds 5 --train-steps 5

Parts (each measured for both implementations, alternating ours / torchvision, the order swapped every round):
- predict: one image through R50-FPN (100 detections) at 512x512 and at 800x1216; each round is one process per side
  that loads the model, runs one warm-up prediction and one timed prediction (process CPU and wall time of that
  prediction); median over rounds. Ours is examples/bench_predict; with --with-flex also ours with
  MASKRCNN_CONV_FORWARD=flex (burn-flex's own conv2d: the "before" of the conv kernels).
- folder: the whole `maskrcnn predict` process over a folder of 800x1216 images, model load and result writing
  included, against a torchvision script doing the same (load, predict each image, RLE-encode masks, write COCO
  results); CPU (user + sys), wall and peak RSS of the child process from wait4.
- train: training steps from scratch (trainable BatchNorm2d, AdamW (0.9, 0.99) wd 0.01 eps 1e-5, clip 10),
  R18-FPN and R50-FPN, min_size = max_size = 512, batch 2, on NWPU VHR-10 images in file order; one process per
  side, one warm-up step then --train-steps timed steps (median). Ours is examples/train_step_bench.

Everything runs at one thread: RAYON_NUM_THREADS=1 / --threads 1, OMP_NUM_THREADS=1, torch.set_num_threads(1).
CPU time is the measure on a shared machine; wall time and the 1-minute load average are recorded beside it.

Images: ../shared/data/nwpu-vhr10-train (never copied into the repo: resized copies go to the git-ignored
fixtures/generated/side_by_side/). Model: torchvision's maskrcnn_resnet50_fpn layout, 91 classes, seeded random
weights and FrozenBN statistics with the last layers rescaled so that each image keeps 100 detections (the
calibration of tools/bench/bench_predict.py), saved as safetensors; both sides load that file.

Build ours first: cargo build --release --bin maskrcnn --example bench_predict --example train_step_bench
(CARGO_TARGET_DIR is honoured).
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO_ROOT, "tools", "reference", "parity"))
NWPU = os.path.abspath(os.path.join(REPO_ROOT, "..", "shared", "data", "nwpu-vhr10-train"))
FIX_DIR = os.path.join(REPO_ROOT, "fixtures", "generated", "side_by_side")
TARGET_DIR = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO_ROOT, "target"))
BIN = os.path.join(TARGET_DIR, "release", "maskrcnn")
BENCH_PREDICT = os.path.join(TARGET_DIR, "release", "examples", "bench_predict")
TRAIN_BENCH = os.path.join(TARGET_DIR, "release", "examples", "train_step_bench")
SEED = 7
# (key, height, width, min_size, max_size): scale min(min/short, max/long) is exactly 1, sides multiples of 32.
SIZES = [("512x512", 512, 512, 512, 512), ("800x1216", 800, 1216, 800, 1333)]
ONE_THREAD = {"RAYON_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


# ----------------------------------------------------------------------------------------------------------------
# Fixtures


def nwpu_files():
    coco = json.load(open(os.path.join(NWPU, "instances.json")))
    return [im["file_name"] for im in coco["images"]]


def cover_crop(src, h, w, dst):
    from PIL import Image

    img = Image.open(src).convert("RGB")
    scale = max(w / img.width, h / img.height)
    rw, rh = max(w, round(img.width * scale)), max(h, round(img.height * scale))
    img = img.resize((rw, rh), Image.LANCZOS)
    left, top = (rw - w) // 2, (rh - h) // 2
    img.crop((left, top, left + w, top + h)).save(dst)


def load_image_tensor(path):
    import numpy as np
    import torch
    from PIL import Image

    arr = np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous().float() / 255.0


def prepare(folder_images, force):
    meta_path = os.path.join(FIX_DIR, "meta.json")
    if not force and os.path.exists(meta_path):
        meta = json.load(open(meta_path))
        if meta.get("folder_images") == folder_images:
            return meta
    import torch
    from safetensors.torch import save_file
    from make_parity_fixtures import build_model, default_config, randomise_frozen_bn

    if not os.path.isdir(NWPU):
        sys.exit(f"missing {NWPU}: the shared NWPU VHR-10 sample must sit at ../shared/data beside the repo")
    print(f"generating {os.path.relpath(FIX_DIR, REPO_ROOT)} ...", flush=True)
    os.makedirs(os.path.join(FIX_DIR, "folder"), exist_ok=True)
    os.makedirs(os.path.join(FIX_DIR, "model"), exist_ok=True)
    files = nwpu_files()
    # Image 0 for the single-image rows; images 1.. for the folder (all 800x1216).
    for key, h, w, _, _ in SIZES:
        cover_crop(os.path.join(NWPU, "images", files[0]), h, w, os.path.join(FIX_DIR, f"image_{key}.png"))
    for i in range(folder_images):
        cover_crop(os.path.join(NWPU, "images", files[1 + i]), 800, 1216, os.path.join(FIX_DIR, "folder", f"{i:03d}.png"))

    torch.manual_seed(SEED)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    cfg = default_config()
    model = build_model(cfg)
    g = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        randomise_frozen_bn(model, g)
    model.eval()
    model.transform.min_size, model.transform.max_size = (800,), 1333
    image = load_image_tensor(os.path.join(FIX_DIR, "image_800x1216.png"))
    # bench_predict.build_bench_model's calibration on this image: spread the untrained heads' logits so that
    # scores pass torchvision's 0.05 threshold and every image keeps 100 detections.
    with torch.no_grad():
        images, _ = model.transform([image])
        features = model.backbone(images.tensors)
        head = model.rpn.head
        t = [head.conv(f) for f in features.values()]
        head.cls_logits.weight.mul_(3.0 / torch.cat([head.cls_logits(x).flatten() for x in t]).std())
        proposals, _ = model.rpn(images, features)
        rh = model.roi_heads
        x = rh.box_head(rh.box_roi_pool(features, proposals, images.image_sizes))
        rh.box_predictor.cls_score.weight.mul_(6.0 / rh.box_predictor.cls_score(x).std())
        rh.box_predictor.bbox_pred.weight.mul_(0.5 / rh.box_predictor.bbox_pred(x).std())
        boxes, _, _ = rh.postprocess_detections(*rh.box_predictor(x), proposals, images.image_sizes)
        m = rh.mask_predictor(rh.mask_head(rh.mask_roi_pool(features, boxes, images.image_sizes)))
        rh.mask_predictor.mask_fcn_logits.weight.mul_(4.0 / m.std())
    sd = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(FIX_DIR, "model", "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(FIX_DIR, "model", "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    detections = {}
    with torch.inference_mode():
        for key, _, _, mn, mx in SIZES:
            model.transform.min_size, model.transform.max_size = (mn,), mx
            img = load_image_tensor(os.path.join(FIX_DIR, f"image_{key}.png"))
            detections[key] = int(model([img])[0]["boxes"].shape[0])
    print(f"  torchvision detections: {detections}", flush=True)
    meta = {"images": {"single": files[0], "folder": files[1:1 + folder_images]}, "folder_images": folder_images,
            "detections": detections, "seed": SEED}
    json.dump(meta, open(meta_path, "w"), indent=2)
    return meta


# ----------------------------------------------------------------------------------------------------------------
# torchvision workers (each in its own process, one thread)


def tv_model(min_size, max_size):
    import torch
    from safetensors.torch import load_file
    from make_parity_fixtures import build_model

    cfg = json.load(open(os.path.join(FIX_DIR, "model", "config.json")))
    cfg["transform"].update(min_size=min_size, max_size=max_size)
    model = build_model(cfg)
    model.load_state_dict(load_file(os.path.join(FIX_DIR, "model", "model.safetensors")), strict=True, assign=True)
    model.eval()
    torch.set_num_threads(1)
    return model


def worker_predict(key, min_size, max_size, runs):
    import torch

    torch.set_num_threads(1)
    model = tv_model(min_size, max_size)
    image = load_image_tensor(os.path.join(FIX_DIR, f"image_{key}.png"))
    records = []
    with torch.inference_mode():
        model([image])
        for _ in range(runs):
            wall0, cpu0 = time.perf_counter(), time.process_time()
            out = model([image])
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            records.append({"cpu_s": cpu, "wall_s": wall, "detections": int(out[0]["boxes"].shape[0])})
    print(json.dumps({"runs": records}))


def worker_folder(folder, output):
    """What `maskrcnn predict --input FOLDER --output results.json` does, in torchvision."""
    import numpy as np
    import torch
    from pycocotools import mask as mask_utils

    torch.set_num_threads(1)
    model = tv_model(800, 1333)
    results = []
    with torch.inference_mode():
        for image_id, name in enumerate(sorted(os.listdir(folder))):
            out = model([load_image_tensor(os.path.join(folder, name))])[0]
            masks = (out["masks"][:, 0] > 0.5).numpy().astype(np.uint8)
            for k in range(len(out["scores"])):
                x0, y0, x1, y1 = (float(v) for v in out["boxes"][k])
                rle = mask_utils.encode(np.asfortranarray(masks[k]))
                rle["counts"] = rle["counts"].decode("ascii")
                results.append({"image_id": image_id, "category_id": int(out["labels"][k]),
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(out["scores"][k]),
                                "segmentation": rle})
    with open(output, "w") as f:
        json.dump(results, f)


def worker_train(depth, size, batch, steps, warmup):
    import torch
    from pycocotools.coco import COCO
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    sys.path.insert(0, os.path.join(REPO_ROOT, "tools", "bench", "train_nwpu"))
    import contextlib
    import io

    from train_torchvision import load_example

    torch.set_num_threads(1)
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(os.path.join(NWPU, "instances.json"))
    cat_ids = sorted(coco.getCatIds())
    label_of = {c: i + 1 for i, c in enumerate(cat_ids)}
    backbone = resnet_fpn_backbone(backbone_name=f"resnet{depth}", weights=None, trainable_layers=5,
                                   norm_layer=torch.nn.BatchNorm2d)
    model = MaskRCNN(backbone, num_classes=len(cat_ids) + 1, min_size=size, max_size=size)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.01, eps=1e-5)
    ids = [im["id"] for im in coco.dataset["images"]]
    records = []
    for step in range(warmup + steps):
        examples = [load_example(coco, os.path.join(NWPU, "images"), i, label_of)
                    for i in ids[step * batch:(step + 1) * batch]]
        images, targets = zip(*examples)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        losses = model(list(images), list(targets))
        total = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        print(f"step {step}: {cpu:.3f} CPU-s, {wall:.3f} s wall, loss {float(total):.4f}", file=sys.stderr, flush=True)
        if step >= warmup:
            records.append({"cpu_s": cpu, "wall_s": wall, "loss": float(total)})
    peak = None
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1])
    print(json.dumps({"depth": depth, "size": size, "batch": batch, "threads": torch.get_num_threads(),
                      "steps": records, "peak_rss_kb": peak}))


# ----------------------------------------------------------------------------------------------------------------
# Driver


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def run_measured(cmd, extra_env=None):
    """Runs cmd at one thread; its stdout, own CPU time (user + sys) and peak RSS (wait4 on exactly that process)."""
    env = dict(os.environ, **ONE_THREAD, **(extra_env or {}))
    load0 = loadavg()
    # Per driver process, so that two drivers (different --parts) can run at once.
    out_path = os.path.join(FIX_DIR, f"child_stdout_{os.getpid()}.txt")
    err_path = os.path.join(FIX_DIR, f"child_stderr_{os.getpid()}.txt")
    with open(out_path, "w") as out_f, open(err_path, "w") as err_f:
        wall0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out_f, stderr=err_f, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - wall0
    proc.returncode = os.waitstatus_to_exitcode(status)
    out, err = open(out_path).read(), open(err_path).read()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    return {"stdout": out, "cpu_s": usage.ru_utime + usage.ru_stime, "user_s": usage.ru_utime,
            "sys_s": usage.ru_stime, "wall_s": wall, "peak_rss_kb": usage.ru_maxrss,
            "load_before": load0, "load_after": loadavg()}


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"no JSON line in output:\n{text[-2000:]}")


def this_script(*args):
    return [sys.executable, os.path.abspath(__file__), "--worker", *map(str, args)]


def machine():
    def sh(cmd):
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""

    model = sh("lscpu | sed -n 's/^Model name: *//p'")
    git = sh(f"git -C {REPO_ROOT} log -1 --format='%h %s'")
    dirty = sh(f"git -C {REPO_ROOT} status --porcelain --untracked-files=no | wc -l")
    import torch
    import torchvision

    return {"cpu": model, "cores": os.cpu_count(), "kernel": platform.release(), "commit": git,
            "uncommitted_files": int(dirty or 0), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "python": platform.python_version(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds")}


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="predict,folder,train")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds for predict and folder (median)")
    ap.add_argument("--runs", type=int, default=1, help="timed predictions per predict process (after a warm-up)")
    ap.add_argument("--sizes", default=",".join(k for k, *_ in SIZES), help="predict image sizes to time")
    ap.add_argument("--folder-images", type=int, default=4)
    ap.add_argument("--train-steps", type=int, default=5, help="timed steps per training process (median)")
    ap.add_argument("--train-rounds", type=int, default=1,
                    help="alternating rounds of training processes (steps of all rounds pooled, median)")
    ap.add_argument("--train-depths", default="18,50")
    ap.add_argument("--with-flex", action="store_true", help="also time ours with burn-flex's own conv2d")
    ap.add_argument("--with-system-malloc", action="store_true",
                    help="also time our training step with glibc's malloc (MASKRCNN_BENCH_ALLOC=system)")
    ap.add_argument("--variant", action="append", default=[], metavar="LABEL:VAR=VALUE[,VAR=VALUE]",
                    help="also time ours with these environment variables (every part); repeatable")
    ap.add_argument("--merge", action="store_true", help="keep the other parts of an existing --out json")
    ap.add_argument("--regenerate", action="store_true")
    ap.add_argument("--out", default=os.path.join(REPO_ROOT, "bench", "side_by_side"))
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        kind, *rest = args.worker
        if kind == "predict":
            worker_predict(rest[0], int(rest[1]), int(rest[2]), int(rest[3]))
        elif kind == "folder":
            worker_folder(rest[0], rest[1])
        elif kind == "train":
            worker_train(*map(int, rest))
        return

    parts = set(args.parts.split(","))
    assert args.rounds >= 1
    # Only the binaries the requested parts run: a training-only run needs no predict build.
    needed = {"predict": BENCH_PREDICT, "folder": BIN, "train": TRAIN_BENCH}
    for path in (needed[p] for p in sorted(parts) if p in needed):
        if not os.path.exists(path):
            sys.exit(f"missing {path}: cargo build --release --bin maskrcnn --example bench_predict "
                     "--example train_step_bench")
    meta = prepare(args.folder_images, args.regenerate)
    info = machine()
    info["load_start"] = os.getloadavg()
    results = {"meta": meta, "machine": info, "predict": {}, "folder": {}, "train": {}}
    if args.merge and os.path.exists(args.out + ".json"):
        # Keep the parts measured by an earlier invocation (with its own settings line).
        earlier = json.load(open(args.out + ".json"))
        for part in ("predict", "folder", "train"):
            if part not in parts and earlier.get(part):
                results[part] = earlier[part]
                results.setdefault("earlier", {})[part] = {"machine": earlier["machine"],
                                                           "settings": earlier.get("settings")}
    results["settings"] = {k: getattr(args, k) for k in ("parts", "sizes", "rounds", "runs", "folder_images", "train_steps",
                                                          "train_rounds", "train_depths", "with_flex", "with_system_malloc", "variant")}
    print(f"machine: {info['cpu']}, load {info['load_start']}", flush=True)

    variants = {}
    for spec in args.variant:
        label, _, assignments = spec.partition(":")
        variants[f"ours ({label})"] = dict(a.split("=", 1) for a in assignments.split(",") if a)

    model_dir = os.path.join(FIX_DIR, "model")
    if "predict" in parts:
        for key, _, _, mn, mx in SIZES:
            if key not in args.sizes.split(","):
                continue
            image = os.path.join(FIX_DIR, f"image_{key}.png")
            impls = {
                "ours": ([BENCH_PREDICT, model_dir, image, str(args.runs), str(mn), str(mx)], None),
                "torchvision": (this_script("predict", key, mn, mx, args.runs), None),
            }
            if args.with_flex:
                impls["ours (flex conv2d)"] = (impls["ours"][0], {"MASKRCNN_CONV_FORWARD": "flex"})
            for name, env in variants.items():
                impls[name] = (impls["ours"][0], env)
            rows = {name: [] for name in impls}
            for r in range(args.rounds):
                order = list(impls) if r % 2 == 0 else list(reversed(impls))
                for name in order:
                    cmd, env = impls[name]
                    m = run_measured(cmd, env)
                    for rep in last_json(m["stdout"])["runs"]:
                        rows[name].append({"cpu_s": rep["cpu_s"], "wall_s": rep["wall_s"],
                                           "detections": rep["detections"], "process_cpu_s": m["cpu_s"],
                                           "process_sys_s": m["sys_s"], "peak_rss_kb": m["peak_rss_kb"],
                                           "round": r, "load": [m["load_before"], m["load_after"]]})
                        print(f"predict {key} {name}: {rep['cpu_s']:.3f} CPU-s {rep['wall_s']:.3f} s wall "
                              f"({rep['detections']} detections), load {m['load_after']:.2f}", flush=True)
            results["predict"][key] = rows

    if "folder" in parts:
        folder = os.path.join(FIX_DIR, "folder")
        out_ours = os.path.join(FIX_DIR, "results_ours.json")
        out_tv = os.path.join(FIX_DIR, "results_tv.json")
        ours = [BIN, "--threads", "1", "predict", "--model", model_dir, "--input", folder, "--output", out_ours,
                "--overwrite"]
        impls = {"ours": (ours, None), "torchvision": (this_script("folder", folder, out_tv), None)}
        for name, env in variants.items():
            impls[name] = (ours, env)
        rows = {name: [] for name in impls}
        for r in range(args.rounds):
            order = list(impls) if r % 2 == 0 else list(reversed(impls))
            for name in order:
                m = run_measured(*impls[name])
                out = out_tv if name == "torchvision" else out_ours
                detections = len(json.load(open(out)))
                rows[name].append({"cpu_s": m["cpu_s"], "sys_s": m["sys_s"], "wall_s": m["wall_s"],
                                   "peak_rss_kb": m["peak_rss_kb"], "detections": detections,
                                   "load": [m["load_before"], m["load_after"]]})
                print(f"folder {name}: {m['cpu_s']:.2f} CPU-s ({m['sys_s']:.2f} sys) {m['wall_s']:.2f} s wall, "
                      f"{m['peak_rss_kb'] / 1024:.0f} MB, {detections} detections, load {m['load_after']:.2f}",
                      flush=True)
        results["folder"] = rows

    if "train" in parts:
        ann, images = os.path.join(NWPU, "instances.json"), os.path.join(NWPU, "images")
        for depth in map(int, args.train_depths.split(",")):
            ours = [TRAIN_BENCH, str(depth), ann, images, "512", "2", str(args.train_steps), "1"]
            impls = {"ours": (ours, None), "torchvision": (this_script("train", depth, 512, 2, args.train_steps, 1), None)}
            if args.with_system_malloc:
                impls["ours (glibc malloc)"] = (ours, {"MASKRCNN_BENCH_ALLOC": "system"})
            for name, env in variants.items():
                impls[name] = (ours, env)
            rows = {}
            for r in range(args.train_rounds):
                # Alternating: the order is reversed every round, as for predict.
                order = list(impls) if r % 2 == 0 else list(reversed(impls))
                for name in order:
                    cmd, env = impls[name]
                    m = run_measured(cmd, env)
                    rep = last_json(m["stdout"])
                    one = {"steps": rep["steps"], "process_cpu_s": m["cpu_s"], "process_sys_s": m["sys_s"],
                           "wall_s": m["wall_s"], "peak_rss_kb": m["peak_rss_kb"],
                           "load": [m["load_before"], m["load_after"]]}
                    if name not in rows:
                        rows[name] = dict(one, rounds=[one])
                    else:
                        # Steps of every round pooled (median over all); process figures: the largest sys and
                        # RSS, every round's kept under "rounds".
                        row = rows[name]
                        row["rounds"].append(one)
                        row["steps"] = row["steps"] + one["steps"]
                        row["process_sys_s"] = max(row["process_sys_s"], one["process_sys_s"])
                        row["peak_rss_kb"] = max(row["peak_rss_kb"], one["peak_rss_kb"])
                    print(f"train R{depth} {name} (round {r + 1}): median "
                          f"{med([s['cpu_s'] for s in rep['steps']]):.3f} CPU-s/step, "
                          f"process sys {m['sys_s']:.1f} s, load {m['load_after']:.2f}", flush=True)
            results["train"][f"R{depth}-FPN"] = rows

    info["load_end"] = os.getloadavg()
    with open(args.out + ".json", "w") as f:
        json.dump(results, f, indent=1)
    write_markdown(results, args, args.out + ".md")
    print(f"wrote {args.out}.md and .json")


def write_markdown(results, args, path):
    info = results["machine"]
    lines = [
        "# Ours vs torchvision, side by side (one thread, process CPU time)",
        "",
        f"Generated by `tools/bench/side_by_side.py --parts {args.parts} --sizes {args.sizes} --rounds {args.rounds} --runs {args.runs} "
        f"--folder-images {args.folder_images} --train-steps {args.train_steps} --train-rounds {args.train_rounds} --train-depths {args.train_depths}"
        f"{' --with-flex' if args.with_flex else ''}{' --with-system-malloc' if args.with_system_malloc else ''}"
        f"{''.join(f' --variant {v!r}' for v in args.variant)}` on {info['date']} (raw: `{os.path.basename(path)[:-3]}.json`).",
        "",
        f"- Machine: {info['cpu']}, {info['cores']} cores (shared VM), Linux {info['kernel']}; "
        f"1-minute load average {info['load_start'][0]:.2f} at the start, {info['load_end'][0]:.2f} at the end.",
        f"- Ours: commit `{info['commit']}`"
        + (f" plus {info['uncommitted_files']} uncommitted files" if info["uncommitted_files"] else "")
        + f"; torch {info['torch']}, torchvision {info['torchvision']}, Python {info['python']}.",
        *([f"- Parts {', '.join(results['earlier'])} come from an earlier invocation of the same day: "
           + "; ".join(f"{p}: {v['settings']} at {v['machine']['date']}, load {v['machine']['load_start'][0]:.2f}"
                       f"->{v['machine']['load_end'][0]:.2f}" for p, v in results["earlier"].items())]
          if results.get("earlier") else []),
        "- One thread on both sides. Ratios are ours / torchvision (below 1: we use less). CPU time is the measure;",
        "  wall time moves with the other tenants' load.",
        "",
    ]
    if results["predict"]:
        lines += ["## Predict, one image (R50-FPN, 100 detections)", "",
                  f"Per round one process per side: load, one warm-up prediction, {args.runs} timed prediction(s); "
                  f"{args.rounds} alternating round(s); median of all {args.rounds * args.runs} timed predictions. "
                  "Peak RSS is the whole process's (load included).", "",
                  "| image | impl | CPU s | wall s | CPU ratio | wall ratio | peak RSS MB (process) | detections |",
                  "|---|---|---|---|---|---|---|---|"]
        for key, rows in results["predict"].items():
            tv_cpu = med([r["cpu_s"] for r in rows["torchvision"]])
            tv_wall = med([r["wall_s"] for r in rows["torchvision"]])
            for name, rs in rows.items():
                cpu, wall = med([r["cpu_s"] for r in rs]), med([r["wall_s"] for r in rs])
                rss = med([r["peak_rss_kb"] for r in rs]) / 1024
                dets = sorted({r["detections"] for r in rs})
                lines.append(f"| {key} | {name} | {cpu:.3f} | {wall:.3f} | **{cpu / tv_cpu:.2f}x** | "
                             f"{wall / tv_wall:.2f}x | {rss:.0f} | {'/'.join(map(str, dets))} |")
        lines.append("")
    if results["folder"]:
        rows = results["folder"]
        n = args.folder_images
        lines += [f"## Predict, whole process over a folder ({n} images, 800x1216, model load included)", "",
                  "`maskrcnn --threads 1 predict --model M --input DIR --output results.json` against a torchvision "
                  "script that loads the same safetensors, predicts each image, RLE-encodes the masks and writes COCO "
                  f"results. CPU = user + sys of the process (wait4). Median of {args.rounds} alternating round(s).", "",
                  "| impl | CPU s | of which sys | wall s | CPU ratio | wall ratio | peak RSS MB | ratio | results |",
                  "|---|---|---|---|---|---|---|---|---|"]
        tv = {k: med([r[k] for r in rows["torchvision"]]) for k in ("cpu_s", "wall_s", "peak_rss_kb")}
        for name, rs in rows.items():
            v = {k: med([r[k] for r in rs]) for k in ("cpu_s", "sys_s", "wall_s", "peak_rss_kb")}
            dets = sorted({r["detections"] for r in rs})
            lines.append(f"| {name} | {v['cpu_s']:.2f} | {v['sys_s']:.2f} | {v['wall_s']:.2f} | "
                         f"**{v['cpu_s'] / tv['cpu_s']:.2f}x** | {v['wall_s'] / tv['wall_s']:.2f}x | "
                         f"{v['peak_rss_kb'] / 1024:.0f} | {v['peak_rss_kb'] / tv['peak_rss_kb']:.2f}x | "
                         f"{'/'.join(map(str, dets))} |")
        lines.append("")
    if results["train"]:
        lines += ["## Training step from scratch (512 px, batch 2, trainable BN, AdamW, clip 10)", "",
                  f"One process per side and round ({args.train_rounds} alternating round(s)): one warm-up step, then "
                  f"{args.train_steps} timed steps; median of all timed steps. NWPU VHR-10 "
                  "images in file order, min_size = max_size = 512. Process sys time covers the whole process "
                  "(load, warm-up and all steps).", "",
                  "| model | impl | CPU s/step | wall s/step | CPU ratio | process sys s | peak RSS MB |",
                  "|---|---|---|---|---|---|---|"]
        for model, rows in results["train"].items():
            tv_cpu = med([s["cpu_s"] for s in rows["torchvision"]["steps"]])
            for name, r in rows.items():
                cpu = med([s["cpu_s"] for s in r["steps"]])
                wall = med([s["wall_s"] for s in r["steps"]])
                lines.append(f"| {model} | {name} | {cpu:.3f} | {wall:.3f} | **{cpu / tv_cpu:.2f}x** | "
                             f"{r['process_sys_s']:.1f} | {r['peak_rss_kb'] / 1024:.0f} |")
        lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
