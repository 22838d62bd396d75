#!/usr/bin/env bash
# Packages the plugin as an installable QGIS plugin zip (Plugins > Manage and Install Plugins >
# Install from ZIP): maskrcnn_qgis.zip holding the maskrcnn_qgis/ folder with its metadata.txt.
# Usage: qgis/build_zip.sh [OUTPUT_DIR]   (default: qgis/dist)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/dist}"
mkdir -p "$out"
python3 - "$here/maskrcnn_qgis" "$out/maskrcnn_qgis.zip" <<'PY'
import pathlib, sys, zipfile
src, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as z:
    for path in sorted(src.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            z.write(path, pathlib.Path(src.name) / path.relative_to(src))
print(dest)
PY
