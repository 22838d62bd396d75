//! Model surgery for fine-tuning: a new class list, a new number of input bands, a new PointRend
//! head. Layer sizes come from the layers being replaced, never from constants.

use burn::module::Param;

use crate::config::MaskHeadKind;
use crate::model::MaskRcnn;
use crate::roi_heads::MaskBranch;
use crate::tensor_util::{tensor_from_vec, tensor_to_vec};

impl MaskRcnn {
    /// Takes `class_names` (without background) as the model's classes. When their number
    /// differs from the model's, the class-specific predictors start afresh, as torchvision's
    /// fine-tuning tutorial does; the backbone, RPN and shared head layers are kept.
    pub fn adapt_classes(&mut self, class_names: &[String]) {
        let num_classes = class_names.len() + 1;
        self.config.class_names =
            std::iter::once("__background__".to_string()).chain(class_names.iter().cloned()).collect();
        if self.config.num_classes == num_classes {
            return;
        }
        self.net.roi_heads.set_num_classes(num_classes, &self.device);
        self.config.num_classes = num_classes;
        self.config.category_ids.clear();
        self.config.class_colors.clear();
    }

    /// Rebuilds the first convolution for `bands` input bands, keeping the checkpoint's filters
    /// for the bands it had and giving each extra band the mean of those filters (so a 4-band
    /// model starts as the RGB one with the new band's evidence averaged in). Normalisation
    /// statistics of new bands repeat the existing ones until band statistics replace them.
    pub fn adapt_input_bands(&mut self, bands: usize) {
        let weight = self.net.backbone.body.conv1.weight.val();
        let [out, old, kh, kw] = weight.dims();
        let values = tensor_to_vec(weight);
        let plane = kh * kw;
        let mut adapted = vec![0.0f32; out * bands * plane];
        for o in 0..out {
            let filters = &values[o * old * plane..(o + 1) * old * plane];
            for b in 0..bands {
                let dst = &mut adapted[(o * bands + b) * plane..(o * bands + b + 1) * plane];
                if b < old {
                    dst.copy_from_slice(&filters[b * plane..(b + 1) * plane]);
                } else {
                    for (k, v) in dst.iter_mut().enumerate() {
                        *v = (0..old).map(|c| filters[c * plane + k]).sum::<f32>() / old as f32;
                    }
                }
            }
        }
        self.net.backbone.body.conv1.weight =
            Param::from_tensor(tensor_from_vec(adapted, [out, bands, kh, kw], &self.device));
        let t = &mut self.config.transform;
        t.image_mean = (0..bands).map(|b| t.image_mean[b % t.image_mean.len()]).collect();
        t.image_std = (0..bands).map(|b| t.image_std[b % t.image_std.len()]).collect();
        self.config.backbone.in_channels = bands;
    }

    /// Swaps the mask branch for a freshly initialised PointRend branch, keeping the backbone,
    /// RPN and box head: how a plain (e.g. torchvision COCO) checkpoint starts PointRend
    /// fine-tuning (`train --init … --pointrend --new-pointrend-head`).
    pub fn with_new_pointrend_head(mut self) -> Self {
        if self.config.mask_head == MaskHeadKind::PointRend {
            return self;
        }
        let c = self.config.backbone.fpn_out_channels;
        self.net.roi_heads.mask =
            MaskBranch::new(MaskHeadKind::PointRend, c, &self.config.roi_heads, self.config.num_classes, &self.device);
        self.config.mask_head = MaskHeadKind::PointRend;
        self
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use crate::config::MaskRcnnConfig;
    use crate::model::MaskRcnn;
    use crate::tensor_util::tensor_to_vec;

    #[test]
    fn extra_bands_get_the_mean_rgb_filter() {
        let device = Device::flex();
        let config = MaskRcnnConfig::for_classes(18, &["a".to_string()], 3, 5);
        let mut model = MaskRcnn::new(config, &device).unwrap();
        let rgb = tensor_to_vec(model.net.backbone.body.conv1.weight.val());
        model.adapt_input_bands(5);
        let w = model.net.backbone.body.conv1.weight.val();
        assert_eq!(w.dims(), [64, 5, 7, 7]);
        let v = tensor_to_vec(w);
        // Output filter 0: bands 0..3 unchanged, bands 3 and 4 the mean of the RGB filters.
        assert_eq!(&v[..3 * 49], &rgb[..3 * 49]);
        for k in 0..49 {
            let mean = (rgb[k] + rgb[49 + k] + rgb[98 + k]) / 3.0;
            assert!((v[3 * 49 + k] - mean).abs() < 1e-6 && (v[4 * 49 + k] - mean).abs() < 1e-6);
        }
        assert_eq!(model.config.transform.image_mean.len(), 5);
        model.predict(&[crate::transform::ImageChw {
            channels: 5,
            height: 64,
            width: 64,
            data: vec![0.5; 5 * 64 * 64],
        }]);
    }

    #[test]
    fn new_classes_replace_only_the_class_specific_layers() {
        let device = Device::flex();
        for pointrend in [false, true] {
            let mut config = MaskRcnnConfig::for_classes(18, &["a".to_string()], 3, 5);
            config.roi_heads.representation_size = 64;
            if pointrend {
                config.mask_head = crate::config::MaskHeadKind::PointRend;
            }
            let mut model = MaskRcnn::new(config, &device).unwrap();
            let fc6 = tensor_to_vec(model.net.roi_heads.box_head.fc6.weight.val());
            model.adapt_classes(&["a".into(), "b".into(), "c".into()]);
            assert_eq!(model.config.num_classes, 4);
            assert_eq!(model.net.roi_heads.box_predictor.num_classes(), 4);
            assert_eq!(model.net.roi_heads.box_predictor.cls_score.in_features(), 64);
            assert_eq!(tensor_to_vec(model.net.roi_heads.box_head.fc6.weight.val()), fc6);
            let dets = model.predict(&[crate::transform::ImageChw {
                channels: 3,
                height: 64,
                width: 64,
                data: vec![0.5; 3 * 64 * 64],
            }]);
            assert_eq!(dets.len(), 1);
        }
    }
}
