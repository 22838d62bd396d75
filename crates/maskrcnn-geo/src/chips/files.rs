//! Chip image files: PNG or a minimal GeoTIFF encoder, plus the world file and `.aux.xml`
//! sidecars that place each chip on the map.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};

use super::ChipImageFormat;
use crate::output::wkt_for_epsg;
use crate::raster::{Crs, GeoTransform, PixelWindow, Samples};

/// Band-major samples of a window, padded to tile×tile with `fill` (only rasters smaller than a
/// chip need it).
pub(super) fn pad_to_tile(samples: &Samples, window: PixelWindow, tile: u32, bands: usize, fill: f64) -> Samples {
    let (w, h, t) = (window.width as usize, window.height as usize, tile as usize);
    if w == t && h == t {
        return samples.clone();
    }
    macro_rules! pad {
        ($v:expr, $variant:ident, $ty:ty) => {{
            let mut out = vec![fill as $ty; t * t * bands];
            for b in 0..bands {
                for y in 0..h {
                    let src = &$v[b * w * h + y * w..b * w * h + y * w + w];
                    out[b * t * t + y * t..b * t * t + y * t + w].copy_from_slice(src);
                }
            }
            Samples::$variant(out)
        }};
    }
    match samples {
        Samples::U8(v) => pad!(v, U8, u8),
        Samples::U16(v) => pad!(v, U16, u16),
        Samples::U32(v) => pad!(v, U32, u32),
        Samples::U64(v) => pad!(v, U64, u64),
        Samples::I8(v) => pad!(v, I8, i8),
        Samples::I16(v) => pad!(v, I16, i16),
        Samples::I32(v) => pad!(v, I32, i32),
        Samples::I64(v) => pad!(v, I64, i64),
        Samples::F32(v) => pad!(v, F32, f32),
        Samples::F64(v) => pad!(v, F64, f64),
    }
}

pub(super) fn write_text(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// World file (pixel-centre origin) and a PAM `.aux.xml` carrying the CRS, as Esri's exporter
/// leaves beside each chip; GDAL, QGIS and ArcGIS place PNG chips with them.
pub(super) fn write_sidecars(path: &Path, format: ChipImageFormat, gt: &GeoTransform, crs: Option<&Crs>) -> Result<()> {
    let g = &gt.0;
    let (cx, cy) = gt.pixel_to_map(0.5, 0.5);
    let world = format!("{:.12}\n{:.12}\n{:.12}\n{:.12}\n{:.12}\n{:.12}\n", g[1], g[4], g[2], g[5], cx, cy);
    write_text(&path.with_extension(format.world_file_extension()), &world)?;
    if let Some(crs) = crs {
        let srs = crs
            .wkt
            .clone()
            .or_else(|| crs.epsg.and_then(wkt_for_epsg))
            .or_else(|| crs.epsg.map(|c| format!("EPSG:{c}")));
        if let Some(srs) = srs {
            let escaped = srs.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
            let mut aux = path.as_os_str().to_owned();
            aux.push(".aux.xml");
            write_text(Path::new(&aux), &format!("<PAMDataset>\n  <SRS>{escaped}</SRS>\n</PAMDataset>\n"))?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(super) fn write_chip(
    path: &Path,
    format: ChipImageFormat,
    tile: u32,
    bands: usize,
    samples: &Samples,
    gt: &GeoTransform,
    crs: Option<&Crs>,
    nodata: Option<f64>,
) -> Result<()> {
    match (format, samples) {
        (ChipImageFormat::Png, Samples::U8(v)) => {
            let plane = (tile * tile) as usize;
            let hwc: Vec<u8> = (0..plane).flat_map(|p| (0..bands).map(move |b| v[b * plane + p])).collect();
            write_png(path, tile, bands, png::BitDepth::Eight, &hwc)?;
        }
        (ChipImageFormat::Png, _) => bail!("internal: PNG chips need 8-bit samples"),
        (ChipImageFormat::Tiff, _) => {
            let tags = TiffChip { tile, bands, samples, gt, crs, nodata };
            let bytes = tags.encode()?;
            fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    write_sidecars(path, format, gt, crs)
}

pub(super) fn write_png(path: &Path, tile: u32, channels: usize, depth: png::BitDepth, bytes: &[u8]) -> Result<()> {
    let run = || -> Result<()> {
        let file = std::io::BufWriter::new(fs::File::create(path)?);
        let mut enc = png::Encoder::new(file, tile, tile);
        enc.set_color(if channels == 3 { png::ColorType::Rgb } else { png::ColorType::Grayscale });
        enc.set_depth(depth);
        let mut writer = enc.write_header()?;
        writer.write_image_data(bytes)?;
        writer.finish()?;
        Ok(())
    };
    run().with_context(|| format!("cannot write PNG {}", path.display()))
}

/// A chip as a Deflate-compressed, pixel-interleaved GeoTIFF in the raster's own sample type.
struct TiffChip<'a> {
    tile: u32,
    bands: usize,
    samples: &'a Samples,
    gt: &'a GeoTransform,
    crs: Option<&'a Crs>,
    nodata: Option<f64>,
}

enum TagValue {
    Short(Vec<u16>),
    Long(Vec<u32>),
    Double(Vec<f64>),
    Ascii(String),
}

impl TiffChip<'_> {
    fn encode(&self) -> Result<Vec<u8>> {
        let plane = (self.tile * self.tile) as usize;
        let (bits, format, bytes_per): (u16, u16, usize) = match self.samples {
            Samples::U8(_) => (8, 1, 1),
            Samples::U16(_) => (16, 1, 2),
            Samples::U32(_) => (32, 1, 4),
            Samples::U64(_) => (64, 1, 8),
            Samples::I8(_) => (8, 2, 1),
            Samples::I16(_) => (16, 2, 2),
            Samples::I32(_) => (32, 2, 4),
            Samples::I64(_) => (64, 2, 8),
            Samples::F32(_) => (32, 3, 4),
            Samples::F64(_) => (64, 3, 8),
        };
        ensure!(self.samples.len() == plane * self.bands, "internal: chip has {} samples", self.samples.len());
        let mut raw = Vec::with_capacity(plane * self.bands * bytes_per);
        macro_rules! interleave {
            ($v:expr) => {
                for p in 0..plane {
                    for b in 0..self.bands {
                        raw.extend_from_slice(&$v[b * plane + p].to_le_bytes());
                    }
                }
            };
        }
        match self.samples {
            Samples::U8(v) => interleave!(v),
            Samples::U16(v) => interleave!(v),
            Samples::U32(v) => interleave!(v),
            Samples::U64(v) => interleave!(v),
            Samples::I8(v) => interleave!(v),
            Samples::I16(v) => interleave!(v),
            Samples::I32(v) => interleave!(v),
            Samples::I64(v) => interleave!(v),
            Samples::F32(v) => interleave!(v),
            Samples::F64(v) => interleave!(v),
        }
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&raw)?;
        let strip = enc.finish()?;

        let rgb = self.bands == 3 && bits == 8;
        let mut tags: Vec<(u16, TagValue)> = vec![
            (256, TagValue::Long(vec![self.tile])),
            (257, TagValue::Long(vec![self.tile])),
            (258, TagValue::Short(vec![bits; self.bands])),
            (259, TagValue::Short(vec![8])),
            (262, TagValue::Short(vec![if rgb { 2 } else { 1 }])),
            (273, TagValue::Long(vec![8])),
            (277, TagValue::Short(vec![self.bands as u16])),
            (278, TagValue::Long(vec![self.tile])),
            (279, TagValue::Long(vec![strip.len() as u32])),
            (284, TagValue::Short(vec![1])),
            (339, TagValue::Short(vec![format; self.bands])),
        ];
        let extra = if rgb { 0 } else { self.bands - 1 };
        if extra > 0 {
            // Unspecified extra samples: spectral bands, not alpha.
            tags.push((338, TagValue::Short(vec![0; extra])));
        }
        let g = &self.gt.0;
        if g[2] == 0.0 && g[4] == 0.0 {
            tags.push((33550, TagValue::Double(vec![g[1], -g[5], 0.0])));
            tags.push((33922, TagValue::Double(vec![0.0, 0.0, 0.0, g[0], g[3], 0.0])));
        } else {
            #[rustfmt::skip]
            let m = vec![g[1], g[2], 0.0, g[0], g[4], g[5], 0.0, g[3], 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0];
            tags.push((34264, TagValue::Double(m)));
        }
        let mut keys: Vec<[u16; 4]> = Vec::new();
        match self.crs.and_then(|c| c.epsg) {
            Some(code) if (4000..5000).contains(&code) => {
                keys.push([1024, 0, 1, 2]);
                keys.push([1025, 0, 1, 1]);
                keys.push([2048, 0, 1, code as u16]);
            }
            Some(code) if code <= u16::MAX as u32 => {
                keys.push([1024, 0, 1, 1]);
                keys.push([1025, 0, 1, 1]);
                keys.push([3072, 0, 1, code as u16]);
            }
            _ => keys.push([1025, 0, 1, 1]),
        }
        let mut dir = vec![1u16, 1, 0, keys.len() as u16];
        for k in keys {
            dir.extend(k);
        }
        tags.push((34735, TagValue::Short(dir)));
        if let Some(nd) = self.nodata {
            tags.push((42113, TagValue::Ascii(format!("{nd}\0"))));
        }
        tags.sort_by_key(|t| t.0);

        // Layout: header, strip, out-of-line values, IFD.
        let mut out = Vec::with_capacity(strip.len() + 1024);
        out.extend(b"II");
        out.extend(42u16.to_le_bytes());
        out.extend(0u32.to_le_bytes()); // IFD offset, patched below
        out.extend(&strip);
        let mut entries: Vec<(u16, u16, u32, [u8; 4])> = Vec::new();
        for (tag, value) in &tags {
            let (typ, count, bytes): (u16, u32, Vec<u8>) = match value {
                TagValue::Short(v) => (3, v.len() as u32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
                TagValue::Long(v) => (4, v.len() as u32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
                TagValue::Double(v) => (12, v.len() as u32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
                TagValue::Ascii(s) => (2, s.len() as u32, s.as_bytes().to_vec()),
            };
            let mut field = [0u8; 4];
            if bytes.len() <= 4 {
                field[..bytes.len()].copy_from_slice(&bytes);
            } else {
                if out.len() % 2 == 1 {
                    out.push(0);
                }
                field = (out.len() as u32).to_le_bytes();
                out.extend(&bytes);
            }
            entries.push((*tag, typ, count, field));
        }
        if out.len() % 2 == 1 {
            out.push(0);
        }
        let ifd = out.len() as u32;
        out[4..8].copy_from_slice(&ifd.to_le_bytes());
        out.extend((entries.len() as u16).to_le_bytes());
        for (tag, typ, count, field) in entries {
            out.extend(tag.to_le_bytes());
            out.extend(typ.to_le_bytes());
            out.extend(count.to_le_bytes());
            out.extend(field);
        }
        out.extend(0u32.to_le_bytes());
        Ok(out)
    }
}
