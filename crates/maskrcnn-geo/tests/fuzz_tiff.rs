//! Fuzzing the GeoTIFF reader (`GeoTiff::open`, `read_window`) over striped, tiled, BigTIFF,
//! planar, predictor, LZW/Deflate/PackBits and georeferenced seeds written by the test helpers,
//! and the shard-file reader (`read_shard_headers`, `merge_outputs`) over a valid one-shard run.
//! Mutations: byte edits and, for classic little-endian TIFFs, tag fields set to hostile values
//! (counts, offsets, types). Short in CI; `MASKRCNN_FUZZ_CASES=100000 cargo test --release -p
//! maskrcnn-geo --test fuzz_tiff` for a long run.

mod common;

#[path = "../../maskrcnn-masks/tests/fuzz_common/mod.rs"]
mod fuzz_common;

use common::{write_tiff, Comp, Dtype, TiffSpec};
use fuzz_common::{json, mutate_bytes, Rng, INTERESTING_U64};
use maskrcnn_geo::grid::{Shard, TileGrid};
use maskrcnn_geo::merge::{merge_outputs, read_shard_headers, MergeOptions, ShardHeader};
use maskrcnn_geo::{GeoTiff, GeoTransform, PixelWindow, VectorizeOptions};

fn tiff_seeds(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let mut specs = Vec::new();
    let base = TiffSpec::new(13, 9, 3, Dtype::U8);
    specs.push(base.clone());
    specs.push(TiffSpec { tile: Some((16, 16)), compression: Comp::Deflate, ..TiffSpec::new(20, 18, 2, Dtype::U16) });
    specs.push(TiffSpec { compression: Comp::Lzw, horizontal_predictor: true, ..base.clone() });
    specs.push(TiffSpec { compression: Comp::PackBits, planar: true, ..base.clone() });
    specs.push(TiffSpec {
        bigtiff: true,
        geo: Some((500000.0, 4100000.0, 0.5, 32616)),
        ..TiffSpec::new(7, 5, 1, Dtype::F32)
    });
    specs.push(TiffSpec { geo: Some((10.0, 50.0, 0.001, 4326)), nodata: Some("0"), ..base });
    specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let path = dir.join(format!("seed{i}.tif"));
            write_tiff(&path, spec);
            let mut r = GeoTiff::open(&path).unwrap_or_else(|e| panic!("seed {spec:?}: {e:#}"));
            r.read_window(PixelWindow::new(0, 0, spec.width, spec.height), &[]).expect("seed reads");
            std::fs::read(&path).unwrap()
        })
        .collect()
}

/// Sets a field of a random tag of the first IFD of a classic little-endian TIFF.
fn mutate_ifd(rng: &mut Rng, seed: &[u8]) -> Option<Vec<u8>> {
    if !seed.starts_with(b"II*\0") {
        return None;
    }
    let mut tiff = seed.to_vec();
    let ifd = u32::from_le_bytes(tiff[4..8].try_into().unwrap()) as usize;
    let count = u16::from_le_bytes(tiff.get(ifd..ifd + 2)?.try_into().unwrap()) as usize;
    for _ in 0..1 + rng.below(2) {
        let entry = ifd + 2 + 12 * rng.below(count.max(1));
        let field = tiff.get_mut(entry..entry + 12)?;
        match rng.below(4) {
            0 => field[2..4].copy_from_slice(&(*rng.pick(&[1u16, 3, 4, 5, 11, 12, 16, 0, 99])).to_le_bytes()),
            1 => field[4..8].copy_from_slice(&(*rng.pick(&INTERESTING_U64) as u32).to_le_bytes()),
            _ => {
                let v = if rng.chance(2) { *rng.pick(&INTERESTING_U64) as u32 } else { rng.below(70000) as u32 };
                field[8..12].copy_from_slice(&v.to_le_bytes());
            }
        }
    }
    Some(tiff)
}

#[test]

fn fuzz_geotiff_reader() {
    let dir = fuzz_common::scratch_dir("geotiff");
    let seeds = tiff_seeds(&dir);
    let others: Vec<&[u8]> = seeds.iter().map(|s| s.as_slice()).collect();
    let path = dir.join("input.tif");
    fuzz_common::run(
        "geotiff",
        fuzz_common::cases(6_000),
        |rng, _| {
            let seed = rng.pick(&seeds);
            if rng.chance(2) {
                if let Some(t) = mutate_ifd(rng, seed) {
                    return t;
                }
            }
            mutate_bytes(rng, seed, &others, &[b"II*\0", b"MM\0*", b"II+\0\x08\0\0\0"])
        },
        |input| {
            fuzz_common::write_input(&path, input);
            let Ok(mut r) = GeoTiff::open(&path) else { return };
            let info = r.info().clone();
            let _ = (info.map_bounds(), info.geotransform_or_identity().pixel_size());
            // A corner window and one running past the edge: reads stay within the window.
            for window in [PixelWindow::new(0, 0, 16, 16), PixelWindow::new(info.width.saturating_sub(3), 1, 8, 8)] {
                if let Ok(data) = r.read_window(window, &[]) {
                    assert!(data.data.len() <= 16 * 16 * info.bands.max(1), "window data beyond the window");
                }
            }
        },
    );
}

fn shard_seed() -> String {
    let grid = TileGrid::new(40, 30, 16, 4).unwrap();
    let header = ShardHeader::new(
        Shard::new(0, 1).unwrap(),
        grid,
        GeoTransform([500000.0, 0.5, 0.0, 4100000.0, 0.0, -0.5]),
        None,
        vec!["building".into()],
        MergeOptions::default(),
        VectorizeOptions::default(),
    );
    let feature = serde_json::json!({"feature": {"type": "Feature",
        "properties": {"class": "building", "class_id": 1, "score": 0.9, "area": 2.0, "tile": "0_0"},
        "geometry": {"type": "MultiPolygon", "coordinates": [[[[500000.0, 4100000.0], [500001.0, 4100000.0],
            [500001.0, 4099999.0], [500000.0, 4099999.0], [500000.0, 4100000.0]]]]}}});
    let pending = |col: u32, x0: u32| {
        serde_json::json!({"pending": {"tile_row": 0, "tile_col": col, "class_id": 1, "score": 0.8,
            "x0": x0, "y0": 2, "width": 4, "height": 3, "runs": [1, 3, 2, 4, 2]}})
    };
    [serde_json::to_value(&header).unwrap(), feature, pending(0, 10), pending(1, 12)]
        .iter()
        .map(|v| v.to_string() + "\n")
        .collect()
}

#[test]

fn fuzz_shard_reader() {
    let dir = fuzz_common::scratch_dir("shards");
    let path = dir.join("s0of1.jsonl");
    let seed = shard_seed();
    std::fs::write(&path, &seed).unwrap();
    read_shard_headers(&[&path]).expect("seed header reads");
    merge_outputs(&[&path]).unwrap_or_else(|e| panic!("seed merges: {e:#}"));
    let lines: Vec<serde_json::Value> = seed.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    fuzz_common::run(
        "shards",
        fuzz_common::cases(6_000),
        |rng, _| {
            if rng.below(3) != 0 {
                let mut lines = lines.clone();
                let i = rng.below(lines.len());
                lines[i] = json::mutate(rng, &lines[i]);
                lines.iter().map(|v| v.to_string() + "\n").collect::<String>().into_bytes()
            } else {
                mutate_bytes(rng, seed.as_bytes(), &[], &[b"\"pending\"", b"\"runs\"", b"\n", b"4294967295"])
            }
        },
        |input| {
            fuzz_common::write_input(&path, input);
            let _ = read_shard_headers(&[&path]);
            let _ = merge_outputs(&[&path]);
        },
    );
}

// ---- regressions: crashes the fuzzers found (each aborted or panicked before its fix) ----

/// Found by `fuzz_geotiff_reader` (default seed): the PackBits planar seed with ImageWidth (256)
/// set to 0xffffffff (the strip count follows the height, so the header stays consistent).
/// `read_window` then allocates a 21 GB strip buffer (5 rows x 4294967295 px) in
/// `decode_raw_chunk` (abort) instead of refusing a strip larger than the file.
const GEOTIFF_HUGE_WIDTH_HEX: &[&str] = &[
    "49492a006e01000040000306090c0f1215181b1e2124070a0d101316191c1f2225282b0e1114171a1d202326292c2f32",
    "15181b1e2124272a2d303336391c1f2225282b2e3134373a3d40332326292c2f3235383b3e4144472a2d303336393c3f",
    "4245484b4e3134373a3d404346494c4f5255383b3e4144474a4d505356595c403d404346494c4f5255585b5e6144474a",
    "4d505356595c5f6265684b4e5154575a5d606366696c6f5255585b5e6164676a6d707376595c5f6265686b6e7174777a",
    "7d33606366696c6f7275787b7e8184676a6d707376797c7f8285888b6e7174777a7d808386898c8f9275787b7e818487",
    "8a8d90939699407a7d808386898c8f9295989b9e8184878a8d909396999c9fa2a5888b8e9194979a9da0a3a6a9ac8f92",
    "95989b9ea1a4a7aaadb0b396999c9fa2a5a8abaeb1b4b7ba339da0a3a6a9acafb2b5b8bbbec1a4a7aaadb0b3b6b9bcbf",
    "c2c5c8abaeb1b4b7babdc0c3c6c9cccfb2b5b8bbbec1c4c7cacdd0d3d6000b000001040001000000ffffffff01010400",
    "01000000090000000201030003000000f801000003010300010000000580000006010300010000000200000011010400",
    "06000000fe0100001501030001000000030000001601040001000000050000001701040006000000160200001c010300",
    "010000000200000053010300030000002e02000000000000080008000800080000004a0000007f000000c1000000f600",
    "000038010000420000003500000042000000350000004200000035000000010001000100",
];

#[test]

fn geotiff_declared_sizes_beyond_the_data() {
    let dir = fuzz_common::scratch_dir("geotiff_huge");
    let hex: String = GEOTIFF_HUGE_WIDTH_HEX.concat();
    let tiff: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    let path = dir.join("huge.tif");
    std::fs::write(&path, &tiff).unwrap();
    if let Ok(mut r) = GeoTiff::open(&path) {
        let width = r.info().width;
        for window in [PixelWindow::new(0, 0, 16, 16), PixelWindow::new(width.saturating_sub(3), 1, 8, 8)] {
            let (result, peak) = fuzz_common::peak_during(|| r.read_window(window, &[]).map(|_| ()));
            assert!(result.is_err(), "strips beyond the file cannot be read");
            assert!(peak < 256 << 20, "peak {peak} bytes");
        }
    }
}

fn shard_with_pending(edit: impl Fn(&mut serde_json::Value)) -> std::path::PathBuf {
    let dir = fuzz_common::scratch_dir("shard_regression");
    let mut lines: Vec<serde_json::Value> = shard_seed().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    edit(&mut lines[2]["pending"]);
    let path = dir.join("s0of1.jsonl");
    std::fs::write(&path, lines.iter().map(|v| v.to_string() + "\n").collect::<String>()).unwrap();
    path
}

/// Found by `fuzz_shard_reader`: a pending instance whose tile_col is outside the header's grid
/// panics with an index out of bounds in `TileGrid::tile` (grid.rs) during `merge_outputs`.
#[test]

fn shard_pending_tile_outside_the_grid_is_an_error() {
    let path = shard_with_pending(|p| p["tile_col"] = serde_json::json!(65535));
    let err = format!("{:#}", merge_outputs(&[&path]).expect_err("no such tile"));
    assert!(err.contains("s0of1.jsonl"), "{err}");
}

/// Found by `fuzz_shard_reader`: a pending instance declaring width 2^64-1 (read `as u32`:
/// 4294967295) makes `PixelMask::from_runs` reserve width x height bytes (12.9 GB, abort)
/// before checking the runs.
#[test]

fn shard_pending_mask_with_a_huge_declared_size_is_an_error() {
    let path = shard_with_pending(|p| p["width"] = serde_json::json!(u64::MAX));
    let (result, peak) = fuzz_common::peak_during(|| merge_outputs(&[&path]).map(|_| ()));
    let err = format!("{:#}", result.expect_err("runs do not cover that size"));
    assert!(err.contains("s0of1.jsonl"), "{err}");
    assert!(peak < 256 << 20, "peak {peak} bytes");
}
