#!/usr/bin/env bash
# The Python package and the QGIS plugin (python/, qgis/): `pip install ./python` in a fresh venv,
# the README's Python example, pytest of python/tests and qgis/tests (qgis_process), the plugin zip.
# Called by .ci/run after the Rust tests: python/ is a member of the Cargo workspace, so maturin
# (same CARGO_TARGET_DIR, release profile, host target) rebuilds only pyo3's crates and the
# binding crate on top of what `cargo test --release --workspace` built.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
started=$SECONDS

# qgis_process runs the plugin headless (Debian's `qgis`; python3-qgis loads Python plugins).
if ! command -v qgis_process.bin >/dev/null 2>&1 && ! command -v qgis_process >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qgis python3-qgis qgis-providers \
    >/dev/null) || echo "warning: could not install qgis (apt-get); the qgis_process test will report itself skipped"
fi

python="${PYTHON:-python3}"
venv="$(mktemp -d)/venv"
if ! "$python" -m venv "$venv"; then
  echo "warning: $python cannot create a venv (Debian: apt-get install python3-venv); the Python suite did not run"
  exit 0
fi
# Only these downloads may fail for want of the package registry; a failing build of ./python fails CI.
if ! "$venv/bin/pip" install -q --disable-pip-version-check pytest maturin numpy; then
  echo "warning: could not install pytest/maturin/numpy from the package registry; the Python suite did not run"
  exit 0
fi
# As the README says: a plain pip install (build isolation, maturin from the registry).
"$venv/bin/pip" install -q --disable-pip-version-check ./python
echo "python: pip install ./python done at $((SECONDS - started)) s"

# The binary the tests compare against (`cargo test` built it; a no-op then). --workspace: built
# alone, the root package resolves other features (no pyo3: syn, num-complex) and rebuilds the
# whole burn stack.
cargo build --release --workspace --bin maskrcnn
export MASKRCNN_BIN="$CARGO_TARGET_DIR/release/maskrcnn"
"$venv/bin/python" examples/python_quickstart.py >/dev/null
"$venv/bin/python" -m pytest -q -rs python/tests qgis/tests
zip="$(qgis/build_zip.sh "$(mktemp -d)")"
"$venv/bin/python" -c "import sys, zipfile; n = zipfile.ZipFile(sys.argv[1]).namelist(); assert 'maskrcnn_qgis/metadata.txt' in n, n" "$zip"
echo "python/qgis: done in $((SECONDS - started)) s"
