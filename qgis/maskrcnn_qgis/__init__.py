"""QGIS plugin entry point: the Mask R-CNN Processing provider."""


def classFactory(iface):  # noqa: N802 (QGIS's name)
    from .plugin import MaskRcnnPlugin

    return MaskRcnnPlugin(iface)
