//! Build the ONNX decomposition graph: image → slots, attention, masks (spec §2), block by block.
//!
//! The graph is written op by op so that it stays portable (standard ONNX ops, opset 13..=21) and
//! lean: weights are pre-transposed for `MatMul`, the attention scales and LayerScale gammas are
//! folded into the adjacent linear layers, and the GRU's r/z gates share one activation.
//!
//! One module per block of the architecture, in data order: `resize` (bicubic image → backbone
//! size), `vit` (patch embedding, one ViT block per depth index, final norm), `project` (MLP),
//! `slot_attention` (initial slots, rounds with GRU and FFN), `masks` (upsample, argmax). Each
//! reads its tensors through a [`Weights`] view scoped to its key prefix, as candle's models do,
//! and writes its nodes into one `builder::Builder`. [`build_graph`] chains the blocks;
//! [`block_graph`] writes one alone, with its own input and outputs, so that each block can be
//! checked against an independent implementation on its own.

mod builder;
mod masks;
mod project;
mod resize;
mod slot_attention;
mod vit;
mod weights;

use crate::spec::ModelSpec;
use builder::Builder;
use masks::Masks;
use msf_models::interface::{INPUT_IMAGE, INPUT_SLOTS, OUTPUT_ATTN, OUTPUT_MASKS, OUTPUT_SLOTS};
use msf_models::keys;
use msf_models::onnx::{tensor_proto::DataType, tensor_shape_proto, type_proto, GraphProto, TensorShapeProto, TypeProto, ValueInfoProto};
use msf_models::Preprocess;
use project::Project;
use resize::Resize;
use slot_attention::{InitialSlots, SlotAttention};
use vit::{PatchEmbed, VitBlock, VitNorm};

pub use builder::tensor_f32;
pub use weights::Weights;

/// Supported opset range: 13 brings per-axis Softmax and input-form Split/ReduceSum;
/// `LayerNormalization` is used natively from 17 and decomposed below it.
pub const MIN_OPSET: i64 = 13;
pub const MAX_OPSET: i64 = 21;
pub const DEFAULT_OPSET: i64 = 17;

/// Name of the symbolic batch dimension.
pub const BATCH_DIM: &str = "batch";
/// First dimension of `slots_init`: B, or 0 for the learned initial slots.
pub const SLOTS_BATCH_DIM: &str = "batch_or_0";

/// Numeric precision of the exported graph's heavy layers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// Everything in float32 (the reference).
    #[default]
    Fp32,
    /// The ViT and projection linear layers as dynamically quantised int8 matmuls: weights int8
    /// symmetric per output channel, activations uint8 per tensor, quantised at run time
    /// (`DynamicQuantizeLinear` → `MatMulInteger` → rescale). LayerNorms, softmaxes, the patch
    /// embedding and the whole slot attention stay float32: they decide the masks.
    Int8,
}

impl Precision {
    /// The value of the `msf.precision` metadata key.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        }
    }
}

#[derive(Clone, Debug)]
pub struct GraphOptions {
    pub opset: i64,
    pub precision: Precision,
    /// Add the `slots_init` input (initial slots, e.g. the previous frame's; empty = learned).
    /// On by default: temporal mode needs it, and an empty input costs nothing.
    pub slots_in: bool,
    /// Keep the bicubic image→backbone resize inside the graph.
    pub resize_in_graph: bool,
    /// Bits of the int8 weights' range under `Precision::Int8`: 8 (±127), or 7 (±63) for
    /// onnxruntime on x86-64 CPUs without VNNI, whose u8×s8 kernel adds pairs of products in 16
    /// bits (`vpmaddubsw`): 255 · 127 · 2 overflows them and saturates, 255 · 63 · 2 does not.
    pub int8_weight_bits: u8,
}

impl Default for GraphOptions {
    fn default() -> Self {
        GraphOptions { opset: DEFAULT_OPSET, precision: Precision::Fp32, slots_in: true, resize_in_graph: true, int8_weight_bits: 8 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("opset {0} is not supported (use {MIN_OPSET}..={MAX_OPSET})")]
    Opset(i64),
    #[error("int8 weights of {0} bits are not supported (use 7 or 8)")]
    Int8WeightBits(u8),
    #[error("`{key}` is not among the checkpoint's weights")]
    MissingWeight { key: String },
    #[error("the backbone has {depth} blocks: there is no block {index}")]
    NoBlock { index: usize, depth: usize },
}

/// Every block of a model, its weights looked up (so all present) before any node is written.
struct Blocks<'a> {
    resize: Resize,
    embed: PatchEmbed<'a>,
    vit: Vec<VitBlock<'a>>,
    vit_norm: VitNorm<'a>,
    project: Project<'a>,
    init: InitialSlots<'a>,
    slot_attention: SlotAttention<'a>,
    masks: Masks,
}

impl<'a> Blocks<'a> {
    fn new(spec: &'a ModelSpec, pre: &Preprocess, opts: &GraphOptions) -> Result<Blocks<'a>, GraphError> {
        let c = &spec.config;
        let root = Weights::new(&spec.weights);
        let vit = root.pp(keys::VIT_PREFIX);
        let vit_blocks = root.pp(keys::VIT_BLOCKS_PREFIX);
        Ok(Blocks {
            resize: Resize::new(pre),
            embed: PatchEmbed::new(&vit, &c.vit)?,
            vit: (0..c.vit.depth).map(|i| VitBlock::new(&vit_blocks.pp(i), &c.vit)).collect::<Result<_, _>>()?,
            vit_norm: VitNorm::new(&vit, &c.vit)?,
            project: Project::new(&root.pp(keys::PROJECT_PREFIX), &c.project)?,
            init: InitialSlots::new(&root.pp(keys::SLOTS_PREFIX), &c.slots, opts.slots_in)?,
            slot_attention: SlotAttention::new(&root.pp(keys::SA_PREFIX), &c.slots, c.project.out_dim)?,
            masks: Masks::new(c.vit.grid, pre.image_size),
        })
    }
}

fn builder(opts: &GraphOptions) -> Result<Builder, GraphError> {
    if !(MIN_OPSET..=MAX_OPSET).contains(&opts.opset) {
        return Err(GraphError::Opset(opts.opset));
    }
    if !(7..=8).contains(&opts.int8_weight_bits) {
        return Err(GraphError::Int8WeightBits(opts.int8_weight_bits));
    }
    let mut b = Builder::new(opts.opset, opts.precision);
    b.int8_weight_max = ((1i32 << (opts.int8_weight_bits - 1)) - 1) as f32;
    Ok(b)
}

/// A tensor's type with a symbolic batch dimension in front of `dims`.
fn value_info(name: &str, elem: DataType, dims: &[usize]) -> ValueInfoProto {
    value_info_dim0(name, elem, BATCH_DIM, dims)
}

/// The `slots_init` input: (N, K, D), N = B or 0.
fn slots_input(k: usize, d: usize) -> ValueInfoProto {
    value_info_dim0(INPUT_SLOTS, DataType::Float, SLOTS_BATCH_DIM, &[k, d])
}

fn value_info_dim0(name: &str, elem: DataType, dim0: &str, dims: &[usize]) -> ValueInfoProto {
    let batch = std::iter::once(tensor_shape_proto::dimension::Value::DimParam(dim0.to_string()));
    let dim = batch
        .chain(dims.iter().map(|&d| tensor_shape_proto::dimension::Value::DimValue(d as i64)))
        .map(|v| tensor_shape_proto::Dimension { value: Some(v), ..Default::default() })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn graph_proto(g: Builder, name: String, doc: &str, input: Vec<ValueInfoProto>, output: Vec<ValueInfoProto>) -> GraphProto {
    GraphProto { name: Some(name), node: g.nodes, initializer: g.inits, input, output, doc_string: Some(doc.into()), ..Default::default() }
}

/// Build the decomposition graph for a validated checkpoint.
pub fn build_graph(spec: &ModelSpec, pre: &Preprocess, opts: &GraphOptions) -> Result<GraphProto, GraphError> {
    let mut g = builder(opts)?;
    let b = Blocks::new(spec, pre, opts)?;
    let image = if opts.resize_in_graph { b.resize.emit(&mut g, INPUT_IMAGE) } else { INPUT_IMAGE.to_string() };
    let mut h = b.embed.emit(&mut g, &image);
    for block in &b.vit {
        h = block.emit(&mut g, &h);
    }
    let feats = b.vit_norm.emit(&mut g, &h);
    let f = b.project.emit(&mut g, &feats);
    // The initial slots read the batch size from the image, which is known first.
    let (_slots, attn) = b.slot_attention.emit(&mut g, &f, &b.init, &image);
    b.masks.emit(&mut g, &attn);

    let c = &spec.config;
    let (k, d, grid, m) = (c.slots.num_slots, c.slots.slot_dim, c.vit.grid, pre.image_size);
    let s_in = pre.graph_input_size();
    let mut inputs = vec![value_info(INPUT_IMAGE, DataType::Float, &[3, s_in, s_in])];
    if opts.slots_in {
        inputs.push(slots_input(k, d));
    }
    let outputs = vec![
        value_info(OUTPUT_SLOTS, DataType::Float, &[k, d]),
        value_info(OUTPUT_ATTN, DataType::Float, &[k, grid, grid]),
        value_info(OUTPUT_MASKS, DataType::Int64, &[m, m]),
    ];
    let name = format!("msf_{}", c.kind.as_str().replace('-', "_"));
    Ok(graph_proto(g, name, "MSF object decomposition: image → slots, attention, masks", inputs, outputs))
}

/// One block of the graph, for [`block_graph`]. Shapes: image side M, backbone input side S,
/// G² patch tokens of width E, projected width P, K slots of width D.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    /// Bicubic resize: image (B, 3, M, M) → (B, 3, S, S).
    Resize,
    /// Patchify + matmul, class token, position embedding: (B, 3, S, S) → tokens (B, 1 + G², E).
    PatchEmbed,
    /// ViT block `i`: tokens (B, 1 + G², E) → tokens.
    Vit(usize),
    /// Final ViT LayerNorm, class token dropped: tokens → features (B, G², E).
    VitNorm,
    /// Projection MLP: features → (B, G², P).
    Project,
    /// Initial slots (the learned mean) and Slot Attention: (B, G², P) → `slots` (B, K, D) and
    /// the last round's attention (B, K, G²).
    SlotAttention,
    /// Attention (B, K, G²) → `attn` (B, K, G, G) and `masks` (B, M, M), int64.
    Masks,
}

/// The input of a [`block_graph`].
pub const BLOCK_INPUT: &str = "x";

/// One block as a standalone graph: input [`BLOCK_INPUT`] (batch first, symbolic), outputs as
/// [`Block`] lists them. The block is written exactly as [`build_graph`] writes it (same ops,
/// folded weights, precision and opset), so it can be run against a reference on its own.
pub fn block_graph(spec: &ModelSpec, pre: &Preprocess, opts: &GraphOptions, block: Block) -> Result<GraphProto, GraphError> {
    let mut g = builder(opts)?;
    let b = Blocks::new(spec, pre, opts)?;
    let c = &spec.config;
    let (m, s, n, e, p) = (pre.image_size, c.vit.input_size(), c.vit.num_tokens(), c.vit.embed_dim, c.project.out_dim);
    let (k, d, grid) = (c.slots.num_slots, c.slots.slot_dim, c.vit.grid);
    let x = BLOCK_INPUT;
    let f32s = |name: String, dims: &[usize]| value_info(&name, DataType::Float, dims);
    let (input, outputs): (Vec<usize>, Vec<ValueInfoProto>) = match block {
        Block::Resize => (vec![3, m, m], vec![f32s(b.resize.emit(&mut g, x), &[3, pre.backbone_size, pre.backbone_size])]),
        Block::PatchEmbed => (vec![3, s, s], vec![f32s(b.embed.emit(&mut g, x), &[1 + n, e])]),
        Block::Vit(i) => {
            let vit = b.vit.get(i).ok_or(GraphError::NoBlock { index: i, depth: c.vit.depth })?;
            (vec![1 + n, e], vec![f32s(vit.emit(&mut g, x), &[1 + n, e])])
        }
        Block::VitNorm => (vec![1 + n, e], vec![f32s(b.vit_norm.emit(&mut g, x), &[n, e])]),
        Block::Project => (vec![n, e], vec![f32s(b.project.emit(&mut g, x), &[n, p])]),
        Block::SlotAttention => {
            let (slots, attn) = b.slot_attention.emit(&mut g, x, &b.init, x);
            (vec![n, p], vec![f32s(slots, &[k, d]), f32s(attn, &[k, n])])
        }
        Block::Masks => {
            let (attn, masks) = b.masks.emit(&mut g, x);
            (vec![k, n], vec![f32s(attn, &[k, grid, grid]), value_info(&masks, DataType::Int64, &[m, m])])
        }
    };
    let mut inputs = vec![value_info(x, DataType::Float, &input)];
    if block == Block::SlotAttention && opts.slots_in {
        inputs.push(slots_input(k, d));
    }
    let name = format!("msf_{}_{block:?}", c.kind.as_str().replace('-', "_"));
    Ok(graph_proto(g, name, "one block of the MSF decomposition graph", inputs, outputs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::expected_shapes;
    use msf_models::{ModelConfig, ModelKind, ProjectConfig, SlotConfig, VitConfig};

    /// A small model with every weight present (distinct values, so folding shows in the bytes).
    fn tiny_spec() -> ModelSpec {
        let config = ModelConfig {
            kind: ModelKind::SlateMsf,
            vit: VitConfig { embed_dim: 64, depth: 2, num_heads: 1, mlp_dim: 96, patch_size: 2, grid: 4, ln_eps: 1e-6 },
            project: ProjectConfig { in_dim: 64, hidden_dim: 32, out_dim: 16, ln_eps: 1e-5 },
            slots: SlotConfig { num_slots: 3, slot_dim: 16, ffn_dim: 24, iters: 2, attn_eps: 1e-5, ln_eps: 1e-5 },
        };
        let weights = expected_shapes(&config)
            .into_iter()
            .enumerate()
            .map(|(i, (k, s))| (k, (0..s.iter().product::<usize>()).map(|j| ((i * 31 + j) % 17) as f32 / 17.0 - 0.5).collect()))
            .collect();
        ModelSpec { config, weights, source_sha256: String::new(), unexpected: vec![], file_params: 0, inference_params: 0 }
    }

    fn pre(spec: &ModelSpec) -> Preprocess {
        Preprocess::upstream(spec.config.vit.input_size(), true)
    }

    /// An initializer without its name: shape and bytes.
    type Init = (Vec<i64>, Vec<u8>);

    /// What a graph computes, without the names the builder numbers: op types and attributes in
    /// order, initializer shapes and bytes in order.
    fn content(g: &GraphProto) -> (Vec<String>, Vec<Init>) {
        let nodes = g.node.iter().map(|n| format!("{:?} {:?}", n.op_type, n.attribute)).collect();
        let inits = g.initializer.iter().map(|t| (t.dims.clone(), t.raw_data.clone().unwrap_or_default())).collect();
        (nodes, inits)
    }

    #[test]
    fn the_blocks_alone_write_what_the_whole_graph_writes() {
        let spec = tiny_spec();
        for opts in [GraphOptions::default(), GraphOptions { opset: 13, precision: Precision::Int8, ..Default::default() }] {
            let whole = content(&build_graph(&spec, &pre(&spec), &opts).unwrap());
            let mut blocks = vec![Block::Resize, Block::PatchEmbed];
            blocks.extend((0..spec.config.vit.depth).map(Block::Vit));
            blocks.extend([Block::VitNorm, Block::Project, Block::SlotAttention, Block::Masks]);
            let (mut nodes, mut inits) = (vec![], vec![]);
            for b in blocks {
                let (n, i) = content(&block_graph(&spec, &pre(&spec), &opts, b).unwrap());
                nodes.extend(n);
                inits.extend(i);
            }
            assert_eq!(whole.0, nodes, "nodes, {opts:?}");
            assert!(whole.1 == inits, "initializers, {opts:?}");
        }
    }

    /// 7-bit weights use the whole ±63 range of every output column and nothing beyond it.
    #[test]
    fn int8_weights_span_the_range_their_bits_give() {
        let spec = tiny_spec();
        for (bits, max) in [(8u8, 127i8), (7, 63)] {
            let opts = GraphOptions { precision: Precision::Int8, int8_weight_bits: bits, ..Default::default() };
            let g = build_graph(&spec, &pre(&spec), &opts).unwrap();
            let weights: Vec<&msf_models::onnx::TensorProto> = g.initializer.iter().filter(|t| t.name.as_deref().is_some_and(|n| n.ends_with(".weight_q"))).collect();
            assert!(!weights.is_empty());
            for t in weights {
                let o = t.dims[1] as usize;
                let q: Vec<i8> = t.raw_data.as_ref().unwrap().iter().map(|&b| b as i8).collect();
                assert!(q.iter().all(|&v| (-max..=max).contains(&v)), "{bits} bits: {:?} out of ±{max}", t.name);
                let mut top = vec![0i8; o];
                for (k, &v) in q.iter().enumerate() {
                    top[k % o] = top[k % o].max(v.abs());
                }
                assert!(top.iter().all(|&m| m == max), "{bits} bits: some column of {:?} does not reach ±{max}", t.name);
            }
        }
        let opts = GraphOptions { precision: Precision::Int8, int8_weight_bits: 6, ..Default::default() };
        assert!(build_graph(&spec, &pre(&spec), &opts).unwrap_err().to_string().contains("use 7 or 8"));
    }

    #[test]
    fn a_missing_weight_is_named() {
        let mut spec = tiny_spec();
        let key = keys::vit_block(1, "ls2.gamma");
        spec.weights.remove(&key);
        match build_graph(&spec, &pre(&spec), &GraphOptions::default()) {
            Err(GraphError::MissingWeight { key: k }) => assert_eq!(k, key),
            other => panic!("{:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn there_is_no_block_past_the_depth() {
        let spec = tiny_spec();
        let err = block_graph(&spec, &pre(&spec), &GraphOptions::default(), Block::Vit(2)).unwrap_err();
        assert!(matches!(err, GraphError::NoBlock { index: 2, depth: 2 }), "{err}");
    }
}
