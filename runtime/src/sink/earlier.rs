//! What an earlier run left in an output folder, so that a new run never mixes its files with
//! another's: the folder is refused, or, when the caller asks to overwrite, exactly the earlier
//! run's files (as its `decomposition.json` lists them) are removed first, and the folders
//! that held them once they are empty.

use super::RUN_JSON;
use crate::error::{Error, Result};
use std::path::{Component, Path, PathBuf};

/// Sub-folders and files a run writes (`FrameWriter`, the overlay video).
const RUN_FOLDERS: [&str; 4] = ["masks", "overlays", "slots", "attn"];
const RUN_VIDEO: &str = "overlay.mp4";

/// Files of an earlier run in `dir`: `Ok(None)` when there is none, `Ok(Some(files))` when its
/// `decomposition.json` lists them (the log itself included), an error when files of a run lie
/// there without the log that would say which are whose.
fn earlier_run(dir: &Path) -> Result<Option<Vec<PathBuf>>> {
    let log = dir.join(RUN_JSON);
    if !log.is_file() {
        let stray = RUN_FOLDERS.iter().any(|f| std::fs::read_dir(dir.join(f)).is_ok_and(|mut d| d.next().is_some())) || dir.join(RUN_VIDEO).exists();
        return if stray { Err(Error::OutputHasRun { path: dir.to_path_buf(), listed: false }) } else { Ok(None) };
    }
    let text = std::fs::read_to_string(&log).map_err(|source| Error::Write { path: log.clone(), source })?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Write {
        path: log.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not a readable run log ({e})")),
    })?;
    let mut files = vec![log];
    for frame in json["frames"].as_array().into_iter().flatten() {
        for rel in frame["files"].as_object().into_iter().flat_map(|m| m.values()).filter_map(|v| v.as_str()) {
            // Only names inside the run's own sub-folders: a log is data, and data can lie.
            let p = Path::new(rel);
            let inside = p.components().all(|c| matches!(c, Component::Normal(_)))
                && p.components().next().is_some_and(|c| RUN_FOLDERS.iter().any(|f| c.as_os_str() == *f));
            if inside {
                files.push(dir.join(p));
            }
        }
    }
    files.push(dir.join(RUN_VIDEO));
    Ok(Some(files))
}

/// Make `dir` ready for a new run: refuse it if an earlier run is there, unless `overwrite`, which
/// removes that run's files (and its sub-folders once empty). Files of other origin stay.
pub(super) fn clear(dir: &Path, overwrite: bool) -> Result<()> {
    let Some(files) = earlier_run(dir)? else { return Ok(()) };
    if !overwrite {
        return Err(Error::OutputHasRun { path: dir.to_path_buf(), listed: true });
    }
    for f in &files {
        match std::fs::remove_file(f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::Write { path: f.clone(), source }),
        }
    }
    // The folders between a removed file and the run's sub-folder (a DAVIS layout's
    // `masks/<sequence>/`), once empty.
    let mut nested: Vec<&Path> = files.iter().filter_map(|f| f.parent()).filter(|p| *p != dir && p.parent().is_some_and(|pp| pp != dir)).collect();
    nested.sort();
    nested.dedup();
    for d in nested {
        let _ = std::fs::remove_dir(d); // only when empty
    }
    for f in RUN_FOLDERS {
        let _ = std::fs::remove_dir(dir.join(f)); // only when empty
    }
    Ok(())
}
