mod common;

use common::*;
use geo::Validation;
use maskrcnn_geo::*;

fn raster(dir: &std::path::Path, w: u32, h: u32) -> GeoTiff {
    let path = dir.join("r.tif");
    let mut spec = TiffSpec::new(w, h, 3, Dtype::U8);
    spec.tile = Some((64, 64));
    spec.compression = Comp::Deflate;
    spec.geo = Some((500000.0, 4000000.0, 0.5, 32616));
    write_tiff(&path, &spec);
    GeoTiff::open(&path).unwrap()
}

#[test]
fn object_spanning_four_tiles_becomes_one_polygon() {
    let dir = tempfile::tempdir().unwrap();
    for (size, overlap) in [(240u32, 16u32), (256, 0), (240, 48)] {
        let mut r = raster(dir.path(), size, size);
        let mut truth = Truth::new(size, size);
        let c = size as f64 / 2.0;
        truth.disc(1, c, c, 45.0); // spans the 2x2 tiles
        truth.rect(2, 10, 10, 30, 25); // inside one tile
        let opts = DetectOptions {
            tile_size: 128,
            overlap,
            class_names: vec!["a".into(), "b".into(), "c".into()],
            ..Default::default()
        };
        let mut calls = 0;
        let mut last = None;
        let (features, summary) = detect_raster(
            &mut r,
            |img: &TileImage| {
                calls += 1;
                assert_eq!(img.bands, vec![1, 2, 3]);
                assert_eq!(img.data.len(), 3 * 128 * 128);
                Ok(truth.detect(img))
            },
            &opts,
            |p| last = Some(p),
        )
        .unwrap();
        let n_tiles = if overlap == 48 { 9 } else { 4 }; // 240 px with step 80 needs 3x3 tiles
        assert_eq!(calls, n_tiles);
        assert_eq!(last.unwrap().tiles_done, n_tiles);
        assert_eq!(summary.tiles_processed, n_tiles);
        assert!(summary.pending.is_empty());
        assert_eq!(features.len(), 2, "overlap {overlap}: {features:#?}");
        let disc = features.iter().find(|f| f.class_id == 1).unwrap();
        assert_eq!(disc.class, "b");
        assert_eq!(disc.geometry.0.len(), 1, "one part");
        assert_eq!(disc.geometry.0[0].interiors().len(), 0, "no seam slivers");
        assert!(disc.geometry.is_valid());
        let want = truth.pixel_count(1) as f64 * 0.25;
        assert!((disc.area - want).abs() < 1e-9, "overlap {overlap}: area {} vs {want}", disc.area);
        assert_eq!(disc.tile.split(';').count(), n_tiles, "{}", disc.tile);
        let small = features.iter().find(|f| f.class_id == 2).unwrap();
        assert_eq!(small.area, 20.0 * 15.0 * 0.25);
        // Map coordinates: pixel (10, 10) corner → (500005, 3999995).
        let b = geo::BoundingRect::bounding_rect(&small.geometry).unwrap();
        assert_eq!((b.min().x, b.max().y), (500005.0, 3999995.0));
    }
}

#[test]
fn boxed_masks_give_the_features_of_tile_sized_ones() {
    // A model hands over only the box it pasted; the merged, vectorised result must be the one
    // the same masks give as tile-sized planes, seams and core ownership included.
    let dir = tempfile::tempdir().unwrap();
    let mut r = raster(dir.path(), 300, 260);
    let truth = random_truth(300, 260, 25, 7);
    let opts = DetectOptions { tile_size: 128, overlap: 24, ..Default::default() };
    let (whole, _) = detect_raster(&mut r, |img: &TileImage| Ok(truth.detect(img)), &opts, |_| {}).unwrap();
    let (boxed, _) = detect_raster(&mut r, |img: &TileImage| Ok(truth.detect_boxed(img)), &opts, |_| {}).unwrap();
    assert!(whole.len() >= 10, "{}", whole.len());
    assert_eq!(whole, boxed);
}

#[test]
fn imperfect_tiles_and_close_neighbours() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = raster(dir.path(), 240, 240);
    let mut truth = Truth::new(240, 240);
    // Two rectangles 2 px apart, both crossing the vertical seam: must stay two objects.
    truth.rect(4, 90, 20, 140, 40);
    truth.rect(7, 90, 42, 140, 60);
    // A blob the right-hand tile sees 1 px fatter: still one object, core pixels from each tile.
    truth.rect(9, 100, 150, 135, 170);
    let opts = DetectOptions { tile_size: 128, overlap: 16, ..Default::default() };
    let (features, _) = detect_raster(
        &mut r,
        |img: &TileImage| {
            let mut inst = truth.detect(img);
            if img.tile.col == 1 {
                for i in inst.iter_mut().filter(|i| i.class_id == 0 && i.mask.data.iter().any(|&m| m != 0)) {
                    let w = img.width as usize;
                    let orig = i.mask.data.clone();
                    for y in 1..img.height as usize - 1 {
                        for x in 1..w - 1 {
                            if orig[y * w + x + 1] != 0 || orig[(y + 1) * w + x] != 0 {
                                i.mask.data[y * w + x] = 1;
                            }
                        }
                    }
                }
            }
            Ok(inst)
        },
        &opts,
        |_| {},
    )
    .unwrap();
    let mut ids: Vec<i64> = features.iter().map(|f| f.class_id).collect();
    ids.sort();
    assert_eq!(ids, vec![0, 1, 1], "{features:#?}");
    let areas: Vec<f64> = features.iter().map(|f| f.area / 0.25).collect();
    assert!(areas.contains(&(50.0 * 20.0)), "{areas:?}");
    assert!(areas.contains(&(50.0 * 18.0)), "{areas:?}");
    // The fattened blob (35x20 px): the left tile owns x < 120 and is exact; the right tile owns
    // x >= 120 (15 columns) and grew it one row upwards there: 700 + 15 px.
    let blob = features.iter().find(|f| f.class_id == 0).unwrap();
    let a = blob.area / 0.25;
    assert_eq!(a, 715.0, "blob area {a} px");
    assert_eq!(blob.geometry.0.len(), 1);
}

fn random_truth(w: u32, h: u32, n: u32, seed: u64) -> Truth {
    let mut t = Truth::new(w, h);
    let mut s = seed;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    for id in 1..=n {
        let cx = (next() % w as u64) as f64;
        let cy = (next() % h as u64) as f64;
        if next() % 2 == 0 {
            t.disc(id, cx, cy, 3.0 + (next() % 30) as f64);
        } else {
            let (rw, rh) = (2 + next() % 50, 2 + next() % 50);
            let x0 = cx as u32;
            let y0 = cy as u32;
            t.rect(id, x0, y0, (x0 + rw as u32).min(w), (y0 + rh as u32).min(h));
        }
    }
    t
}

fn sorted(mut f: Vec<Feature>) -> Vec<Feature> {
    f.sort_by(|a, b| a.tile.cmp(&b.tile).then(a.area.total_cmp(&b.area)).then(a.class_id.cmp(&b.class_id)));
    f
}

#[test]
fn shards_merged_equal_a_single_run() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (600, 520);
    let truth = random_truth(w, h, 60, 0x1234_5678_9abc_def1);
    let opts = DetectOptions { tile_size: 128, overlap: 32, ..Default::default() };
    let mut r = raster(dir.path(), w, h);
    let (single, summary) = detect_raster(&mut r, |img: &TileImage| Ok(truth.detect(img)), &opts, |_| {}).unwrap();
    assert!(summary.pending.is_empty());

    // Every surviving object id (some were painted over by later ones) is exactly one feature
    // with its exact area, when no object is split into separate pieces by overpainting.
    let present: std::collections::BTreeSet<u32> = truth.labels.iter().copied().filter(|&v| v != 0).collect();
    assert!(present.len() > 40);
    let total_px: usize = present.iter().map(|&id| truth.pixel_count(id)).sum();
    let total_area: f64 = single.iter().map(|f| f.area).sum();
    assert!((total_area - total_px as f64 * 0.25).abs() < 1e-6, "{total_area} vs {}", total_px as f64 * 0.25);
    let multi_tile = single.iter().filter(|f| f.tile.contains(';')).count();
    assert!(multi_tile > 10, "the scene must exercise seams ({multi_tile})");

    for n in [2usize, 3, 5] {
        let mut paths = Vec::new();
        for k in 0..n {
            let shard = Shard::new(k, n).unwrap();
            let o = DetectOptions { shard, ..opts.clone() };
            let info = r.info().clone();
            let grid = TileGrid::new(w, h, o.tile_size, o.overlap).unwrap();
            let header = ShardHeader::new(
                shard,
                grid,
                info.geotransform.unwrap(),
                info.crs.clone(),
                vec![],
                o.merge.clone(),
                o.vectorize.clone(),
            );
            let path = dir.path().join(format!("s{k}of{n}.jsonl"));
            let mut writer = ShardWriter::create(&path, &header, false).unwrap();
            let summary = detect_raster_streaming(
                &mut r,
                |img: &TileImage| Ok(truth.detect(img)),
                &o,
                |f| writer.write(&f),
                |_| {},
            )
            .unwrap();
            writer.finish(&summary.pending).unwrap();
            paths.push(path);
        }
        let merged = merge_outputs(&paths).unwrap();
        assert_eq!(merged.header.crs.as_ref().unwrap().epsg, Some(32616));
        assert_eq!(sorted(merged.features), sorted(single.clone()), "{n} shards");
        // A missing shard is an error, not a silent partial result.
        let err = merge_outputs(&paths[1..]).err().unwrap();
        assert!(format!("{err:#}").contains("missing"), "{err:#}");
    }
}

#[test]
fn nodata_tiles_are_skipped_and_bad_masks_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nd.tif");
    let mut spec = TiffSpec::new(256, 128, 1, Dtype::U8);
    spec.nodata = Some("3"); // pattern(0, x, y) == 3 only at (1, 0): no tile is all nodata
    spec.geo = Some((0.0, 0.0, 1.0, 32616));
    write_tiff(&path, &spec);
    let mut r = GeoTiff::open(&path).unwrap();
    let opts = DetectOptions { tile_size: 128, overlap: 0, ..Default::default() };
    let (_, s) = detect_raster(&mut r, |_: &TileImage| Ok(vec![]), &opts, |_| {}).unwrap();
    assert_eq!((s.tiles_processed, s.tiles_skipped_nodata), (2, 0));

    let path = dir.path().join("allnd.tif");
    let mut spec = TiffSpec::new(256, 128, 1, Dtype::F32);
    spec.nodata = Some("-10");
    spec.constant = Some(-10.0);
    write_tiff(&path, &spec);
    let mut r = GeoTiff::open(&path).unwrap();
    let (_, s) =
        detect_raster(&mut r, |_: &TileImage| panic!("detector called on a nodata tile"), &opts, |_| {}).unwrap();
    assert_eq!((s.tiles_processed, s.tiles_skipped_nodata), (0, 2));
    let keep = DetectOptions { skip_nodata_tiles: false, ..opts.clone() };
    let (_, s) = detect_raster(&mut r, |_: &TileImage| Ok(vec![]), &keep, |_| {}).unwrap();
    assert_eq!(s.tiles_processed, 2);

    let err = detect_raster(
        &mut r,
        |_: &TileImage| {
            let mask = TileMask { x0: 120, y0: 0, width: 10, height: 1, data: vec![1; 10] };
            Ok(vec![TileInstance { class_id: 0, score: 1.0, mask }])
        },
        &keep,
        |_| {},
    )
    .err()
    .unwrap();
    assert!(format!("{err:#}").contains("a 10x1 mask at (120, 0), outside the 128x128 tile"), "{err:#}");
    let err = detect_raster(&mut r, |_: &TileImage| anyhow::bail!("model exploded"), &keep, |_| {}).err().unwrap();
    assert!(format!("{err:#}").contains("detector failed on tile r0c0"), "{err:#}");
}

/// Alpha 0 is nodata, never image: a tile entirely behind alpha 0 is skipped, and objects keep no
/// pixel there (a detector claiming the whole tile gets only the visible half). RGBA made by GDAL.
#[test]
fn alpha_zero_pixels_are_nodata() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rgba.tif");
    let run = |tool: &str, args: &[&str]| {
        let out = std::process::Command::new(tool).args(args).output().unwrap_or_else(|e| {
            panic!("cannot run {tool} ({e}): this test needs GDAL's tools (apt-get install gdal-bin)")
        });
        assert!(out.status.success(), "{tool} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let p = path.to_str().unwrap();
    // 256x128 in 128-px tiles: the right tile fully transparent, the left tile's right half too.
    run(
        "gdal_create",
        &[
            "-q",
            "-of",
            "GTiff",
            "-outsize",
            "256",
            "128",
            "-bands",
            "4",
            "-burn",
            "200",
            "-co",
            "ALPHA=YES",
            "-a_srs",
            "EPSG:32616",
            "-a_ullr",
            "0",
            "128",
            "256",
            "0",
            p,
        ],
    );
    let cut = dir.path().join("cut.geojson");
    std::fs::write(
        &cut,
        r#"{"type":"FeatureCollection","crs":{"type":"name","properties":{"name":"urn:ogc:def:crs:EPSG::32616"}},"features":[{"type":"Feature","properties":{},"geometry":{"type":"Polygon","coordinates":[[[64,0],[256,0],[256,128],[64,128],[64,0]]]}}]}"#,
    )
    .unwrap();
    run("gdal_rasterize", &["-q", "-b", "4", "-burn", "0", cut.to_str().unwrap(), p]);

    let mut r = GeoTiff::open(&path).unwrap();
    assert_eq!(r.info().alpha_band, Some(4));
    let opts = DetectOptions { tile_size: 128, overlap: 0, bands: vec![1, 2, 3], ..Default::default() };
    let mut calls = 0;
    let (features, s) = detect_raster(
        &mut r,
        |img: &TileImage| {
            calls += 1;
            Ok(vec![TileInstance {
                class_id: 1,
                score: 0.9,
                mask: TileMask::whole(img.width, img.height, vec![1; (img.width * img.height) as usize]),
            }])
        },
        &opts,
        |_| {},
    )
    .unwrap();
    assert_eq!((calls, s.tiles_skipped_nodata), (1, 1));
    assert_eq!(features.len(), 1);
    assert_eq!(features[0].area, 64.0 * 128.0, "only the visible 64x128 pixels");
}
