//! `msf-ros2`: a ROS 2 node that decomposes camera frames into object masks, slot vectors and
//! objects. Pure Rust: DDS through RustDDS (`ros2-client`), inference through the runtime library
//! (`Decomposer`, `Tracker`); no ROS install is needed to build or run it. See `msf-ros2 --help`.

mod args;
mod convert;
mod msg;
mod node;

use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use msf_runtime::track::TrackerOptions;
use msf_runtime::{Decomposer, Tracker};
use ros2_client::qos::{Durability, History, Reliability, WhenFull};
use ros2_client::{Context, Name, Node, NodeName, NodeOptions, QosProfile};
use ros2_client::dds::rustdds::DomainParticipantBuilder;

use crate::args::Settings;
use crate::node::{Input, Model, Outputs, Worker};

fn main() -> ExitCode {
    msf_runtime::process::init_tool();
    msf_runtime::process::main_guard("msf-ros2", || {
        let settings = match args::parse(std::env::args().collect()) {
            Ok(s) => s,
            Err(e) => {
                let code = if e.use_stderr() { 2 } else { 0 };
                let _ = e.print();
                return ExitCode::from(code);
            }
        };
        match run(settings) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("msf-ros2: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Outputs: reliable, volatile, keep last 5 — matched by reliable and best-effort subscribers.
const OUTPUT_QOS: QosProfile = QosProfile::publisher_default()
    .reliability_reliable(WhenFull::DEFAULT)
    .durability(Durability::Volatile)
    .history(History::KeepLast { depth: 5 });

fn input_qos(s: &Settings) -> QosProfile {
    let q = QosProfile::subscription_default().history(History::KeepLast { depth: s.depth });
    if s.reliable {
        q.reliability(Reliability::Reliable { when_full: WhenFull::DEFAULT })
    } else {
        q.reliability_best_effort()
    }
}

fn run(s: Settings) -> Result<()> {
    let dec = Decomposer::builder().backend(s.backend).fit(s.fit);
    let dec = match s.threads {
        Some(n) if n > 0 => dec.threads(n),
        _ => dec,
    };
    let dec = Arc::new(dec.build(&s.model).with_context(|| format!("loading {}", s.model.display()))?);
    let info = dec.info();
    let carry = s.temporal && info.slots_input;
    eprintln!(
        "msf-ros2: {} ({} slots of {}, {} backend, fit {}{})",
        s.model.display(),
        info.num_slots,
        info.slot_dim,
        dec.backend_name(),
        s.fit,
        match (s.temporal, carry) {
            (false, _) => "",
            (true, true) => ", temporal: slots carried and matched per input topic",
            (true, false) => ", temporal: ids matched per input topic (the model has no slots_init input to carry slots)",
        }
    );

    let domain: u16 = match std::env::var("ROS_DOMAIN_ID") {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().with_context(|| format!("ROS_DOMAIN_ID={v:?} is not a domain id"))?,
        _ => 0,
    };
    let mut dp = DomainParticipantBuilder::new(domain);
    let localhost = std::env::var("ROS_AUTOMATIC_DISCOVERY_RANGE").is_ok_and(|v| v.eq_ignore_ascii_case("LOCALHOST"));
    if localhost {
        dp = dp.with_only_networks([IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    }
    let context = Context::from_domain_participant(dp.build().context("starting DDS")?).context("starting ROS 2")?;
    let mut options = NodeOptions::new().enable_rosout(true);
    for (k, v) in &s.parameters {
        options = options.declare_parameter(k, v.clone());
    }
    let node_name = NodeName::new(&s.namespace, &s.name).map_err(|e| anyhow::anyhow!("node name {}/{}: {e:?}", s.namespace, s.name))?;
    let mut node = context.new_node(node_name, options).map_err(|e| anyhow::anyhow!("creating the node: {e:?}"))?;
    let spinner = node.spinner().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let spin = std::thread::Builder::new().name("ros-spinner".into()).spawn(move || futures::executor::block_on(spinner.spin()))?;

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst)).context("installing the SIGINT handler")?;
    }

    let private = if s.namespace == "/" { format!("/{}", s.name) } else { format!("{}/{}", s.namespace, s.name) };
    let several = s.image_topics.len() + s.compressed_topics.len() > 1;
    let mut workers = Vec::new();
    let inputs = s.image_topics.iter().map(|t| (t, false)).chain(s.compressed_topics.iter().map(|t| (t, true)));
    for (topic, compressed) in inputs {
        let out_ns = if several { format!("{private}/{}", topic.trim_matches('/')) } else { private.clone() };
        let outputs = outputs(&mut node, &out_ns, s.overlay)?;
        let name = Name::parse(&resolve(topic, &s.namespace, &private)).map_err(|e| anyhow::anyhow!("topic {topic:?}: {e:?}"))?;
        let input = if compressed {
            let t = node.create_topic(&name, msg::compressed_type(), &input_qos(&s)).map_err(|e| anyhow::anyhow!("{e:?}"))?;
            Input::Compressed(node.create_subscription(&t, Some(input_qos(&s))).map_err(|e| anyhow::anyhow!("subscribing {topic}: {e:?}"))?, convert::CompressedDecoder::new()?)
        } else {
            let t = node.create_topic(&name, msg::image_type(), &input_qos(&s)).map_err(|e| anyhow::anyhow!("{e:?}"))?;
            Input::Raw(node.create_subscription(&t, Some(input_qos(&s))).map_err(|e| anyhow::anyhow!("subscribing {topic}: {e:?}"))?)
        };
        let model = if s.temporal {
            let opts = TrackerOptions { temporal: carry, ..TrackerOptions::default() };
            Model::Temporal(Box::new(Tracker::with_options(dec.clone(), opts)?))
        } else {
            Model::Frames(dec.clone())
        };
        eprintln!(
            "msf-ros2: {topic} ({}) -> {out_ns}/{{masks,slots,objects{}}}",
            if compressed { "sensor_msgs/CompressedImage" } else { "sensor_msgs/Image" },
            if s.overlay { ",overlay" } else { "" }
        );
        let worker = Worker::new(topic.clone(), input, outputs, model, stop.clone(), s.stats_period);
        workers.push((topic.clone(), std::thread::Builder::new().name(format!("msf {topic}")).spawn(move || worker.run())?));
    }
    eprintln!(
        "msf-ros2: node {private} on ROS_DOMAIN_ID {domain}{}, input QoS {}; Ctrl-C stops",
        if localhost { " (localhost only)" } else { "" },
        if s.reliable { format!("reliable, keep last {}", s.depth) } else { format!("best effort, keep last {}", s.depth) }
    );

    let mut failed = None;
    let mut all = Vec::new();
    for (topic, w) in workers {
        match w.join() {
            Ok(Ok(stats)) => all.push((topic, stats)),
            Ok(Err(e)) => {
                stop.store(true, Ordering::SeqCst);
                failed.get_or_insert(e.context(format!("input {topic}")));
            }
            Err(_) => {
                stop.store(true, Ordering::SeqCst);
                failed.get_or_insert(anyhow::anyhow!("input {topic}: the worker panicked"));
            }
        }
    }
    for (topic, stats) in &all {
        eprintln!("msf-ros2: stopped: {topic}: {}", stats.line(0));
    }
    node.stop_spinner();
    let _ = spin.join();
    drop(node);
    drop(context);
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A topic name made absolute as rcl resolves it: `/a` stays, `~/a` is under the node's name, `a`
/// is under its namespace. (ros2-client would turn `a` in namespace `/` into `//a`.)
fn resolve(topic: &str, namespace: &str, private: &str) -> String {
    let join = |base: &str, rest: &str| format!("{}/{}", base.trim_end_matches('/'), rest.trim_start_matches('/'));
    if topic.starts_with('/') {
        topic.to_string()
    } else if let Some(rest) = topic.strip_prefix('~') {
        join(private, rest)
    } else {
        join(namespace, topic)
    }
}

fn outputs(node: &mut Node, ns: &str, overlay: bool) -> Result<Outputs> {
    fn publisher<M: serde::Serialize>(node: &mut Node, ns: &str, base: &str, ty: ros2_client::MessageTypeName) -> Result<ros2_client::Publisher<M>> {
        let name = Name::new(ns, base).map_err(|e| anyhow::anyhow!("topic {ns}/{base}: {e:?}"))?;
        let t = node.create_topic(&name, ty, &OUTPUT_QOS).map_err(|e| anyhow::anyhow!("topic {ns}/{base}: {e:?}"))?;
        node.create_publisher(&t, Some(OUTPUT_QOS)).map_err(|e| anyhow::anyhow!("publisher {ns}/{base}: {e:?}"))
    }
    if ns.contains("//") {
        bail!("output namespace {ns:?} has an empty part");
    }
    Ok(Outputs {
        masks: publisher(node, ns, "masks", msg::image_type())?,
        overlay: if overlay { Some(publisher(node, ns, "overlay", msg::image_type())?) } else { None },
        slots: publisher(node, ns, "slots", msg::float32_array_type())?,
        objects: publisher(node, ns, "objects", msg::string_type())?,
    })
}
