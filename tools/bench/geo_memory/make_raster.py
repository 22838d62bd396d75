#!/usr/bin/env python3
"""Write large tiled, Deflate-compressed, georeferenced 3-band uint8 GeoTIFFs for the
`maskrcnn detect` memory benchmark (bench/geo_memory.md).

Pixels are made and compressed one 512x512 TIFF tile at a time (tiles are written row by row
and only their offsets are kept), so the generator's memory does not depend on the raster
size: about 60 MB peak RSS whether it writes 2k or 20k pixels square. Only numpy (and Pillow for --content photo) is needed: the TIFF structure is written by
hand, which also avoids depending on GDAL's Python bindings (not installed here).

Content:
  synthetic  smooth fields with rectangular "roofs" and low noise: compresses like imagery,
             and the tiny COCO test model finds (almost) nothing in it.
  photo      a real photo (default: fixtures/parity/r18_tiny/image.png, on which r18_tiny finds
             4 objects) repeated on a lattice whose period is not a multiple of the detection
             tile step, so copies land everywhere relative to tiles and many straddle seams.

Georeferencing: EPSG:32616 (WGS 84 / UTM 16N), 0.5 m pixels, upper-left corner near Atlanta.

Examples:
  make_raster.py --size 5000 --out /tmp/geo_memory/synthetic_5k.tif
  make_raster.py --size 20000 --content photo --out fixtures/generated/photo_20k.tif
"""

import argparse
import os
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np

TILE = 512
REPO = Path(__file__).resolve().parents[3]
DEFAULT_PHOTO = REPO / "fixtures/parity/r18_tiny/image.png"

# TIFF field types
SHORT, LONG, DOUBLE, LONG8 = 3, 4, 12, 16
TYPE_SIZES = {SHORT: 2, LONG: 4, DOUBLE: 8, LONG8: 8}
TYPE_CODES = {SHORT: "H", LONG: "I", DOUBLE: "d", LONG8: "Q"}


class PhotoLattice:
    """The photo (scaled) in a cell with a plain border, repeated over the raster."""

    def __init__(self, photo_path, scale, gap):
        from PIL import Image

        img = Image.open(photo_path).convert("RGB")
        if scale != 1:
            img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BILINEAR)
        photo = np.asarray(img, dtype=np.uint8)
        ph, pw, _ = photo.shape
        # Neutral grey-green border: detections stay on the photos, and the border keeps copies
        # apart so objects of neighbouring copies do not fuse into one.
        self.cell = np.empty((ph + gap, pw + gap, 3), dtype=np.uint8)
        self.cell[:] = (118, 124, 110)
        self.cell[gap // 2 : gap // 2 + ph, gap // 2 : gap // 2 + pw] = photo
        self.period_y, self.period_x = self.cell.shape[:2]

    def block(self, y0, rows, x0, cols):
        ys = (np.arange(y0, y0 + rows) % self.period_y)[:, None]
        xs = (np.arange(x0, x0 + cols) % self.period_x)[None, :]
        return self.cell[ys, xs]


class Synthetic:
    """Deterministic aerial-looking texture: low-frequency fields, roof-like blocks, mild noise."""

    def __init__(self, seed=7):
        rng = np.random.default_rng(seed)
        # One 512x512 noise patch re-used everywhere keeps generation cheap; at +-6 levels it is
        # not visible as a pattern to the detector and still costs Deflate some effort.
        self.noise = rng.integers(-6, 7, size=(TILE, TILE, 1), dtype=np.int16)
        self.block_colours = rng.integers(60, 230, size=(97, 3), dtype=np.int16)

    def block(self, y0, rows, x0, cols):
        y = np.arange(y0, y0 + rows, dtype=np.float32)[:, None]
        x = np.arange(x0, x0 + cols, dtype=np.float32)[None, :]
        field = 110 + 35 * np.sin(x / 730.0 + 0.6 * np.sin(y / 1100.0)) + 25 * np.cos(y / 510.0 - x / 1900.0)
        img = np.repeat(field[:, :, None], 3, axis=2).astype(np.int16)
        img[:, :, 1] += 12  # vegetation tint
        # "Roofs": 40 m blocks on a 100 px grid, coloured by a hash of the block index, about 1 in 3.
        by = (np.arange(y0, y0 + rows) // 100)[:, None]
        bx = (np.arange(x0, x0 + cols) // 100)[None, :]
        inside = ((np.arange(y0, y0 + rows) % 100) >= 20)[:, None] & ((np.arange(x0, x0 + cols) % 100) >= 20)[None, :]
        key = (by * 7919 + bx * 104729) % 97
        roof = inside & (key % 3 == 0)
        img[roof] = self.block_colours[key[roof]]
        ny = np.arange(y0, y0 + rows) % TILE
        nx = np.arange(x0, x0 + cols) % TILE
        img += self.noise[ny[:, None], nx[None, :]]
        return np.clip(img, 0, 255).astype(np.uint8)


def horizontal_predictor(tile):
    """TIFF predictor 2 for chunky uint8: each sample minus the same sample of the pixel to its left."""
    out = tile.copy()
    out[:, 1:, :] = tile[:, 1:, :] - tile[:, :-1, :]  # uint8 arithmetic wraps, as TIFF wants
    return out


def geokeys(epsg):
    keys = [
        (1024, 0, 1, 1),  # GTModelTypeGeoKey: projected
        (1025, 0, 1, 1),  # GTRasterTypeGeoKey: PixelIsArea
        (3072, 0, 1, epsg),  # ProjectedCSTypeGeoKey
        (3076, 0, 1, 9001),  # ProjLinearUnitsGeoKey: metre
    ]
    out = [1, 1, 0, len(keys)]
    for k in keys:
        out.extend(k)
    return out


def write_geotiff(path, width, height, source, *, epsg, pixel_size, origin, level, predictor, bigtiff):
    across = -(-width // TILE)
    down = -(-height // TILE)
    offsets, counts = [], []
    tmp = Path(str(path) + ".partial")
    started = time.time()
    raw_bytes = 0
    with open(tmp, "wb") as f:
        # Header with a placeholder IFD offset, patched once the tiles are written.
        f.write(b"II" + (struct.pack("<HHHQ", 43, 8, 0, 0) if bigtiff else struct.pack("<HI", 42, 0)))
        for ty in range(down):
            y0 = ty * TILE
            rows = min(TILE, height - y0)
            for tx in range(across):
                x0 = tx * TILE
                cols = min(TILE, width - x0)
                tile = np.zeros((TILE, TILE, 3), dtype=np.uint8)  # edge tiles padded with 0
                tile[:rows, :cols] = source.block(y0, rows, x0, cols)
                if predictor == 2:
                    tile = horizontal_predictor(tile)
                data = zlib.compress(np.ascontiguousarray(tile).tobytes(), level)
                raw_bytes += tile.nbytes
                if f.tell() % 2:
                    f.write(b"\0")  # TIFF wants word-aligned offsets
                offsets.append(f.tell())
                counts.append(len(data))
                f.write(data)
            done = ty + 1
            if done == down or done % 8 == 0:
                el = time.time() - started
                print(f"  tile row {done}/{down}  {f.tell() / 1e6:.0f} MB written  {el:.0f} s", file=sys.stderr)
        if not bigtiff and f.tell() > 0xFFFF_0000:
            raise SystemExit(f"{path}: over 4 GB of tiles; run again with --bigtiff yes")

        off_type = LONG8 if bigtiff else LONG
        (x0, y0) = origin
        entries = [
            (256, LONG, [width]),
            (257, LONG, [height]),
            (258, SHORT, [8, 8, 8]),
            (259, SHORT, [8]),  # Adobe Deflate
            (262, SHORT, [2]),  # RGB
            (277, SHORT, [3]),
            (284, SHORT, [1]),  # chunky (pixel-interleaved)
            (317, SHORT, [predictor]),
            (322, LONG, [TILE]),
            (323, LONG, [TILE]),
            (324, off_type, offsets),
            (325, off_type if bigtiff else LONG, counts),
            (339, SHORT, [1, 1, 1]),  # unsigned integers
            (33550, DOUBLE, [pixel_size, pixel_size, 0.0]),  # ModelPixelScale
            (33922, DOUBLE, [0.0, 0.0, 0.0, x0, y0, 0.0]),  # ModelTiepoint: pixel (0,0) corner
            (34735, SHORT, geokeys(epsg)),
        ]
        inline = 8 if bigtiff else 4
        # Values too large for the entry go after the IFD.
        if f.tell() % 2:
            f.write(b"\0")
        ifd_at = f.tell()
        entry_size = 20 if bigtiff else 12
        head = 8 if bigtiff else 2
        tail = 8 if bigtiff else 4
        extra_at = ifd_at + head + entry_size * len(entries) + tail
        ifd = bytearray(struct.pack("<Q", len(entries)) if bigtiff else struct.pack("<H", len(entries)))
        extra = bytearray()
        for tag, typ, values in entries:
            payload = struct.pack("<" + TYPE_CODES[typ] * len(values), *values)
            if len(payload) <= inline:
                field = payload.ljust(inline, b"\0")
            else:
                if len(extra) % 2:
                    extra += b"\0"
                field = struct.pack("<Q" if bigtiff else "<I", extra_at + len(extra))
                extra += payload
            ifd += struct.pack("<HHQ" if bigtiff else "<HHI", tag, typ, len(values)) + field
        ifd += b"\0" * tail  # no next IFD
        f.write(ifd)
        f.write(extra)
        f.seek(8 if bigtiff else 4)
        f.write(struct.pack("<Q" if bigtiff else "<I", ifd_at))
    os.replace(tmp, path)
    return raw_bytes


def parse_size(s):
    s = s.lower().replace("k", "000")
    if "x" in s:
        w, h = s.split("x")
        return int(w), int(h)
    return int(s), int(s)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", required=True, help="N, NxM or e.g. 20k: width x height in pixels")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--content", choices=["synthetic", "photo"], default="synthetic")
    p.add_argument("--photo", type=Path, default=DEFAULT_PHOTO)
    p.add_argument(
        "--photo-scale",
        type=float,
        default=2.0,
        help="r18_tiny resizes images to at most 256 px, so a 512 tile is shrunk by 2: scaling the "
        "photo by 2 shows it to the model at its original size (default 2)",
    )
    p.add_argument("--gap", type=int, default=40, help="plain pixels between photo copies (default 40)")
    p.add_argument("--epsg", type=int, default=32616)
    p.add_argument("--pixel-size", type=float, default=0.5, help="metres (default 0.5)")
    p.add_argument("--origin", type=float, nargs=2, default=(740000.0, 3740000.0), metavar=("X", "Y"))
    p.add_argument("--level", type=int, default=6, help="zlib level (default 6)")
    p.add_argument("--predictor", type=int, choices=[1, 2], default=2)
    p.add_argument("--bigtiff", choices=["auto", "yes", "no"], default="auto",
                   help="auto: BigTIFF when the uncompressed pixels exceed 3.5 GB")
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args()

    width, height = parse_size(a.size)
    if width <= 0 or height <= 0:
        p.error(f"--size {a.size}: width and height must be positive")
    if a.out.exists() and not a.overwrite:
        p.error(f"{a.out} exists (pass --overwrite)")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    if a.content == "photo":
        if not a.photo.is_file():
            p.error(f"--photo {a.photo}: no such file")
        source = PhotoLattice(a.photo, a.photo_scale, a.gap)
    else:
        source = Synthetic()
    bigtiff = a.bigtiff == "yes" or (a.bigtiff == "auto" and width * height * 3 > 3.5e9)
    started = time.time()
    raw = write_geotiff(
        a.out, width, height, source,
        epsg=a.epsg, pixel_size=a.pixel_size, origin=tuple(a.origin),
        level=a.level, predictor=a.predictor, bigtiff=bigtiff,
    )
    size = a.out.stat().st_size
    print(
        f"{a.out}: {width}x{height} {a.content}, {'BigTIFF' if bigtiff else 'TIFF'}, "
        f"{size / 1e6:.1f} MB ({raw / size:.1f}x smaller than the padded tiles) in {time.time() - started:.1f} s"
    )


if __name__ == "__main__":
    main()
