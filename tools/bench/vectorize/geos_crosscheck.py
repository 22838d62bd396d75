#!/usr/bin/env python3
"""Compare maskrcnn_geo::vectorize::validity verdicts with GEOS (through GDAL/OGR).

Input: lines "<verdict>\t<WKT>" written by the ignored test `dump_wkt_for_geos`
(crates/maskrcnn-geo/tests/vectorize_validity.rs). Needs Debian's python3-gdal.
"""
import sys
from collections import Counter

from osgeo import ogr, gdal

gdal.UseExceptions()
gdal.PushErrorHandler("CPLQuietErrorHandler")
path = sys.argv[1] if len(sys.argv) > 1 else "/tmp/vectorize_wkt.tsv"
agree, disagree = Counter(), []
for line in open(path):
    ours, wkt = line.rstrip("\n").split("\t")
    g = ogr.CreateGeometryFromWkt(wkt)
    geos_valid = g.IsValid()
    key = (ours == "valid", geos_valid)
    if key[0] == key[1]:
        agree["valid" if geos_valid else "invalid"] += 1
    else:
        disagree.append((ours, geos_valid, wkt))
print(f"GEOS {ogr.GetGEOSVersionMajor()}.{ogr.GetGEOSVersionMinor()}.{ogr.GetGEOSVersionMicro()}: "
      f"agree on {agree['valid']} valid and {agree['invalid']} invalid geometries; {len(disagree)} disagreements")
for ours, geos_valid, wkt in disagree[:10]:
    print(f"ours: {ours}; GEOS valid: {geos_valid}; {wkt[:300]}")
sys.exit(1 if disagree else 0)
