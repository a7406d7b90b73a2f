//! `msf-export`: upstream MSF checkpoint → ONNX decomposition graph.

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use msf_exporter::checkpoint::Limits;
use msf_exporter::export::{export, ExportOptions, ExportReport};
use msf_exporter::graph::{GraphOptions, Precision, DEFAULT_OPSET, MAX_OPSET, MIN_OPSET};
use msf_exporter::spec::{SpecOptions, DEFAULT_ITERS};
use msf_exporter::verify;
use std::path::PathBuf;
use std::process::ExitCode;

/// Export a SLATE-MSF or SlotDiffusion-MSF checkpoint (upstream `best.pth`) to ONNX.
///
/// The graph takes a normalised image (B,3,256,256) and returns `slots` (B,K,D), `attn` (B,K,16,16)
/// and `masks` (B,256,256, slot index per pixel). The checkpoint is read in pure Rust; pickle code
/// is never executed. The file is written atomically: on any failure no output file is left.
///
/// Exit codes: 0 success, 1 the export failed (the line printed says why), 2 bad arguments,
/// 3 verification failed (outputs removed).
#[derive(Parser, Debug)]
#[command(name = "msf-export", version, about, long_about)]
struct Cli {
    /// Upstream checkpoint: PyTorch zip (`torch.save(state_dict)`, .pth/.pt) or .safetensors.
    #[arg(long, value_name = "FILE")]
    ckpt: PathBuf,
    /// Output ONNX file.
    #[arg(short, long, value_name = "FILE.onnx")]
    output: PathBuf,
    /// ONNX opset (LayerNormalization is native from 17, decomposed below).
    #[arg(long, default_value_t = DEFAULT_OPSET, value_parser = clap::value_parser!(i64).range(MIN_OPSET..=MAX_OPSET))]
    opset: i64,
    /// Precision of the ViT and projection layers: fp32, or int8 (dynamically quantised matmuls,
    /// ~4x smaller; slot attention, LayerNorms and softmaxes stay fp32). int8 runs fastest on
    /// onnxruntime (`msf-run --backend ort`) on CPUs with VNNI.
    #[arg(long, value_enum, default_value_t = PrecisionArg::Fp32)]
    precision: PrecisionArg,
    /// With `--precision int8`: the weights' range in bits, 8 (±127) or 7 (±63). Use 7 for
    /// onnxruntime on x86-64 CPUs without VNNI (AVX2 only): its int8 kernel adds pairs of
    /// products in 16 bits, which saturate with 8-bit weights (full-size SLATE-MSF, 60 frames:
    /// masks 88.9 % equal to fp32 with 8 bits, 98.7 % with 7). tract, and onnxruntime with VNNI
    /// or on ARM, do not saturate: 8 bits are more precise there.
    #[arg(long, value_name = "BITS", default_value_t = 8, value_parser = clap::value_parser!(u8).range(7..=8))]
    int8_weight_bits: u8,
    /// Leave out the `slots_init` input. By default the graph takes `slots_init` (N,K,D): the
    /// previous frame's slots (N = B) in temporal mode, or an empty tensor (N = 0) for the learned
    /// initial slots; without it `msf-run --temporal` can only match ids between frames.
    #[arg(long)]
    no_slots_in: bool,
    /// The default since `slots_init` became a plain input; accepted for older scripts.
    #[arg(long, hide = true, conflicts_with = "no_slots_in")]
    slots_in: bool,
    /// Leave the bicubic 256→224 resize (two MatMuls by the resize matrix) out of the graph;
    /// the metadata tells the runtime to do it, and the graph then takes (B,3,224,224).
    #[arg(long)]
    no_resize: bool,
    /// Store weights in `<output>.data` next to the model (external data) instead of inside it.
    #[arg(long)]
    external_data: bool,
    /// Load the written model with tract, run a sample input, check shapes and finiteness.
    #[arg(long)]
    verify: bool,
    /// Also compare with reference outputs (.npz with `input`, `slots`, `attn`, `masks`); implies --verify.
    #[arg(long, value_name = "FILE.npz")]
    reference: Option<PathBuf>,
    /// Largest max |Δ| of slots and attention accepted by --reference.
    #[arg(long, default_value_t = 1e-4)]
    tolerance: f32,
    /// Smallest fraction of equal mask pixels accepted by --reference.
    #[arg(long, default_value_t = 0.999)]
    min_mask_agreement: f64,
    /// Slot-attention iterations (upstream: 3).
    #[arg(long, default_value_t = DEFAULT_ITERS)]
    iters: usize,
    /// Fail on checkpoint keys that are neither inference nor known training-only keys.
    #[arg(long)]
    strict: bool,
    /// Refuse checkpoints larger than this many bytes.
    #[arg(long, default_value_t = Limits::default().max_file_bytes)]
    max_checkpoint_bytes: u64,
    /// Refuse checkpoints holding more tensors than this (checked before any tensor is read).
    #[arg(long, default_value_t = Limits::default().max_tensors)]
    max_tensors: usize,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// Print nothing on success.
    #[arg(short, long)]
    quiet: bool,
}

fn remove_outputs(report: &ExportReport) {
    let _ = std::fs::remove_file(&report.output);
    if let Some(d) = &report.data_file {
        let _ = std::fs::remove_file(d);
    }
}

fn summary(cli: &Cli, r: &ExportReport, verified: Option<String>) -> String {
    let c = &r.config;
    if cli.json {
        return serde_json::json!({
            "output": r.output, "data_file": r.data_file, "kind": c.kind.as_str(),
            "file_params": r.file_params, "inference_params": r.inference_params, "bytes": r.bytes,
            "seconds": r.elapsed.as_secs_f64(), "config": c, "unexpected_keys": r.unexpected_keys,
            "opset": cli.opset, "precision": r.metadata.precision, "verify": verified,
        })
        .to_string();
    }
    let mut s = format!(
        "{} → {}\n  model   {}: ViT {}×{} ({} heads, patch {}), {} slots × {}, {} iterations\n  params  {} in file, {} exported\n  size    {:.1} MB{} ({})\n  time    {:.2} s",
        cli.ckpt.display(),
        r.output.display(),
        c.kind,
        c.vit.depth,
        c.vit.embed_dim,
        c.vit.num_heads,
        c.vit.patch_size,
        c.slots.num_slots,
        c.slots.slot_dim,
        c.slots.iters,
        r.file_params,
        r.inference_params,
        r.bytes as f64 / 1e6,
        r.data_file.as_ref().map(|d| format!(" (weights in {})", d.display())).unwrap_or_default(),
        r.metadata.precision,
        r.elapsed.as_secs_f64(),
    );
    if !r.unexpected_keys.is_empty() {
        s += &format!("\n  warning {} unexpected key(s) ignored: {}", r.unexpected_keys.len(), r.unexpected_keys.join(", "));
    }
    if let Some(v) = verified {
        s += &format!("\n  verify  {v}");
    }
    s
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PrecisionArg {
    Fp32,
    Int8,
}

fn run(cli: &Cli) -> Result<ExitCode> {
    let opts = ExportOptions {
        graph: GraphOptions {
            opset: cli.opset,
            precision: match cli.precision {
                PrecisionArg::Fp32 => Precision::Fp32,
                PrecisionArg::Int8 => Precision::Int8,
            },
            slots_in: !cli.no_slots_in,
            resize_in_graph: !cli.no_resize,
            int8_weight_bits: cli.int8_weight_bits,
        },
        spec: SpecOptions { iters: cli.iters, strict: cli.strict },
        limits: Limits { max_file_bytes: cli.max_checkpoint_bytes, max_tensors: cli.max_tensors, ..Limits::default() },
        external_data: cli.external_data,
    };
    if cli.iters == 0 {
        bail!("--iters must be at least 1");
    }
    if cli.int8_weight_bits != 8 && !matches!(cli.precision, PrecisionArg::Int8) {
        bail!("--int8-weight-bits applies to --precision int8");
    }
    if let Some(parent) = cli.output.parent().filter(|p| !p.as_os_str().is_empty()) {
        if parent.exists() && !parent.is_dir() {
            bail!("output folder {} is not a folder", parent.display());
        }
        if !parent.is_dir() {
            bail!("output folder {} does not exist", parent.display());
        }
    }
    let report = export(&cli.ckpt, &cli.output, &opts)?;
    let mut verified = None;
    if cli.verify || cli.reference.is_some() {
        let meta = &report.metadata;
        let check = || -> Result<String> {
            let t = std::time::Instant::now();
            match &cli.reference {
                None => {
                    let s = meta.preprocess.graph_input_size();
                    verify::run_tract(&report.output, meta, &verify::sample_input(1, s), 1)?;
                    Ok(format!("tract ran it: shapes right, outputs finite ({:.2} s)", t.elapsed().as_secs_f64()))
                }
                Some(path) => {
                    let r = verify::load_reference(path)?;
                    let s = meta.preprocess.graph_input_size();
                    if r.input.len() != r.batch * 3 * s * s {
                        let side = ((r.input.len() / (3 * r.batch.max(1))) as f64).sqrt().round() as usize;
                        bail!(
                            "{}: the reference input is {}x3x{side}x{side}, but this model takes {}x3x{s}x{s}{}",
                            path.display(),
                            r.batch,
                            r.batch,
                            if cli.no_resize { " (with --no-resize the graph starts after the bicubic resize: give it the resized input)" } else { "" }
                        );
                    }
                    let out = verify::run_tract(&report.output, meta, &r.input, r.batch)?;
                    let d = verify::compare(&out, &r)?;
                    let line = format!(
                        "tract vs {}: slots max|Δ| {:.2e}, attn max|Δ| {:.2e}, masks {:.4}% equal ({:.2} s)",
                        path.display(),
                        d.slots_max_abs,
                        d.attn_max_abs,
                        d.mask_agreement * 100.0,
                        t.elapsed().as_secs_f64()
                    );
                    if d.slots_max_abs > cli.tolerance || d.attn_max_abs > cli.tolerance || d.mask_agreement < cli.min_mask_agreement {
                        bail!("{line}: outside tolerance (max|Δ| ≤ {:e}, masks ≥ {}%)", cli.tolerance, cli.min_mask_agreement * 100.0);
                    }
                    Ok(line)
                }
            }
        };
        // A panic while verifying (a dependency's bug on a hostile reference file) fails the check
        // like any error, so the outputs are removed as --help promises.
        let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check))
            .unwrap_or_else(|p| Err(anyhow::anyhow!("internal error: {}", msf_runtime::error::panic_message(&*p))));
        match checked {
            Ok(line) => verified = Some(line),
            Err(e) => {
                remove_outputs(&report);
                eprintln!("msf-export: verification failed, output removed: {e:#}");
                return Ok(ExitCode::from(3));
            }
        }
    }
    if !cli.quiet {
        println!("{}", summary(cli, &report, verified));
    } else if !report.unexpected_keys.is_empty() {
        eprintln!("msf-export: warning: {} unexpected key(s) ignored", report.unexpected_keys.len());
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    msf_runtime::process::init_tool();
    msf_runtime::process::main_guard("msf-export", real_main)
}

fn real_main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli).with_context(|| format!("exporting {}", cli.ckpt.display())) {
        Ok(code) => code,
        Err(e) => {
            // One line: the outermost context and the causes (one already quoted by the message above it is not repeated).
            let cause = e.chain().skip(1).map(|c| c.to_string()).fold(Vec::<String>::new(), |mut v, c| { if !v.last().is_some_and(|p| p.ends_with(&c)) { v.push(c) } v }).join(": ");
            eprintln!("msf-export: error: {e}: {cause}");
            ExitCode::FAILURE
        }
    }
}
