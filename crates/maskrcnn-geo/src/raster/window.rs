//! Windowed reads: which strips/tiles a window needs, a byte-bounded cache of decoded ones, and
//! copying their pixels into the window's band-major buffer.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use tiff::decoder::DecodingResult;

use super::decode::ChunkSource;
use super::{GeoTiff, PixelWindow, SampleType, Samples, WindowData};

/// A decoded strip/tile: `stride` pixels per row (tiles keep their right-hand padding).
pub(super) struct DecodedChunk {
    pub(super) data: DecodingResult,
    pub(super) stride: u32,
}

/// Decoded chunks by index, evicted oldest first once their bytes exceed the budget.
pub(super) struct ChunkCache {
    pub(super) budget_bytes: usize,
    used_bytes: usize,
    order: VecDeque<u32>,
    chunks: HashMap<u32, Arc<DecodedChunk>>,
}

impl ChunkCache {
    pub(super) fn new(budget_bytes: usize) -> ChunkCache {
        ChunkCache { budget_bytes, used_bytes: 0, order: VecDeque::new(), chunks: HashMap::new() }
    }
    fn get(&self, idx: u32) -> Option<Arc<DecodedChunk>> {
        self.chunks.get(&idx).cloned()
    }
    pub(super) fn evict_to(&mut self, target_bytes: usize) {
        while self.used_bytes > target_bytes {
            let Some(old) = self.order.pop_front() else { break };
            if let Some(c) = self.chunks.remove(&old) {
                self.used_bytes -= decoded_bytes(&c.data);
            }
        }
    }
    fn insert(&mut self, idx: u32, chunk: Arc<DecodedChunk>) {
        let bytes = decoded_bytes(&chunk.data);
        if bytes > self.budget_bytes {
            return;
        }
        self.evict_to(self.budget_bytes - bytes);
        self.used_bytes += bytes;
        self.order.push_back(idx);
        self.chunks.insert(idx, chunk);
    }
}

fn decoded_bytes(d: &DecodingResult) -> usize {
    match d {
        DecodingResult::U8(v) => v.len(),
        DecodingResult::I8(v) => v.len(),
        DecodingResult::U16(v) => v.len() * 2,
        DecodingResult::I16(v) => v.len() * 2,
        DecodingResult::F16(v) => v.len() * 2,
        DecodingResult::U32(v) => v.len() * 4,
        DecodingResult::I32(v) => v.len() * 4,
        DecodingResult::F32(v) => v.len() * 4,
        DecodingResult::U64(v) => v.len() * 8,
        DecodingResult::I64(v) => v.len() * 8,
        DecodingResult::F64(v) => v.len() * 8,
    }
}

impl GeoTiff {
    /// Read a window in the native sample type. `bands` are 1-based (e.g. `[3, 2, 1]`); an empty
    /// slice means all bands in file order (alpha included: see [`super::RasterInfo::data_bands`]).
    /// Only intersecting strips/tiles are decoded.
    pub fn read_window_typed(&mut self, window: PixelWindow, bands: &[usize]) -> Result<WindowData<Samples>> {
        let info = &self.info;
        let path = info.path.display().to_string();
        if window.width == 0 || window.height == 0 {
            bail!("{path}: empty window {window:?}");
        }
        if window.right() > info.width || window.bottom() > info.height {
            bail!("{path}: window {window:?} exceeds the raster ({}x{})", info.width, info.height);
        }
        let bands: Vec<usize> = if bands.is_empty() { (1..=info.bands).collect() } else { bands.to_vec() };
        if let Some(b) = bands.iter().find(|&&b| b == 0 || b > info.bands) {
            bail!("{path}: band {b} requested but the raster has bands 1..={}", info.bands);
        }
        let mut out = Samples::zeros(info.sample_type, window.width as usize * window.height as usize * bands.len());
        read_into(&self.src, &mut self.cache, &mut self.chunks_decoded, window, &bands, &mut out)?;
        Ok(WindowData { window, bands, data: out })
    }

    /// Read a window converted to f32 (band-major). See [`GeoTiff::read_window_typed`].
    pub fn read_window(&mut self, window: PixelWindow, bands: &[usize]) -> Result<WindowData<Vec<f32>>> {
        let typed = self.read_window_typed(window, bands)?;
        Ok(WindowData { window: typed.window, bands: typed.bands, data: typed.data.to_f32() })
    }

    /// Which pixels of a window hold data (row-major, `true` = valid): false where the alpha band
    /// is 0 or GDAL's internal mask is 0, as GDAL's mask band says. `None` when the raster has
    /// neither (every pixel valid; the nodata value, [`super::RasterInfo::nodata`], is separate).
    pub fn read_validity(&mut self, window: PixelWindow) -> Result<Option<Vec<bool>>> {
        if !self.info.has_validity() {
            return Ok(None);
        }
        let mut valid = vec![true; window.width as usize * window.height as usize];
        if let Some(alpha) = self.info.alpha_band {
            let a = self.read_window_typed(window, &[alpha])?.data.to_f32();
            for (v, a) in valid.iter_mut().zip(a) {
                *v &= a != 0.0;
            }
        }
        if let Some((mask, cache)) = &mut self.mask {
            let mut out = Samples::zeros(SampleType::U8, valid.len());
            read_into(mask, cache, &mut self.chunks_decoded, window, &[1], &mut out)?;
            let Samples::U8(m) = out else { bail!("internal: mask samples are not 8-bit") };
            for (v, m) in valid.iter_mut().zip(m) {
                *v &= m != 0;
            }
        }
        Ok(Some(valid))
    }
}

/// Copies `bands` (1-based) of `window` from the chunks of `src` into `out` (band-major).
fn read_into(
    src: &ChunkSource,
    cache: &mut ChunkCache,
    decoded: &mut u64,
    window: PixelWindow,
    bands: &[usize],
    out: &mut Samples,
) -> Result<()> {
    let path = src.path.display().to_string();
    let plane = window.width as usize * window.height as usize;
    let samples_in_chunk = src.samples_in_chunk();
    let (cw, ch) = (src.chunk_width, src.chunk_height);
    let (cx0, cx1) = (window.x / cw, (window.right() - 1) / cw);
    let (cy0, cy1) = (window.y / ch, (window.bottom() - 1) / ch);
    // Planes to decode: with separate planes each band lives in its own chunks.
    let planes: Vec<usize> = if src.planar_separate { bands.iter().map(|b| b - 1).collect() } else { vec![0] };
    for &plane_idx in &planes {
        for cy in cy0..=cy1 {
            for cx in cx0..=cx1 {
                let chunk_idx = plane_idx as u32 * src.chunks_per_plane() + cy * src.chunks_across + cx;
                let chunk = match cache.get(chunk_idx) {
                    Some(c) => c,
                    None => {
                        let c = Arc::new(src.decode(chunk_idx)?);
                        *decoded += 1;
                        cache.insert(chunk_idx, c.clone());
                        c
                    }
                };
                // Edge chunks: only the pixels inside the image are copied.
                let (w, h) = src.chunk_extent(chunk_idx);
                let chunk_win = PixelWindow::new(cx * cw, cy * ch, w, h);
                let Some(isect) = chunk_win.intersection(&window) else { continue };
                // (source sample within pixel, destination band slot)
                let targets: Vec<(usize, usize)> = if src.planar_separate {
                    bands.iter().enumerate().filter(|(_, &b)| b - 1 == plane_idx).map(|(slot, _)| (0, slot)).collect()
                } else {
                    bands.iter().enumerate().map(|(slot, &b)| (b - 1, slot)).collect()
                };
                let stride = chunk.stride as usize;
                let geom = CopyGeometry { chunk_win, isect, window, samples_in_chunk, plane, stride };
                copy_chunk(&chunk.data, out, &targets, &geom)
                    .with_context(|| format!("{path}: strip/tile {chunk_idx} has an unexpected sample type"))?;
            }
        }
    }
    Ok(())
}

struct CopyGeometry {
    chunk_win: PixelWindow,
    isect: PixelWindow,
    window: PixelWindow,
    samples_in_chunk: usize,
    plane: usize,
    /// Pixels per row in the decoded chunk buffer.
    stride: usize,
}

fn copy_typed<T: Copy>(src: &[T], dst: &mut [T], targets: &[(usize, usize)], g: &CopyGeometry) {
    let cw = g.stride;
    for row in g.isect.y..g.isect.bottom() {
        let src_row = (row - g.chunk_win.y) as usize;
        let dst_row = (row - g.window.y) as usize;
        for col in g.isect.x..g.isect.right() {
            let src_px = (src_row * cw + (col - g.chunk_win.x) as usize) * g.samples_in_chunk;
            let dst_px = dst_row * g.window.width as usize + (col - g.window.x) as usize;
            for &(sample, slot) in targets {
                dst[slot * g.plane + dst_px] = src[src_px + sample];
            }
        }
    }
}

fn copy_chunk(src: &DecodingResult, dst: &mut Samples, targets: &[(usize, usize)], g: &CopyGeometry) -> Result<()> {
    match (src, dst) {
        (DecodingResult::U8(s), Samples::U8(d)) => copy_typed(s, d, targets, g),
        (DecodingResult::U16(s), Samples::U16(d)) => copy_typed(s, d, targets, g),
        (DecodingResult::U32(s), Samples::U32(d)) => copy_typed(s, d, targets, g),
        (DecodingResult::U64(s), Samples::U64(d)) => copy_typed(s, d, targets, g),
        (DecodingResult::I8(s), Samples::I8(d)) => copy_typed(s, d, targets, g),
        (DecodingResult::I16(s), Samples::I16(d)) => copy_typed(s, d, targets, g),
        (DecodingResult::I32(s), Samples::I32(d)) => copy_typed(s, d, targets, g),
        (DecodingResult::I64(s), Samples::I64(d)) => copy_typed(s, d, targets, g),
        (DecodingResult::F32(s), Samples::F32(d)) => copy_typed(s, d, targets, g),
        (DecodingResult::F64(s), Samples::F64(d)) => copy_typed(s, d, targets, g),
        _ => bail!("decoded sample type does not match the header"),
    }
    Ok(())
}
