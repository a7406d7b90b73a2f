//! Where decompositions go: files a user (or a DAVIS/COCO tool) can open.
//!
//! - [`png`]: the mask as an indexed PNG of slot ids with the DAVIS palette.
//! - [`overlay`]: the frame blended with one colour per slot, with slot boundaries (JPEG or PNG).
//! - [`npy`]: slots (K,D) and attention (K,G,G) as `.npy`.
//! - [`json`]: one `decomposition.json` per run (model, and per frame per slot: area, bbox, COCO RLE).
//! - [`coco`]: a COCO results file ([`coco::CocoResults`]), what `COCO.loadRes` and `COCOeval` take.
//!
//! [`FrameWriter`] puts them together in one output folder:
//! `masks/<name>.png`, `overlays/<name>.jpg`, `slots/<name>.npy`, `attn/<name>.npy`, `decomposition.json`;
//! or, with [`Layout::Davis`], one folder per sequence in each of them ([`davis`]).
//! Every file is written through [`write_atomic`] (a temporary file in the same folder, renamed into
//! place), so a crash or a full disk never leaves a half-written file under a real name.
//! With feature `video`, [`video`] encodes overlays (or any RGB frames) into an mp4/mkv file.

pub mod coco;
pub mod davis;
mod earlier;
pub mod json;
pub mod npy;
pub mod overlay;
pub mod png;
#[cfg(feature = "video")]
pub mod video;

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::decompose::{Decomposition, VOID};
use crate::error::{Error, Result};
use crate::pipeline::{Outcome, RunReport, Sink};
use crate::source::Frame;

pub use davis::{sequence_names, Layout};

// ---------------------------------------------------------------------------------------------
// Atomic files
// ---------------------------------------------------------------------------------------------

/// Suffix of the temporary files [`AtomicFile`] writes before renaming (`.<name>.<pid>.<n>.tmp`).
pub const TEMP_SUFFIX: &str = ".tmp";

/// A file written under a temporary name in its final folder and renamed into place by
/// [`AtomicFile::commit`]; dropped without commit, the temporary file is removed.
///
/// The rename makes the file appear whole or not at all for readers and after a crash of this
/// process. It does not `fsync`: after a power loss a just-renamed file may be empty.
pub struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
}

impl AtomicFile {
    pub fn create(path: &Path) -> Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = path.file_name().ok_or_else(|| Error::Write {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path has no file name"),
        })?;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp_name = crate::process::temp_name(name, &format!("{}.{n}", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|source| Error::Write { path: path.to_path_buf(), source })?;
        Ok(AtomicFile { path: path.to_path_buf(), tmp, out: Some(BufWriter::new(file)) })
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn writer(&mut self) -> &mut BufWriter<File> {
        self.out.as_mut().expect("AtomicFile used after commit")
    }

    /// Flush and rename into place (replacing an older file of the same name).
    pub fn commit(mut self) -> Result<()> {
        let err = |source| Error::Write { path: self.path.clone(), source };
        let out = self.out.take().expect("AtomicFile committed twice");
        out.into_inner().map_err(|e| e.into_error()).map_err(err)?;
        std::fs::rename(&self.tmp, &self.path).map_err(err)?;
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.out.is_some() {
            drop(self.out.take());
        }
        // After a successful commit the temporary name no longer exists; otherwise clean up.
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// Write `path` atomically: `write` fills a temporary file in the same folder, which is renamed
/// into place only when everything succeeded. On error nothing is left behind.
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    let mut f = AtomicFile::create(path)?;
    write(f.writer()).map_err(|source| Error::Write { path: path.to_path_buf(), source })?;
    f.commit()
}

/// Create `dir` (and parents) and prove that files can be created in it, before a long run starts.
pub fn ensure_writable_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Write { path: dir.to_path_buf(), source })?;
    let probe = AtomicFile::create(&dir.join(".msf-write-probe"))?;
    drop(probe); // removes the temporary file
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Label maps
// ---------------------------------------------------------------------------------------------

/// Resolution of the written masks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MaskRes {
    /// The frame's size; [`VOID`] (255) outside the centre crop the model saw.
    #[default]
    Frame,
    /// The model's M×M view of the centre crop (what upstream's `segment` is).
    Model,
}

crate::names::named_enum!(MaskRes, "mask resolution", { Frame => "frame", Model => "model" });

/// A slot index per pixel, row-major; [`VOID`] marks pixels no slot covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelMap {
    pub width: u32,
    pub height: u32,
    pub labels: Vec<u8>,
}

/// Area and bounding box of one slot in a [`LabelMap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotExtent {
    /// Pixels labelled with the slot.
    pub area: u64,
    /// `[x, y, width, height]` (COCO order), `None` for an empty slot.
    pub bbox: Option<[u32; 4]>,
}

impl LabelMap {
    pub fn new(dec: &Decomposition, res: MaskRes) -> Self {
        match res {
            MaskRes::Frame => LabelMap { width: dec.frame_width, height: dec.frame_height, labels: dec.mask_in_frame() },
            MaskRes::Model => {
                let m = dec.mask_size as u32;
                LabelMap { width: m, height: m, labels: dec.mask.clone() }
            }
        }
    }

    /// Pixels that belong to some slot (not [`VOID`]).
    pub fn covered(&self) -> u64 {
        self.labels.iter().filter(|&&l| l != VOID).count() as u64
    }

    /// Area and bbox of slots `0..num_slots`.
    pub fn extents(&self, num_slots: usize) -> Vec<SlotExtent> {
        let w = self.width as usize;
        let mut area = vec![0u64; num_slots];
        let mut bb: Vec<Option<[u32; 4]>> = vec![None; num_slots]; // x0, y0, x1, y1 (inclusive)
        for (i, &l) in self.labels.iter().enumerate() {
            let l = l as usize;
            if l >= num_slots {
                continue;
            }
            let (x, y) = ((i % w) as u32, (i / w) as u32);
            area[l] += 1;
            let b = bb[l].get_or_insert([x, y, x, y]);
            b[0] = b[0].min(x);
            b[1] = b[1].min(y);
            b[2] = b[2].max(x);
            b[3] = b[3].max(y);
        }
        area.into_iter()
            .zip(bb)
            .map(|(area, b)| SlotExtent { area, bbox: b.map(|[x0, y0, x1, y1]| [x0, y0, x1 - x0 + 1, y1 - y0 + 1]) })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// One output folder
// ---------------------------------------------------------------------------------------------

/// Which files [`FrameWriter`] writes per frame.
#[derive(Clone, Debug, PartialEq)]
pub struct SinkOptions {
    /// Palette PNG of slot ids in `masks/`.
    pub masks: bool,
    /// Resolution of the PNG masks and of the areas, boxes and RLEs in the JSON.
    pub mask_res: MaskRes,
    /// Overlay image in `overlays/`, in this format.
    pub overlay: Option<overlay::Format>,
    /// Slots (K,D) in `slots/`.
    pub slots: bool,
    /// Attention (K,G,G) in `attn/`.
    pub attn: bool,
    /// Replace an earlier run found in the folder (exactly the files its `decomposition.json`
    /// lists); without it such a folder is refused, so that two runs' files never mix.
    pub overwrite: bool,
    /// Flat (`masks/<name>.png`) or one folder per sequence in the DAVIS convention ([`davis`]).
    pub layout: Layout,
    /// [`Layout::Davis`]: the folder name of each stream, by [`Frame::stream`] ([`sequence_names`]
    /// gives them for a list of inputs); a stream beyond the list is `seq<N>`. Names are made safe
    /// and unique by the writer.
    pub sequences: Vec<String>,
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions {
            masks: true,
            mask_res: MaskRes::Frame,
            overlay: Some(overlay::Format::Jpeg),
            slots: true,
            attn: false,
            overwrite: false,
            layout: Layout::Flat,
            sequences: Vec::new(),
        }
    }
}

/// Writes each frame's files into one output folder and the run's `decomposition.json`.
///
/// A frame is recorded in the JSON only once all its files are written; if one of them fails,
/// the files already written (of this and earlier frames) stay, and [`Self::files_written`] says
/// how many there are.
pub struct FrameWriter {
    dir: PathBuf,
    opts: SinkOptions,
    /// `None` once finished or abandoned.
    log: Option<json::RunLog>,
    used_names: HashSet<String>,
    /// [`Layout::Davis`]: each stream's sequence folder name, once its first frame came.
    sequences: HashMap<u32, String>,
    frames: u64,
    files: u64,
    /// Folders this writer created (the output folder first), for [`Self::abandon`].
    created: Vec<PathBuf>,
    /// When the writer was created: each frame record carries `done_seconds` from here, so that
    /// per-frame latency (decode → infer → write) can be read back from the run log.
    started: std::time::Instant,
    /// The output folder, locked (`flock`) for as long as this writer lives: a second run into
    /// the same folder is refused instead of mixing its files with this one's.
    _lock: File,
}

/// Open `dir` and take its exclusive lock, or say which folder is in use.
fn lock_dir(dir: &Path) -> Result<File> {
    let f = File::open(dir).map_err(|source| Error::Write { path: dir.to_path_buf(), source })?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::OutputInUse { path: dir.to_path_buf() }),
        Err(std::fs::TryLockError::Error(source)) => Err(Error::Write { path: dir.to_path_buf(), source }),
    }
}

/// Name of the per-run JSON file.
pub const RUN_JSON: &str = "decomposition.json";

impl FrameWriter {
    /// Check that `dir` is writable (creating it if needed) and its subfolders, and start the run
    /// log with `run` (model and options, see [`json::RunLog::create`]).
    pub fn create(dir: &Path, opts: SinkOptions, run: serde_json::Value) -> Result<Self> {
        let mut created = Vec::new();
        if !dir.exists() {
            created.push(dir.to_path_buf());
        }
        ensure_writable_dir(dir)?;
        let lock = match lock_dir(dir).and_then(|l| earlier::clear(dir, opts.overwrite).map(|()| l)) {
            Ok(l) => l,
            Err(e) => {
                if !created.is_empty() {
                    let _ = std::fs::remove_dir(dir);
                }
                return Err(e);
            }
        };
        for (on, sub) in [(opts.masks, "masks"), (opts.overlay.is_some(), "overlays"), (opts.slots, "slots"), (opts.attn, "attn")] {
            let d = dir.join(sub);
            if on && !d.is_dir() {
                std::fs::create_dir_all(&d).map_err(|source| Error::Write { path: d.clone(), source })?;
                created.push(d);
            }
        }
        let log = json::RunLog::create(&dir.join(RUN_JSON), run)?;
        Ok(FrameWriter {
            dir: dir.to_path_buf(),
            opts,
            log: Some(log),
            used_names: HashSet::new(),
            sequences: HashMap::new(),
            frames: 0,
            files: 0,
            created,
            started: std::time::Instant::now(),
            _lock: lock,
        })
    }

    /// Give up without writing `decomposition.json` (for a run that wrote no frame): the
    /// folders this writer created are removed again if they are still empty.
    pub fn abandon(&mut self) {
        drop(self.log.take()); // removes the log's temporary file
        for d in self.created.iter().rev() {
            let _ = std::fs::remove_dir(d); // fails, harmlessly, on a folder that is not empty
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Frames whose files are all written.
    pub fn frames_written(&self) -> u64 {
        self.frames
    }
    /// Files written so far (not counting `decomposition.json`).
    pub fn files_written(&self) -> u64 {
        self.files
    }

    /// A file stem unique in this run: two inputs named `img.png` in different folders become
    /// `img` and `img_2`.
    fn unique_name(&mut self, name: &str) -> String {
        unique(&mut self.used_names, safe_name(name, "frame"))
    }

    /// [`Layout::Davis`]: the relative stem `<sequence>/<nnnnn>` of `frame`, its sequence's
    /// folders created on its first frame.
    fn davis_name(&mut self, frame: &Frame) -> Result<(String, String)> {
        let seq = match self.sequences.get(&frame.stream) {
            Some(s) => s.clone(),
            None => {
                let base = self.opts.sequences.get(frame.stream as usize).cloned().unwrap_or_else(|| format!("seq{}", frame.stream));
                let mut taken: HashSet<String> = self.sequences.values().cloned().collect();
                let seq = unique(&mut taken, safe_name(&base, "seq"));
                for (on, sub) in self.kinds() {
                    let d = self.dir.join(sub).join(&seq);
                    if on && !d.is_dir() {
                        std::fs::create_dir_all(&d).map_err(|source| Error::Write { path: d.clone(), source })?;
                        self.created.push(d);
                    }
                }
                self.sequences.insert(frame.stream, seq.clone());
                seq
            }
        };
        let name = unique(&mut self.used_names, format!("{seq}/{:05}", frame.index));
        Ok((name, seq))
    }

    /// The per-frame sub-folders and whether this writer writes them.
    fn kinds(&self) -> [(bool, &'static str); 4] {
        [(self.opts.masks, "masks"), (self.opts.overlay.is_some(), "overlays"), (self.opts.slots, "slots"), (self.opts.attn, "attn")]
    }

    /// Write one frame's files, then its JSON record.
    pub fn write(&mut self, frame: &Frame, dec: &Decomposition) -> Result<()> {
        let (name, sequence) = match self.opts.layout {
            Layout::Flat => (self.unique_name(&frame.name), None),
            Layout::Davis => self.davis_name(frame).map(|(n, s)| (n, Some(s)))?,
        };
        let map = LabelMap::new(dec, self.opts.mask_res);
        let mut files = serde_json::Map::new();
        if self.opts.masks {
            let rel = format!("masks/{name}.png");
            match self.opts.layout {
                Layout::Flat => png::write_mask(&self.dir.join(&rel), &map)?,
                Layout::Davis => png::write_mask(&self.dir.join(&rel), &davis::davis_labels(&map))?,
            }
            self.files += 1;
            files.insert("mask".into(), rel.into());
        }
        if let Some(format) = self.opts.overlay {
            let rel = format!("overlays/{name}.{}", format.extension());
            let in_frame = match self.opts.mask_res {
                MaskRes::Frame => std::borrow::Cow::Borrowed(&map.labels),
                MaskRes::Model => std::borrow::Cow::Owned(dec.mask_in_frame()),
            };
            let img = overlay::render(&frame.data, frame.width, frame.height, &in_frame);
            overlay::write(&self.dir.join(&rel), &img, format)?;
            self.files += 1;
            files.insert("overlay".into(), rel.into());
        }
        if self.opts.slots {
            let rel = format!("slots/{name}.npy");
            npy::write_f32(&self.dir.join(&rel), &[dec.num_slots, dec.slot_dim], &dec.slots)?;
            self.files += 1;
            files.insert("slots".into(), rel.into());
        }
        if self.opts.attn {
            let rel = format!("attn/{name}.npy");
            npy::write_f32(&self.dir.join(&rel), &[dec.num_slots, dec.grid, dec.grid], &dec.attn)?;
            self.files += 1;
            files.insert("attn".into(), rel.into());
        }
        let mut record = json::frame_record(frame, &name, dec, &map, self.opts.mask_res, files);
        if let Some(seq) = sequence {
            record["sequence"] = seq.into();
        }
        record["done_seconds"] = self.started.elapsed().as_secs_f64().into();
        self.log.as_mut().ok_or(Error::InvalidConfig("frame written after the run log was closed".into()))?.push(&record)?;
        self.frames += 1;
        Ok(())
    }

    /// Close `decomposition.json` with the run's outcome (`status`, counts, and anything in
    /// `summary`) and rename it into place. Returns its path.
    pub fn finish(&mut self, summary: serde_json::Value) -> Result<PathBuf> {
        let mut s = match summary {
            serde_json::Value::Object(m) => m,
            other => {
                let mut m = serde_json::Map::new();
                m.insert("summary".into(), other);
                m
            }
        };
        s.insert("frames_written".into(), self.frames.into());
        s.insert("files_written".into(), self.files.into());
        let log = self.log.take().ok_or(Error::InvalidConfig("the run log was already closed".into()))?;
        log.finish(serde_json::Value::Object(s))
    }
}

/// `name` with path separators and control characters replaced, and `prefix` put before a name
/// that is empty or starts with a dot.
fn safe_name(name: &str, prefix: &str) -> String {
    let base: String = name.chars().map(|c| if c == '/' || c == '\\' || c.is_control() { '_' } else { c }).collect();
    if base.is_empty() || base.starts_with('.') {
        format!("{prefix}{base}")
    } else {
        base
    }
}

/// `base`, or `base_2`, `base_3`, … : the first that is not in `used` (and is then added).
fn unique(used: &mut HashSet<String>, base: String) -> String {
    let mut n = 1;
    let mut candidate = base.clone();
    while !used.insert(candidate.clone()) {
        n += 1;
        candidate = format!("{base}_{n}");
    }
    candidate
}

impl Sink for FrameWriter {
    fn write(&mut self, frame: &Frame, dec: &Decomposition) -> Result<()> {
        FrameWriter::write(self, frame, dec)
    }

    /// `decomposition.json` with the run's status, or, for a failed run that wrote no frame,
    /// nothing at all: the output folder is left as it was.
    fn finish(&mut self, report: &RunReport) -> Result<Vec<PathBuf>> {
        if self.frames == 0 && report.outcome == Outcome::Failed {
            self.abandon();
            return Ok(Vec::new());
        }
        let skipped: Vec<serde_json::Value> = report
            .skipped
            .iter()
            .map(|s| serde_json::json!({"name": s.name, "error": crate::error::one_line(&s.error)}))
            .collect();
        let summary = serde_json::json!({
            "status": report.outcome.as_str(), "seconds": report.seconds, "fps": report.fps(), "error": report.error_line(),
            "skipped": skipped,
        });
        Ok(vec![FrameWriter::finish(self, summary)?])
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("msf-sink-tests-{}", std::process::id())).join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Temporary files left in `dir` (also used by the video sink's tests).
    pub(crate) fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(TEMP_SUFFIX))
            .collect()
    }

    #[test]
    fn write_atomic_leaves_nothing_on_failure_and_replaces_on_success() {
        let d = scratch("atomic");
        let p = d.join("a.txt");
        write_atomic(&p, |w| w.write_all(b"one")).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        let e = write_atomic(&p, |w| {
            w.write_all(b"half")?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(e.to_string().contains("a.txt") && e.to_string().contains("disk full"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"one", "the old file stays whole");
        let q = d.join("new.txt");
        assert!(write_atomic(&q, |_| Err(std::io::Error::other("no"))).is_err());
        assert!(!q.exists());
        assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));
    }

    #[test]
    fn unwritable_dir_is_reported_before_anything_is_written() {
        let d = scratch("unwritable");
        let file = d.join("regular-file");
        std::fs::write(&file, b"x").unwrap();
        let e = ensure_writable_dir(&file.join("out")).unwrap_err();
        assert!(matches!(e, Error::Write { .. }) && e.to_string().contains("regular-file"), "{e}");
    }

    #[test]
    fn extents_are_coco_boxes_and_skip_void() {
        let map = LabelMap { width: 4, height: 3, labels: vec![VOID, 0, 0, VOID, VOID, 1, 0, VOID, VOID, 1, 1, VOID] };
        let e = map.extents(3);
        assert_eq!(e[0], SlotExtent { area: 3, bbox: Some([1, 0, 2, 2]) });
        assert_eq!(e[1], SlotExtent { area: 3, bbox: Some([1, 1, 2, 2]) });
        assert_eq!(e[2], SlotExtent { area: 0, bbox: None });
        assert_eq!(map.covered(), 6);
    }
}
