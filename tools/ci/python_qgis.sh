#!/usr/bin/env bash
# The Python package and the QGIS plugin (python/, qgis/): build, install and test them.
# Not yet called by .ci/run: the pytest and qgis_process suites have not passed on a clean machine
# (issue 15). python/ is its own Cargo workspace for now, because pyo3's macros change `syn`'s
# features and with them every proc-macro and the whole burn stack of the main workspace's build.
set -euo pipefail
cd "$(dirname "$0")/../.."
# qgis_process runs the plugin headless.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
if ! command -v qgis_process >/dev/null 2>&1; then
  (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qgis python3-qgis qgis-providers >/dev/null) \
    || echo "warning: could not install qgis; the qgis_process test will report itself skipped"
fi
venv="$(mktemp -d)/venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q maturin numpy pytest
"$venv/bin/pip" install -q --no-build-isolation ./python
cargo build --release --bin maskrcnn
MASKRCNN_BIN="$CARGO_TARGET_DIR/release/maskrcnn" "$venv/bin/python" -m pytest -q python/tests qgis/tests
qgis/build_zip.sh "$(mktemp -d)" >/dev/null

