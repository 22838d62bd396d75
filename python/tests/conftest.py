"""Shared fixtures: the repository's models, the maskrcnn binary, and small image writers (the
package depends on numpy only, so the tests write PNGs with the standard library)."""

import json
import os
import pathlib
import shutil
import struct
import subprocess
import zlib

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures"
R18_TINY = FIXTURES / "parity" / "r18_tiny"
LOADER = FIXTURES / "parity" / "loader"
SPACENET = REPO.parent / "shared" / "data" / "spacenet-atlanta-sample"


def find_binary():
    """The maskrcnn binary `cargo test --release` built, to compare against the command line."""
    candidates = [os.environ.get("MASKRCNN_BIN")]
    target = os.environ.get("CARGO_TARGET_DIR")
    if target:
        candidates.append(os.path.join(target, "release", "maskrcnn"))
    candidates += [str(REPO / "target" / "release" / "maskrcnn"), shutil.which("maskrcnn")]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


@pytest.fixture(scope="session")
def binary():
    found = find_binary()
    if found is None:
        pytest.fail(
            "no maskrcnn binary: build it with `cargo build --release` (or set MASKRCNN_BIN); "
            "the Python results are compared with the command line's"
        )
    return found


def run_cli(binary, *args):
    """Runs the binary; returns (exit status, stderr)."""
    out = subprocess.run([binary, *map(str, args)], capture_output=True, text=True)
    return out.returncode, out.stderr


def cli_error(binary, *args):
    code, stderr = run_cli(binary, *args)
    assert code != 0, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert lines, stderr
    return lines[-1][len("error: ") :]


def write_png(path, array):
    """An 8 or 16-bit grey, RGB or RGBA PNG of `array` (HxW or HxWxC)."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[:, :, None]
    h, w, c = array.shape
    color = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    depth = 16 if array.dtype == np.uint16 else 8
    data = array.astype(">u2" if depth == 16 else "u1").reshape(h, w * c)
    raw = b"".join(b"\x00" + data[y].tobytes() for y in range(h))

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    pathlib.Path(path).write_bytes(png)
    return path


def photo_like_image(height=96, width=128, seed=0):
    """A photo-like uint8 RGB image: smooth shapes and some noise, so the model finds objects."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = np.zeros((height, width, 3), np.float64)
    for _ in range(6):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(6, 20)
        blob = ((y - cy) ** 2 + (x - cx) ** 2) < r * r
        image[blob] = rng.uniform(0, 255, 3)
    image += rng.normal(0, 12, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def rle_decode(rle):
    """COCO's compressed RLE string (pycocotools' format) as an HxW bool array."""
    h, w = rle["size"]
    s = rle["counts"].encode()
    counts, p = [], 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            c = s[p] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    flat = np.zeros(h * w, bool)
    pos, value = 0, False
    for n in counts:
        flat[pos : pos + n] = value
        pos += n
        value = not value
    return flat.reshape(w, h).T


def cli_predictions(binary, model, image, tmp_path, *extra):
    out = tmp_path / f"cli-{pathlib.Path(image).stem}.json"
    code, stderr = run_cli(binary, "predict", "--model", model, "--input", image, "--output", out, "--overwrite", *extra)
    assert code == 0, stderr
    return json.loads(out.read_text())


def assert_same_as_cli(python_dets, cli_results):
    """Python detections equal to the command line's COCO results, in order."""
    assert len(python_dets) == len(cli_results), (len(python_dets), len(cli_results))
    for d, r in zip(python_dets, cli_results):
        x1, y1, x2, y2 = (np.float32(v) for v in d["box"])
        # The command line writes [x, y, w, h] from the same f32 corners.
        assert [float(x1), float(y1), float(x2 - x1), float(y2 - y1)] == r["bbox"]
        assert np.float32(d["score"]) == np.float32(r["score"])
        assert d["label"] == r["category_id"]
        assert d["mask"].dtype == np.bool_
        assert d["mask"].shape == tuple(r["segmentation"]["size"])
        assert np.array_equal(d["mask"], rle_decode(r["segmentation"]))
