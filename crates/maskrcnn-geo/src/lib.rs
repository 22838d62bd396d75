//! maskrcnn-geo: everything geospatial around the Mask R-CNN model, without system libraries.
//!
//! * [`raster`]: GeoTIFF/BigTIFF reading with windowed reads and georeferencing.
//! * [`vectorize`]: binary masks / label rasters → valid (Multi)Polygons in map coordinates.
//! * [`output`]: GeoJSON, FlatGeobuf and GeoPackage writers.
//! * [`chips`]: training chips (RCNN_Masks or COCO) from a raster and label polygons.
//! * [`grid`], [`tiling`] and [`merge`]: tile grid and sharding, streaming detection, seam stitching.
//! * [`aoi`]: `detect --aoi`: the tiles an area of interest touches, objects cut at its edge.
//! * [`reproject`]: CRS to CRS (proj4rs): labels, `--output-crs`, areas of interest.
//! * [`units`]: metres and m² whatever the CRS, for the vectorising options and areas.
//! * [`pipeline`]: the same detection with reading, batched inference and merging overlapped on every core.
//! * [`journal`]: a detect run's crash-safe journal, so a killed run continues where it stopped.

pub mod aoi;
pub mod raster;

pub use raster::{ChunkLayout, Crs, GeoTiff, GeoTransform, PixelWindow, RasterInfo, SampleType, Samples, WindowData};
pub mod vectorize;

pub use vectorize::{rasterize_polygons, vectorize_label_raster, vectorize_mask, LabelPolygon, VectorizeOptions};
pub mod output;

pub use output::{create_writer, create_writer_in, write_features, Feature, FeatureSink, VectorFormat, WriteOptions};
pub mod chips;

pub use chips::{
    export_chips, read_label_polygons, ChipClass, ChipFormat, ChipImageFormat, ExportChipsOptions, ExportSummary,
};
pub mod grid;
pub mod journal;
pub mod merge;
pub mod pipeline;
pub mod reproject;
pub mod tiling;
pub mod units;

pub use units::MapUnits;

pub use journal::{digest_files, DetectJournal, RasterIdentity, RunFingerprint};
pub use merge::{
    merge_outputs, merge_outputs_streaming, read_shard_headers, MergeOptions, MergedOutput, Merger, PendingInstance,
    PixelMask, ShardHeader, ShardWriter,
};
pub use pipeline::{detect_raster_pipelined, per_tile, BatchDetector, PipelineOptions};
pub use tiling::{
    detect_raster, detect_raster_journaled, detect_raster_streaming, DetectOptions, DetectSummary, Progress, Shard,
    Tile, TileGrid, TileImage, TileInstance, TileMask,
};
