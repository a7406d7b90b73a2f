//! One input topic's loop: newest frame → `Decomposer` (or this topic's `Tracker`) → the four
//! outputs with the input's header; counts, drops and latency for the log.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use msf_runtime::sink::overlay;
use msf_runtime::sink::{LabelMap, MaskRes};
use msf_runtime::{Decomposer, Decomposition, ImageView, PixelFormat, Tracker};
use ros2_client::dds::rustdds;
use ros2_client::{Gid, MessageInfo, Publisher, Subscription};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::convert::{self, CompressedDecoder};
use crate::msg::{CompressedImage, Float32MultiArray, Header, Image, StringMsg};

/// The subscription of one input topic.
pub enum Input {
    Raw(Subscription<Image>),
    Compressed(Subscription<CompressedImage>, CompressedDecoder),
}

/// The publishers of one input topic's results.
pub struct Outputs {
    pub masks: Publisher<Image>,
    pub overlay: Option<Publisher<Image>>,
    pub slots: Publisher<Float32MultiArray>,
    pub objects: Publisher<StringMsg>,
}

/// Counts and latencies of one input topic.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Frames decomposed and published.
    pub frames: u64,
    /// Frames never decomposed: gaps in a publisher's sequence numbers (replaced in the reader's
    /// history, or lost on the way) plus frames replaced by a newer one while the node was busy.
    pub dropped: u64,
    /// Frames that could not be read or decomposed (unknown encoding, corrupt data, …).
    pub errors: u64,
    /// Stamp → publish of `~/masks`, milliseconds, every frame.
    pub latency_ms: Vec<f64>,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Stats {
    /// Frames per second between the first and the last frame published.
    pub fn rate(&self) -> f64 {
        match (self.first, self.last) {
            (Some(a), Some(b)) if self.frames > 1 && b > a => (self.frames - 1) as f64 / (b - a).as_secs_f64(),
            _ => 0.0,
        }
    }

    /// One log line: `frames 120, 9.8 frames/s, dropped 0, errors 0, latency ms median 41.2 p90 48.0 max 60.3`.
    pub fn line(&self, since: usize) -> String {
        let mut l: Vec<f64> = self.latency_ms[since.min(self.latency_ms.len())..].to_vec();
        l.sort_by(f64::total_cmp);
        let q = |p: f64| if l.is_empty() { f64::NAN } else { l[((l.len() - 1) as f64 * p).round() as usize] };
        format!(
            "frames {}, {:.1} frames/s, dropped {}, errors {}, latency stamp->publish ms median {:.1} p90 {:.1} max {:.1}",
            self.frames,
            self.rate(),
            self.dropped,
            self.errors,
            q(0.5),
            q(0.9),
            l.last().copied().unwrap_or(f64::NAN)
        )
    }
}

/// What turns frames into decompositions: one stream per input topic.
pub enum Model {
    Frames(Arc<Decomposer>),
    Temporal(Box<Tracker>),
}

pub struct Worker {
    pub topic: String,
    pub input: Input,
    pub outputs: Outputs,
    pub model: Model,
    pub stop: Arc<AtomicBool>,
    pub stats_period: f64,
    last_seq: HashMap<Gid, i64>,
    pub stats: Stats,
    errors_said: u64,
}

const POLL: Duration = Duration::from_millis(100);

impl Worker {
    pub fn new(topic: String, input: Input, outputs: Outputs, model: Model, stop: Arc<AtomicBool>, stats_period: f64) -> Self {
        Worker { topic, input, outputs, model, stop, stats_period, last_seq: HashMap::new(), stats: Stats::default(), errors_said: 0 }
    }

    /// Runs until the stop flag is set; returns the counts.
    pub fn run(mut self) -> Result<Stats> {
        let mut poll = rustdds::mio1::Poll::new().context("creating the poller")?;
        let mut events = rustdds::mio1::Events::with_capacity(8);
        match &mut self.input {
            Input::Raw(s) => poll.registry().register(s, rustdds::mio1::Token(0), rustdds::mio1::Interest::READABLE)?,
            Input::Compressed(s, _) => poll.registry().register(s, rustdds::mio1::Token(0), rustdds::mio1::Interest::READABLE)?,
        }
        let mut next_log = Instant::now() + Duration::from_secs_f64(self.stats_period.max(0.001));
        let mut logged_upto = 0usize;
        while !self.stop.load(Ordering::SeqCst) {
            if let Err(e) = poll.poll(&mut events, Some(POLL)) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e).context("waiting for frames");
                }
            }
            // Drain: only the newest frame is decomposed, the ones it replaced are counted.
            loop {
                let got = match &mut self.input {
                    Input::Raw(s) => take_newest(s, &mut self.last_seq, &mut self.stats).map(|m| m.map(Frame::Raw)),
                    Input::Compressed(s, _) => take_newest(s, &mut self.last_seq, &mut self.stats).map(|m| m.map(Frame::Compressed)),
                };
                match got {
                    Ok(Some(frame)) => self.handle(frame),
                    Ok(None) => break,
                    Err(e) => {
                        self.error(format!("reading {}: {e:#}", self.topic));
                        break;
                    }
                }
                if self.stop.load(Ordering::SeqCst) {
                    break;
                }
            }
            if self.stats_period > 0.0 && Instant::now() >= next_log {
                if self.stats.latency_ms.len() > logged_upto {
                    eprintln!("msf-ros2: {}: {}", self.topic, self.stats.line(logged_upto));
                    logged_upto = self.stats.latency_ms.len();
                }
                next_log = Instant::now() + Duration::from_secs_f64(self.stats_period);
            }
        }
        Ok(self.stats)
    }

    fn handle(&mut self, frame: Frame) {
        let header = frame.header().clone();
        let res = (|| -> Result<()> {
            let pixels = match (&frame, &mut self.input) {
                (Frame::Raw(m), _) => convert::raw(m)?,
                (Frame::Compressed(m), Input::Compressed(_, dec)) => dec.decode(m)?,
                (Frame::Compressed(_), Input::Raw(_)) => unreachable!("compressed frame from a raw subscription"),
            };
            let view = pixels.view()?;
            let d = match &mut self.model {
                Model::Frames(dec) => dec.decompose(&view)?,
                Model::Temporal(t) => t.step(&view)?,
            };
            self.publish(&header, &view, &d)
        })();
        if let Err(e) = res {
            self.error(format!("{} frame {} {}.{:09}: {e:#}", self.topic, header.frame_id, header.stamp.sec, header.stamp.nanosec));
        }
    }

    fn error(&mut self, msg: String) {
        self.stats.errors += 1;
        // The first errors in full, then one line per 100, so that a wrong encoding does not flood the log.
        if self.errors_said < 5 || self.stats.errors.is_multiple_of(100) {
            eprintln!("msf-ros2: {msg} ({} errors so far)", self.stats.errors);
            self.errors_said += 1;
        }
    }

    fn publish(&mut self, header: &Header, view: &ImageView, d: &Decomposition) -> Result<()> {
        let map = LabelMap::new(d, MaskRes::Frame);
        let (w, h) = (map.width, map.height);
        let extents = map.extents(d.num_slots);
        let temporal = matches!(self.model, Model::Temporal(_));
        let overlay_img = self.outputs.overlay.as_ref().map(|_| overlay::render(&packed_rgb(view), w, h, &map.labels));
        let masks = Image {
            header: header.clone(),
            height: h,
            width: w,
            encoding: "mono8".into(),
            is_bigendian: 0,
            step: w,
            data: map.labels,
        };
        self.outputs.masks.publish(masks).map_err(|e| anyhow::anyhow!("publishing masks: {e:?}"))?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let latency = (now.as_nanos() as i64 - header.stamp.nanos()) as f64 / 1e6;
        let t = Instant::now();
        self.stats.first.get_or_insert(t);
        self.stats.last = Some(t);
        self.stats.frames += 1;
        self.stats.latency_ms.push(latency);

        let objects: Vec<_> = extents
            .iter()
            .enumerate()
            .filter(|(_, e)| e.area > 0)
            .map(|(k, e)| json!({"id": k, "track_id": if temporal { json!(k) } else { json!(null) }, "area": e.area, "bbox": e.bbox}))
            .collect();
        let record = json!({
            "stamp": {"sec": header.stamp.sec, "nanosec": header.stamp.nanosec},
            "frame_id": header.frame_id,
            "width": w,
            "height": h,
            "temporal": temporal,
            "objects": objects,
        });
        self.outputs.objects.publish(StringMsg { data: record.to_string() }).map_err(|e| anyhow::anyhow!("publishing objects: {e:?}"))?;
        let slots = Float32MultiArray::matrix(d.num_slots, "slots", d.slot_dim, "dim", d.slots.clone());
        self.outputs.slots.publish(slots).map_err(|e| anyhow::anyhow!("publishing slots: {e:?}"))?;
        if let (Some(p), Some(img)) = (&self.outputs.overlay, overlay_img) {
            let msg = Image { header: header.clone(), height: h, width: w, encoding: "rgb8".into(), is_bigendian: 0, step: w * 3, data: img.into_raw() };
            p.publish(msg).map_err(|e| anyhow::anyhow!("publishing overlay: {e:?}"))?;
        }
        Ok(())
    }
}

enum Frame {
    Raw(Image),
    Compressed(CompressedImage),
}

impl Frame {
    fn header(&self) -> &Header {
        match self {
            Frame::Raw(m) => &m.header,
            Frame::Compressed(m) => &m.header,
        }
    }
}

/// Takes every sample waiting and keeps the newest, counting the others and the sequence-number
/// gaps of each publisher as dropped.
fn take_newest<M: DeserializeOwned + 'static>(s: &Subscription<M>, last_seq: &mut HashMap<Gid, i64>, stats: &mut Stats) -> Result<Option<M>> {
    let mut newest: Option<M> = None;
    while let Some((m, info)) = s.take().map_err(|e| anyhow::anyhow!("{e:?}"))? {
        count_gap(&info, last_seq, stats);
        if newest.replace(m).is_some() {
            stats.dropped += 1;
        }
    }
    Ok(newest)
}

fn count_gap(info: &MessageInfo, last_seq: &mut HashMap<Gid, i64>, stats: &mut Stats) {
    let seq = info.sequence_number();
    if let Some(prev) = last_seq.insert(info.publisher_gid(), seq) {
        if seq > prev + 1 {
            stats.dropped += (seq - prev - 1) as u64;
        }
    }
}

/// The frame as packed RGB (for the overlay).
fn packed_rgb(v: &ImageView) -> Vec<u8> {
    let (w, h, bpp) = (v.width() as usize, v.height() as usize, v.format().bytes_per_pixel());
    let off = match v.format() {
        PixelFormat::Rgb8 | PixelFormat::Rgba8 => [0, 1, 2],
        PixelFormat::Bgr8 | PixelFormat::Bgra8 => [2, 1, 0],
        PixelFormat::Gray8 => [0, 0, 0],
    };
    let mut out = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        let row = &v.data()[y * v.stride()..];
        for x in 0..w {
            let p = &row[x * bpp..];
            out.extend_from_slice(&[p[off[0]], p[off[1]], p[off[2]]]);
        }
    }
    out
}
