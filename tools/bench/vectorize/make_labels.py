#!/usr/bin/env python3
"""Synthetic label rasters for the vectorisation benchmark (needs python3-gdal and numpy).

make_labels.py OUT.tif SIZE N_BLOBS {instances,classes} [SEED]

Blobs are rotated rectangles (buildings) and noisy ellipses (trees, ponds) of 4-120 px, drawn
in random order so later ones cut earlier ones; the noise gives holes, one-pixel bridges and
corner contacts. `instances`: every blob its own id (UInt32). `classes`: id % 10 + 1 (UInt16),
so each of the 10 values has thousands of parts spread over the whole raster.
"""
import sys

import numpy as np
from osgeo import gdal

out, size, n, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
seed = int(sys.argv[5]) if len(sys.argv) > 5 else 1
rng = np.random.default_rng(seed)
labels = np.zeros((size, size), dtype=np.uint32)
for i in range(1, n + 1):
    r = float(rng.choice([4, 8, 15, 30, 60], p=[0.25, 0.3, 0.25, 0.15, 0.05])) * rng.uniform(0.7, 1.4)
    cx, cy = rng.uniform(0, size, 2)
    x0, x1 = int(max(cx - 2 * r, 0)), int(min(cx + 2 * r + 1, size))
    y0, y1 = int(max(cy - 2 * r, 0)), int(min(cy + 2 * r + 1, size))
    if x1 <= x0 or y1 <= y0:
        continue
    yy, xx = np.mgrid[y0:y1, x0:x1] + 0.5
    t = rng.uniform(0, np.pi)
    u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
    v = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
    a, b = r, r * rng.uniform(0.4, 1.0)
    if rng.random() < 0.6:
        inside = (np.abs(u) < a) & (np.abs(v) < b)
        noise = 0.05
    else:
        inside = (u / a) ** 2 + (v / b) ** 2 < 1.0
        noise = 0.25
    inside &= rng.random(inside.shape) > noise
    labels[y0:y1, x0:x1][inside] = i
if mode == "classes":
    labels = np.where(labels > 0, labels % 10 + 1, 0).astype(np.uint16)
    dtype = gdal.GDT_UInt16
else:
    dtype = gdal.GDT_UInt32
drv = gdal.GetDriverByName("GTiff")
ds = drv.Create(out, size, size, 1, dtype, options=["TILED=YES", "COMPRESS=DEFLATE"])
ds.SetGeoTransform([500000.0, 0.5, 0.0, 4000000.0, 0.0, -0.5])
from osgeo import osr

srs = osr.SpatialReference()
srs.ImportFromEPSG(32616)
ds.SetProjection(srs.ExportToWkt())
band = ds.GetRasterBand(1)
band.WriteArray(labels)
band.SetNoDataValue(0)
ds = None
vals = np.unique(labels)
print(f"{out}: {size}x{size} {mode}, {len(vals) - 1} values, {(labels > 0).mean():.1%} labelled")
