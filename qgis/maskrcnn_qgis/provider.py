"""The "Mask R-CNN" Processing provider (id ``maskrcnn``)."""

from qgis.core import QgsProcessingProvider

from . import runner
from .algorithms import DetectAlgorithm, ExportChipsAlgorithm, TrainAlgorithm


class MaskRcnnProvider(QgsProcessingProvider):
    def load(self):
        # The binary's location is a Processing setting where the processing plugin is there to
        # hold it (the desktop); qgis_process and scripts use PATH or MASKRCNN_BIN.
        try:
            from processing.core.ProcessingConfig import ProcessingConfig, Setting

            ProcessingConfig.settingIcons[self.name()] = self.icon()
            ProcessingConfig.addSetting(
                Setting(
                    self.name(),
                    runner.SETTING,
                    "maskrcnn program (empty: MASKRCNN_BIN, else PATH)",
                    "",
                    valuetype=Setting.FILE,
                )
            )
            ProcessingConfig.readSettings()
        except Exception:  # noqa: BLE001 (no processing plugin: the environment and PATH still work)
            pass
        self.refreshAlgorithms()
        return True

    def unload(self):
        try:
            from processing.core.ProcessingConfig import ProcessingConfig

            ProcessingConfig.removeSetting(runner.SETTING)
        except Exception:  # noqa: BLE001
            pass

    def loadAlgorithms(self):  # noqa: N802 (QGIS's name)
        for algorithm in (DetectAlgorithm(), ExportChipsAlgorithm(), TrainAlgorithm()):
            self.addAlgorithm(algorithm)

    def id(self):
        return "maskrcnn"

    def name(self):
        return "Mask R-CNN"

    def longName(self):  # noqa: N802
        return "Mask R-CNN instance segmentation (maskrcnn engine)"

    def supportedOutputVectorLayerExtensions(self):  # noqa: N802
        # What `maskrcnn detect` writes.
        return ["gpkg", "geojson", "fgb"]
