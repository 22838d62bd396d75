//! Writes a state dict as `torch.save` does (zip archive holding a pickled `OrderedDict` of
//! tensors and one storage file per tensor), so PyTorch, torchvision and arcgis.learn load it.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use super::state_dict::StateDict;

struct Pickler {
    out: Vec<u8>,
}

impl Pickler {
    fn op(&mut self, byte: u8) {
        self.out.push(byte);
    }
    fn global(&mut self, module: &str, name: &str) {
        self.out.push(b'c');
        self.out.extend_from_slice(module.as_bytes());
        self.out.push(b'\n');
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(b'\n');
    }
    fn string(&mut self, s: &str) {
        self.out.push(b'X'); // BINUNICODE
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
    }
    fn int(&mut self, v: usize) {
        let v = i32::try_from(v).expect("tensor dimensions fit in 31 bits");
        self.out.push(b'J'); // BININT
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn int_tuple(&mut self, values: &[usize]) {
        if values.is_empty() {
            self.op(b')');
            return;
        }
        self.op(b'(');
        for &v in values {
            self.int(v);
        }
        self.op(b't');
    }
    fn empty_ordered_dict(&mut self) {
        self.global("collections", "OrderedDict");
        self.op(b')');
        self.op(b'R');
    }
}

fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

/// Writes `sd` to `path` in PyTorch's zip format (float32 tensors), atomically.
pub fn write_pth(sd: &StateDict, path: &Path) -> Result<()> {
    let archive = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "archive".into());
    let mut p = Pickler { out: vec![0x80, 2] };
    p.empty_ordered_dict();
    p.op(b'(');
    for (index, (key, tensor)) in sd.tensors.iter().enumerate() {
        p.string(key);
        p.global("torch._utils", "_rebuild_tensor_v2");
        p.op(b'(');
        // Persistent id: ('storage', FloatStorage, key, location, numel).
        p.op(b'(');
        p.string("storage");
        p.global("torch", "FloatStorage");
        p.string(&index.to_string());
        p.string("cpu");
        p.int(tensor.data.len());
        p.op(b't');
        p.op(b'Q'); // BINPERSID
        p.int(0);
        p.int_tuple(&tensor.shape);
        p.int_tuple(&contiguous_strides(&tensor.shape));
        p.op(0x89); // NEWFALSE: requires_grad
        p.empty_ordered_dict();
        p.op(b't');
        p.op(b'R');
    }
    p.op(b'u'); // SETITEMS
    p.op(b'.');

    let mut bytes = Vec::new();
    {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(&mut bytes));
        // torch reads storages in place; 64-byte alignment lets it memory-map them.
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .with_alignment(64);
        zip.start_file(format!("{archive}/data.pkl"), stored)?;
        zip.write_all(&p.out)?;
        zip.start_file(format!("{archive}/byteorder"), stored)?;
        zip.write_all(b"little")?;
        for (index, tensor) in sd.tensors.values().enumerate() {
            zip.start_file(format!("{archive}/data/{index}"), stored)?;
            for v in &tensor.data {
                zip.write_all(&v.to_le_bytes())?;
            }
        }
        zip.start_file(format!("{archive}/version"), stored)?;
        zip.write_all(b"3\n")?;
        zip.finish().context("finishing the .pth archive")?;
    }
    crate::io_util::write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::HostTensor;

    #[test]
    fn round_trips_through_the_pytorch_reader() {
        let mut sd = StateDict::default();
        sd.tensors
            .insert("a.weight".into(), HostTensor { shape: vec![2, 3], data: vec![1.0, -2.0, 3.5, 0.0, 1e-8, 7.0] });
        sd.tensors.insert("b.bias".into(), HostTensor { shape: vec![1], data: vec![0.25] });
        sd.tensors.insert("c.conv".into(), HostTensor { shape: vec![1, 2, 1, 1], data: vec![4.0, 5.0] });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.pth");
        write_pth(&sd, &path).unwrap();
        let back = StateDict::read_raw(&path).unwrap();
        assert_eq!(back.tensors, sd.tensors);
    }
}
