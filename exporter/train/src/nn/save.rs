//! Save a VarStore as an upstream-format checkpoint (`torch.save(state_dict)` layout, written by
//! the exporter's pure-Rust writer), atomically: `msf-export` and `torch.load` read it unchanged.

use msf_exporter::checkpoint::save::{to_bytes, SaveError, TensorOut};
use msf_exporter::write::{write_atomic, WriteError};
use std::path::Path;
use tch::{nn::VarStore, Kind};

#[derive(Debug, thiserror::Error)]
pub enum CheckpointWriteError {
    #[error(transparent)]
    Format(#[from] SaveError),
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// Every variable of `vs` (by its full name, e.g. `m.aggregat.proj_q.weight`), in name order, as f32.
pub fn save_var_store(vs: &VarStore, path: &Path) -> Result<(), CheckpointWriteError> {
    save_tensors(vs.variables(), path)
}

/// Named tensors in name order, as f32, in the `torch.save(state_dict)` format, atomically.
pub fn save_tensors(named: impl IntoIterator<Item = (String, tch::Tensor)>, path: &Path) -> Result<(), CheckpointWriteError> {
    let mut vars: Vec<(String, tch::Tensor)> = named.into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let owned: Vec<(String, Vec<usize>, Vec<f32>)> = vars
        .iter()
        .map(|(name, t)| {
            let t = t.detach().to_device(tch::Device::Cpu).to_kind(Kind::Float).contiguous();
            let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
            let mut data = vec![0f32; t.numel()];
            t.copy_data(&mut data, t.numel());
            (name.clone(), shape, data)
        })
        .collect();
    let tensors: Vec<TensorOut> = owned.iter().map(|(n, s, d)| TensorOut { name: n, shape: s, data: d }).collect();
    let archive = path.file_stem().and_then(|s| s.to_str()).filter(|s| !s.is_empty()).unwrap_or("archive");
    write_atomic(path, &to_bytes(&tensors, archive)?)?;
    Ok(())
}
