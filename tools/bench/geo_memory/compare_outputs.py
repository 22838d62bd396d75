#!/usr/bin/env python3
"""Check that two GeoPackages written by `maskrcnn detect`/`merge` hold the same features:
same count, and the same multiset of (class, class_id, score, area, geometry blob), so a sharded
run + merge is shown to equal the unsharded run feature by feature, not just in number.
Exit status 1 when they differ. Uses only the standard library (sqlite3)."""

import collections
import sqlite3
import sys


def features(path):
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    table = con.execute("SELECT table_name FROM gpkg_contents WHERE data_type = 'features'").fetchone()[0]
    rows = con.execute(f'SELECT class, class_id, round(score, 6), round(area, 3), geom FROM "{table}"').fetchall()
    srs = con.execute("SELECT srs_id FROM gpkg_geometry_columns WHERE table_name = ?", (table,)).fetchone()[0]
    con.close()
    return collections.Counter(rows), srs


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: compare_outputs.py A.gpkg B.gpkg")
    a_path, b_path = sys.argv[1:]
    (a, a_srs), (b, b_srs) = features(a_path), features(b_path)
    n_a, n_b = sum(a.values()), sum(b.values())
    only_a, only_b = a - b, b - a
    same = not only_a and not only_b and a_srs == b_srs
    print(
        f"{'SAME' if same else 'DIFFERENT'}: {a_path} {n_a} features (srs {a_srs}), {b_path} {n_b} features (srs {b_srs}); "
        f"{sum(only_a.values())} only in the first, {sum(only_b.values())} only in the second"
    )
    for label, diff in (("only in first", only_a), ("only in second", only_b)):
        for row in list(diff)[:5]:
            print(f"  {label}: class={row[0]} score={row[2]} area={row[3]}")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
