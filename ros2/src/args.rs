//! Settings from the command line and from ROS parameters (`--ros-args -p name:=value`,
//! `--params-file F`, as `ros2 run` and launch files pass them). A flag wins over a parameter of
//! the same name; both fall back to the documented defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;
use msf_runtime::{BackendKind, Fit};
use ros2_client::ParameterValue;

const AFTER_HELP: &str = "\
TOPICS (`~` = the node's name in its namespace, /msf by default)
  in   IMAGE_TOPIC       sensor_msgs/msg/Image: rgb8, bgr8, mono8, rgba8, bgra8, yuv422 (UYVY), yuv422_yuy2 (YUYV)
  in   COMPRESSED_TOPIC  sensor_msgs/msg/CompressedImage: jpeg, png (sniffed from the bytes)
  out  ~/masks    sensor_msgs/msg/Image mono8 at the input's resolution: slot index per pixel (0..K-1;
                  255 = no slot, only outside the centre crop of --fit crop); the same labels as msf-run's
                  masks/<frame>.png for the same frame and options
  out  ~/overlay  sensor_msgs/msg/Image rgb8: the frame tinted per slot, boundaries in white (--overlay)
  out  ~/slots    std_msgs/msg/Float32MultiArray K x D, row-major; layout.dim = [slots: K, stride K*D],
                  [dim: D, stride D]; row k = the slot vector of mask value k
  out  ~/objects  std_msgs/msg/String, one JSON object per frame:
                  {\"stamp\": {\"sec\", \"nanosec\"}, \"frame_id\", \"width\", \"height\", \"temporal\": bool,
                   \"objects\": [{\"id\", \"track_id\", \"area\", \"bbox\": [x, y, w, h]}]}
                  id = the mask value; area in pixels and bbox at the input's resolution; track_id = id
                  with --temporal (slot k stays on the same object from frame to frame of that input
                  topic), null without; slots with no pixel are left out
  Every output carries its input's header (stamp, frame_id). With several input topics, the outputs
  of each are under ~/<input topic>/ (e.g. /msf/camera/image_raw/masks).

QOS
  Inputs: sensor data by default (best effort, volatile, keep last 1): the node always decomposes the
  newest frame; frames it had no time for are dropped and counted (sequence-number gaps of each
  publisher plus frames replaced while waiting). --reliable subscribes reliable, keep last --depth.
  Outputs: reliable, volatile, keep last 5 (reliable and best-effort subscribers both match).

ROS PARAMETERS (`--ros-args -p model:=slate.onnx -p temporal:=true`, or a launch file's parameters)
  model, backend, threads, temporal, fit, overlay, reliable, depth, image_topics, compressed_topics,
  stats_period: the flags of the same name (topics as a string array or a comma-separated string).
  `--ros-args -r __node:=NAME -r __ns:=/NS` rename the node. A flag given on the command line wins.
  The node declares them, so `ros2 param get /msf model` shows the values in use.

ENVIRONMENT
  ROS_DOMAIN_ID (default 0); ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST keeps discovery and data on
  127.0.0.1 (as Jazzy's rmw does).

LOG (stderr, every --stats-period seconds and at exit)
  frames decomposed, rate (frames/s), dropped, latency stamp -> publish (median, p90, max, ms).

EXIT CODES
  0  stopped by SIGINT/SIGTERM (the counts are printed)    1  error (model, topics, DDS)    2  usage";

#[derive(Parser, Debug, Default)]
#[command(
    name = "msf-ros2",
    version,
    about = "ROS 2 node: decomposes each camera frame into object masks, slot vectors and objects (MSF models, pure Rust, no ROS install needed)",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// The exported model (msf-export's .onnx). ROS parameter `model`.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// sensor_msgs/Image topic to decompose (repeatable) [default: image_raw, when no
    /// --compressed is given]. Relative names resolve in the node's namespace.
    #[arg(long = "image", value_name = "IMAGE_TOPIC")]
    pub image_topics: Vec<String>,
    /// sensor_msgs/CompressedImage topic to decompose (repeatable), e.g. image_raw/compressed.
    #[arg(long = "compressed", value_name = "COMPRESSED_TOPIC")]
    pub compressed_topics: Vec<String>,
    /// Carry slots from frame to frame and keep slot ids on the same objects (one stream per input topic).
    #[arg(long)]
    pub temporal: bool,
    /// How a frame goes into the model's square: crop, stretch, pad, tiles [default: stretch].
    #[arg(long)]
    pub fit: Option<String>,
    /// Inference backend: tract (pure Rust) or ort (feature `ort`) [default: tract].
    #[arg(long)]
    pub backend: Option<String>,
    /// Kernel threads per inference [default: the machine's cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Also publish ~/overlay (rgb8).
    #[arg(long)]
    pub overlay: bool,
    /// Subscribe reliable instead of best effort (for recorded data that must not lose frames).
    #[arg(long)]
    pub reliable: bool,
    /// Subscription history depth [default: 1].
    #[arg(long)]
    pub depth: Option<usize>,
    /// Seconds between the rate/latency log lines; 0 = only at exit [default: 5].
    #[arg(long)]
    pub stats_period: Option<f64>,
    /// Node name [default: msf].
    #[arg(long)]
    pub name: Option<String>,
    /// Node namespace [default: /].
    #[arg(long)]
    pub namespace: Option<String>,
}

/// Everything the node needs, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub model: PathBuf,
    pub image_topics: Vec<String>,
    pub compressed_topics: Vec<String>,
    pub temporal: bool,
    pub fit: Fit,
    pub backend: BackendKind,
    pub threads: Option<usize>,
    pub overlay: bool,
    pub reliable: bool,
    pub depth: usize,
    pub stats_period: f64,
    pub name: String,
    pub namespace: String,
    /// The parameters in use, to declare on the node.
    pub parameters: Vec<(String, ParameterValue)>,
}

/// Splits `argv` at `--ros-args` (up to `--`), parses both parts, and merges them.
pub fn parse(argv: Vec<String>) -> Result<Settings, clap::Error> {
    let (ours, ros) = split_ros_args(argv);
    let cli = Cli::try_parse_from(ours)?;
    let ros = parse_ros_args(&ros).map_err(|e| clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{e:#}\n")))?;
    merge(cli, ros).map_err(|e| clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{e:#}\n")))
}

fn split_ros_args(argv: Vec<String>) -> (Vec<String>, Vec<String>) {
    let (mut ours, mut ros) = (Vec::new(), Vec::new());
    let mut in_ros = false;
    for a in argv {
        match a.as_str() {
            "--ros-args" => in_ros = true,
            "--" if in_ros => in_ros = false,
            _ if in_ros => ros.push(a),
            _ => ours.push(a),
        }
    }
    (ours, ros)
}

/// What `--ros-args` said: parameters and the node's name/namespace remaps.
#[derive(Debug, Default)]
pub struct RosArgs {
    pub params: BTreeMap<String, ParameterValue>,
    pub node: Option<String>,
    pub namespace: Option<String>,
}

pub fn parse_ros_args(args: &[String]) -> Result<RosArgs> {
    let mut out = RosArgs::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| it.next().cloned().with_context(|| format!("--ros-args {flag} needs a value"));
        match a.as_str() {
            "-p" | "--param" => {
                let v = value(a)?;
                let (k, val) = v.split_once(":=").with_context(|| format!("--ros-args -p {v:?}: expected name:=value"))?;
                out.params.insert(k.trim_start_matches("msf.").to_string(), parse_value(val));
            }
            "--params-file" => {
                let f = value(a)?;
                let text = std::fs::read_to_string(&f).with_context(|| format!("reading --params-file {f}"))?;
                out.params.extend(params_file(&text));
            }
            "-r" | "--remap" => {
                let v = value(a)?;
                let (from, to) = v.split_once(":=").with_context(|| format!("--ros-args -r {v:?}: expected from:=to"))?;
                let from = from.rsplit(':').next().unwrap_or(from); // "node:__ns" form
                match from {
                    "__node" | "__name" => out.node = Some(to.to_string()),
                    "__ns" => out.namespace = Some(to.to_string()),
                    _ => bail!("--ros-args -r {v}: only __node and __ns are remapped; give topics with --image/--compressed or the image_topics parameter"),
                }
            }
            "--log-level" | "--enclave" | "-e" => {
                value(a)?;
            }
            "--disable-rosout-logs" | "--disable-stdout-logs" | "--enable-rosout-logs" | "--enable-stdout-logs" | "--disable-external-lib-logs" => {}
            other => bail!("--ros-args {other:?} is not understood"),
        }
    }
    Ok(out)
}

/// A parameter value as `ros2 param` and rcl read them from text (YAML scalars and flow lists).
pub fn parse_value(s: &str) -> ParameterValue {
    let s = s.trim();
    if let Some(inner) = s.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        let items: Vec<ParameterValue> = inner.split(',').map(str::trim).filter(|x| !x.is_empty()).map(parse_value).collect();
        if items.iter().all(|v| matches!(v, ParameterValue::Boolean(_))) && !items.is_empty() {
            return ParameterValue::BooleanArray(items.into_iter().map(|v| matches!(v, ParameterValue::Boolean(true))).collect());
        }
        if items.iter().all(|v| matches!(v, ParameterValue::Integer(_))) && !items.is_empty() {
            return ParameterValue::IntegerArray(items.into_iter().map(|v| if let ParameterValue::Integer(i) = v { i } else { 0 }).collect());
        }
        return ParameterValue::StringArray(items.into_iter().map(|v| value_string(&v)).collect());
    }
    match s {
        "true" | "True" | "TRUE" => return ParameterValue::Boolean(true),
        "false" | "False" | "FALSE" => return ParameterValue::Boolean(false),
        _ => {}
    }
    if let Ok(i) = s.parse::<i64>() {
        return ParameterValue::Integer(i);
    }
    if let Ok(f) = s.parse::<f64>() {
        return ParameterValue::Double(f);
    }
    let unquoted = s.strip_prefix('"').and_then(|x| x.strip_suffix('"')).or_else(|| s.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')));
    ParameterValue::String(unquoted.unwrap_or(s).to_string())
}

fn value_string(v: &ParameterValue) -> String {
    match v {
        ParameterValue::String(s) => s.clone(),
        ParameterValue::Boolean(b) => b.to_string(),
        ParameterValue::Integer(i) => i.to_string(),
        ParameterValue::Double(d) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// The `ros__parameters` of a parameters file as launch writes it (`/**:` or `node_name:` at the
/// top, one `name: value` per line; flow lists `[a, b]`). Nested parameter groups are not read.
pub fn params_file(text: &str) -> BTreeMap<String, ParameterValue> {
    let mut out = BTreeMap::new();
    let mut indent: Option<usize> = None;
    for line in text.lines() {
        let body = line.split(" #").next().unwrap_or("").trim_end();
        if body.trim().is_empty() || body.trim_start().starts_with('#') {
            continue;
        }
        let ind = body.len() - body.trim_start().len();
        let t = body.trim();
        if t == "ros__parameters:" {
            indent = Some(usize::MAX);
            continue;
        }
        match indent {
            Some(usize::MAX) => indent = Some(ind),
            Some(i) if ind < i => {
                indent = None;
                continue;
            }
            Some(_) => {}
            None => continue,
        }
        if indent == Some(ind) {
            if let Some((k, v)) = t.split_once(':') {
                if !v.trim().is_empty() {
                    out.insert(k.trim().to_string(), parse_value(v));
                }
            }
        }
    }
    out
}

fn merge(cli: Cli, ros: RosArgs) -> Result<Settings> {
    let p = &ros.params;
    let known = [
        "model", "backend", "threads", "temporal", "fit", "overlay", "reliable", "depth", "image_topics", "compressed_topics", "stats_period", "use_sim_time",
    ];
    if let Some(k) = p.keys().find(|k| !known.contains(&k.as_str())) {
        bail!("unknown ROS parameter {k:?} (known: {})", known[..known.len() - 1].join(", "));
    }
    let string = |k: &str| -> Result<Option<String>> {
        match p.get(k) {
            None => Ok(None),
            Some(ParameterValue::String(s)) => Ok(Some(s.clone())),
            Some(v) => bail!("ROS parameter {k}: expected a string, got {v:?}"),
        }
    };
    let boolean = |k: &str| -> Result<bool> {
        match p.get(k) {
            None => Ok(false),
            Some(ParameterValue::Boolean(b)) => Ok(*b),
            Some(v) => bail!("ROS parameter {k}: expected true or false, got {v:?}"),
        }
    };
    let integer = |k: &str| -> Result<Option<usize>> {
        match p.get(k) {
            None => Ok(None),
            Some(ParameterValue::Integer(i)) if *i >= 0 => Ok(Some(*i as usize)),
            Some(v) => bail!("ROS parameter {k}: expected a whole number >= 0, got {v:?}"),
        }
    };
    let topics = |k: &str| -> Result<Vec<String>> {
        match p.get(k) {
            None => Ok(vec![]),
            Some(ParameterValue::String(s)) => Ok(s.split(',').map(str::trim).filter(|x| !x.is_empty()).map(String::from).collect()),
            Some(ParameterValue::StringArray(v)) => Ok(v.clone()),
            Some(v) => bail!("ROS parameter {k}: expected topic names, got {v:?}"),
        }
    };

    let model = match cli.model.or(string("model")?.map(PathBuf::from)) {
        Some(m) => m,
        None => bail!("no model: give --model slate.onnx (or the ROS parameter model)"),
    };
    let fit_name = cli.fit.or(string("fit")?).unwrap_or_else(|| "stretch".into());
    let fit: Fit = fit_name.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let backend_name = cli.backend.or(string("backend")?).unwrap_or_else(|| "tract".into());
    let backend: BackendKind = backend_name.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let temporal = cli.temporal || boolean("temporal")?;
    if temporal && fit == Fit::Tiles {
        bail!("--temporal follows the model's slots from frame to frame, one view per frame; --fit tiles gives several: use crop, stretch or pad");
    }
    let threads = cli.threads.or(integer("threads")?);
    let overlay = cli.overlay || boolean("overlay")?;
    let reliable = cli.reliable || boolean("reliable")?;
    let depth = cli.depth.or(integer("depth")?).unwrap_or(1).max(1);
    let stats_period = match (cli.stats_period, p.get("stats_period")) {
        (Some(s), _) => s,
        (None, Some(ParameterValue::Double(d))) => *d,
        (None, Some(ParameterValue::Integer(i))) => *i as f64,
        (None, Some(v)) => bail!("ROS parameter stats_period: expected seconds, got {v:?}"),
        (None, None) => 5.0,
    };
    let mut image_topics = if cli.image_topics.is_empty() { topics("image_topics")? } else { cli.image_topics };
    let compressed_topics = if cli.compressed_topics.is_empty() { topics("compressed_topics")? } else { cli.compressed_topics };
    if image_topics.is_empty() && compressed_topics.is_empty() {
        image_topics.push("image_raw".into());
    }
    let name = cli.name.or(ros.node).unwrap_or_else(|| "msf".into());
    let namespace = cli.namespace.or(ros.namespace).unwrap_or_else(|| "/".into());
    let namespace = if namespace.starts_with('/') { namespace } else { format!("/{namespace}") };

    let parameters = vec![
        ("model".to_string(), ParameterValue::String(model.display().to_string())),
        ("backend".into(), ParameterValue::String(backend.to_string())),
        ("threads".into(), ParameterValue::Integer(threads.unwrap_or(0) as i64)),
        ("temporal".into(), ParameterValue::Boolean(temporal)),
        ("fit".into(), ParameterValue::String(fit.to_string())),
        ("overlay".into(), ParameterValue::Boolean(overlay)),
        ("reliable".into(), ParameterValue::Boolean(reliable)),
        ("depth".into(), ParameterValue::Integer(depth as i64)),
        ("image_topics".into(), ParameterValue::StringArray(image_topics.clone())),
        ("compressed_topics".into(), ParameterValue::StringArray(compressed_topics.clone())),
        ("stats_period".into(), ParameterValue::Double(stats_period)),
    ];
    Ok(Settings {
        model,
        image_topics,
        compressed_topics,
        temporal,
        fit,
        backend,
        threads,
        overlay,
        reliable,
        depth,
        stats_period,
        name,
        namespace,
        parameters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn ros_parameters_fill_what_flags_leave_out_and_flags_win() {
        let s = parse(argv("msf-ros2 --fit pad --ros-args -p model:=m.onnx -p fit:=crop -p temporal:=true -p image_topics:=[a,b] -r __node:=seg")).unwrap();
        assert_eq!(s.model, PathBuf::from("m.onnx"));
        assert_eq!(s.fit, Fit::Pad);
        assert!(s.temporal);
        assert_eq!(s.image_topics, ["a", "b"]);
        assert_eq!(s.name, "seg");
        assert_eq!(s.depth, 1);
    }

    #[test]
    fn defaults_are_image_raw_stretch_best_effort() {
        let s = parse(argv("msf-ros2 --model m.onnx")).unwrap();
        assert_eq!(s.image_topics, ["image_raw"]);
        assert!(s.compressed_topics.is_empty());
        assert_eq!(s.fit, Fit::Stretch);
        assert!(!s.reliable && !s.temporal && !s.overlay);
    }

    #[test]
    fn a_launch_params_file_is_read() {
        let f = "/**:\n  ros__parameters:\n    model: /m/slate.onnx\n    temporal: true\n    threads: 2\n    compressed_topics: ['cam/image_raw/compressed']\n";
        let p = params_file(f);
        assert_eq!(p.get("model"), Some(&ParameterValue::String("/m/slate.onnx".into())));
        assert_eq!(p.get("temporal"), Some(&ParameterValue::Boolean(true)));
        assert_eq!(p.get("threads"), Some(&ParameterValue::Integer(2)));
        assert_eq!(p.get("compressed_topics"), Some(&ParameterValue::StringArray(vec!["cam/image_raw/compressed".into()])));
    }

    #[test]
    fn bad_settings_say_what_is_wrong() {
        let e = parse(argv("msf-ros2")).unwrap_err().to_string();
        assert!(e.contains("no model"), "{e}");
        let e = parse(argv("msf-ros2 --model m --ros-args -p modle:=x")).unwrap_err().to_string();
        assert!(e.contains("unknown ROS parameter \"modle\""), "{e}");
        let e = parse(argv("msf-ros2 --model m --temporal --fit tiles")).unwrap_err().to_string();
        assert!(e.contains("--fit tiles"), "{e}");
    }
}
