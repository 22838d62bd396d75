//! Training Mask R-CNN: torchvision's training forward and losses, optimisers, schedules,
//! checkpoints that resume exactly, and the `train` command.

pub mod checkpoint;
pub mod cli;
pub mod forward;
pub mod losses;
pub mod optim;
pub mod params;
pub mod sampling;
pub mod trainer;

pub use forward::{LossTerms, TrainTarget, TrainTrace};
pub use sampling::{RandomSampler, RecordedSampler, Sampler, SamplingStage};
