//! Our GeoTIFF decode against GDAL's own, over the variants `gdal_translate` writes: every
//! compression, predictor, interleave, strip/tile layout, BigTIFF, COG overviews, alpha bands and
//! internal masks. A synthetic 300x200 raster (gradients and noise, a NaN patch in the float one,
//! a transparent corner in the RGBA one) is written as ENVI, translated to each variant, and both
//! our reader and GDAL (`gdal_translate -of ENVI`, the raw samples) decode it. Lossless variants
//! must match exactly (NaN matching NaN), lossy ones (JPEG, lossy WebP) within 2 levels; the pixel
//! validity from alpha/mask must equal GDAL's mask band. Run with `--nocapture` for the table.

use std::path::{Path, PathBuf};
use std::process::Command;

use maskrcnn_geo::raster::{GeoTiff, PixelWindow, Samples};

const W: usize = 300;
/// The tolerance value that selects the JPEG rule of [`judge`].
const JPEG: f64 = 3.0;
const H: usize = 200;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Rgb8,
    Rgba8,
    U16,
    I16,
    F32,
}

impl Kind {
    fn bands(self) -> usize {
        match self {
            Kind::Rgb8 => 3,
            Kind::Rgba8 => 4,
            _ => 1,
        }
    }
    /// ENVI data type code and bytes per sample.
    fn envi(self) -> (u32, usize) {
        match self {
            Kind::Rgb8 | Kind::Rgba8 => (1, 1),
            Kind::U16 => (12, 2),
            Kind::I16 => (2, 2),
            Kind::F32 => (4, 4),
        }
    }
    fn name(self) -> &'static str {
        match self {
            Kind::Rgb8 => "rgb8",
            Kind::Rgba8 => "rgba8",
            Kind::U16 => "u16",
            Kind::I16 => "i16",
            Kind::F32 => "f32",
        }
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Band-sequential little-endian samples of the synthetic raster.
fn synthetic(kind: Kind) -> Vec<u8> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::new();
    for b in 0..kind.bands() {
        for y in 0..H {
            for x in 0..W {
                let g = (x as f64 / W as f64 + (b as f64 + 1.0) * y as f64 / H as f64 / 3.0).fract();
                let noise = rng.next() - 0.5;
                match kind {
                    Kind::Rgb8 | Kind::Rgba8 if b == 3 => {
                        // Alpha: transparent top-left corner, partly transparent band, opaque rest.
                        let a = if x < 60 && y < 40 {
                            0
                        } else if x < 80 {
                            128
                        } else {
                            255
                        };
                        out.push(a);
                    }
                    Kind::Rgb8 | Kind::Rgba8 => out.push((g * 220.0 + noise * 30.0 + 16.0).clamp(0.0, 255.0) as u8),
                    Kind::U16 => out.extend(((g * 60000.0 + noise * 800.0 + 1000.0) as u16).to_le_bytes()),
                    Kind::I16 => out.extend(((g * 60000.0 - 30000.0 + noise * 500.0) as i16).to_le_bytes()),
                    Kind::F32 => {
                        let v = if (100..110).contains(&x) && (50..53).contains(&y) {
                            f32::NAN
                        } else {
                            (g * 1234.5 - 300.0 + noise * 3.0) as f32
                        };
                        out.extend(v.to_le_bytes());
                    }
                }
            }
        }
    }
    out
}

fn write_envi(path: &Path, kind: Kind) {
    let (code, _) = kind.envi();
    std::fs::write(path, synthetic(kind)).unwrap();
    let hdr = format!(
        "ENVI\nsamples = {W}\nlines = {H}\nbands = {}\nheader offset = 0\nfile type = ENVI Standard\n\
         data type = {code}\ninterleave = bsq\nbyte order = 0\n",
        kind.bands()
    );
    std::fs::write(path.with_extension("hdr"), hdr).unwrap();
}

fn gdal(args: &[&str]) -> Result<(), String> {
    let out = Command::new("gdal_translate")
        .args(args)
        .output()
        .map_err(|e| format!("gdal_translate not runnable ({e}); install gdal-bin"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("gdal_translate {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// GDAL's decode of `tif` (or of its overview / mask band) as raw BSQ little-endian bytes.
fn gdal_decode(tif: &Path, overview: usize, mask: bool, out: &Path) -> Result<Vec<u8>, String> {
    let mut args: Vec<String> = ["-q", "-of", "ENVI", "-co", "INTERLEAVE=BSQ"].map(String::from).to_vec();
    if overview > 0 {
        args.extend(["-oo".into(), format!("OVERVIEW_LEVEL={}", overview - 1)]);
    }
    if mask {
        args.extend(["-b".into(), "mask".into()]);
    }
    args.extend([tif.display().to_string(), out.display().to_string()]);
    gdal(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    std::fs::read(out).map_err(|e| e.to_string())
}

fn samples_f64(s: &Samples) -> Vec<f64> {
    match s {
        Samples::U8(v) => v.iter().map(|&x| x as f64).collect(),
        Samples::U16(v) => v.iter().map(|&x| x as f64).collect(),
        Samples::I16(v) => v.iter().map(|&x| x as f64).collect(),
        Samples::F32(v) => v.iter().map(|&x| x as f64).collect(),
        Samples::F64(v) => v.clone(),
        Samples::U32(v) => v.iter().map(|&x| x as f64).collect(),
        Samples::I32(v) => v.iter().map(|&x| x as f64).collect(),
        Samples::I8(v) => v.iter().map(|&x| x as f64).collect(),
        Samples::U64(v) => v.iter().map(|&x| x as f64).collect(),
        Samples::I64(v) => v.iter().map(|&x| x as f64).collect(),
    }
}

fn bytes_f64(bytes: &[u8], kind: Kind) -> Vec<f64> {
    match kind.envi().1 {
        1 => bytes.iter().map(|&b| b as f64).collect(),
        2 if kind == Kind::I16 => bytes.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as f64).collect(),
        2 => bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as f64).collect(),
        _ => bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
    }
}

/// Differences of each sample (NaN against NaN counts as 0, NaN against a number as infinite).
fn diffs(a: &[f64], b: &[f64]) -> Vec<f64> {
    if a.len() != b.len() {
        return vec![f64::INFINITY];
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| match (x.is_nan(), y.is_nan()) {
            (true, true) => 0.0,
            (false, false) => (x - y).abs(),
            _ => f64::INFINITY,
        })
        .collect()
}

/// Whether `d` passes `tolerance`, and a description. JPEG (`tolerance` 3) is held to what
/// tests/jpeg.rs documents for jpeg-decoder against libjpeg: 99.9 % of samples within 2 levels,
/// none beyond 4 (its IDCT rounds differently); everything else must be within `tolerance`.
fn judge(d: &[f64], tolerance: f64) -> (bool, String) {
    let max = d.iter().copied().fold(0.0, f64::max);
    let over2 = d.iter().filter(|&&x| x > 2.0).count();
    let ok = if tolerance == 3.0 { max <= 4.0 && over2 * 1000 <= d.len() } else { max <= tolerance };
    (
        ok,
        if over2 > 0 {
            format!("max diff {max} ({over2} of {} samples > 2)", d.len())
        } else {
            format!("max diff {max}")
        },
    )
}

struct Case {
    name: String,
    kind: Kind,
    /// gdal_translate arguments (creation options, -of, --config).
    args: Vec<String>,
    tolerance: f64,
    /// Overview levels to check besides level 0.
    overviews: usize,
}

fn case(kind: Kind, name: &str, args: &[&str], tolerance: f64) -> Case {
    let mut all: Vec<String> = Vec::new();
    for a in args {
        if a.starts_with('-') {
            all.push(a.to_string());
        } else if a.contains('=') && !a.starts_with("GDAL_") {
            all.extend(["-co".to_string(), a.to_string()]);
        } else {
            all.push(a.to_string());
        }
    }
    if kind == Kind::Rgba8 && !args.contains(&"-of") {
        all.extend(["-co".into(), "ALPHA=YES".into(), "-co".into(), "PHOTOMETRIC=RGB".into()]);
    }
    Case { name: format!("{} {name}", kind.name()), kind, args: all, tolerance, overviews: 0 }
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    let all = [Kind::Rgb8, Kind::Rgba8, Kind::U16, Kind::I16, Kind::F32];
    let lossless = ["NONE", "LZW", "DEFLATE", "PACKBITS", "ZSTD", "LERC", "LERC_DEFLATE", "LERC_ZSTD"];
    for kind in all {
        for c in lossless {
            v.push(case(kind, c, &[&format!("COMPRESS={c}")], 0.0));
        }
        for c in ["LZW", "DEFLATE", "ZSTD"] {
            v.push(case(kind, &format!("{c} PREDICTOR=2"), &[&format!("COMPRESS={c}"), "PREDICTOR=2"], 0.0));
        }
        v.push(case(
            kind,
            "DEFLATE PREDICTOR=2 tiled 48x80",
            &["COMPRESS=DEFLATE", "PREDICTOR=2", "TILED=YES", "BLOCKXSIZE=48", "BLOCKYSIZE=80"],
            0.0,
        ));
        v.push(case(kind, "LZW strips of 7 rows", &["COMPRESS=LZW", "BLOCKYSIZE=7"], 0.0));
        v.push(case(
            kind,
            "LERC_ZSTD tiled 32x16",
            &["COMPRESS=LERC_ZSTD", "TILED=YES", "BLOCKXSIZE=32", "BLOCKYSIZE=16"],
            0.0,
        ));
        v.push(case(kind, "ZSTD BIGTIFF=YES tiled", &["COMPRESS=ZSTD", "BIGTIFF=YES", "TILED=YES"], 0.0));
        v.push(case(kind, "NONE BIGTIFF=YES strips", &["BIGTIFF=YES"], 0.0));
    }
    for c in ["LZW", "DEFLATE", "ZSTD"] {
        v.push(case(Kind::F32, &format!("{c} PREDICTOR=3"), &[&format!("COMPRESS={c}"), "PREDICTOR=3"], 0.0));
        v.push(case(
            Kind::F32,
            &format!("{c} PREDICTOR=3 tiled 48x80"),
            &[&format!("COMPRESS={c}"), "PREDICTOR=3", "TILED=YES", "BLOCKXSIZE=48", "BLOCKYSIZE=80"],
            0.0,
        ));
    }
    for kind in [Kind::Rgb8, Kind::Rgba8] {
        for c in ["NONE", "LZW", "DEFLATE", "ZSTD", "LERC_DEFLATE", "PACKBITS"] {
            v.push(case(kind, &format!("{c} INTERLEAVE=BAND"), &[&format!("COMPRESS={c}"), "INTERLEAVE=BAND"], 0.0));
        }
        v.push(case(
            kind,
            "LZW PREDICTOR=2 INTERLEAVE=BAND tiled",
            &["COMPRESS=LZW", "PREDICTOR=2", "INTERLEAVE=BAND", "TILED=YES", "BLOCKXSIZE=64", "BLOCKYSIZE=48"],
            0.0,
        ));
        v.push(case(kind, "WEBP lossless", &["COMPRESS=WEBP", "WEBP_LOSSLESS=YES"], 0.0));
        v.push(case(kind, "WEBP lossless tiled", &["COMPRESS=WEBP", "WEBP_LOSSLESS=YES", "TILED=YES"], 0.0));
        v.push(case(kind, "WEBP lossy", &["COMPRESS=WEBP"], 2.0));
        v.push(case(
            kind,
            "WEBP lossy tiled 48x80",
            &["COMPRESS=WEBP", "TILED=YES", "BLOCKXSIZE=48", "BLOCKYSIZE=80"],
            2.0,
        ));
    }
    v.push(case(Kind::Rgb8, "JPEG YCbCr", &["COMPRESS=JPEG", "PHOTOMETRIC=YCBCR"], JPEG));
    v.push(case(Kind::Rgb8, "JPEG YCbCr tiled", &["COMPRESS=JPEG", "PHOTOMETRIC=YCBCR", "TILED=YES"], JPEG));
    v.push(case(Kind::Rgb8, "JPEG RGB", &["COMPRESS=JPEG"], JPEG));
    v.push(case(Kind::Rgb8, "JPEG INTERLEAVE=BAND", &["COMPRESS=JPEG", "INTERLEAVE=BAND"], JPEG));
    v.push(case(
        Kind::U16,
        "DEFLATE tiled 16x16",
        &["COMPRESS=DEFLATE", "TILED=YES", "BLOCKXSIZE=16", "BLOCKYSIZE=16"],
        0.0,
    ));
    // Internal masks: RGB with the alpha of the RGBA raster as GDAL's 1-bit mask IFD.
    for (c, tol) in [("DEFLATE", 0.0), ("JPEG", JPEG), ("LZW", 0.0), ("WEBP", 2.0)] {
        let mut m = case(
            Kind::Rgba8,
            &format!("{c} RGB + internal mask"),
            &[
                &format!("COMPRESS={c}"),
                "-b",
                "1",
                "-b",
                "2",
                "-b",
                "3",
                "-mask",
                "4",
                "--config",
                "GDAL_TIFF_INTERNAL_MASK",
                "YES",
                "-of",
                "GTiff",
            ],
            tol,
        );
        if c == "JPEG" {
            m.args.extend(["-co".into(), "PHOTOMETRIC=YCBCR".into()]);
        }
        v.push(m);
    }
    // COGs with overviews (and, for the RGB one, a mask with its own overviews).
    for (kind, c, tol) in
        [(Kind::F32, "DEFLATE", 0.0), (Kind::U16, "ZSTD", 0.0), (Kind::Rgb8, "JPEG", JPEG), (Kind::Rgb8, "LERC", 0.0)]
    {
        let mut cog = case(
            kind,
            &format!("COG {c} overviews"),
            &["-of", "COG", &format!("COMPRESS={c}"), "BLOCKSIZE=64", "OVERVIEW_RESAMPLING=AVERAGE"],
            tol,
        );
        cog.overviews = 2;
        v.push(cog);
    }
    let mut cog_mask = case(
        Kind::Rgba8,
        "COG DEFLATE RGB + mask, overviews",
        &["-b", "1", "-b", "2", "-b", "3", "-mask", "4", "-of", "COG", "COMPRESS=DEFLATE", "BLOCKSIZE=64"],
        0.0,
    );
    cog_mask.overviews = 2;
    v.push(cog_mask);
    v
}

/// Checks one level of one variant: all pixels, a window crossing chunk borders, and validity.
fn check_level(tif: &Path, dir: &Path, kind: Kind, level: usize, tolerance: f64) -> Result<String, String> {
    let mut r = if level == 0 { GeoTiff::open(tif) } else { GeoTiff::open_overview(tif, level) }
        .map_err(|e| format!("{e:#}"))?;
    let info = r.info().clone();
    let (w, h) = (info.width as usize, info.height as usize);
    let reference = gdal_decode(tif, level, false, &dir.join("ref.img"))?;
    let bands = info.bands;
    let want = bytes_f64(&reference, kind);
    if want.len() != w * h * bands {
        return Err(format!("GDAL decoded {} samples, we expect {w}x{h}x{bands}", want.len()));
    }
    let got = r.read_window_typed(PixelWindow::new(0, 0, w as u32, h as u32), &[]).map_err(|e| format!("{e:#}"))?;
    let full = samples_f64(&got.data);
    let (ok, d) = judge(&diffs(&full, &want), tolerance);
    if !ok {
        return Err(format!("pixels differ from GDAL's: {d}"));
    }
    // A window off the chunk grid, bands reversed, from a fresh reader (cold cache): exactly the
    // same samples as our full read (which was compared with GDAL's above).
    let mut fresh = if level == 0 { GeoTiff::open(tif) } else { GeoTiff::open_overview(tif, level) }.unwrap();
    let win = PixelWindow::new(w as u32 / 3, h as u32 / 4, w as u32 / 2, h as u32 / 2);
    let rev: Vec<usize> = (1..=bands).rev().collect();
    let part = fresh.read_window_typed(win, &rev).map_err(|e| format!("{e:#}"))?;
    let part = samples_f64(&part.data);
    let mut want_part = Vec::new();
    for &b in &rev {
        for y in win.y..win.bottom() {
            let row = (b - 1) * w * h + y as usize * w;
            want_part.extend_from_slice(&full[row + win.x as usize..row + win.right() as usize]);
        }
    }
    let (ok, dp) = judge(&diffs(&part, &want_part), 0.0);
    if !ok {
        return Err(format!("window {win:?} differs from the full read: {dp}"));
    }
    // Validity: GDAL's mask band (alpha values or the internal mask) against ours.
    let gdal_mask = gdal_decode(tif, level, true, &dir.join("mask.img"))?;
    let ours = r.read_validity(PixelWindow::new(0, 0, w as u32, h as u32)).map_err(|e| format!("{e:#}"))?;
    let all_valid = gdal_mask.iter().all(|&m| m == 255);
    let validity = match &ours {
        None if all_valid => "-".to_string(),
        None => return Err("GDAL reports masked pixels, we report none".into()),
        Some(v) => {
            let bad = v.iter().zip(&gdal_mask).filter(|(&ok, &m)| ok != (m != 0)).count();
            // Lossy-compressed alpha (WebP) can move the 0 boundary by a few pixels.
            if bad > if tolerance > 0.0 { w * h / 200 } else { 0 } {
                return Err(format!("validity differs from GDAL's mask at {bad} pixels"));
            }
            let invalid = v.iter().filter(|&&ok| !ok).count();
            format!(
                "{invalid} invalid ({})",
                match (info.alpha_band, info.has_internal_mask) {
                    (Some(a), _) => format!("alpha band {a}"),
                    (None, true) => "mask IFD".to_string(),
                    _ => "?".to_string(),
                }
            )
        }
    };
    if info.alpha_band.is_some() && info.data_bands().len() != bands - 1 {
        return Err("data_bands() includes the alpha band".into());
    }
    Ok(format!("{w}x{h}x{bands} {d}; window same; validity {validity}"))
}

fn gdal_geotransform(tif: &Path, level: usize) -> Option<Vec<f64>> {
    let mut cmd = Command::new("gdalinfo");
    cmd.arg("-json");
    if level > 0 {
        cmd.args(["-oo", &format!("OVERVIEW_LEVEL={}", level - 1)]);
    }
    let out = cmd.arg(tif).output().ok()?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    json["geoTransform"].as_array().map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
}

#[test]
fn gdal_variants_decode_as_gdal_decodes_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut sources: Vec<(Kind, PathBuf)> = Vec::new();
    for kind in [Kind::Rgb8, Kind::Rgba8, Kind::U16, Kind::I16, Kind::F32] {
        let p = dir.path().join(format!("src_{}.img", kind.name()));
        write_envi(&p, kind);
        sources.push((kind, p));
    }
    let mut rows = Vec::new();
    let mut failures = 0;
    for (i, c) in cases().iter().enumerate() {
        let src = &sources.iter().find(|(k, _)| *k == c.kind).unwrap().1;
        let tif = dir.path().join(format!("case{i}.tif"));
        let mut args: Vec<String> = vec!["-q".into()];
        if !c.args.contains(&"-of".to_string()) {
            args.extend(["-of".into(), "GTiff".into()]);
        }
        args.extend(c.args.iter().cloned());
        // Georeferenced, so overview geotransforms can be checked against GDAL's.
        args.extend(["-a_ullr", "500000", "4200000", "500600", "4199600", "-a_srs", "EPSG:32616"].map(String::from));
        args.extend([src.display().to_string(), tif.display().to_string()]);
        let made = gdal(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let mut result = match made {
            Err(e) => Err(format!("could not write the variant: {e}")),
            Ok(()) => check_level(&tif, dir.path(), c.kind, 0, c.tolerance),
        };
        if result.is_ok() && c.overviews > 0 {
            let r = GeoTiff::open(&tif).unwrap();
            let have = r.info().overviews.len();
            if have < c.overviews {
                result = Err(format!("{have} overviews found, expected at least {}", c.overviews));
            }
            for level in 1..=have {
                if result.is_err() {
                    break;
                }
                match check_level(&tif, dir.path(), c.kind, level, c.tolerance) {
                    Ok(s) => {
                        let ours = GeoTiff::open_overview(&tif, level).unwrap().info().geotransform.unwrap().0;
                        let theirs = gdal_geotransform(&tif, level).unwrap_or_default();
                        let same = theirs.len() == 6 && ours.iter().zip(&theirs).all(|(a, b)| (a - b).abs() < 1e-6);
                        result = if same {
                            result.map(|r| format!("{r}; overview {level}: {s}"))
                        } else {
                            Err(format!("overview {level} geotransform {ours:?}, GDAL says {theirs:?}"))
                        };
                    }
                    Err(e) => result = Err(format!("overview {level}: {e}")),
                }
            }
            if result.is_ok() {
                match GeoTiff::open_overview(&tif, have + 1) {
                    Ok(_) => result = Err(format!("overview level {} opened but does not exist", have + 1)),
                    Err(e) if !e.to_string().contains("does not exist") => {
                        result = Err(format!("unclear error for a missing level: {e}"))
                    }
                    Err(_) => {}
                }
            }
        }
        if result.is_err() {
            failures += 1;
        }
        rows.push((c.name.clone(), result));
    }
    println!("\n{:<50} result", "case");
    for (name, r) in &rows {
        match r {
            Ok(s) => println!("{name:<50} ok    {s}"),
            Err(e) => println!("{name:<50} FAIL  {e}"),
        }
    }
    println!("{} cases, {} passed, {failures} failed", rows.len(), rows.len() - failures);
    assert_eq!(failures, 0, "{failures} GDAL variant(s) decoded differently from GDAL (table above)");
}
