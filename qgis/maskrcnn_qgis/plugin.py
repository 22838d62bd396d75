"""Registers the Processing provider when QGIS (or qgis_process) loads the plugin."""

from qgis.core import QgsApplication


class MaskRcnnPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None

    def initProcessing(self):  # noqa: N802 (QGIS's name)
        from .provider import MaskRcnnProvider

        self.provider = MaskRcnnProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802
        self.initProcessing()

    def unload(self):
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
