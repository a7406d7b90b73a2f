//! `decomposition.json`: one file per run that describes every frame's objects without opening
//! the images: per slot its area, bounding box and mask as a COCO RLE.
//!
//! ```text
//! { "schema": 3, <run info: "tool", "model", "inputs", "options">,
//!   "frames": [ { "name", "index", "pts", "width", "height",
//!                 "view": {"frame": [x, y, w, h], "input": [x, y, w, h], "size", "tiled", "covers_frame"},
//!                 "mask": {"resolution": "frame"|"model", "width", "height", "covered"},
//!                 "files": {"mask", "overlay", "slots", "attn"}, "sequence" (DAVIS layout only),
//!                 "slots": [ {"id", "area", "fraction", "bbox": [x, y, w, h] | null,
//!                             "rle": {"size": [h, w], "counts": "<COCO compressed RLE>"}} ],
//!                 "done_seconds": seconds from the start of writing to this frame's files written } ],
//!   "summary": {"status", "frames_written", "files_written", "skipped": [{"name", "error"}], …} }
//! ```
//! Areas, boxes and RLEs are in pixels of the written mask (`mask.resolution`); `fraction` is the
//! area over `covered`, the pixels some view covers (all of them unless the fit is `crop`). The RLE is COCO's compressed string
//! (run lengths over the mask in column-major order, starting with a run of 0s), so that
//! `pycocotools.mask.decode(slot["rle"])`, `area` and `toBbox` read it as it is ([`rle_string`]).
//! Schema 1 wrote the uncompressed `counts` list; schema 2 had `"crop": {left, top, size}` in
//! place of `view`.
//!
//! The file is streamed (frames are not kept in memory) into a temporary file that is renamed
//! into place by [`RunLog::finish`].

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::{AtomicFile, LabelMap, MaskRes};
use crate::decompose::Decomposition;
use crate::error::{Error, Result};
use crate::source::Frame;

/// What a run is, for the head of `decomposition.json`: the tool, the model as loaded, the inputs
/// and the options that shape the output. Every surface that writes an output folder uses it, so
/// the files read the same whoever wrote them.
pub fn run_info(
    tool: &str,
    model: &Path,
    pipeline: &crate::Pipeline,
    inputs: &[PathBuf],
    source: &crate::source::SourceOptions,
    sink: &super::SinkOptions,
) -> Value {
    let dec = pipeline.decomposer();
    let info = dec.info();
    json!({
        "schema": SCHEMA,
        "tool": {"name": tool, "version": env!("CARGO_PKG_VERSION")},
        "model": {
            "path": model, "kind": info.kind.map(|k| k.as_str()), "backend": dec.backend_name(),
            "provider": dec.provider(), "num_slots": info.num_slots, "slot_dim": info.slot_dim,
            "grid": info.grid, "mask_size": info.mask_size, "slots_input": info.slots_input,
            "msf_metadata": info.metadata.is_some(),
        },
        "inputs": inputs,
        "options": {
            "fit": dec.fit().as_str(), "mask_res": sink.mask_res.as_str(), "layout": sink.layout.as_str(), "batch": pipeline.batch(), "jobs": pipeline.jobs(), "every": source.every,
            "start": source.start, "max_frames": source.max_frames, "temporal": pipeline.is_temporal(),
        },
    })
}

/// Version of the `decomposition.json` layout (see the module doc).
pub const SCHEMA: u32 = 3;

/// COCO's compressed RLE string of `counts` (as pycocotools' `encode` writes it): each count,
/// minus the count two before it from the third on, in 5-bit groups with a continuation bit,
/// offset into printable ASCII.
pub fn rle_string(counts: &[u32]) -> String {
    let mut s = String::new();
    for (i, &c) in counts.iter().enumerate() {
        let mut x = i64::from(c) - if i > 2 { i64::from(counts[i - 2]) } else { 0 };
        loop {
            let mut group = (x & 0x1f) as u8;
            x >>= 5;
            let more = if group & 0x10 != 0 { x != -1 } else { x != 0 };
            if more {
                group |= 0x20;
            }
            s.push((group + 48) as char);
            if !more {
                break;
            }
        }
    }
    s
}

/// The counts of a COCO compressed RLE string ([`rle_string`] read back).
pub fn rle_from_string(s: &str) -> std::result::Result<Vec<u32>, String> {
    let bytes = s.as_bytes();
    let mut counts: Vec<u32> = Vec::new();
    let mut p = 0;
    while p < bytes.len() {
        let (mut x, mut k) = (0i64, 0u32);
        loop {
            let c = i64::from(*bytes.get(p).ok_or("the string ends inside a count")?) - 48;
            if !(0..64).contains(&c) || k > 60 {
                return Err(format!("byte {p} is not part of a COCO RLE string"));
            }
            x |= (c & 0x1f) << k;
            p += 1;
            k += 5;
            if c & 0x20 == 0 {
                if c & 0x10 != 0 {
                    x |= -1i64 << k;
                }
                break;
            }
        }
        let i = counts.len();
        if i > 2 {
            x += i64::from(counts[i - 2]);
        }
        counts.push(u32::try_from(x).map_err(|_| format!("count {i} is {x}"))?);
    }
    Ok(counts)
}

/// COCO RLE counts of every slot `0..num_slots` of `map`, in one pass over the pixels.
pub fn rle_counts(map: &LabelMap, num_slots: usize) -> Vec<Vec<u32>> {
    let (w, h) = (map.width as usize, map.height as usize);
    let mut counts = vec![Vec::new(); num_slots];
    // Position (in column-major order) where each slot's current run began.
    let mut run_start = vec![0usize; num_slots];
    let mut prev: Option<usize> = None;
    let mut p = 0usize;
    for x in 0..w {
        for y in 0..h {
            let l = map.labels[y * w + x] as usize;
            let cur = (l < num_slots).then_some(l);
            if cur != prev {
                // The previous slot's run of 1s ends here, and the new slot's run of 0s.
                for s in [prev, cur].into_iter().flatten() {
                    counts[s].push((p - run_start[s]) as u32);
                    run_start[s] = p;
                }
                prev = cur;
            }
            p += 1;
        }
    }
    for (c, start) in counts.iter_mut().zip(run_start) {
        c.push((p - start) as u32);
    }
    counts
}

/// Decode COCO uncompressed RLE counts of an `h`×`w` mask into row-major booleans.
pub fn rle_decode(h: usize, w: usize, counts: &[u32]) -> std::result::Result<Vec<bool>, String> {
    let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
    if total != (h * w) as u64 {
        return Err(format!("counts sum to {total}, the mask has {} pixels", h * w));
    }
    let mut out = vec![false; h * w];
    let mut p = 0usize;
    for (i, &c) in counts.iter().enumerate() {
        for q in p..p + c as usize {
            if i % 2 == 1 {
                let (x, y) = (q / h, q % h);
                out[y * w + x] = true;
            }
        }
        p += c as usize;
    }
    Ok(out)
}

/// Where the model saw the frame: `frame` = `[x, y, w, h]` of the frame shown, `input` = where it
/// lies in the model's `size`² input; `tiled` when the masks merge several tiles (`frame` is then
/// the whole frame, seen through a stretched overview).
fn view_record(dec: &Decomposition) -> Value {
    let (f, i) = (dec.placement.frame, dec.placement.input);
    json!({
        "frame": [f.x, f.y, f.width, f.height],
        "input": [i.x, i.y, i.width, i.height],
        "size": dec.placement.size,
        "tiled": dec.frame_labels.is_some(),
        "covers_frame": dec.covers_frame(),
    })
}

/// The JSON record of one frame (see the module doc).
pub fn frame_record(frame: &Frame, name: &str, dec: &Decomposition, map: &LabelMap, res: MaskRes, files: Map<String, Value>) -> Value {
    let covered = map.covered();
    let extents = map.extents(dec.num_slots);
    let rles = rle_counts(map, dec.num_slots);
    let slots: Vec<Value> = extents
        .iter()
        .zip(rles)
        .enumerate()
        .map(|(id, (e, counts))| {
            json!({
                "id": id,
                "area": e.area,
                "fraction": if covered > 0 { e.area as f64 / covered as f64 } else { 0.0 },
                "bbox": e.bbox,
                "rle": {"size": [map.height, map.width], "counts": rle_string(&counts)},
            })
        })
        .collect();
    json!({
        "name": name,
        "index": frame.index,
        "pts": frame.pts_seconds,
        "width": frame.width,
        "height": frame.height,
        "view": view_record(dec),
        "mask": {"resolution": res.as_str(), "width": map.width, "height": map.height, "covered": covered},
        "files": files,
        "slots": slots,
    })
}

/// `decomposition.json` being written: run info first, frames as they come, summary last.
pub struct RunLog {
    file: AtomicFile,
    frames: u64,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Write { path: path.to_path_buf(), source }
}

impl RunLog {
    /// Start the file with the keys of `run` (an object: model, options, …) at the top level.
    pub fn create(path: &Path, run: Value) -> Result<Self> {
        let mut file = AtomicFile::create(path)?;
        let mut head = match run {
            Value::Object(m) if !m.is_empty() => {
                let s = Value::Object(m).to_string();
                format!("{},\n", &s[..s.len() - 1])
            }
            Value::Object(_) | Value::Null => "{".to_string(),
            other => format!("{{\"run\":{other},\n"),
        };
        head.push_str("\"frames\":[");
        file.writer().write_all(head.as_bytes()).map_err(io_err(path))?;
        Ok(RunLog { file, frames: 0 })
    }

    /// Append one frame record.
    pub fn push(&mut self, record: &Value) -> Result<()> {
        let sep: &[u8] = if self.frames == 0 { b"\n" } else { b",\n" };
        let path = self.file.path().to_path_buf();
        let w = self.file.writer();
        w.write_all(sep).map_err(io_err(&path))?;
        serde_json::to_writer(&mut *w, record).map_err(|e| io_err(&path)(e.into()))?;
        self.frames += 1;
        Ok(())
    }

    /// Close the file with `summary` and rename it into place.
    pub fn finish(mut self, summary: Value) -> Result<PathBuf> {
        let path = self.file.path().to_path_buf();
        let tail = format!("\n],\n\"summary\":{summary}}}\n");
        self.file.writer().write_all(tail.as_bytes()).map_err(io_err(&path))?;
        self.file.commit()?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decompose::VOID;

    /// Straightforward per-slot encoder to check the one-pass one against.
    fn rle_simple(map: &LabelMap, s: u8) -> Vec<u32> {
        let (w, h) = (map.width as usize, map.height as usize);
        let mut counts = vec![];
        let (mut cur, mut n) = (false, 0u32);
        for x in 0..w {
            for y in 0..h {
                let v = map.labels[y * w + x] == s;
                if v != cur {
                    counts.push(n);
                    (cur, n) = (v, 0);
                }
                n += 1;
            }
        }
        counts.push(n);
        counts
    }

    #[test]
    fn rle_is_column_major_and_starts_with_zeros() {
        // 2 rows × 3 columns:  0 1 1
        //                      0 0 1
        let map = LabelMap { width: 3, height: 2, labels: vec![0, 1, 1, 0, 0, 1] };
        let c = rle_counts(&map, 3);
        // Column-major pixel order: 0,0 | 1,0 | 1,1 → slot 0 is 1,1,0,1,0,0 and slot 1 is 0,0,1,0,1,1.
        assert_eq!(c[0], [0, 2, 1, 1, 2]);
        assert_eq!(c[1], [2, 1, 1, 2]);
        assert_eq!(c[2], [6]);
    }

    #[test]
    fn rle_decodes_back_to_the_mask() {
        let (w, h) = (37usize, 23usize);
        let mut labels = vec![0u8; w * h];
        let mut state = 12345u32;
        for (i, l) in labels.iter_mut().enumerate() {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            // Blocky regions plus noise and some void, so runs of all lengths occur.
            *l = if (i % w) < 3 { VOID } else if (state >> 16).is_multiple_of(7) { ((state >> 8) % 5) as u8 } else { ((i % w) / 9 + (i / w) / 8) as u8 % 5 };
        }
        let map = LabelMap { width: w as u32, height: h as u32, labels };
        let all = rle_counts(&map, 6);
        for s in 0..6u8 {
            let counts = &all[s as usize];
            assert_eq!(counts, &rle_simple(&map, s), "slot {s}");
            let decoded = rle_decode(h, w, counts).unwrap();
            let want: Vec<bool> = map.labels.iter().map(|&l| l == s).collect();
            assert_eq!(decoded, want, "slot {s}");
        }
        assert!(rle_decode(h, w, &[1, 2]).is_err());
    }

    #[test]
    fn run_log_is_valid_json_with_frames_and_summary() {
        let d = std::env::temp_dir().join(format!("msf-json-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("decomposition.json");
        let mut log = RunLog::create(&p, json!({"model": {"num_slots": 2}})).unwrap();
        assert!(!p.exists(), "renamed into place only at the end");
        log.push(&json!({"name": "a"})).unwrap();
        log.push(&json!({"name": "b"})).unwrap();
        log.finish(json!({"status": "ok"})).unwrap();
        let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(v["model"]["num_slots"], 2);
        assert_eq!(v["frames"][1]["name"], "b");
        assert_eq!(v["summary"]["status"], "ok");
        let empty = d.join("empty.json");
        RunLog::create(&empty, json!({})).unwrap().finish(json!({})).unwrap();
        let v: Value = serde_json::from_slice(&std::fs::read(&empty).unwrap()).unwrap();
        assert_eq!(v["frames"].as_array().unwrap().len(), 0);
    }
}

/// One JSON line per frame, written and flushed as each frame finishes, for consumers that read a
/// stream (`msf-run --jsonl -`, a robot's process reading a pipe): the frame records of
/// `decomposition.json` (without `files`), then one `{"summary": {…}}` line when the run ends.
pub struct JsonLines {
    out: Box<dyn Write + Send>,
    /// Where the lines go, for messages (`-` for stdout).
    label: PathBuf,
    mask_res: MaskRes,
    started: std::time::Instant,
}

impl JsonLines {
    /// Lines to standard output.
    pub fn stdout(mask_res: MaskRes) -> Self {
        Self::to_writer(Box::new(std::io::stdout()), Path::new("-"), mask_res)
    }

    /// Lines to a file, created (or truncated) now; a reader can follow it while it grows.
    pub fn create(path: &Path, mask_res: MaskRes) -> Result<Self> {
        let f = std::fs::File::create(path).map_err(io_err(path))?;
        Ok(Self::to_writer(Box::new(f), path, mask_res))
    }

    /// [`Self::stdout`] for the path `-` (the usual command-line spelling), else [`Self::create`].
    pub fn open(path: &Path, mask_res: MaskRes) -> Result<Self> {
        if Self::is_stdout(path) {
            Ok(Self::stdout(mask_res))
        } else {
            Self::create(path, mask_res)
        }
    }

    /// Whether `path` names standard output (`-`).
    pub fn is_stdout(path: &Path) -> bool {
        path.as_os_str() == "-"
    }

    pub fn to_writer(out: Box<dyn Write + Send>, label: &Path, mask_res: MaskRes) -> Self {
        JsonLines { out, label: label.to_path_buf(), mask_res, started: std::time::Instant::now() }
    }

    fn line(&mut self, v: &Value) -> Result<()> {
        let label = self.label.clone();
        serde_json::to_writer(&mut self.out, v).map_err(|e| Error::Write { path: label.clone(), source: e.into() })?;
        self.out.write_all(b"\n").and_then(|()| self.out.flush()).map_err(io_err(&label))
    }
}

impl crate::pipeline::Sink for JsonLines {
    fn write(&mut self, frame: &Frame, dec: &Decomposition) -> Result<()> {
        let map = LabelMap::new(dec, self.mask_res);
        let mut record = frame_record(frame, &frame.name, dec, &map, self.mask_res, Map::new());
        if let Some(o) = record.as_object_mut() {
            o.remove("files");
            o.insert("stream".into(), frame.stream.into());
            o.insert("done_seconds".into(), self.started.elapsed().as_secs_f64().into());
        }
        self.line(&record)
    }

    fn finish(&mut self, report: &crate::pipeline::RunReport) -> Result<Vec<PathBuf>> {
        let summary = json!({"summary": {
            "status": report.outcome.as_str(), "frames": report.frames, "skipped": report.skipped.len(),
            "seconds": report.seconds, "fps": report.fps(), "error": report.error_line(),
            "frames_dropped": report.frames_dropped, "latency_ms": report.latency.to_json(),
        }});
        self.line(&summary)?;
        Ok(if Self::is_stdout(&self.label) { Vec::new() } else { vec![self.label.clone()] })
    }
}

#[cfg(test)]
mod rle_tests {
    use super::*;

    /// pycocotools 2.0.11: `mask.encode(np.asfortranarray(np.eye(4, dtype=np.uint8)))['counts']`
    /// is `b'01400000'` (counts [0, 1, 4, 1, 4, 1, 4, 1]); the strings round-trip for any counts.
    #[test]
    fn compressed_rle_is_cocos() {
        assert_eq!(rle_string(&[0, 1, 4, 1, 4, 1, 4, 1]), "01400000");
        assert_eq!(rle_from_string("01400000").unwrap(), [0, 1, 4, 1, 4, 1, 4, 1]);
        let mut seed = 7u64;
        for n in 0..200 {
            let counts: Vec<u32> = (0..n % 17)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((seed >> 33) as u32) >> (seed % 28)
                })
                .collect();
            assert_eq!(rle_from_string(&rle_string(&counts)).unwrap(), counts, "{counts:?}");
        }
        assert!(rle_from_string("0\u{7f}").is_err());
    }
}
