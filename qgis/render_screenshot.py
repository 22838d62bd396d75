"""Renders a vector layer over a raster headless with PyQGIS, as QGIS's map canvas draws them.

    QT_QPA_PLATFORM=offscreen python3 qgis/render_screenshot.py RASTER VECTOR OUT.png [SIZE]

Used for docs/img/qgis_detect.png: the Detect objects output over the SpaceNet sample."""

import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import (  # noqa: E402
    QgsApplication,
    QgsFillSymbol,
    QgsMapRendererParallelJob,
    QgsMapSettings,
    QgsRasterLayer,
    QgsSingleSymbolRenderer,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QSize  # noqa: E402
from qgis.PyQt.QtGui import QColor  # noqa: E402


def main(raster_path, vector_path, out_path, size=520):
    app = QgsApplication([], False)
    app.initQgis()
    raster = QgsRasterLayer(raster_path, "raster")
    vector = QgsVectorLayer(vector_path, "objects", "ogr")
    if not raster.isValid() or not vector.isValid():
        raise SystemExit(f"cannot open {raster_path if not raster.isValid() else vector_path}")
    symbol = QgsFillSymbol.createSimple(
        {"color": "255,80,0,70", "outline_color": "255,230,0,255", "outline_width": "0.5", "outline_width_unit": "Pixel"}
    )
    vector.setRenderer(QgsSingleSymbolRenderer(symbol))
    settings = QgsMapSettings()
    settings.setLayers([vector, raster])
    settings.setDestinationCrs(raster.crs())
    settings.setExtent(raster.extent())
    settings.setOutputSize(QSize(size, size))
    settings.setBackgroundColor(QColor("white"))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    if not job.renderedImage().save(out_path, "png"):
        raise SystemExit(f"cannot write {out_path}")
    print(f"{vector.featureCount()} features over {raster.width()}x{raster.height()} px -> {out_path}")
    app.exitQgis()


if __name__ == "__main__":
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3], *(int(a) for a in sys.argv[4:5]))
