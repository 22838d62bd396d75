"""Mask R-CNN (torchvision-compatible, with PointRend) for imagery and GIS, over the Rust engine
of the ``maskrcnn`` command line.

>>> import maskrcnn
>>> model = maskrcnn.load("run/")            # .pth, .safetensors, model or run folder, .emd, .dlpk
>>> detections = model.predict(image)        # numpy HxWxC (uint8, uint16, float32) or a path
>>> maskrcnn.detect(model, "scene.tif", "objects.gpkg", tile_size=512, threshold=0.5)

``detect``, ``train``, ``evaluate``, ``export_chips`` and ``package`` take the command line's
options as keyword arguments (``--tile-size 512`` is ``tile_size=512``; a flag such as
``--overwrite`` is ``overwrite=True``; a comma-separated list such as ``--bands 3,2,1`` is
``bands=[3, 2, 1]``) and run in this process with the GIL released. ``progress`` is called with one
dict per event; Ctrl-C (KeyboardInterrupt) stops a run between tiles or training steps. Errors
raise :class:`MaskRcnnError` (or its FileNotFoundError / ValueError subclasses) with the command
line's message.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Any, Callable, Dict, Iterable, List, Optional, Union

from . import _maskrcnn
from ._errors import MaskRcnnError, MaskRcnnFileNotFoundError, MaskRcnnValueError
from ._maskrcnn import Model, load

__version__ = _maskrcnn.__version__

__all__ = [
    "Model",
    "MaskRcnnError",
    "MaskRcnnFileNotFoundError",
    "MaskRcnnValueError",
    "load",
    "detect",
    "train",
    "evaluate",
    "export_chips",
    "package",
    "run",
]

PathLike = Union[str, "os.PathLike[str]"]
Progress = Callable[[Dict[str, Any]], None]

# Options that take several values as separate arguments (the others take comma-separated lists).
_SPACE_SEPARATED = {"inputs"}


def _value(value: Any) -> str:
    if isinstance(value, Model):
        return os.fspath(value.path)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


def _flags(options: Dict[str, Any]) -> List[str]:
    """Keyword arguments as command-line flags: ``tile_size=512`` is ``--tile-size 512``."""
    args: List[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            args.append(flag)
        elif isinstance(value, (list, tuple)):
            if key in _SPACE_SEPARATED:
                args.append(flag)
                args.extend(_value(v) for v in value)
            else:
                args.append(f"{flag}={','.join(_value(v) for v in value)}")
        else:
            # `--flag=value` keeps a value starting with '-' (a negative number) a value.
            args.append(f"{flag}={_value(value)}")
    return args


def run(*args: Any, progress: Optional[Progress] = None) -> None:
    """Runs ``maskrcnn ARGS...`` in this process, e.g. ``run("merge", "--inputs", "a", "b", "--output", "m.gpkg")``."""
    _maskrcnn.run_command([_value(a) for a in args], progress)


def detect(
    model: Union[Model, PathLike],
    raster: PathLike,
    output: PathLike,
    *,
    progress: Optional[Progress] = None,
    **options: Any,
) -> Dict[str, Any]:
    """Detects objects over a GeoTIFF of any size and writes polygons in map coordinates
    (``maskrcnn detect``): ``output`` is a .gpkg, .geojson or .fgb.

    Options are ``maskrcnn detect``'s: ``tile_size`` (512), ``overlap`` (64), ``threshold`` (0.5),
    ``bands`` ([3, 2, 1]), ``classes``, ``max_detections``, ``overview``, ``tta``, ``simplify``,
    ``regularize``, ``min_area``, ``shard``, ``overwrite``, ``resume``, ``aoi`` where the engine has
    it. ``progress`` receives ``{"kind": "tiles", "done": n, "total": n, "objects": n}`` after each
    tile. Returns ``{"output", "tiles", "objects"}``. A run stopped by Ctrl-C keeps its journal:
    ``resume=True`` continues it.
    """
    args = ["detect", "--model", _value(model), "--raster", _value(raster), "--output", _value(output)]
    tiles = _maskrcnn.run_command(args + _flags(options), progress)
    done, total, objects = tiles if tiles is not None else (0, 0, 0)
    return {"output": pathlib.Path(output), "tiles": total, "tiles_done": done, "objects": objects}


def train(data: PathLike, output: PathLike, *, progress: Optional[Progress] = None, **options: Any) -> pathlib.Path:
    """Trains a model (``maskrcnn train``) on COCO, Esri RCNN_Masks or instance-mask PNG data into
    the run folder ``output``; returns the final model folder (``output/model``), which
    :func:`load` reads (as it reads ``output`` itself).

    Options are ``maskrcnn train``'s: ``epochs``, ``steps``, ``batch_size``, ``lr``, ``backbone``,
    ``init``, ``pointrend``, ``min_size``, ``max_size``, ``augment``, ``val_split``, ``resume``, ...
    ``progress`` receives ``{"kind": "start", "step", "total"}``, ``{"kind": "step", "step",
    "total", "message"}`` (running losses), ``{"kind": "line", "line"}`` (epoch summaries) and
    ``{"kind": "finish", "note"}``. Ctrl-C checkpoints and stops; ``resume=True`` continues.
    """
    args = ["train", "--data", _value(data), "--output", _value(output)]
    _maskrcnn.run_command(args + _flags(options), progress)
    return pathlib.Path(output) / "model"


def evaluate(*, progress: Optional[Progress] = None, **options: Any) -> Dict[str, Any]:
    """COCO metrics (``maskrcnn evaluate``) as a dict: of ``predictions`` (a results JSON) against
    ``annotations``, or of ``model`` run on the COCO dataset ``data``.

    Other options are ``maskrcnn evaluate``'s: ``iou_type``, ``max_dets``, ``arcgis_iou``,
    ``images``, ``report`` (an HTML page), ``output`` (the metrics JSON, also returned),
    ``overwrite``, ``skip_bad``.
    """
    output = options.pop("output", None)
    with tempfile.TemporaryDirectory(prefix="maskrcnn-evaluate-") as tmp:
        path = pathlib.Path(output) if output is not None else pathlib.Path(tmp) / "metrics.json"
        _maskrcnn.run_command(["evaluate", "--output", os.fspath(path)] + _flags(options), progress)
        with open(path, encoding="utf-8") as f:
            return json.load(f)


def export_chips(raster: PathLike, labels: PathLike, output: PathLike, **options: Any) -> pathlib.Path:
    """Cuts a raster and label polygons into training chips (``maskrcnn export-chips``): options
    ``class_field``, ``label_layer``, ``tile_size``, ``stride``, ``format`` ("rcnn-masks" or
    "coco"), ``bands``, ``keep_empty``, ``overwrite``. Returns ``output``, which :func:`train` reads."""
    args = ["export-chips", "--raster", _value(raster), "--labels", _value(labels), "--output", _value(output)]
    _maskrcnn.run_command(args + _flags(options), None)
    return pathlib.Path(output)


def package(model: Union[Model, PathLike], output: PathLike, name: str = "model", **options: Any) -> pathlib.Path:
    """Writes ``model`` as an arcgis.learn package (``maskrcnn package``): ``<name>.pth``,
    ``<name>.emd`` and ``<name>.dlpk`` in ``output``; returns the .dlpk."""
    args = ["package", "--model", _value(model), "--output", _value(output), "--name", name]
    _maskrcnn.run_command(args + _flags(options), None)
    return pathlib.Path(output) / f"{name}.dlpk"
