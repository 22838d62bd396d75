//! Training Mask R-CNN: torchvision's training forward and losses, optimisers, schedules,
//! checkpoints that resume exactly, and the `train` command.
//!
//! - [`forward`]: `MaskRcnn::forward_train` = torchvision's `model.train(); model(images, targets)`:
//!   training resize of images *and* targets (boxes scaled, masks nearest-resized), RPN anchor
//!   matching (0.7/0.3 with low-quality matches) and balanced sampling (256, 50 %), proposals with
//!   the train top-n, RoI sampling (512, 25 %, GT boxes appended, 0.5/0.5), and the five losses.
//!   Checked against torchvision (tests/train_losses.rs): losses within ~2e-7 and gradients of 11
//!   parameters from heads to `layer2` within ~3e-6 relative.
//! - [`sampling`]: `Matcher` and `BalancedPositiveNegativeSampler`; the sampler is a trait so
//!   tests replay torchvision's recorded choices ([`RecordedSampler`]).
//! - [`optim`]: SGD (torchvision recipe) and AdamW (fastai/arcgis.learn defaults) on host copies
//!   of the parameters, one-cycle and warm-up + multistep schedules, gradient-norm clipping;
//!   [`device_optim`]: the same formulas on device tensors for a model on a GPU.
//! - [`trainer`]: the loop, `metrics.jsonl`, validation, best model, non-finite step handling.
//! - [`checkpoint`]: atomic checkpoints (weights + optimiser buffers + run position).
//!
//! Decisions worth knowing:
//! - Crowd annotations are dropped before training, as torchvision's reference
//!   (`ConvertCocoPolysToMask`) does; proposals on crowd regions are then ordinary negatives.
//! - Batch norm: `norm = frozen` (`FrozenBatchNorm2d`, torchvision's choice with pretrained
//!   weights and our default with `--init`) or `norm = batch` (`BatchNorm2d` in training mode:
//!   batch statistics, trainable affine terms, running averages with momentum 0.1; torchvision's
//!   choice from scratch and our default without `--init`). Both save under the same keys and
//!   infer with the running statistics, so a model trained either way loads anywhere.
//! - Warm-up for the multistep schedule is torchvision's `min(1000, iterations per epoch - 1)`
//!   but at least 5 % of the run, so short runs on few images do not start at the full rate.
//! - AdamW uses fastai's `eps = 1e-5` (PyTorch's default is 1e-8).
//! - Pixel values are divided by 1, 255 or 65535, guessed from the largest value in the first
//!   images unless given (`--pixel-scale`); inference reads 8-bit images as /255 and 16-bit as
//!   /65535, so the guess matches it for integer imagery. The divisor is recorded in the config.
//! - Normalisation: ImageNet's mean/std for 8-bit RGB (as torchvision); from scratch on
//!   multi-band or non-8-bit imagery, the training data's per-band mean/std
//!   ([`cli::apply_band_stats`]), stored in the config (and the `.emd`'s `NormalizationStats`)
//!   and so applied unchanged at inference. Without clamping, arcgis.learn's min-max scaling
//!   followed by the scaled mean/std is the same affine map.

pub mod checkpoint;
pub mod device_optim;
pub mod forward;
pub mod lr_find;
pub mod optim;
pub mod params;
pub mod progress;
pub mod run_lock;
pub mod trainer;
pub mod validation;

pub use crate::ops::losses;
pub use crate::sampling;
pub use forward::{LossTerms, TrainTarget, TrainTrace};
pub use sampling::{RandomSampler, RecordedSampler, Sampler, SamplingStage};
