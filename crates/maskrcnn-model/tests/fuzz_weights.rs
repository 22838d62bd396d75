//! Fuzzing the checkpoint readers: `.safetensors` and `.pth` (torch.save zip, through
//! pytorch-reader) state dicts, shape inference and the config checks on them, arcgis.learn
//! `.emd` files and `.dlpk` packages, up to `load_model`. Seeds are tiny files written here plus
//! the repository's tiny loader checkpoint (`fixtures/parity/loader`); mutations are byte edits,
//! rebuilt containers (a mutated safetensors header with its length fixed, a zip rebuilt around a
//! mutated pickle so its CRCs still match) and structured edits (tensor ranks, shapes, dtypes,
//! declared sizes, emd fields). Short in CI; `MASKRCNN_FUZZ_CASES=100000 cargo test --release
//! --workspace --test fuzz_weights` for a long run.

#[path = "../../maskrcnn-masks/tests/fuzz_common/mod.rs"]
mod fuzz_common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use fuzz_common::{json, mutate_bytes, Rng};
use maskrcnn_model::weights::arcgis::{extract_dlpk_with, read_emd, DlpkLimits};
use maskrcnn_model::weights::checkpoint::{check_config_matches, infer_config};
use maskrcnn_model::weights::pth_writer::write_pth;
use maskrcnn_model::weights::{load_model, HostTensor, StateDict};
use serde_json::{json as j, Value};

fn loader(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/parity/loader").join(name)
}

fn tiny_state_dict() -> StateDict {
    let mut sd = StateDict::default();
    let mut put = |k: &str, shape: Vec<usize>| {
        let n = shape.iter().product::<usize>();
        sd.tensors.insert(k.into(), HostTensor { shape, data: (0..n).map(|i| i as f32 * 0.5 - 1.0).collect() });
    };
    put("backbone.body.conv1.weight", vec![2, 3, 1, 1]);
    put("roi_heads.box_predictor.cls_score.weight", vec![3, 2]);
    put("rpn.head.cls_logits.bias", vec![3]);
    put("scalar", vec![]);
    sd
}

/// A safetensors file from a header and a data block (the 8-byte header length is fixed up).
fn safetensors_bytes(header: &Value, data: &[u8]) -> Vec<u8> {
    let header = serde_json::to_vec(header).unwrap();
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    out.extend_from_slice(data);
    out
}

/// The header and data block of a safetensors file, when it has that shape.
fn split_safetensors(bytes: &[u8]) -> (Value, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&bytes[8..8 + n]).unwrap(), bytes[8 + n..].to_vec())
}

/// Safetensors seeds: our writer's output and hand-made ones with every float dtype, an
/// integer tensor (skipped by the reader) and a scalar.
fn safetensors_seeds(dir: &Path) -> Vec<Vec<u8>> {
    let path = dir.join("seed.safetensors");
    tiny_state_dict().write_safetensors(&path).unwrap();
    let ours = std::fs::read(&path).unwrap();
    let header = j!({
        "__metadata__": {"format": "pt"},
        "h": {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 8]},
        "b": {"dtype": "BF16", "shape": [2], "data_offsets": [8, 12]},
        "d": {"dtype": "F64", "shape": [1, 1, 1, 1], "data_offsets": [12, 20]},
        "n": {"dtype": "I64", "shape": [], "data_offsets": [20, 28]},
        "f": {"dtype": "F32", "shape": [1], "data_offsets": [28, 32]}
    });
    let data: Vec<u8> = (0..32u8).collect();
    vec![ours, safetensors_bytes(&header, &data)]
}

/// The entries of a zip, in order.
fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..zip.len())
        .map(|i| {
            let mut entry = zip.by_index(i).unwrap();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            (entry.name().to_string(), data)
        })
        .collect()
}

fn zip_entries(entries: &[(String, Vec<u8>)], deflate: bool) -> Vec<u8> {
    let mut bytes = Vec::new();
    {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(&mut bytes));
        let method = if deflate { zip::CompressionMethod::Deflated } else { zip::CompressionMethod::Stored };
        let options = zip::write::SimpleFileOptions::default().compression_method(method);
        for (name, data) in entries {
            zip.start_file(name.as_str(), options).unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap();
    }
    bytes
}

/// Pickle opcodes and arguments worth inserting into a torch.save pickle.
const PICKLE_TOKENS: &[&[u8]] = &[
    b"\x80\x02",
    b"K\xff",
    b"J\xff\xff\xff\x7f",
    b"J\xff\xff\xff\xff",
    b"\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x7f",
    b"t",
    b")",
    b"(",
    b"R",
    b"Q",
    b"u",
    b"}",
    b"]",
    b"e",
    b"0",
    b"h\x05",
    b"q\xff",
    b"ctorch._utils\n_rebuild_tensor_v2\n",
    b"ctorch\nHalfStorage\n",
    b"ctorch\nLongStorage\n",
    b"ctorch\nBFloat16Storage\n",
    b"ccollections\nOrderedDict\n",
    b"X\x05\x00\x00\x00cpu00",
];

/// A mutated `.pth`: either raw bytes, or the zip rebuilt around one mutated entry (most often
/// the pickle) so the CRCs match and the reader reaches the mutation.
fn mutate_pth(rng: &mut Rng, seed: &[u8], entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    if rng.chance(4) {
        return mutate_bytes(rng, seed, &[], PICKLE_TOKENS);
    }
    let mut entries = entries.to_vec();
    let i = if rng.chance(4) { rng.below(entries.len()) } else { 0 };
    entries[i].1 = mutate_bytes(rng, &entries[i].1, &[], PICKLE_TOKENS);
    if rng.chance(8) {
        let j = rng.below(entries.len());
        entries.remove(j);
    }
    zip_entries(&entries, false)
}

/// Reads a checkpoint as `load_model` does, up to (not including) building the model.
fn read_checkpoint(path: &Path) {
    let Ok(sd) = StateDict::read(path) else { return };
    for t in sd.tensors.values() {
        assert_eq!(t.shape.iter().product::<usize>(), t.data.len(), "shape and values agree");
    }
    if let Ok(config) = infer_config(&sd) {
        check_config_matches(&sd, &config).expect("an inferred config matches its checkpoint");
    }
}

#[test]
fn fuzz_safetensors() {
    let dir = fuzz_common::scratch_dir("safetensors");
    let seeds = safetensors_seeds(&dir);
    let path = dir.join("input.safetensors");
    for seed in &seeds {
        std::fs::write(&path, seed).unwrap();
        StateDict::read_raw(&path).expect("seed reads");
    }
    let others: Vec<&[u8]> = seeds.iter().map(|s| s.as_slice()).collect();
    fuzz_common::run(
        "safetensors",
        fuzz_common::cases(10_000),
        |rng, _| {
            let seed = rng.pick(&seeds);
            if rng.chance(2) {
                let (header, data) = split_safetensors(seed);
                let mut data = data;
                if rng.chance(4) {
                    data.truncate(rng.below(data.len() + 1));
                }
                safetensors_bytes(&json::mutate(rng, &header), &data)
            } else {
                mutate_bytes(rng, seed, &others, &[b"\"F16\"", b"\"shape\"", b"\"data_offsets\"", b"[]"])
            }
        },
        |input| {
            fuzz_common::write_input(&path, input);
            read_checkpoint(&path);
        },
    );
}

#[test]
fn fuzz_pth() {
    let dir = fuzz_common::scratch_dir("pth");
    let path = dir.join("input.pth");
    write_pth(&tiny_state_dict(), &path).unwrap();
    let seed = std::fs::read(&path).unwrap();
    assert_eq!(StateDict::read_raw(&path).unwrap().tensors.len(), 4);
    let entries = unzip(&seed);
    assert!(entries[0].0.ends_with("data.pkl"), "{:?}", entries[0].0);
    fuzz_common::run(
        "pth",
        fuzz_common::cases(5_000),
        |rng, _| mutate_pth(rng, &seed, &entries),
        |input| {
            fuzz_common::write_input(&path, input);
            read_checkpoint(&path);
        },
    );
}

/// A random shape: every rank from scalar to 5-d, with empty, unit, small and huge dimensions.
fn hostile_shape(rng: &mut Rng) -> Vec<usize> {
    (0..rng.below(6)).map(|_| *rng.pick(&[0usize, 1, 2, 3, 4, 16, 64, 256, 1 << 20, 1 << 40, usize::MAX])).collect()
}

/// The real tiny checkpoint with tensors reshaped, removed, renamed or added: shape inference
/// and the config checks must refuse (not panic on) every one, and what passes them must load.
/// Scalars and 1-d tensors where matrices are expected were a reported panic.
#[test]
fn fuzz_checkpoint_shapes() {
    let base = StateDict::read(&loader("model.safetensors")).expect("the loader fixture");
    let keys: Vec<String> = base.tensors.keys().cloned().collect();
    let dir = fuzz_common::scratch_dir("checkpoint_shapes");
    let mut loaded = 0;
    fuzz_common::run(
        "checkpoint_shapes",
        fuzz_common::cases(600),
        |rng, _| {
            // The input is the list of edits, as JSON, so a failure prints what was done.
            let edits: Vec<Value> = (0..1 + rng.below(3))
                .map(|_| {
                    let key = rng.pick(&keys).clone();
                    match rng.below(6) {
                        0 => j!({"remove": key}),
                        1 => j!({"rename": key, "to": format!("{key}.x")}),
                        2 => j!({"add": format!("backbone.fpn.inner_blocks.{}.0.weight", rng.below(7)), "shape": hostile_shape(rng)}),
                        _ => j!({"reshape": key, "shape": hostile_shape(rng)}),
                    }
                })
                .collect();
            serde_json::to_vec(&edits).unwrap()
        },
        |input| {
            let edits: Vec<Value> = serde_json::from_slice(input).unwrap();
            let mut sd = base.clone();
            for e in &edits {
                let shape: Vec<usize> = serde_json::from_value(e["shape"].clone()).unwrap_or_default();
                // Values only for shapes that fit; a declared size without the values is what
                // the file readers refuse, and shape checks must not need them.
                let n = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).filter(|&n| n <= 1 << 16);
                let tensor = HostTensor { data: vec![0.25; n.unwrap_or(0)], shape };
                if let Some(k) = e["remove"].as_str() {
                    sd.tensors.remove(k);
                } else if let Some(k) = e["rename"].as_str() {
                    if let Some(t) = sd.tensors.remove(k) {
                        sd.tensors.insert(e["to"].as_str().unwrap().to_string(), t);
                    }
                } else if let Some(k) = e["add"].as_str().or(e["reshape"].as_str()) {
                    sd.tensors.insert(k.to_string(), tensor);
                }
            }
            let Ok(config) = infer_config(&sd) else { return };
            check_config_matches(&sd, &config).expect("an inferred config matches its checkpoint");
            // Rarely reached (edits that keep a valid model): build it from a file, as users do.
            if sd.tensors.values().all(|t| t.shape.iter().product::<usize>() == t.data.len()) {
                let path = dir.join("edited.safetensors");
                sd.write_safetensors(&path).unwrap();
                let _ = load_model(&path, &Device::flex());
                loaded += 1;
            }
        },
    );
    eprintln!("fuzz checkpoint_shapes: {loaded} edited checkpoints were complete enough to build");
}

fn emd_seed() -> Value {
    j!({
        "Framework": "arcgis.learn.models._inferencing",
        "ModelType": "InstanceDetection",
        "ModelFile": "model.safetensors",
        "ModelParameters": {"backbone": "resnet18", "pointrend": false},
        "ImageHeight": 128,
        "ImageWidth": 128,
        "Classes": [
            {"Value": 1, "Name": "person", "Color": [255, 0, 0]},
            {"Value": 2, "Name": "tie", "Color": [0, 255, 0]},
            {"Value": 5, "Name": "scissors", "Color": [0, 0, 255]}
        ],
        "MaskRCNNkwargs": {"min_size": 160, "max_size": 256, "box_score_thresh": 0.05, "rpn_nms_thresh": 0.7}
    })
}

/// `.emd` files next to the real tiny weights: `read_emd` and `apply_to` on every mutation,
/// and the whole `load_model` on a share of them (a model is built when the file is sound).
#[test]
fn fuzz_emd() {
    let dir = fuzz_common::scratch_dir("emd");
    std::fs::copy(loader("model.safetensors"), dir.join("model.safetensors")).unwrap();
    let emd = dir.join("model.emd");
    let seed = emd_seed();
    std::fs::write(&emd, seed.to_string()).unwrap();
    load_model(&emd, &Device::flex()).expect("the seed package loads");
    let sd = StateDict::read(&dir.join("model.safetensors")).unwrap();
    let inferred = infer_config(&sd).unwrap();
    let text = seed.to_string().into_bytes();
    fuzz_common::run(
        "emd",
        fuzz_common::cases(1_500),
        |rng, _| {
            if rng.below(3) != 0 {
                serde_json::to_vec(&json::mutate(rng, &seed)).unwrap()
            } else {
                mutate_bytes(rng, &text, &[], &[b"\"ModelFile\"", b"\"Classes\"", b"\"../x\"", b"\"/etc/passwd\""])
            }
        },
        |input| {
            fuzz_common::write_input(&emd, input);
            let Ok(package) = read_emd(&emd) else { return };
            let mut config = inferred.clone();
            if package.apply_to(&mut config).is_ok() && input.len() % 16 == 0 {
                let _ = load_model(&emd, &Device::flex());
            }
        },
    );
}

/// `.dlpk` packages (zips of an `.emd` and weights): mutated archive bytes and rebuilt archives
/// with mutated members, through extraction (with its limits) and `load_model`.
#[test]
fn fuzz_dlpk() {
    let dir = fuzz_common::scratch_dir("dlpk");
    let path = dir.join("input.dlpk");
    let pth = dir.join("tiny.pth");
    write_pth(&tiny_state_dict(), &pth).unwrap();
    let mut emd = emd_seed();
    emd["ModelFile"] = j!("sub\\tiny.pth");
    let members: Vec<(String, Vec<u8>)> = vec![
        ("pkg/model.emd".into(), emd.to_string().into_bytes()),
        ("pkg/sub/tiny.pth".into(), std::fs::read(&pth).unwrap()),
    ];
    let seeds = [zip_entries(&members, true), zip_entries(&members, false)];
    let limits = DlpkLimits { max_entries: 16, max_total_bytes: 1 << 20, ..DlpkLimits::default() };
    fuzz_common::run(
        "dlpk",
        fuzz_common::cases(1_000),
        |rng, _| {
            if rng.chance(2) {
                let seed = rng.pick(&seeds);
                mutate_bytes(rng, seed, &[&seeds[0], &seeds[1]], &[b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06"])
            } else {
                let mut members = members.clone();
                let i = rng.below(members.len());
                match rng.below(3) {
                    0 => {
                        members[i].0 = String::from_utf8_lossy(&mutate_bytes(
                            rng,
                            members[i].0.as_bytes(),
                            &[],
                            &[b"../", b"/", b"\\", b"C:"],
                        ))
                        .into_owned()
                    }
                    1 => members[i].1 = serde_json::to_vec(&json::mutate(rng, &emd)).unwrap(),
                    _ => members[i].1 = mutate_bytes(rng, &members[i].1, &[], PICKLE_TOKENS),
                }
                zip_entries(&members, rng.chance(2))
            }
        },
        |input| {
            fuzz_common::write_input(&path, input);
            if let Ok(extracted) = extract_dlpk_with(&path, &limits) {
                let written: u64 = walk_sizes(extracted.path());
                assert!(written <= limits.max_total_bytes, "extraction stayed within its budget");
            }
            // The full loader, with the default limits (the weights here are tiny anyway).
            let _ = load_model(&path, &Device::flex());
        },
    );
}

fn walk_sizes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            assert!(!meta.file_type().is_symlink(), "no links are extracted");
            if meta.is_dir() {
                walk_sizes(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

// ---- regressions ----

/// Reported (and fixed before this fuzzer): checkpoints with scalar or 1-d tensors where
/// shape inference reads a matrix dimension panicked on the index. Every key the inference or
/// the config checks read, at every rank below and above the expected one, is a clear error.
#[test]
fn scalar_and_vector_tensors_where_matrices_are_expected_are_errors() {
    let base = StateDict::read(&loader("model.safetensors")).unwrap();
    let mut checked = 0;
    for (key, t) in &base.tensors {
        if t.shape.len() < 2 {
            continue;
        }
        for shape in [vec![], vec![t.data.len()], vec![1, 1, 1, 1, t.data.len()]] {
            let mut sd = base.clone();
            let n = shape.iter().product::<usize>();
            sd.tensors.insert(key.clone(), HostTensor { data: vec![0.5; n], shape: shape.clone() });
            let result = std::panic::catch_unwind(|| infer_config(&sd).map(|_| ()));
            let result = result.unwrap_or_else(|_| panic!("{key} as {shape:?} panicked"));
            if let Err(e) = result {
                let e = format!("{e:#}");
                assert!(!e.contains('\n') && e.contains("shape"), "{key} {shape:?}: {e}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 3 * 16, "every weight matrix and kernel of the fixture, three ways: {checked}");
}

/// Found by `fuzz_checkpoint_shapes`: a state dict whose conv1 declares 2^64-1 input bands
/// (without the values) made `infer_config` allocate per-band statistics of that length
/// (capacity overflow; 2^40 bands aborted). Shapes not backed by their values are refused first.
#[test]
fn shapes_not_backed_by_values_are_refused_before_allocating() {
    let mut sd = StateDict::read(&loader("model.safetensors")).unwrap();
    for bands in [usize::MAX, 1 << 40] {
        sd.tensors.insert(
            "backbone.body.conv1.weight".into(),
            HostTensor { shape: vec![64, bands, 7, 7], data: vec![0.5; 64 * 3 * 49] },
        );
        let (result, peak) = fuzz_common::peak_during(|| infer_config(&sd).map(|_| ()));
        let err = format!("{:#}", result.expect_err("inconsistent tensor"));
        assert!(err.contains("backbone.body.conv1.weight") && err.contains("values"), "{err}");
        assert!(peak < 64 << 20, "peak {peak} bytes");
    }
}
