//! GeoTIFF input without GDAL: header/georeferencing parsing and windowed reads.
//!
//! Only the strips or tiles that intersect a requested window are decoded, and decoded chunks
//! are kept in a small byte-bounded cache (adjacent overlapping tiles re-use them), so memory
//! stays proportional to the window, not the file.
//!
//! * `header`: opening a (Big)TIFF and reading its IFD into [`RasterInfo`].
//! * `georef`: [`GeoTransform`], [`Crs`] and the GeoTIFF/GDAL tags and sidecars they come from.
//! * `geokeys`, `crs_wkt`: the GeoKeyDirectory, and WKT for the user-defined CRSs it describes.
//! * `gcp`: ground control points fitted to an affine geotransform (or refused).
//! * `samples`: [`SampleType`] and the typed [`Samples`] of a window.
//! * `decode`: one strip/tile of one IFD (image, overview or internal mask): predictors, typing.
//! * `codecs`: LZW, Deflate, PackBits, ZSTD, LERC (bare, Deflate- or ZSTD-wrapped) and WebP, each
//!   stopped at the chunk's declared size so a hostile header cannot make it allocate more.
//! * `jpeg`: JPEG strips/tiles, with JPEGTables and YCbCr→RGB as GDAL decodes them.
//! * `window`: windowed reads over the decoded-chunk cache, and pixel validity from alpha/masks.
//!
//! Overviews (reduced-resolution IFDs, as in a COG) open with [`GeoTiff::open_overview`]; an alpha
//! band (ExtraSamples) and GDAL's internal mask (a NewSubfileType=4 IFD) are reported in
//! [`RasterInfo`] and read as validity with [`GeoTiff::read_validity`], never as image bands.

use std::path::PathBuf;

mod codecs;
mod crs_wkt;
mod decode;
mod gcp;
mod geokeys;
mod georef;
mod header;
mod jpeg;
mod samples;
mod window;

pub use georef::{wkt_name, Crs, GeoTransform};
pub use header::MAX_CHUNK_BYTES;
pub use samples::{SampleType, Samples};

use decode::ChunkSource;
use window::ChunkCache;

/// How the pixels are laid out in the file (what a windowed read has to decode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkLayout {
    Striped { rows_per_strip: u32 },
    Tiled { tile_width: u32, tile_height: u32 },
}

/// Everything known about a raster without reading pixels.
#[derive(Debug, Clone)]
pub struct RasterInfo {
    pub path: PathBuf,
    pub width: u32,
    pub height: u32,
    /// Samples per pixel (bands), numbered 1..=bands in band selections.
    pub bands: usize,
    pub sample_type: SampleType,
    /// None when the file has no ModelPixelScale+ModelTiepoint or ModelTransformation tag;
    /// use [`RasterInfo::geotransform_or_identity`] to work in pixel coordinates then.
    pub geotransform: Option<GeoTransform>,
    pub crs: Option<Crs>,
    pub nodata: Option<f64>,
    pub layout: ChunkLayout,
    /// TIFF Compression tag value (1 none, 5 LZW, 8/32946 Deflate, 32773 PackBits, 7 JPEG, 50000 ZSTD,
    /// 50001 WebP, 34887 LERC).
    pub compression: u16,
    pub planar_separate: bool,
    pub bigtiff: bool,
    /// Items of the GDAL_METADATA XML tag (name → value), e.g. AREA_OR_POINT or band stats.
    pub gdal_metadata: Vec<(String, String)>,
    /// Which level this is: 0 the full-resolution image, k the k-th entry of `overviews`.
    pub overview_level: usize,
    /// (width, height) of the file's overviews, largest first: levels 1..=len for
    /// [`GeoTiff::open_overview`].
    pub overviews: Vec<(u32, u32)>,
    /// 1-based band that ExtraSamples marks as alpha: validity, not image data (see
    /// [`RasterInfo::data_bands`] and [`GeoTiff::read_validity`]).
    pub alpha_band: Option<usize>,
    /// This level has GDAL's internal mask (a NewSubfileType=4 IFD): read it with [`GeoTiff::read_validity`].
    pub has_internal_mask: bool,
}

impl RasterInfo {
    pub fn is_georeferenced(&self) -> bool {
        self.geotransform.is_some()
    }

    /// The bands holding image data, 1-based, in file order: all but the alpha band. The default
    /// band choice for detection.
    pub fn data_bands(&self) -> Vec<usize> {
        (1..=self.bands).filter(|&b| Some(b) != self.alpha_band).collect()
    }

    /// Whether some pixels may be invalid by alpha or mask (so [`GeoTiff::read_validity`] returns a mask).
    pub fn has_validity(&self) -> bool {
        self.alpha_band.is_some() || self.has_internal_mask
    }

    pub fn geotransform_or_identity(&self) -> GeoTransform {
        self.geotransform.unwrap_or(GeoTransform::IDENTITY)
    }

    /// Pixel-corner bounds in map coordinates: (min_x, min_y, max_x, max_y).
    pub fn map_bounds(&self) -> (f64, f64, f64, f64) {
        let gt = self.geotransform_or_identity();
        let corners = [
            gt.pixel_to_map(0.0, 0.0),
            gt.pixel_to_map(self.width as f64, 0.0),
            gt.pixel_to_map(0.0, self.height as f64),
            gt.pixel_to_map(self.width as f64, self.height as f64),
        ];
        let mut b = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        for (x, y) in corners {
            b = (b.0.min(x), b.1.min(y), b.2.max(x), b.3.max(y));
        }
        b
    }
}

/// A rectangle of pixels: columns x..x+width, rows y..y+height.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct PixelWindow {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl PixelWindow {
    pub fn new(x: u32, y: u32, width: u32, height: u32) -> PixelWindow {
        PixelWindow { x, y, width, height }
    }
    pub fn right(&self) -> u32 {
        self.x + self.width
    }
    pub fn bottom(&self) -> u32 {
        self.y + self.height
    }
    pub fn intersection(&self, other: &PixelWindow) -> Option<PixelWindow> {
        let x0 = self.x.max(other.x);
        let y0 = self.y.max(other.y);
        let x1 = self.right().min(other.right());
        let y1 = self.bottom().min(other.bottom());
        (x1 > x0 && y1 > y0).then(|| PixelWindow::new(x0, y0, x1 - x0, y1 - y0))
    }
}

/// Result of a windowed read.
#[derive(Debug, Clone)]
pub struct WindowData<T> {
    pub window: PixelWindow,
    /// 1-based band numbers, in the order of the planes in `data`.
    pub bands: Vec<usize>,
    /// Band-major (CHW): `data[b * width * height + row * width + col]`.
    pub data: T,
}

/// An open GeoTIFF, ready for windowed reads.
pub struct GeoTiff {
    info: RasterInfo,
    src: ChunkSource,
    cache: ChunkCache,
    /// The internal mask of this level, with its own (small) cache.
    mask: Option<(ChunkSource, ChunkCache)>,
    chunks_decoded: u64,
}

impl GeoTiff {
    pub fn info(&self) -> &RasterInfo {
        &self.info
    }

    /// How many strips/tiles have been decoded so far (cache hits excluded): lets callers and
    /// tests verify that windowed reads touch only what they need.
    pub fn chunks_decoded(&self) -> u64 {
        self.chunks_decoded
    }

    /// Bytes of decoded strips/tiles kept for re-use by later windows (default 64 MiB; 0 disables).
    pub fn set_cache_budget(&mut self, bytes: usize) {
        self.cache.budget_bytes = bytes;
        self.cache.evict_to(bytes);
    }
}
