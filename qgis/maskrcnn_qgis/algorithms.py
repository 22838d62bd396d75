"""The Mask R-CNN Processing algorithms. Each builds a ``maskrcnn`` command line from its
parameters and runs it (see runner.py); what the program checks (bands, model files, options) it
reports in its own words."""

import os
import tempfile

from qgis.core import (
    QgsCoordinateTransform,
    QgsFeatureSink,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
    QgsProcessingParameterVectorLayer,
    QgsVectorFileWriter,
)

from . import runner

MODEL_FILTER = "Models (*.pth *.pt *.safetensors *.emd *.dlpk config.json);;All files (*.*)"


def _raster_path(alg, parameters, name, context):
    layer = alg.parameterAsRasterLayer(parameters, name, context)
    if layer is None:
        raise QgsProcessingException(f"{name}: no raster layer")
    path = layer.source().split("|")[0]
    if not os.path.isfile(path):
        raise QgsProcessingException(f"{layer.name()}: maskrcnn reads GeoTIFF files; this layer is not a file ({path})")
    return path, layer


def _bands(text):
    text = (text or "").strip()
    if not text:
        return []
    try:
        bands = [int(b) for b in text.replace(" ", "").split(",") if b]
    except ValueError:
        raise QgsProcessingException(f"bands: {text!r} is not a comma-separated list of band numbers such as 3,2,1")
    return ["--bands", ",".join(str(b) for b in bands)]


def _write_features(source, path, crs, context, feedback):
    """Features of a Processing source written to a GeoPackage in ``crs`` (the raster's)."""
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    writer = QgsVectorFileWriter.create(path, source.fields(), source.wkbType(), crs, context.transformContext(), options)
    if writer.hasError() != QgsVectorFileWriter.NoError:
        raise QgsProcessingException(f"writing {path}: {writer.errorMessage()}")
    transform = QgsCoordinateTransform(source.sourceCrs(), crs, context.transformContext())
    for feature in source.getFeatures():
        if feedback.isCanceled():
            break
        geometry = feature.geometry()
        if not geometry.isNull() and source.sourceCrs() != crs:
            geometry.transform(transform)
            feature.setGeometry(geometry)
        writer.addFeature(feature, QgsFeatureSink.FastInsert)
    del writer
    return path


class _Algorithm(QgsProcessingAlgorithm):
    def group(self):
        return ""

    def groupId(self):  # noqa: N802
        return ""

    def createInstance(self):  # noqa: N802
        return type(self)()


class DetectAlgorithm(_Algorithm):
    INPUT = "INPUT"
    MODEL = "MODEL"
    TILE_SIZE = "TILE_SIZE"
    OVERLAP = "OVERLAP"
    THRESHOLD = "THRESHOLD"
    BANDS = "BANDS"
    AOI = "AOI"
    MAX_DETECTIONS = "MAX_DETECTIONS"
    CLASSES = "CLASSES"
    SIMPLIFY = "SIMPLIFY"
    MIN_AREA = "MIN_AREA"
    REGULARIZE = "REGULARIZE"
    RESUME = "RESUME"
    OUTPUT = "OUTPUT"

    def name(self):
        return "detect"

    def displayName(self):  # noqa: N802
        return "Detect objects"

    def shortHelpString(self):  # noqa: N802
        return (
            "Runs a Mask R-CNN model over a GeoTIFF of any size, tile by tile, and writes one polygon per object "
            "in the raster's CRS, with its class, score and area (m²). The model is a torchvision .pth or "
            ".safetensors, an arcgis.learn .emd or .dlpk, or the config.json of a maskrcnn model folder. "
            "Cancelling keeps the run's journal: run again with 'Resume' to continue it."
        )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Raster (GeoTIFF)"))
        self.addParameter(
            QgsProcessingParameterFile(self.MODEL, "Model", QgsProcessingParameterFile.File, fileFilter=MODEL_FILTER)
        )
        self.addParameter(
            QgsProcessingParameterNumber(self.TILE_SIZE, "Tile size (pixels)", QgsProcessingParameterNumber.Integer, 512, minValue=32)
        )
        self.addParameter(
            QgsProcessingParameterNumber(self.THRESHOLD, "Score threshold", QgsProcessingParameterNumber.Double, 0.5, minValue=0.0, maxValue=1.0)
        )
        self.addParameter(
            QgsProcessingParameterString(self.BANDS, "Bands fed to the model, e.g. 3,2,1 (empty: the model's)", optional=True)
        )
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.AOI, "Area of interest (polygons)", [QgsProcessing.TypeVectorPolygon], optional=True
            )
        )
        advanced = [
            QgsProcessingParameterNumber(self.OVERLAP, "Tile overlap (pixels)", QgsProcessingParameterNumber.Integer, 64, minValue=0),
            QgsProcessingParameterNumber(
                self.MAX_DETECTIONS, "Most objects per tile (empty: the model's, 100)", QgsProcessingParameterNumber.Integer, None, optional=True, minValue=1
            ),
            QgsProcessingParameterString(self.CLASSES, "Keep only these classes (comma-separated)", optional=True),
            QgsProcessingParameterNumber(self.SIMPLIFY, "Simplify tolerance (m)", QgsProcessingParameterNumber.Double, 0.0, minValue=0.0),
            QgsProcessingParameterNumber(self.MIN_AREA, "Minimum area (m²)", QgsProcessingParameterNumber.Double, 0.0, minValue=0.0),
            QgsProcessingParameterBoolean(self.REGULARIZE, "Square building corners", False),
            QgsProcessingParameterBoolean(self.RESUME, "Resume an interrupted run of the same output", False),
        ]
        for parameter in advanced:
            parameter.setFlags(parameter.flags() | parameter.FlagAdvanced)
            self.addParameter(parameter)
        self.addParameter(
            QgsProcessingParameterVectorDestination(self.OUTPUT, "Objects", QgsProcessing.TypeVectorPolygon)
        )

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        raster, layer = _raster_path(self, parameters, self.INPUT, context)
        model = self.parameterAsFile(parameters, self.MODEL, context)
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        args = [
            "detect",
            "--model", _model_path(model),
            "--raster", raster,
            "--output", output,
            "--tile-size", str(self.parameterAsInt(parameters, self.TILE_SIZE, context)),
            "--overlap", str(self.parameterAsInt(parameters, self.OVERLAP, context)),
            "--threshold", repr(self.parameterAsDouble(parameters, self.THRESHOLD, context)),
            "--simplify", repr(self.parameterAsDouble(parameters, self.SIMPLIFY, context)),
            "--min-area", repr(self.parameterAsDouble(parameters, self.MIN_AREA, context)),
        ]
        args += _bands(self.parameterAsString(parameters, self.BANDS, context))
        if parameters.get(self.MAX_DETECTIONS) not in (None, ""):
            args += ["--max-detections", str(self.parameterAsInt(parameters, self.MAX_DETECTIONS, context))]
        classes = (self.parameterAsString(parameters, self.CLASSES, context) or "").strip()
        if classes:
            args += ["--classes", classes]
        if self.parameterAsBool(parameters, self.REGULARIZE, context):
            args.append("--regularize")
        resume = self.parameterAsBool(parameters, self.RESUME, context)
        # QGIS has already asked before replacing an output; a journal of an interrupted run is
        # continued only when asked.
        args.append("--resume" if resume else "--overwrite")
        with tempfile.TemporaryDirectory(prefix="maskrcnn-qgis-") as tmp:
            aoi = self.parameterAsSource(parameters, self.AOI, context)
            if aoi is not None:
                # In the raster's CRS, as a file the program reads, whatever the layer's provider.
                path = _write_features(aoi, os.path.join(tmp, "aoi.gpkg"), layer.crs(), context, feedback)
                args += ["--aoi", path]
            runner.run(args, feedback, resume_hint="run again with 'Resume' checked to continue from the last tile")
        return {self.OUTPUT: output}


def _model_path(path):
    # A model folder is chosen through its config.json (the file dialog picks files).
    if os.path.basename(path) == "config.json":
        return os.path.dirname(path)
    return path


class ExportChipsAlgorithm(_Algorithm):
    INPUT = "INPUT"
    LABELS = "LABELS"
    CLASS_FIELD = "CLASS_FIELD"
    TILE_SIZE = "TILE_SIZE"
    STRIDE = "STRIDE"
    FORMAT = "FORMAT"
    BANDS = "BANDS"
    KEEP_EMPTY = "KEEP_EMPTY"
    OUTPUT = "OUTPUT"
    FORMATS = ["rcnn-masks", "coco"]

    def name(self):
        return "exportchips"

    def displayName(self):  # noqa: N802
        return "Export training chips"

    def shortHelpString(self):  # noqa: N802
        return (
            "Cuts a raster and labelled polygons into image chips and instance masks for training: Esri "
            "RCNN_Masks (as ArcGIS's Export Training Data For Deep Learning) or COCO."
        )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Raster (GeoTIFF)"))
        self.addParameter(QgsProcessingParameterVectorLayer(self.LABELS, "Label polygons", [QgsProcessing.TypeVectorPolygon]))
        self.addParameter(
            QgsProcessingParameterField(self.CLASS_FIELD, "Class field (empty: one class 'object')", parentLayerParameterName=self.LABELS, optional=True)
        )
        self.addParameter(
            QgsProcessingParameterNumber(self.TILE_SIZE, "Chip size (pixels)", QgsProcessingParameterNumber.Integer, 256, minValue=16)
        )
        self.addParameter(
            QgsProcessingParameterNumber(self.STRIDE, "Stride (pixels; empty: the chip size)", QgsProcessingParameterNumber.Integer, None, optional=True, minValue=1)
        )
        self.addParameter(QgsProcessingParameterEnum(self.FORMAT, "Format", self.FORMATS, defaultValue=0))
        self.addParameter(QgsProcessingParameterString(self.BANDS, "Bands to export, e.g. 1,2,3 (empty: all)", optional=True))
        self.addParameter(QgsProcessingParameterBoolean(self.KEEP_EMPTY, "Also write chips without objects", False))
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT, "Chips folder"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        raster, layer = _raster_path(self, parameters, self.INPUT, context)
        labels_layer = self.parameterAsVectorLayer(parameters, self.LABELS, context)
        output = self.parameterAsString(parameters, self.OUTPUT, context)
        with tempfile.TemporaryDirectory(prefix="maskrcnn-qgis-") as tmp:
            labels = labels_layer.source().split("|")[0]
            readable = os.path.isfile(labels) and labels.lower().endswith((".geojson", ".json", ".gpkg", ".shp", ".fgb"))
            if not readable or labels_layer.crs() != layer.crs() or "|layername=" in labels_layer.source():
                # A layer the program cannot read as it is (another format, another CRS, one
                # layer of a multi-layer file): its features, in the raster's CRS.
                source = self.parameterAsSource(parameters, self.LABELS, context)
                labels = _write_features(source, os.path.join(tmp, "labels.gpkg"), layer.crs(), context, feedback)
            args = [
                "export-chips",
                "--raster", raster,
                "--labels", labels,
                "--output", output,
                "--tile-size", str(self.parameterAsInt(parameters, self.TILE_SIZE, context)),
                "--format", self.FORMATS[self.parameterAsEnum(parameters, self.FORMAT, context)],
                "--overwrite",
            ]
            if parameters.get(self.STRIDE) not in (None, ""):
                args += ["--stride", str(self.parameterAsInt(parameters, self.STRIDE, context))]
            field = self.parameterAsString(parameters, self.CLASS_FIELD, context)
            if field:
                args += ["--class-field", field]
            args += _bands(self.parameterAsString(parameters, self.BANDS, context))
            if self.parameterAsBool(parameters, self.KEEP_EMPTY, context):
                args.append("--keep-empty")
            runner.run(args, feedback)
        return {self.OUTPUT: output}


class TrainAlgorithm(_Algorithm):
    DATA = "DATA"
    BACKBONE = "BACKBONE"
    EPOCHS = "EPOCHS"
    STEPS = "STEPS"
    BATCH_SIZE = "BATCH_SIZE"
    LR = "LR"
    MIN_SIZE = "MIN_SIZE"
    INIT = "INIT"
    POINTREND = "POINTREND"
    AUGMENT = "AUGMENT"
    VAL_SPLIT = "VAL_SPLIT"
    RESUME = "RESUME"
    OUTPUT = "OUTPUT"
    BACKBONES = ["18", "34", "50", "101"]
    AUGMENTS = ["none", "overhead", "photo"]

    def name(self):
        return "train"

    def displayName(self):  # noqa: N802
        return "Train"

    def shortHelpString(self):  # noqa: N802
        return (
            "Trains a Mask R-CNN model on exported chips (RCNN_Masks folder, COCO annotations.json, or "
            "images/ + masks/). The run folder holds checkpoints, metrics.jsonl and the final model/ that "
            "'Detect objects' reads (choose its config.json). Cancelling stops the run; 'Resume' continues it from "
            "its last checkpoint."
        )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(
            QgsProcessingParameterFile(self.DATA, "Training data (chips folder, or a COCO annotations.json)", QgsProcessingParameterFile.File, optional=False, fileFilter="Chips (map.txt annotations.json *.json);;All files (*.*)")
        )
        self.addParameter(QgsProcessingParameterEnum(self.BACKBONE, "Backbone (ResNet depth)", self.BACKBONES, defaultValue=2))
        self.addParameter(QgsProcessingParameterNumber(self.EPOCHS, "Epochs", QgsProcessingParameterNumber.Integer, 10, minValue=1))
        self.addParameter(
            QgsProcessingParameterNumber(self.STEPS, "Steps (instead of epochs)", QgsProcessingParameterNumber.Integer, None, optional=True, minValue=1)
        )
        self.addParameter(QgsProcessingParameterNumber(self.BATCH_SIZE, "Batch size", QgsProcessingParameterNumber.Integer, 2, minValue=1))
        self.addParameter(
            QgsProcessingParameterNumber(self.LR, "Learning rate (empty: the optimiser's default)", QgsProcessingParameterNumber.Double, None, optional=True, minValue=0.0)
        )
        self.addParameter(
            QgsProcessingParameterNumber(self.MIN_SIZE, "Image size the model trains at (short and long side, pixels; empty: 800/1333)", QgsProcessingParameterNumber.Integer, None, optional=True, minValue=32)
        )
        self.addParameter(
            QgsProcessingParameterFile(self.INIT, "Start from this model (optional)", QgsProcessingParameterFile.File, optional=True, fileFilter=MODEL_FILTER)
        )
        self.addParameter(QgsProcessingParameterBoolean(self.POINTREND, "PointRend mask head", False))
        self.addParameter(QgsProcessingParameterEnum(self.AUGMENT, "Augmentation", self.AUGMENTS, defaultValue=1))
        val_split = QgsProcessingParameterNumber(
            self.VAL_SPLIT, "Fraction of chips held out for validation", QgsProcessingParameterNumber.Double, 0.1, minValue=0.0, maxValue=0.9
        )
        val_split.setFlags(val_split.flags() | val_split.FlagAdvanced)
        self.addParameter(val_split)
        self.addParameter(QgsProcessingParameterBoolean(self.RESUME, "Resume the run in the output folder", False))
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT, "Run folder"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        data = self.parameterAsFile(parameters, self.DATA, context)
        # A chips folder is picked through a file in it (map.txt of RCNN_Masks).
        if os.path.basename(data) in ("map.txt", "esri_model_definition.emd"):
            data = os.path.dirname(data)
        output = self.parameterAsString(parameters, self.OUTPUT, context)
        args = [
            "train",
            "--data", data,
            "--output", output,
            "--backbone", self.BACKBONES[self.parameterAsEnum(parameters, self.BACKBONE, context)],
            "--batch-size", str(self.parameterAsInt(parameters, self.BATCH_SIZE, context)),
            "--val-split", repr(self.parameterAsDouble(parameters, self.VAL_SPLIT, context)),
        ]
        if parameters.get(self.STEPS) not in (None, ""):
            args += ["--steps", str(self.parameterAsInt(parameters, self.STEPS, context))]
        else:
            args += ["--epochs", str(self.parameterAsInt(parameters, self.EPOCHS, context))]
        if parameters.get(self.LR) not in (None, ""):
            args += ["--lr", repr(self.parameterAsDouble(parameters, self.LR, context))]
        if parameters.get(self.MIN_SIZE) not in (None, ""):
            size = str(self.parameterAsInt(parameters, self.MIN_SIZE, context))
            args += ["--min-size", size, "--max-size", size]
        init = self.parameterAsFile(parameters, self.INIT, context)
        if init:
            args += ["--init", _model_path(init)]
        if self.parameterAsBool(parameters, self.POINTREND, context):
            args.append("--pointrend")
        augment = self.AUGMENTS[self.parameterAsEnum(parameters, self.AUGMENT, context)]
        if augment != "none":
            args += ["--augment", augment]
        if self.parameterAsBool(parameters, self.RESUME, context):
            args.append("--resume")
        runner.run(args, feedback, resume_hint="run again with 'Resume' checked to continue from the last checkpoint")
        return {self.OUTPUT: output}
