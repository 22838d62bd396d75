//! A host-side state dict with torchvision's key names, read from PyTorch or safetensors files.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use burn::tensor::{Device, Tensor};

use super::{NamedTensors, TensorSlot};
use crate::tensor_util::{tensor_from_vec, tensor_to_vec};

#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

#[derive(Debug, Clone, Default)]
pub struct StateDict {
    pub tensors: BTreeMap<String, HostTensor>,
}

/// Keys whose suffix identifies the model inside a wrapped checkpoint.
const ANCHOR_KEYS: [&str; 2] = ["backbone.body.conv1.weight", "rpn.head.cls_logits.weight"];

impl StateDict {
    pub fn get(&self, key: &str) -> Option<&HostTensor> {
        self.tensors.get(key)
    }

    pub fn shape(&self, key: &str) -> Option<&[usize]> {
        self.tensors.get(key).map(|t| t.shape.as_slice())
    }

    /// Reads a `.pth`/`.pt` (torch.save zip or legacy pickle) or `.safetensors` file.
    pub fn read(path: &Path) -> Result<Self> {
        let is_safetensors = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
        let raw = if is_safetensors { read_safetensors(path)? } else { read_pytorch(path)? };
        let mut sd = StateDict { tensors: raw };
        sd.unwrap_model();
        sd.rename_legacy_keys();
        if sd.tensors.is_empty() {
            bail!("{}: no tensors found", path.display());
        }
        Ok(sd)
    }

    /// Reads every tensor under its stored name, without unwrapping or renaming.
    pub fn read_raw(path: &Path) -> Result<Self> {
        let is_safetensors = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
        let tensors = if is_safetensors { read_safetensors(path)? } else { read_pytorch(path)? };
        Ok(StateDict { tensors })
    }

    /// Strips wrappers such as `{"model": state_dict, "opt": ...}`, `{"state_dict": ...}` and
    /// DataParallel's `module.` prefix, keeping only the model's own tensors.
    fn unwrap_model(&mut self) {
        let prefix = self
            .tensors
            .keys()
            .find_map(|k| ANCHOR_KEYS.iter().find_map(|anchor| k.strip_suffix(anchor).map(str::to_string)));
        let Some(prefix) = prefix.filter(|p| !p.is_empty()) else { return };
        let old = std::mem::take(&mut self.tensors);
        self.tensors =
            old.into_iter().filter_map(|(k, v)| k.strip_prefix(&prefix).map(|s| (s.to_string(), v))).collect();
    }

    /// Maps pre-0.13 torchvision names (before `Conv2dNormActivation`) to current ones.
    fn rename_legacy_keys(&mut self) {
        let old = std::mem::take(&mut self.tensors);
        for (key, value) in old {
            if key.ends_with("num_batches_tracked") {
                continue;
            }
            self.tensors.insert(modern_key_name(&key), value);
        }
    }

    /// Copies every named tensor of `module` from this state dict, checking shapes. Errors name
    /// the first missing or mis-shaped key.
    pub fn load_into<M: NamedTensors>(&self, module: &mut M, prefix: &str, device: &Device) -> Result<usize> {
        let mut error: Option<anyhow::Error> = None;
        let mut loaded = 0;
        module.visit_named(prefix, &mut |name, slot| {
            if error.is_some() {
                return;
            }
            let Some(t) = self.tensors.get(&name) else {
                error = Some(anyhow!("checkpoint is missing `{name}`"));
                return;
            };
            let expected = slot_shape(&slot);
            if expected != t.shape {
                error = Some(anyhow!(
                    "`{name}` has shape {:?} in the checkpoint but the model expects {:?}",
                    t.shape,
                    expected
                ));
                return;
            }
            if element_count(&t.shape) != Some(t.data.len()) {
                error = Some(anyhow!("`{name}` has shape {:?} but holds {} values", t.shape, t.data.len()));
                return;
            }
            set_slot(slot, t, device);
            loaded += 1;
        });
        match error {
            Some(e) => Err(e),
            None => Ok(loaded),
        }
    }

    /// Collects every named tensor of `module` into a state dict.
    pub fn from_module<M: NamedTensors>(module: &mut M, prefix: &str) -> Self {
        let mut sd = StateDict::default();
        module.visit_named(prefix, &mut |name, slot| {
            sd.tensors.insert(name, read_slot(slot));
        });
        sd
    }

    pub fn write_safetensors(&self, path: &Path) -> Result<()> {
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = self
            .tensors
            .iter()
            .map(|(k, t)| {
                let bytes: &[u8] = bytemuck_f32(&t.data);
                let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, t.shape.clone(), bytes)
                    .map_err(|e| anyhow!("tensor `{k}`: {e}"))?;
                Ok((k.clone(), view))
            })
            .collect::<Result<_>>()?;
        let bytes = safetensors::serialize(views, &None).map_err(|e| anyhow!("serialising safetensors: {e}"))?;
        crate::io_util::write_atomic(path, &bytes)
    }
}

pub fn modern_key_name(key: &str) -> String {
    for block in ["inner_blocks", "layer_blocks"] {
        let marker = format!("backbone.fpn.{block}.");
        if let Some(rest) = key.strip_prefix(&marker) {
            let parts: Vec<&str> = rest.split('.').collect();
            if parts.len() == 2 {
                return format!("{marker}{}.0.{}", parts[0], parts[1]);
            }
        }
    }
    if let Some(rest) = key.strip_prefix("rpn.head.conv.") {
        if rest == "weight" || rest == "bias" {
            return format!("rpn.head.conv.0.0.{rest}");
        }
    }
    if let Some(rest) = key.strip_prefix("roi_heads.mask_head.mask_fcn") {
        if let Some((index, param)) = rest.split_once('.') {
            // torchvision counts mask_fcn1..; a `mask_fcn0` is left as it is (and reported missing).
            if let Some(i) = index.parse::<usize>().ok().and_then(|i| i.checked_sub(1)) {
                return format!("roi_heads.mask_head.{i}.0.{param}");
            }
        }
    }
    key.to_string()
}

/// The number of values a tensor of `shape` holds, or `None` if that overflows.
pub(crate) fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// Refuses a tensor whose stored values do not fill its shape exactly.
fn checked_tensor(path: &Path, name: &str, shape: Vec<usize>, data: Vec<f32>) -> Result<HostTensor> {
    if element_count(&shape) != Some(data.len()) {
        bail!("{}: tensor {name} has shape {shape:?} but holds {} values", path.display(), data.len());
    }
    Ok(HostTensor { shape, data })
}

fn bytemuck_f32(data: &[f32]) -> &[u8] {
    // f32 has no padding and any bit pattern is a valid u8 sequence.
    unsafe { std::slice::from_raw_parts(data.as_ptr() as *const u8, std::mem::size_of_val(data)) }
}

fn slot_shape(slot: &TensorSlot<'_>) -> Vec<usize> {
    match slot {
        TensorSlot::Param1(p) => p.dims().to_vec(),
        TensorSlot::Param2(p) => p.dims().to_vec(),
        TensorSlot::Param3(p) => p.dims().to_vec(),
        TensorSlot::Param4(p) => p.dims().to_vec(),
        TensorSlot::Const1(t) => t.dims().to_vec(),
    }
}

fn set_slot(slot: TensorSlot<'_>, t: &HostTensor, device: &Device) {
    use burn::module::Param;
    match slot {
        TensorSlot::Param1(p) => *p = Param::from_tensor(tensor_from_vec(t.data.clone(), [t.shape[0]], device)),
        TensorSlot::Param2(p) => {
            *p = Param::from_tensor(tensor_from_vec(t.data.clone(), [t.shape[0], t.shape[1]], device))
        }
        TensorSlot::Param3(p) => {
            *p = Param::from_tensor(tensor_from_vec(t.data.clone(), [t.shape[0], t.shape[1], t.shape[2]], device))
        }
        TensorSlot::Param4(p) => {
            *p = Param::from_tensor(tensor_from_vec(
                t.data.clone(),
                [t.shape[0], t.shape[1], t.shape[2], t.shape[3]],
                device,
            ))
        }
        TensorSlot::Const1(c) => *c = tensor_from_vec(t.data.clone(), [t.shape[0]], device),
    }
}

fn read_slot(slot: TensorSlot<'_>) -> HostTensor {
    fn host<const D: usize>(t: Tensor<D>) -> HostTensor {
        HostTensor { shape: t.dims().to_vec(), data: tensor_to_vec(t) }
    }
    match slot {
        TensorSlot::Param1(p) => host(p.val()),
        TensorSlot::Param2(p) => host(p.val()),
        TensorSlot::Param3(p) => host(p.val()),
        TensorSlot::Param4(p) => host(p.val()),
        TensorSlot::Const1(c) => host(c.clone()),
    }
}

fn read_pytorch(path: &Path) -> Result<BTreeMap<String, HostTensor>> {
    use pytorch_reader::{DType, PytorchReader};
    let reader =
        PytorchReader::new(path).map_err(|e| anyhow!("{}: not a readable PyTorch checkpoint: {e}", path.display()))?;
    let mut out = BTreeMap::new();
    for (name, tensor) in reader.into_tensors() {
        let bytes = tensor.read().with_context(|| format!("{}: reading tensor `{name}`", path.display()))?;
        let float = match tensor.dtype() {
            DType::F32 => FloatKind::F32,
            DType::F64 => FloatKind::F64,
            DType::F16 => FloatKind::F16,
            DType::BF16 => FloatKind::BF16,
            // Integer buffers (e.g. num_batches_tracked) are not model weights.
            _ => continue,
        };
        let data = decode_floats(float, &bytes);
        let tensor = checked_tensor(path, &name, tensor.shape().to_vec(), data)?;
        out.insert(name, tensor);
    }
    Ok(out)
}

fn read_safetensors(path: &Path) -> Result<BTreeMap<String, HostTensor>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow!("{}: not a valid safetensors file: {e}", path.display()))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let raw = view.data();
        let float = match view.dtype() {
            safetensors::Dtype::F32 => FloatKind::F32,
            safetensors::Dtype::F64 => FloatKind::F64,
            safetensors::Dtype::F16 => FloatKind::F16,
            safetensors::Dtype::BF16 => FloatKind::BF16,
            _ => continue,
        };
        let data = decode_floats(float, raw);
        let tensor = checked_tensor(path, &name, view.shape().to_vec(), data)?;
        out.insert(name, tensor);
    }
    Ok(out)
}

/// Float encodings both checkpoint formats store; everything is widened or narrowed to f32.
#[derive(Clone, Copy)]
enum FloatKind {
    F32,
    F64,
    F16,
    BF16,
}

fn decode_floats(kind: FloatKind, bytes: &[u8]) -> Vec<f32> {
    match kind {
        FloatKind::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        FloatKind::F64 => bytes.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32).collect(),
        FloatKind::F16 => bytes.chunks_exact(2).map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]]))).collect(),
        FloatKind::BF16 => {
            bytes.chunks_exact(2).map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16)).collect()
        }
    }
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match exp {
        0 if frac == 0 => sign,
        0 => {
            // Subnormal: renormalise.
            let mut e = 127 - 15 + 1;
            let mut f = frac;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((f & 0x3ff) << 13)
        }
        0x1f => sign | 0x7f80_0000 | (frac << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_names_are_modernised() {
        assert_eq!(modern_key_name("rpn.head.conv.weight"), "rpn.head.conv.0.0.weight");
        assert_eq!(modern_key_name("backbone.fpn.inner_blocks.2.bias"), "backbone.fpn.inner_blocks.2.0.bias");
        assert_eq!(modern_key_name("roi_heads.mask_head.mask_fcn1.weight"), "roi_heads.mask_head.0.0.weight");
        assert_eq!(modern_key_name("roi_heads.mask_head.mask_fcn4.bias"), "roi_heads.mask_head.3.0.bias");
        assert_eq!(modern_key_name("backbone.fpn.inner_blocks.2.0.bias"), "backbone.fpn.inner_blocks.2.0.bias");
        assert_eq!(modern_key_name("rpn.head.conv.0.0.weight"), "rpn.head.conv.0.0.weight");
        // Not a torchvision name (they count from 1): left alone rather than underflowing.
        assert_eq!(modern_key_name("roi_heads.mask_head.mask_fcn0.weight"), "roi_heads.mask_head.mask_fcn0.weight");
    }

    #[test]
    fn half_floats_convert() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0000), 0.0);
        assert!((f16_to_f32(0x0001) - 5.960464e-8).abs() < 1e-12);
    }
}
