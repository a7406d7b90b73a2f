//! `msf-run` on live network streams, on loopback only: the `ffmpeg` program serves a generated
//! MPEG-TS clip over `tcp://` (and sends it over `udp://`) at a random free port, and `msf-run`
//! reads it with `--jsonl -`. Checked: frame lines arrive while the stream plays, the run ends when
//! the stream does, a stream faster than the model drops stale frames (in order, counted, with the
//! latency reported) unless `--live-policy all`, the results are those of the same clip read as a
//! file (the TCP path carries the clip's bytes unchanged, so decoding is identical and the records
//! compare exactly), and an unreachable server is one line and exit 1 within a bounded time.
//!
//! Needs the `ffmpeg` program (`scripts/deps` installs it; skipped without it, failed in CI) and the
//! upstream fixtures (`MSF_FIXTURES`). Every wait is bounded.

#![cfg(all(feature = "video", feature = "cli", target_os = "linux"))]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Frames of the clip: 4 s at 25 fps.
const FRAMES: u64 = 100;
/// Longest any one process of these tests may take.
const DEADLINE: Duration = Duration::from_secs(120);

fn note(s: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{s}");
}

fn msf_run_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_msf-run"))
}

fn have_ffmpeg() -> bool {
    Command::new("ffmpeg").arg("-version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// The model, the clip and the clip's records read as a file, made once per test process.
struct Setup {
    model: PathBuf,
    clip: PathBuf,
    /// The file run's frame records by index.
    file: BTreeMap<u64, Value>,
}

/// `None` (the test is skipped, or fails under CI) without `ffmpeg` or the fixtures.
fn setup(test: &str) -> Option<&'static Setup> {
    if !have_ffmpeg() {
        msf_tests::skip_or_fail(test, "no `ffmpeg` program on PATH (scripts/deps installs it)");
        return None;
    }
    msf_tests::require_fixtures(test)?;
    static S: OnceLock<Setup> = OnceLock::new();
    Some(S.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("msf-stream-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let model = dir.join("tiny-slate-msf.onnx");
        let ckpt = msf_tests::fixtures_dir().join("tiny-slate-msf.pth");
        msf_exporter::export::export(&ckpt, &model, &Default::default()).unwrap_or_else(|e| panic!("export {}: {e}", ckpt.display()));
        let clip = dir.join("clip.ts");
        let o = Command::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=96x72:rate=25"])
            .args(["-frames:v", &FRAMES.to_string(), "-pix_fmt", "yuv420p", "-f", "mpegts"])
            .arg(&clip)
            .output()
            .unwrap();
        assert!(o.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&o.stderr));
        let mut run = Run::start(&[model.as_os_str(), clip.as_os_str(), "--jsonl".as_ref(), "-".as_ref(), "--quiet".as_ref()]);
        let (status, _) = run.wait(DEADLINE);
        let run = run.finish();
        let lines = run.lines();
        assert!(status.success(), "msf-run on the clip file: {}", run.stderr());
        let (frames, summary) = split(&lines);
        assert_eq!(frames.len() as u64, FRAMES);
        assert_eq!((summary["frames"].as_u64(), summary["frames_dropped"].as_u64()), (Some(FRAMES), Some(0)), "a file never drops frames");
        let file = frames.into_iter().map(|f| (f["index"].as_u64().unwrap(), f)).collect();
        Setup { model, clip, file }
    }))
}

/// A port nothing listens on now (the kernel's pick of a free one).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Whether a `proto` (`tcp`, `udp`) socket is bound to 127.0.0.1:`port` (listening, for TCP), from
/// /proc/net: no connection is made, so a one-client server is not used up by the check.
fn bound(proto: &str, port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string(format!("/proc/net/{proto}")).unwrap_or_default().lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[1] == want && (proto != "tcp" || f[3] == "0A")
    })
}

fn wait_bound(proto: &str, port: u16, child: &mut Child) {
    let t = Instant::now();
    while !bound(proto, port) {
        assert!(child.try_wait().unwrap().is_none(), "the process meant to bind {proto} port {port} ended");
        assert!(t.elapsed() < Duration::from_secs(20), "nothing bound {proto} port {port} within 20 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// An `ffmpeg` process, killed when dropped.
struct Ffmpeg(Child);

impl Ffmpeg {
    /// Serve `clip` unchanged (`-c copy`) to the first client of tcp://127.0.0.1:`port`, in real time
    /// (`-re`) or as fast as the client reads; returns once it listens.
    fn serve_tcp(clip: &Path, port: u16, realtime: bool) -> Self {
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-nostdin", "-hide_banner", "-loglevel", "error"]);
        if realtime {
            cmd.arg("-re");
        }
        cmd.arg("-i").arg(clip).args(["-c", "copy", "-f", "mpegts", &format!("tcp://127.0.0.1:{port}?listen=1&listen_timeout=60000")]);
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        wait_bound("tcp", port, &mut child);
        Ffmpeg(child)
    }

    /// Send `clip` to udp://127.0.0.1:`port` in real time.
    fn send_udp(clip: &Path, port: u16) -> Self {
        let child = Command::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-re", "-i"])
            .arg(clip)
            .args(["-c", "copy", "-f", "mpegts", &format!("udp://127.0.0.1:{port}?pkt_size=1316")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Ffmpeg(child)
    }

    /// When it ended, if it has.
    fn ended(&mut self) -> bool {
        self.0.try_wait().unwrap().is_some()
    }
}

impl Drop for Ffmpeg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `msf-run --onnx …` whose stdout lines are collected as they come, each with the
/// instant it arrived.
struct Run {
    child: Child,
    started: Instant,
    lines: Arc<Mutex<Vec<(Duration, String)>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    stderr: Arc<Mutex<String>>,
    err_reader: Option<std::thread::JoinHandle<()>>,
}

impl Run {
    fn start(args: &[&std::ffi::OsStr]) -> Run {
        let mut child = Command::new(msf_run_bin())
            .arg("--onnx")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (out, l) = (child.stdout.take().unwrap(), lines.clone());
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                l.lock().unwrap().push((started.elapsed(), line));
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let (err, e) = (child.stderr.take().unwrap(), stderr.clone());
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut BufReader::new(err), &mut s);
            *e.lock().unwrap() = s;
        });
        Run { child, started, lines, reader: Some(reader), stderr, err_reader: Some(err_reader) }
    }

    /// Wait for the end (killed and failed past `limit`); the exit status and when it came.
    fn wait(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, self.started.elapsed());
            }
            if self.started.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("msf-run did not end within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every stdout line (after the process ended).
    fn lines(&self) -> Vec<(Duration, String)> {
        self.lines.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Let the readers see the end of both pipes.
    fn finish(mut self) -> Self {
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        if let Some(r) = self.err_reader.take() {
            r.join().unwrap();
        }
        self
    }
}

/// Frame records and the `{"summary"}` line of `--jsonl -` output (every line must parse); a
/// `--json` line after the summary, if any, is left out.
fn split(lines: &[(Duration, String)]) -> (Vec<Value>, Value) {
    let values: Vec<Value> =
        lines.iter().map(|(_, l)| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"))).collect();
    let at = values.iter().position(|v| v.get("summary").is_some()).expect("a summary line");
    (values[..at].to_vec(), values[at]["summary"].clone())
}

/// Every delivered frame is the file run's frame of the same index, decoded and decomposed the
/// same (masks as RLE, areas, boxes, timestamps), and indices only grow.
fn assert_same_as_the_file(setup: &Setup, frames: &[Value]) {
    let mut last = None;
    for f in frames {
        let i = f["index"].as_u64().unwrap();
        assert!(last.is_none_or(|l: u64| l < i), "frame {i} after frame {last:?}");
        last = Some(i);
        let want = &setup.file[&i];
        for key in ["name", "pts", "width", "height", "view", "mask", "slots"] {
            assert_eq!(f[key], want[key], "frame {i}: {key} differs from the file run's");
        }
    }
}

fn latency_line(summary: &Value) -> String {
    let l = &summary["latency_ms"];
    format!("latency median {} ms, p90 {} ms, max {} ms", l["median"], l["p90"], l["max"])
}

/// A real-time stream (`ffmpeg -re`, 4 s): frame lines arrive while it plays, the run ends soon after
/// it does, and what arrives is the file's frames, newest first when the model falls behind.
#[test]
fn frames_arrive_while_a_live_stream_plays_and_the_run_ends_with_it() {
    let Some(setup) = setup("frames_arrive_while_a_live_stream_plays_and_the_run_ends_with_it") else { return };
    let port = free_port();
    let mut server = Ffmpeg::serve_tcp(&setup.clip, port, true);
    let url = format!("tcp://127.0.0.1:{port}");
    let mut run = Run::start(&[setup.model.as_os_str(), url.as_ref(), "--jsonl".as_ref(), "-".as_ref()]);
    let mut stream_end = None;
    let t = Instant::now();
    while stream_end.is_none() {
        if server.ended() {
            stream_end = Some(run.started.elapsed());
        }
        assert!(t.elapsed() < DEADLINE, "the stream did not end");
        std::thread::sleep(Duration::from_millis(10));
    }
    let stream_end = stream_end.unwrap();
    let (status, ended) = run.wait(DEADLINE);
    let run = run.finish();
    assert!(status.success(), "{status:?}: {}", run.stderr());
    let lines = run.lines();
    let (frames, summary) = split(&lines);
    let live = lines.iter().filter(|(at, l)| *at < stream_end && l.contains("\"index\"")).count();
    assert!(live >= 2, "{live} frame lines arrived before the stream ended at {stream_end:?}: {lines:?}");
    assert!(ended - stream_end < Duration::from_secs(20), "the run ended {:?} after the stream", ended - stream_end);
    assert_eq!(summary["status"], "ok");
    assert_eq!(summary["frames"].as_u64(), Some(frames.len() as u64));
    let dropped = summary["frames_dropped"].as_u64().unwrap();
    assert_eq!(frames.len() as u64 + dropped, FRAMES, "every decoded frame is delivered or counted as dropped");
    assert_eq!(frames.last().unwrap()["index"].as_u64(), Some(FRAMES - 1), "the newest frame is never dropped");
    assert!(summary["latency_ms"]["median"].as_f64().unwrap() > 0.0, "{summary}");
    assert_same_as_the_file(setup, &frames);
    assert!(run.stderr().contains("live") && run.stderr().contains("dropped for newer ones"), "{}", run.stderr());
    note(&format!(
        "stream.rs real-time tcp: {} frames delivered ({live} while the 4 s stream played), {dropped} dropped, {}; run ended {:.2} s after the stream",
        frames.len(),
        latency_line(&summary),
        (ended - stream_end).as_secs_f64()
    ));
}

/// A stream sent as fast as it is read is faster than the model: stale frames are dropped and
/// counted (the `--json` summary says how many and how late the rest were), the delivered ones
/// are in order and equal the file's; `--live-policy all` keeps every frame, the same as the file.
#[test]
fn a_stream_faster_than_the_model_drops_stale_frames_unless_told_to_keep_all() {
    let Some(setup) = setup("a_stream_faster_than_the_model_drops_stale_frames_unless_told_to_keep_all") else { return };
    let port = free_port();
    let _server = Ffmpeg::serve_tcp(&setup.clip, port, false);
    let url = format!("tcp://127.0.0.1:{port}");
    let mut run = Run::start(&[setup.model.as_os_str(), url.as_ref(), "--jsonl".as_ref(), "-".as_ref(), "--json".as_ref()]);
    let (status, _) = run.wait(DEADLINE);
    let run = run.finish();
    assert!(status.success(), "{status:?}: {}", run.stderr());
    let lines = run.lines();
    let (frames, summary) = split(&lines);
    let dropped = summary["frames_dropped"].as_u64().unwrap();
    assert!(dropped > 0, "nothing dropped: {summary}");
    assert_eq!(frames.len() as u64 + dropped, FRAMES);
    assert_eq!(frames.last().unwrap()["index"].as_u64(), Some(FRAMES - 1));
    assert_same_as_the_file(setup, &frames);
    let json: Value = serde_json::from_str(&lines.last().unwrap().1).unwrap();
    assert_eq!((json["status"].as_str(), json["frames_dropped"].as_u64()), (Some("ok"), Some(dropped)), "{json}");
    for q in ["median", "p90", "max"] {
        assert!(json["latency_ms"][q].as_f64().is_some_and(|v| v > 0.0), "{json}");
    }
    note(&format!("stream.rs full-speed tcp, newest: {} frames delivered, {dropped} dropped, {}", frames.len(), latency_line(&json)));

    let port = free_port();
    let _server = Ffmpeg::serve_tcp(&setup.clip, port, false);
    let url = format!("tcp://127.0.0.1:{port}");
    let mut run = Run::start(&[setup.model.as_os_str(), url.as_ref(), "--jsonl".as_ref(), "-".as_ref(), "--live-policy".as_ref(), "all".as_ref()]);
    let (status, _) = run.wait(DEADLINE);
    let run = run.finish();
    assert!(status.success(), "{status:?}: {}", run.stderr());
    let (frames, summary) = split(&run.lines());
    assert_eq!((frames.len() as u64, summary["frames_dropped"].as_u64()), (FRAMES, Some(0)), "{summary}");
    assert_same_as_the_file(setup, &frames);
    note(&format!("stream.rs full-speed tcp, --live-policy all: {} frames, 0 dropped, {}", frames.len(), latency_line(&summary)));
}

/// UDP has no end but silence: the run ends `--stream-timeout` after the last datagram. UDP may
/// lose datagrams, so only the frames' order, size and records are checked, not their number.
#[test]
fn a_udp_stream_ends_with_silence() {
    let Some(setup) = setup("a_udp_stream_ends_with_silence") else { return };
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("udp://127.0.0.1:{port}?localaddr=127.0.0.1");
    let mut run = Run::start(&[setup.model.as_os_str(), url.as_ref(), "--jsonl".as_ref(), "-".as_ref(), "--stream-timeout".as_ref(), "3".as_ref()]);
    wait_bound("udp", port, &mut run.child);
    let mut sender = Ffmpeg::send_udp(&setup.clip, port);
    let t = Instant::now();
    while !sender.ended() {
        assert!(t.elapsed() < DEADLINE, "the sender did not end");
        std::thread::sleep(Duration::from_millis(10));
    }
    let sent = run.started.elapsed();
    let (status, ended) = run.wait(DEADLINE);
    let run = run.finish();
    assert!(status.success(), "{status:?}: {}", run.stderr());
    assert!(ended - sent < Duration::from_secs(3 + 10), "the run ended {:?} after the last datagram", ended - sent);
    let (frames, summary) = split(&run.lines());
    assert!(!frames.is_empty() && frames.len() as u64 + summary["frames_dropped"].as_u64().unwrap() <= FRAMES, "{summary}");
    for f in &frames {
        assert_eq!((f["width"].as_u64(), f["height"].as_u64()), (Some(96), Some(72)));
    }
    let idx: Vec<u64> = frames.iter().map(|f| f["index"].as_u64().unwrap()).collect();
    assert!(idx.windows(2).all(|w| w[0] < w[1]), "{idx:?}");
    note(&format!("stream.rs real-time udp: {} frames, {} dropped, {}", frames.len(), summary["frames_dropped"], latency_line(&summary)));
}

/// Nothing there: one line on stderr naming the URL, exit 1, within the stream timeout (5 s by
/// default; connection refused at once). UDP cannot be refused: it waits for the timeout.
#[test]
fn unreachable_streams_fail_with_one_line_in_bounded_time() {
    let Some(setup) = setup("unreachable_streams_fail_with_one_line_in_bounded_time") else { return };
    let port = free_port();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    for url in [
        format!("tcp://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{port}/live.ts"),
        format!("rtsp://127.0.0.1:{port}/camera"),
        format!("udp://127.0.0.1:{udp}?localaddr=127.0.0.1"),
    ] {
        let mut run = Run::start(&[setup.model.as_os_str(), url.as_ref(), "--jsonl".as_ref(), "-".as_ref()]);
        let (status, took) = run.wait(Duration::from_secs(60));
        let run = run.finish();
        let err = run.stderr();
        assert_eq!(status.code(), Some(1), "{url}: {err}");
        assert_eq!(err.lines().count(), 1, "{url}: {err}");
        assert!(err.starts_with("msf-run: error: ") && err.contains(url.as_str()), "{url}: {err}");
        assert!(err.contains("is the server running?") || err.contains("within 5 s"), "{url}: {err}");
        assert!(run.lines().is_empty(), "{url}: stdout {:?}", run.lines());
        assert!(took < Duration::from_secs(15), "{url}: {took:?}");
        note(&format!("stream.rs unreachable {url}: exit 1 after {:.2} s: {}", took.as_secs_f64(), err.trim()));
    }
}

/// The library as a program drives it: a network URL opens as a live source, and a pipeline whose
/// sink is slower than the stream (under the default [`LivePolicy::Newest`]) drops stale frames,
/// in order, and reports them with the latency; the same sink on the clip as a file drops nothing.
#[test]
fn the_pipeline_drops_for_a_slow_sink_on_a_live_source_only() {
    use msf_runtime::pipeline::{FnSink, LivePolicy, Outcome, Pipeline};
    use msf_runtime::source::{open, FrameSource, SourceOptions};
    let Some(setup) = setup("the_pipeline_drops_for_a_slow_sink_on_a_live_source_only") else { return };
    let pipeline = Pipeline::builder().jobs(1).build(&setup.model).unwrap();
    assert_eq!(pipeline.live_policy(), LivePolicy::Newest);
    let slow_run = |source: Box<dyn FrameSource>| {
        let mut indices = Vec::new();
        let mut slow = FnSink::new(|f: &msf_runtime::source::Frame, _: &msf_runtime::Decomposition| {
            indices.push(f.index);
            std::thread::sleep(Duration::from_millis(30));
            Ok(())
        });
        let report = pipeline.run(source, &mut [&mut slow]);
        (report, indices)
    };

    let port = free_port();
    let _server = Ffmpeg::serve_tcp(&setup.clip, port, true);
    let source = open(Path::new(&format!("tcp://127.0.0.1:{port}")), &SourceOptions::default()).unwrap();
    assert!(source.is_live(), "{}", source.describe());
    let (report, indices) = slow_run(source);
    assert_eq!(report.outcome, Outcome::Done, "{:?}", report.errors);
    assert!(report.frames_dropped > 0, "{report:?}");
    assert_eq!(report.frames + report.frames_dropped, FRAMES);
    assert!(indices.windows(2).all(|w| w[0] < w[1]), "{indices:?}");
    assert_eq!((report.latency.count(), indices.last()), (report.frames, Some(&(FRAMES - 1))));
    let (median, p90) = (report.latency.median_ms().unwrap(), report.latency.p90_ms().unwrap());
    assert!(median >= 30.0 && p90 >= median && report.latency.max_ms().unwrap() >= p90, "{:?}", report.latency);
    note(&format!(
        "stream.rs library, real-time tcp, 30 ms sink: {} frames, {} dropped, latency median {median:.1} ms, p90 {p90:.1} ms, max {:.1} ms",
        report.frames,
        report.frames_dropped,
        report.latency.max_ms().unwrap()
    ));

    let opts = SourceOptions { max_frames: Some(20), ..Default::default() };
    let source = open(&setup.clip, &opts).unwrap();
    assert!(!source.is_live());
    let (report, indices) = slow_run(source);
    assert_eq!((report.outcome, report.frames, report.frames_dropped), (Outcome::Done, 20, 0));
    assert_eq!(indices, (0..20).collect::<Vec<u64>>());
}
