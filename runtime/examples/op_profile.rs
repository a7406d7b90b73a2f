//! Where tract spends a decomposition's time, per op kind and per node: the measurement behind
//! the graph's layout choices (token-major patch embedding, matmul upsample, detached argmax).
//!
//! ```text
//! cargo run --release -p msf-runtime --example op_profile -- slate.onnx [runs]
//! ```
//!
//! It runs the graph as written, single-threaded, on a zero image; the runtime's tract backend
//! additionally takes the final `ArgMax` out of the graph (see `session::tract`).

use std::collections::HashMap;
use std::time::Instant;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::plan::{eval, SimpleState};

fn main() -> TractResult<()> {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: op_profile MODEL.onnx [RUNS]");
        std::process::exit(2);
    };
    let runs: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(10).max(2);
    let mut model = tract_onnx::onnx().model_for_path(&path)?;
    let size = model.input_fact(0)?.shape.dim(2).and_then(|d| tract_onnx::tract_hir::infer::Factoid::concretize(&d)).and_then(|d| d.to_i64().ok()).unwrap_or(256) as usize;
    model.set_input_fact(0, f32::fact([1, 3, size, size]).into())?;
    let mut inputs = tvec!(Tensor::zero::<f32>(&[1, 3, size, size])?.into());
    // Exports carry `slots_init` (N, K, D) as a second input: feed one set of zero slots.
    if model.input_outlets()?.len() > 1 {
        let dim = |model: &InferenceModel, axis| -> TractResult<usize> {
            let d = model.input_fact(1)?.shape.dim(axis).and_then(|d| tract_onnx::tract_hir::infer::Factoid::concretize(&d));
            Ok(d.and_then(|d| d.to_i64().ok()).ok_or_else(|| TractError::msg("slots_init needs a fixed K and D"))? as usize)
        };
        let (k, d) = (dim(&model, 1)?, dim(&model, 2)?);
        model.set_input_fact(1, f32::fact([1, k, d]).into())?;
        inputs.push(Tensor::zero::<f32>(&[1, k, d])?.into());
    }
    let plan = model.into_optimized()?.into_runnable()?;
    let mut state = SimpleState::new(&plan)?;

    let (mut per_kind, mut per_node) = (HashMap::<String, (f64, usize)>::new(), HashMap::<String, f64>::new());
    let start = Instant::now();
    for run in 0..runs {
        state.run_plan_with_eval(inputs.clone(), |ctx, op_state, node, inputs| {
            let t = Instant::now();
            let out = eval(ctx, op_state, node, inputs);
            // The first run warms caches and lazily packed weights: not counted.
            if run > 0 {
                let dt = t.elapsed().as_secs_f64();
                let kind = per_kind.entry(node.op().name().to_string()).or_default();
                kind.0 += dt;
                kind.1 += 1;
                *per_node.entry(format!("{} {}", node.op().name(), node.name)).or_default() += dt;
            }
            out
        })?;
    }
    let counted = (runs - 1) as f64;
    println!("{path}: {:.1} ms per run ({runs} runs, first not counted below)", start.elapsed().as_secs_f64() * 1e3 / runs as f64);
    let mut kinds: Vec<_> = per_kind.into_iter().collect();
    kinds.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    println!("\n{:>9}  {:>5}  op", "ms/run", "nodes");
    for (name, (t, n)) in kinds.iter().take(20) {
        println!("{:>9.2}  {:>5}  {name}", t * 1e3 / counted, n / (runs - 1));
    }
    let mut nodes: Vec<_> = per_node.into_iter().collect();
    nodes.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!("\n{:>9}  slowest nodes", "ms/run");
    for (name, t) in nodes.iter().take(15) {
        println!("{:>9.2}  {name}", t * 1e3 / counted);
    }
    Ok(())
}
