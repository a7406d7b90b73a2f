//! Evaluation and data for MSF models, the pure-Rust half of the training crate:
//! - [`metrics`]: ARI, FG-ARI, mBO and mIoU exactly as upstream defines them;
//! - [`config`]: training configuration (TOML presets in `configs/`);
//! - [`data`]: a generated multi-object dataset with exact masks, and folders of images + label PNGs;
//! - [`davis`]: DAVIS 2017 J, F and J&F of video predictions (unsupervised task, as the official tool);
//! - [`eval`]: scoring an exported model (through `msf-runtime`) or a trivial baseline.
//!
//! - [`nn`] (feature `tch`): the MSF networks on libtorch with upstream's parameter names.
//!
//! `msf-eval` is the command line over these.

pub mod config;
pub mod data;
pub mod davis;
pub mod eval;
pub mod metrics;
#[cfg(feature = "tch")]
pub mod nn;
