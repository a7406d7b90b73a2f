//! `msf-run`'s arguments: what each flag means (clap, `--help`) and the checks clap cannot make.

use super::*;

const AFTER_HELP: &str = "\
Inputs:
  image files     png, jpg, bmp, tif, webp, gif (decoded to RGB, EXIF orientation applied)
  folders         the image files directly inside, in natural order (frame2 before frame10)
  glob patterns   quoted so the shell leaves them alone: 'frames/*.jpg'
  video files     mp4, mkv, avi, mov, webm, m4v, ... (build with --features video)
  cameras         /dev/video0 (build with --features camera)
  network streams rtsp://, http(s)://, udp://, tcp://, srt:// URLs (--features video); live, like
                  cameras: see --live-policy, --stream-timeout
  Several inputs run one after the other; consecutive image files count as one list for
  --start/--every, and --max-frames caps the whole run.

Output folder (-o):
  masks/<name>.png      slot id per pixel, indexed PNG with the DAVIS palette (255 = void: outside
                        the centre crop the model saw); frame size, or 256x256 with --mask-res model
  overlays/<name>.jpg   the frame tinted with one colour per slot, slot boundaries in white
  slots/<name>.npy      slots, float32 (K, D)
  attn/<name>.npy       attention, float32 (K, G, G), with --save-attn
  decomposition.json    model, options, and per frame per slot: area, fraction, bbox [x,y,w,h] and
                        the mask as COCO compressed RLE ({\"size\":[h,w],\"counts\":\"...\"}, what
                        pycocotools.mask.decode reads as it is); \"schema\": 3
  overlay.mp4           the overlays as a video, with --overlay-video
  --layout davis        one folder per input instead (a folder, a video, consecutive image files),
                        frames numbered by their position in it: masks/<sequence>/00000.png, ...
                        with pixel = slot id + 1 and 0 where no slot is (OUT/masks is a DAVIS
                        results folder); overlays/, slots/ and attn/ the same way
  Every file is written to a temporary name and renamed, so no half-written file is ever left.
  One folder takes one run: a folder in use by a running msf-run is refused, and so is one that
  holds an earlier run unless --overwrite (which removes exactly the files that run listed).

COCO results (--coco-results FILE, with or without -o):
  A JSON array that COCO.loadRes and COCOeval(iouType=\"segm\") take as it is: per frame and
  non-empty slot {image_id, category_id, segmentation: {size, counts} (compressed RLE at frame
  size), score, bbox, area, slot_id}. image_id: the file stem read as a number (000000397133.jpg
  -> 397133), or the id --coco-images ANNOTATIONS.json gives the file name (every frame must be
  there). category_id: --coco-category (default 1; class-agnostic: useCats = 0). score: the slot's
  mean attention over its own mask pixels, in (1/K, 1].

Examples:
  msf-export --ckpt best.pth -o slate.onnx
  msf-run --onnx slate.onnx photo.jpg frames/ -o out/
  msf-run --onnx slate.onnx 'shots/*.png' -o out/ --batch 8 --threads 4 --mask-res model
  msf-run --onnx slate.onnx video.mp4 -o out/ --temporal --every 2
  msf-run --onnx slate.onnx bear.mp4 car.mp4 -o out/ --temporal --layout davis
  msf-run --onnx slate.onnx val2017/ --coco-results segm.json --coco-images instances_val2017.json
  msf-run --onnx slate-t.onnx /dev/video0 --temporal --jsonl -     # JSON lines on stdout, no files
  msf-run --onnx slate.onnx rtsp://192.168.1.20/stream --jsonl -   # a network camera, newest frame each time

Exit codes:
  0    all frames decomposed and written
  1    error (model, input or output): one line on stderr says what; frames already written are
       kept, counted in that line, and listed in decomposition.json
  2    bad arguments
  3    done, but frames were skipped (--on-error skip): each is named on stderr and under
       summary.skipped in decomposition.json
  130  interrupted (Ctrl-C, SIGTERM or SIGHUP): stops after the current frame, keeps the finished
       frames and writes decomposition.json for them (a second signal quits at once)

Limits (each refused with one line, before anything large is allocated):
  --max-image-pixels   pixels of one input image (default 16384x16384)
  --max-nodes          nodes of the model's graph (default 20000)
  --max-tensor-mb      any one tensor of the graph at the batch size used (default 256 MiB)
  --max-gfma           billions of multiply-adds per frame (default 24; the full-size model needs 6.4)
  --decode-ahead-mb    decoded frames held at once, plus one frame (default 256 MiB)
  --jobs/--threads/--batch at most 256; one output folder is used by one run at a time";

/// Decompose images, folders, videos or cameras into object slots and one mask per object, with an
/// MSF model exported by `msf-export`.
#[derive(Parser, Debug)]
#[command(name = "msf-run", version, about, long_about, after_long_help = AFTER_HELP)]
pub(crate) struct Cli {
    /// The model: an ONNX file written by `msf-export`.
    #[arg(long, value_name = "FILE.onnx")]
    pub(crate) onnx: PathBuf,
    /// Image files, folders, glob patterns, video files or camera devices (see below).
    #[arg(required = true, value_name = "INPUT")]
    pub(crate) inputs: Vec<PathBuf>,
    /// Output folder (created if needed). May be left out with --jsonl: then no file is written.
    #[arg(short, long, value_name = "OUT_DIR", required_unless_present_any = ["jsonl", "coco_results"])]
    pub(crate) output: Option<PathBuf>,
    /// Also (or only, without -o) write one JSON line per frame as it finishes, to FILE or to
    /// stdout with `-`: the frame records of decomposition.json, then a {"summary": …} line. For
    /// live sources and pipes; messages then go to stderr.
    #[arg(long, value_name = "FILE|-")]
    pub(crate) jsonl: Option<PathBuf>,
    /// How the output folder is arranged: `flat` (masks/<name>.png, slot ids, 255 = void) or `davis`
    /// (masks/<sequence>/00000.png per input, slot id + 1, 0 = void; see below).
    #[arg(long, value_parser = one_of::<Layout>(&Layout::NAMES), default_value = "flat")]
    pub(crate) layout: Layout,
    /// Also (or only, without -o) write a COCO results file (a JSON array for COCO.loadRes and
    /// COCOeval, masks at frame size; see below), written when the run ends.
    #[arg(long, value_name = "FILE.json")]
    pub(crate) coco_results: Option<PathBuf>,
    /// COCO annotation file whose "images" give each frame's image_id (by file name; a frame not in
    /// it stops the run). Default: the file stem as a number.
    #[arg(long, value_name = "ANNOTATIONS.json", requires = "coco_results")]
    pub(crate) coco_images: Option<PathBuf>,
    /// category_id of every COCO result (class-agnostic).
    #[arg(long, value_name = "N", default_value_t = 1, requires = "coco_results")]
    pub(crate) coco_category: u64,
    /// Inference engine: tract (pure Rust, CPU) or ort (onnxruntime; build with --features ort).
    #[arg(long, value_parser = one_of::<BackendKind>(&BackendKind::NAMES), default_value = "tract")]
    pub(crate) backend: BackendKind,
    /// Execution provider of the ort backend.
    #[arg(long, value_parser = one_of::<Provider>(&Provider::NAMES), default_value = "cpu")]
    pub(crate) provider: Provider,
    /// Run on the CPU when the requested provider cannot be used, instead of failing.
    #[arg(long)]
    pub(crate) allow_fallback: bool,
    /// Kernel threads per inference call (default: one per CPU core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=MAX))]
    pub(crate) threads: Option<u32>,
    /// Frames decomposed at the same time, each call on its own thread (default: one per CPU core
    /// for files and videos, which gives the most frames/s; 1 with --temporal, a camera, a network
    /// stream or a GPU provider, where each frame's latency matters). Without --threads each job gets
    /// cores/jobs kernel threads.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=MAX))]
    pub(crate) jobs: Option<u32>,
    /// Frames per inference call (images of a folder or list; not with --temporal).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=MAX))]
    pub(crate) batch: u32,
    /// Keep every N-th frame of each input.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) every: u64,
    /// Skip the first N frames of each input.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) start: u64,
    /// Stop after N frames in all (of a live source: frames read, dropped ones included).
    #[arg(long, value_name = "N")]
    pub(crate) max_frames: Option<u64>,
    /// Also write the soft attention (K, G, G) of each frame to attn/<name>.npy.
    #[arg(long)]
    pub(crate) save_attn: bool,
    /// Do not write overlay images.
    #[arg(long)]
    pub(crate) no_overlay: bool,
    /// Do not write mask PNGs.
    #[arg(long)]
    pub(crate) no_masks: bool,
    /// Do not write slots .npy files.
    #[arg(long)]
    pub(crate) no_slots: bool,
    /// How a frame that is not square is fitted into the model's square input: crop (upstream's
    /// centre crop; the sides get no object), stretch (the whole frame, squeezed), pad (the whole
    /// frame, aspect kept, padded with the mean colour) or tiles (overlapping squares along the long
    /// side, their objects merged by mask overlap and slot similarity; several inferences per frame;
    /// not with --temporal).
    #[arg(long, value_parser = one_of::<Fit>(&Fit::NAMES), default_value = "stretch")]
    pub(crate) fit: Fit,
    /// Mask resolution: the frame's (void where no view covers it: outside the centre crop of
    /// --fit crop) or the model's 256x256 view.
    #[arg(long, value_parser = one_of::<MaskRes>(&MaskRes::NAMES), default_value = "frame")]
    pub(crate) mask_res: MaskRes,
    /// Overlay image format.
    #[arg(long, value_parser = one_of::<overlay::Format>(&overlay::Format::NAMES), default_value = "jpg")]
    pub(crate) overlay_format: overlay::Format,
    /// Video: start each frame's slot attention from the previous frame's slots (needs the model's
    /// `slots_init` input, which every export has unless `--no-slots-in`; without it, with a
    /// warning, ids are only matched) and
    /// match slot ids to the previous frame's, so that an id keeps meaning one object. Each input
    /// is a new stream.
    #[arg(long)]
    pub(crate) temporal: bool,
    /// Also write the overlays as OUT_DIR/overlay.mp4 (build with --features video); frame rate from
    /// the video's timestamps, 25 for images. Frames must all have one size.
    #[arg(long)]
    pub(crate) overlay_video: bool,
    /// What a frame that cannot be decoded or decomposed does: `stop` the run (the frames before it
    /// are kept), or `skip` it (reported on stderr and in decomposition.json; the run goes on and
    /// ends with exit code 3). Writing errors always stop the run.
    #[arg(long, value_parser = one_of::<ErrorPolicy>(&ErrorPolicy::NAMES), default_value = "stop")]
    pub(crate) on_error: ErrorPolicy,
    /// Replace an earlier run in OUT_DIR: the files its decomposition.json lists (and overlay.mp4)
    /// are removed first. Without it a folder holding an earlier run is refused.
    #[arg(long)]
    pub(crate) overwrite: bool,
    /// Print one JSON summary line on stdout at the end (other messages go to stderr).
    #[arg(long)]
    pub(crate) json: bool,
    /// Print nothing but errors (and the --json line).
    #[arg(short, long)]
    pub(crate) quiet: bool,
    /// Refuse images with more pixels than this, from their header, before decoding (decompression
    /// bombs). The default allows 16384x16384.
    #[arg(long, value_name = "N", default_value_t = msf_runtime::DecodeLimits::default().max_pixels)]
    pub(crate) max_image_pixels: u64,
    /// For ONNX graphs without MSF metadata (e.g. a plain torch.onnx export of the upstream model,
    /// input (B,3,256,256) with the bicubic resize to 224 inside): use the upstream preprocessing.
    #[arg(long)]
    pub(crate) preprocess_upstream: bool,
    /// Refuse models whose graph has more nodes than this (subgraphs included); the full-size
    /// export has ~500. Default 20000, or MSF_MAX_NODES.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_nodes: Option<u64>,
    /// Refuse models that make any one tensor larger than this many MiB at the batch size used,
    /// checked before it is allocated; the full-size model needs ~2 MiB per frame. Default 256,
    /// or MSF_MAX_TENSOR_MB.
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=1 << 24))]
    pub(crate) max_tensor_mb: Option<u64>,
    /// Refuse models that need more than this many billion multiply-adds per frame (counted on
    /// the typed graph before anything runs; the full-size model needs 6.4). Default 24, or MSF_MAX_GFMA.
    #[arg(long, value_name = "G", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) max_gfma: Option<u32>,
    /// MiB of decoded frames held at once (decoded ahead or waiting for their call), whatever
    /// --jobs and --batch; one frame is always allowed.
    #[arg(long, value_name = "MIB", default_value_t = (msf_runtime::pipeline::DEFAULT_DECODE_AHEAD_BYTES >> 20) as u64, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub(crate) decode_ahead_mb: u64,
    /// Live sources (cameras, network streams) when the model is slower than the frames come:
    /// `newest` decomposes the newest frame and drops the ones it had no time for (counted as
    /// frames_dropped), `all` decomposes every frame however late. Files never drop frames.
    #[arg(long, value_parser = one_of::<LivePolicy>(&LivePolicy::NAMES), default_value = "newest")]
    pub(crate) live_policy: LivePolicy,
    /// Network streams: seconds to wait for a connection or for data before giving up with an error
    /// (udp://: silence this long after frames came ends the run).
    #[arg(long, value_name = "SECONDS", default_value_t = msf_runtime::source::DEFAULT_STREAM_TIMEOUT.as_secs_f64(), value_parser = stream_timeout)]
    pub(crate) stream_timeout: f64,
}

fn stream_timeout(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(t) if (0.001..=86400.0).contains(&t) => Ok(t),
        _ => Err(format!("`{s}` is not a number of seconds in 0.001..=86400")),
    }
}

/// Bound of --jobs, --threads and --batch (the library's).
const MAX: i64 = msf_runtime::pipeline::MAX_PARALLEL as i64;

/// A value parser for one of a library type's names (clap lists them in `--help` and errors).
fn one_of<T>(names: &'static [&'static str]) -> impl clap::builder::TypedValueParser<Value = T>
where
    T: std::str::FromStr + Clone + Send + Sync + 'static,
    T::Err: std::fmt::Debug,
{
    clap::builder::PossibleValuesParser::new(names).map(|s| s.parse().expect("one of the listed names"))
}

/// Arguments clap cannot check alone; `Err` is a usage error (exit 2).
pub(crate) fn check_usage(cli: &Cli) -> std::result::Result<(), String> {
    if cli.temporal && cli.batch > 1 {
        return Err("--temporal feeds each frame's slots into the next, one frame at a time: drop --batch".into());
    }
    if cli.temporal && cli.jobs.is_some_and(|j| j > 1) {
        return Err("--temporal feeds each frame's slots into the next, one frame at a time: drop --jobs".into());
    }
    if cli.backend == BackendKind::Tract && cli.provider != Provider::Cpu && !cli.allow_fallback {
        return Err(format!(
            "--provider {} needs --backend ort (tract runs on the CPU); add --allow-fallback to run on the CPU anyway",
            cli.provider.as_str()
        ));
    }
    if cli.temporal && cli.fit == Fit::Tiles {
        return Err("--temporal follows the model's slots from frame to frame, one view per frame; --fit tiles gives several: use --fit crop, stretch or pad".into());
    }
    if cli.layout == Layout::Davis && cli.output.is_none() {
        return Err("--layout davis arranges the files of OUT_DIR: give -o OUT_DIR".into());
    }
    if cli.overlay_video && cli.output.is_none() {
        return Err("--overlay-video writes OUT_DIR/overlay.mp4: give -o OUT_DIR".into());
    }
    if cli.overlay_video && !cfg!(feature = "video") {
        return Err("--overlay-video needs a build with `--features video` (FFmpeg)".into());
    }
    Ok(())
}

