//! The check that an ONNX file is an MSF decomposition graph, done once for every backend and tool.
//!
//! [`GraphContract::check`] reads what the contract is about — the metadata, the graph's inputs and
//! outputs with their declared shapes, and the `slots_init` default — from the file's bytes,
//! without copying the weights (raw tensor data stays a view of the caller's buffer), and hands
//! the backends a checked, typed summary. tract and onnxruntime then only parse and run.

use crate::interface::{MetadataError, ModelMetadata, INPUT_IMAGE, INPUT_SLOTS, OUTPUT_ATTN, OUTPUT_MASKS, OUTPUT_SLOTS, SLOTS_DEFAULT};
use crate::limits::Limits;
use crate::Preprocess;
use prost::bytes::Bytes;
use prost::Message;
use std::path::Path;

/// Why a file does not meet the contract. Messages name the offending part; the caller adds the path.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("not a readable ONNX protobuf ({0})")]
    NotOnnx(String),
    #[error("not an ONNX model (the file has no graph)")]
    NoGraph,
    #[error("not an MSF decomposition graph: {0}")]
    NotMsf(String),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("`{INPUT_SLOTS}` default: {0}")]
    SlotsDefault(String),
    /// A node over [`Limits`], or an op no decomposition graph has (control flow, a bad permutation).
    #[error("{0}")]
    Limit(String),
    #[error("external data of `{name}`: {reason}")]
    ExternalData { name: String, reason: String },
}

/// Sizes of a decomposition graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GraphShapes {
    pub num_slots: usize,
    pub slot_dim: usize,
    /// Side of the attention grid.
    pub grid: usize,
    /// Side of the masks.
    pub mask_size: usize,
}

/// A checked decomposition graph: what both backends need before they parse it.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphContract {
    /// `None` only for a foreign graph (e.g. a plain `torch.onnx.export`) accepted with explicit
    /// preprocessing.
    pub metadata: Option<ModelMetadata>,
    pub preprocess: Preprocess,
    pub shapes: GraphShapes,
    /// Positions of `slots`, `attn`, `masks` among the graph's outputs.
    pub outputs: [usize; 3],
    /// The graph has the `slots_init` input.
    pub slots_input: bool,
    /// The learned initial slots (1, K, D) that an empty `slots_init` selects (initializer
    /// `SLOTS_DEFAULT`, or `slots_init` itself in files of the first form).
    pub slots_default: Option<Vec<f32>>,
    /// Some initializer keeps its data in a file beside the model.
    pub external_data: bool,
}

// Only the parts of the ONNX messages the contract reads; prost skips the rest (nodes, other
// attributes) unread, and `bytes::Bytes` fields are views of the input, not copies.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Model {
    #[prost(int64, optional, tag = "1")]
    ir_version: Option<i64>,
    #[prost(message, optional, tag = "7")]
    pub(crate) graph: Option<Graph>,
    #[prost(message, repeated, tag = "14")]
    metadata_props: Vec<crate::onnx::StringStringEntryProto>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Graph {
    #[prost(message, repeated, tag = "1")]
    pub(crate) node: Vec<Node>,
    #[prost(message, repeated, tag = "5")]
    pub(crate) initializer: Vec<Tensor>,
    #[prost(message, repeated, tag = "11")]
    input: Vec<crate::onnx::ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    output: Vec<crate::onnx::ValueInfoProto>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Node {
    #[prost(string, repeated, tag = "1")]
    pub(crate) input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub(crate) output: Vec<String>,
    #[prost(string, optional, tag = "4")]
    pub(crate) op_type: Option<String>,
    #[prost(message, repeated, tag = "5")]
    pub(crate) attribute: Vec<Attribute>,
    #[prost(string, optional, tag = "7")]
    pub(crate) domain: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Attribute {
    #[prost(string, optional, tag = "1")]
    pub(crate) name: Option<String>,
    #[prost(int64, optional, tag = "3")]
    pub(crate) i: Option<i64>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub(crate) s: Option<Vec<u8>>,
    #[prost(message, optional, tag = "5")]
    pub(crate) t: Option<Tensor>,
    #[prost(message, optional, boxed, tag = "6")]
    pub(crate) g: Option<Box<Graph>>,
    #[prost(int64, repeated, tag = "8")]
    pub(crate) ints: Vec<i64>,
    #[prost(message, repeated, tag = "11")]
    pub(crate) graphs: Vec<Graph>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Tensor {
    #[prost(int64, repeated, tag = "1")]
    pub(crate) dims: Vec<i64>,
    #[prost(int32, optional, tag = "2")]
    pub(crate) data_type: Option<i32>,
    #[prost(float, repeated, tag = "4")]
    pub(crate) float_data: Vec<f32>,
    #[prost(int32, repeated, tag = "5")]
    pub(crate) int32_data: Vec<i32>,
    #[prost(int64, repeated, tag = "7")]
    pub(crate) int64_data: Vec<i64>,
    #[prost(string, optional, tag = "8")]
    pub(crate) name: Option<String>,
    #[prost(bytes = "bytes", optional, tag = "9")]
    pub(crate) raw_data: Option<Bytes>,
    #[prost(message, repeated, tag = "13")]
    pub(crate) external_data: Vec<crate::onnx::StringStringEntryProto>,
    #[prost(int32, optional, tag = "14")]
    pub(crate) data_location: Option<i32>,
}

/// Declared dims of a value: `None` for the whole shape when it is not declared, `None` per dim
/// when that dim is symbolic.
fn declared_dims(v: &crate::onnx::ValueInfoProto) -> Option<Vec<Option<usize>>> {
    use crate::onnx::{tensor_shape_proto::dimension::Value, type_proto};
    let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref()?.value.as_ref() else { return None };
    let shape = t.shape.as_ref()?;
    Some(
        shape
            .dim
            .iter()
            .map(|d| match d.value {
                Some(Value::DimValue(n)) => usize::try_from(n).ok().filter(|&n| n > 0),
                _ => None,
            })
            .collect(),
    )
}

impl GraphContract {
    /// Check the bytes of an ONNX file. `dir` is the model's folder (for external data; `None`
    /// for a model held in memory). A graph without MSF metadata is refused unless `foreign`
    /// gives its preprocessing; its sizes are then read from its declared output shapes.
    pub fn check(bytes: Bytes, dir: Option<&Path>, foreign: Option<&Preprocess>) -> Result<Self, ContractError> {
        Self::check_with(bytes, dir, foreign, &Limits::default())
    }

    /// [`GraphContract::check`] with explicit [`Limits`] on the graph's nodes and tensors.
    pub fn check_with(bytes: Bytes, dir: Option<&Path>, foreign: Option<&Preprocess>, limits: &Limits) -> Result<Self, ContractError> {
        let model = Model::decode(bytes).map_err(|e| ContractError::NotOnnx(e.to_string()))?;
        let graph = model.graph.ok_or(ContractError::NoGraph)?;
        let metadata = match ModelMetadata::from_props(model.metadata_props.iter().map(|p| {
            (p.key.as_deref().unwrap_or_default(), p.value.as_deref().unwrap_or_default())
        })) {
            Ok(m) => Some(m),
            Err(MetadataError::NotMsf) if foreign.is_some() => None,
            Err(e) => return Err(e.into()),
        };
        let not_msf = |s: String| ContractError::NotMsf(s);
        let names = |vs: &[crate::onnx::ValueInfoProto]| vs.iter().map(|v| v.name.clone().unwrap_or_default()).collect::<Vec<_>>();
        let (in_names, out_names) = (names(&graph.input), names(&graph.output));
        if in_names.first().map(String::as_str) != Some(INPUT_IMAGE) {
            return Err(not_msf(format!("first input is not `{INPUT_IMAGE}` (inputs: {})", in_names.join(", "))));
        }
        let find = |name: &str| {
            out_names.iter().position(|n| n == name).ok_or_else(|| not_msf(format!("no output `{name}` (outputs: {})", out_names.join(", "))))
        };
        let outputs = [find(OUTPUT_SLOTS)?, find(OUTPUT_ATTN)?, find(OUTPUT_MASKS)?];
        let slots_input = in_names.iter().any(|n| n == INPUT_SLOTS);
        if slots_input && in_names.get(1).map(String::as_str) != Some(INPUT_SLOTS) {
            return Err(not_msf(format!("`{INPUT_SLOTS}` must be the second input (inputs: {})", in_names.join(", "))));
        }
        if let Some(extra) = in_names.iter().skip(if slots_input { 2 } else { 1 }).find(|n| !graph.initializer.iter().any(|t| t.name.as_deref() == Some(n.as_str()))) {
            return Err(not_msf(format!("unexpected input `{extra}` (inputs: {})", in_names.join(", "))));
        }
        if let Some(m) = &metadata {
            if m.slots_input && !slots_input {
                return Err(not_msf(format!("the metadata promises a `{INPUT_SLOTS}` input the graph lacks")));
            }
        }

        // Declared ranks (and sizes, where declared) of every input and output.
        let value = |vs: &[crate::onnx::ValueInfoProto], name: &str| vs.iter().find(|v| v.name.as_deref() == Some(name)).and_then(declared_dims);
        let ranked = |dims: Option<Vec<Option<usize>>>, name: &str, rank: usize| -> Result<Option<Vec<Option<usize>>>, ContractError> {
            match dims {
                Some(d) if d.len() != rank => Err(not_msf(format!("`{name}` has rank {}, expected {rank}", d.len()))),
                d => Ok(d),
            }
        };
        let image = ranked(value(&graph.input, INPUT_IMAGE), INPUT_IMAGE, 4)?;
        let slots_in = if slots_input { ranked(value(&graph.input, INPUT_SLOTS), INPUT_SLOTS, 3)? } else { None };
        let slots = ranked(value(&graph.output, OUTPUT_SLOTS), OUTPUT_SLOTS, 3)?;
        let attn = ranked(value(&graph.output, OUTPUT_ATTN), OUTPUT_ATTN, 4)?;
        let masks = ranked(value(&graph.output, OUTPUT_MASKS), OUTPUT_MASKS, 3)?;
        let dim = |d: &Option<Vec<Option<usize>>>, i: usize| d.as_ref().and_then(|d| d[i]);

        let (preprocess, shapes) = match &metadata {
            Some(m) => (
                m.preprocess.clone(),
                GraphShapes {
                    num_slots: m.config.slots.num_slots,
                    slot_dim: m.config.slots.slot_dim,
                    grid: m.config.vit.grid,
                    mask_size: m.preprocess.image_size,
                },
            ),
            None => {
                let need = |what: &str, v: Option<usize>| v.ok_or_else(|| not_msf(format!("cannot read the {what} shape from the graph")));
                let pre = foreign.expect("checked above").clone();
                let shapes = GraphShapes {
                    num_slots: need(OUTPUT_SLOTS, dim(&slots, 1))?,
                    slot_dim: need(OUTPUT_SLOTS, dim(&slots, 2))?,
                    grid: need(OUTPUT_ATTN, dim(&attn, 2))?,
                    mask_size: need(OUTPUT_MASKS, dim(&masks, 1))?,
                };
                (pre, shapes)
            }
        };
        let GraphShapes { num_slots: k, slot_dim: d, grid: g, mask_size: m } = shapes;
        if k > crate::interface::MAX_SLOTS {
            return Err(not_msf(format!("{k} slots: masks are 8-bit, at most {} slots", crate::interface::MAX_SLOTS)));
        }
        let s = preprocess.graph_input_size();
        for (name, decl, want) in [
            (INPUT_IMAGE, &image, vec![None, Some(3), Some(s), Some(s)]),
            (INPUT_SLOTS, &slots_in, vec![None, Some(k), Some(d)]),
            (OUTPUT_SLOTS, &slots, vec![None, Some(k), Some(d)]),
            (OUTPUT_ATTN, &attn, vec![None, Some(k), Some(g), Some(g)]),
            (OUTPUT_MASKS, &masks, vec![None, Some(m), Some(m)]),
        ] {
            let Some(decl) = decl else { continue };
            for (i, (have, want)) in decl.iter().zip(&want).enumerate() {
                if let (Some(h), Some(w)) = (have, want) {
                    if h != w {
                        return Err(not_msf(format!("`{name}` dim {i} is {h}, expected {w} (declared {})", show(decl))));
                    }
                }
            }
        }

        let mut inputs = vec![(INPUT_IMAGE, vec![1, 3, s as u64, s as u64])];
        if slots_input {
            inputs.push((INPUT_SLOTS, vec![1, k as u64, d as u64]));
        }
        crate::limits::check_graph(&graph, &inputs, limits).map_err(ContractError::Limit)?;
        // The runtimes open external data themselves: every location must be a regular file
        // inside the model's folder, long enough for what the tensor claims.
        let external_data = graph.initializer.iter().any(|t| t.data_location == Some(EXTERNAL));
        for t in graph.initializer.iter().filter(|t| t.data_location == Some(EXTERNAL)) {
            let name = t.name.clone().unwrap_or_default();
            external_range(t, dir).map_err(|reason| ContractError::ExternalData { name, reason })?;
        }
        // The learned initial slots: `SLOTS_DEFAULT` (what an empty `slots_init` selects), or in
        // files of the first form the initializer that shadowed the input as its default.
        let default = graph.initializer.iter().find(|t| t.name.as_deref() == Some(SLOTS_DEFAULT));
        let slots_default = match default.or_else(|| graph.initializer.iter().find(|t| t.name.as_deref() == Some(INPUT_SLOTS))) {
            Some(t) if slots_input => Some(read_f32(t, k * d, dir).map_err(ContractError::SlotsDefault)?),
            _ => None,
        };
        Ok(GraphContract { metadata, preprocess, shapes, outputs, slots_input, slots_default, external_data })
    }
}

fn show(dims: &[Option<usize>]) -> String {
    let parts: Vec<String> = dims.iter().map(|d| d.map_or("?".into(), |n| n.to_string())).collect();
    format!("({})", parts.join(", "))
}

const FLOAT: i32 = 1;
const EXTERNAL: i32 = 1;

/// Protobuf field numbers: ModelProto.graph, GraphProto.initializer, TensorProto.raw_data,
/// .external_data and .data_location.
const MODEL_GRAPH: u32 = 7;
const GRAPH_INITIALIZER: u32 = 5;
const TENSOR_RAW_DATA: u32 = 9;
const TENSOR_EXTERNAL_DATA: u32 = 13;
const TENSOR_DATA_LOCATION: u32 = 14;

/// A model's bytes re-encoded with every top-level initializer holding at least `min_len` bytes
/// of `raw_data` made external data at its offset in `location` (the model file's name; the
/// bytes must be that file's), every other field byte for byte: a runtime then decodes the graph
/// without copying the weights and reads each one from the file as it builds it. `None` when the
/// bytes are not a protobuf this can rewrite faithfully (groups, a tensor with its `raw_data`
/// given twice or already naming external data): the caller then decodes the whole file.
pub fn without_inline_data(bytes: &[u8], min_len: usize, location: &str) -> Option<Vec<u8>> {
    use crate::onnx::StringStringEntryProto;
    use prost::encoding::{int32, message};
    let base = bytes.as_ptr() as usize;
    let graph = |payload: &[u8]| {
        rewrite(payload, &mut |tag, payload| {
            let Some(payload) = payload.filter(|_| tag == GRAPH_INITIALIZER) else { return Some(Edit::Keep) };
            let (mut raws, mut external, mut left_out) = (0, false, None);
            let mut tensor = rewrite(payload, &mut |tag, raw| {
                external |= tag == TENSOR_EXTERNAL_DATA || tag == TENSOR_DATA_LOCATION;
                let Some(raw) = raw.filter(|_| tag == TENSOR_RAW_DATA) else { return Some(Edit::Keep) };
                raws += 1;
                if raw.len() < min_len {
                    return Some(Edit::Keep);
                }
                left_out = Some(((raw.as_ptr() as usize - base) as u64, raw.len() as u64));
                Some(Edit::Drop)
            })?;
            if raws > 1 || (external && left_out.is_some()) {
                return None;
            }
            if let Some((offset, length)) = left_out {
                for (k, v) in [("location", location.to_owned()), ("offset", offset.to_string()), ("length", length.to_string())] {
                    let entry = StringStringEntryProto { key: Some(k.into()), value: Some(v) };
                    message::encode(TENSOR_EXTERNAL_DATA, &entry, &mut tensor);
                }
                int32::encode(TENSOR_DATA_LOCATION, &EXTERNAL, &mut tensor);
            }
            Some(Edit::Replace(tensor))
        })
    };
    rewrite(bytes, &mut |tag, payload| match payload.filter(|_| tag == MODEL_GRAPH) {
        Some(graph_bytes) => graph(graph_bytes).map(Edit::Replace),
        None => Some(Edit::Keep),
    })
}

/// What [`rewrite`] does with one field.
enum Edit {
    Keep,
    Drop,
    /// A length-delimited field with a new payload.
    Replace(Vec<u8>),
}

/// Copy a protobuf message field by field, letting `edit` keep, drop or replace each field (given
/// its number, and its payload when it is length-delimited; only those can be replaced).
fn rewrite(mut rest: &[u8], edit: &mut dyn FnMut(u32, Option<&[u8]>) -> Option<Edit>) -> Option<Vec<u8>> {
    use prost::encoding::{decode_key, decode_varint, encode_key, encode_varint, WireType};
    let mut out = Vec::with_capacity(rest.len().min(1 << 20));
    while !rest.is_empty() {
        let field = rest;
        let (tag, wire) = decode_key(&mut rest).ok()?;
        let payload = match wire {
            WireType::Varint => {
                decode_varint(&mut rest).ok()?;
                None
            }
            WireType::SixtyFourBit => {
                rest = rest.get(8..)?;
                None
            }
            WireType::ThirtyTwoBit => {
                rest = rest.get(4..)?;
                None
            }
            WireType::LengthDelimited => {
                let len = usize::try_from(decode_varint(&mut rest).ok()?).ok()?;
                let payload = rest.get(..len)?;
                rest = &rest[len..];
                Some(payload)
            }
            WireType::StartGroup | WireType::EndGroup => return None,
        };
        let whole = &field[..field.len() - rest.len()];
        match edit(tag, payload)? {
            Edit::Keep => out.extend_from_slice(whole),
            Edit::Drop => {}
            Edit::Replace(new) if payload.is_some() => {
                encode_key(tag, WireType::LengthDelimited, &mut out);
                encode_varint(new.len() as u64, &mut out);
                out.extend_from_slice(&new);
            }
            Edit::Replace(_) => return None,
        }
    }
    Some(out)
}

/// A float32 initializer of exactly `n` values: `raw_data`, `float_data`, or external data in a
/// regular file inside the model's folder (read only after its length is known to be right).
fn read_f32(t: &Tensor, n: usize, dir: Option<&Path>) -> Result<Vec<f32>, String> {
    if t.data_type != Some(FLOAT) {
        return Err(format!("data type {:?} is not float32", t.data_type));
    }
    let count = t.dims.iter().try_fold(1usize, |acc, &d| usize::try_from(d).ok().and_then(|d| acc.checked_mul(d)));
    if count != Some(n) {
        return Err(format!("dims {:?} do not hold {n} values (1 x slots x dim)", t.dims));
    }
    let raw: Vec<u8> = if t.data_location == Some(EXTERNAL) {
        let (file, offset, length) = external_range(t, dir)?;
        if length != 4 * n as u64 {
            return Err(format!("external data length {length} is not {} bytes", 4 * n));
        }
        read_range(&file, offset, length).map_err(|e| format!("{}: {e}", file.display()))?
    } else if let Some(raw) = &t.raw_data {
        raw.to_vec()
    } else {
        return if t.float_data.len() == n { Ok(t.float_data.clone()) } else { Err(format!("{} float_data values for {n} elements", t.float_data.len())) };
    };
    if raw.len() != 4 * n {
        return Err(format!("{} bytes for {n} float32 values", raw.len()));
    }
    Ok(raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// Where an external tensor's data is: a regular file inside `dir`, with `offset + length` inside
/// it (`length` defaults to the tensor's size). Nothing is read.
fn external_range(t: &Tensor, dir: Option<&Path>) -> Result<(std::path::PathBuf, u64, u64), String> {
    let get = |k: &str| t.external_data.iter().find(|e| e.key.as_deref() == Some(k)).and_then(|e| e.value.clone());
    let location = get("location").ok_or("external data without `location`")?;
    let dir = dir.ok_or("external data, but the model was given as bytes (no folder to read it from)")?;
    let rel = Path::new(&location);
    if rel.is_absolute() || rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return Err(format!("external data location `{location}` leaves the model's folder"));
    }
    let file = dir.join(rel);
    let offset: u64 = get("offset").map(|s| s.parse()).transpose().map_err(|e| format!("bad offset: {e}"))?.unwrap_or(0);
    let elements = t.dims.iter().try_fold(1u64, |a, &d| u64::try_from(d).ok().and_then(|d| a.checked_mul(d)));
    let size = elements.and_then(|e| e.checked_mul(crate::limits::elem_bytes(t.data_type.unwrap_or(0))));
    let length: u64 = match get("length") {
        Some(s) => s.parse().map_err(|e| format!("bad length: {e}"))?,
        None => size.ok_or_else(|| format!("dims {:?} are not a size", t.dims))?,
    };
    let meta = std::fs::metadata(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: not a regular file", file.display()));
    }
    if offset.checked_add(length).is_none_or(|end| end > meta.len()) {
        return Err(format!("{}: {} bytes, {length} wanted at {offset}", file.display(), meta.len()));
    }
    Ok((file, offset, length))
}

/// `length` bytes at `offset` of a file [`external_range`] has checked (a regular file, long
/// enough), so the allocation is bounded by the file.
fn read_range(file: &Path, offset: u64, length: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(file)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::with_capacity(length as usize);
    f.take(length).read_to_end(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interface::tests::sample;
    use crate::onnx::{
        tensor_shape_proto::{dimension::Value as Dim, Dimension},
        type_proto, GraphProto, ModelProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
    };

    fn value(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
        let dim = dims
            .iter()
            .map(|d| Dimension { value: Some(d.map_or(Dim::DimParam("batch".into()), Dim::DimValue)), ..Default::default() })
            .collect();
        ValueInfoProto {
            name: Some(name.into()),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor { elem_type: Some(1), shape: Some(TensorShapeProto { dim }) })),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// An MSF-shaped model (no nodes: the contract never looks at them) for the sample metadata:
    /// 7 slots of 256, grid 16, masks 256.
    fn model(slots_in: bool) -> ModelProto {
        model_with_default(slots_in, SLOTS_DEFAULT)
    }

    /// `default_name`: where the learned slots are: `SLOTS_DEFAULT`, or `INPUT_SLOTS` (the first
    /// form, an initializer shadowing the input).
    fn model_with_default(slots_in: bool, default_name: &str) -> ModelProto {
        let mut meta = sample();
        meta.slots_input = slots_in;
        let mut input = vec![value(INPUT_IMAGE, &[None, Some(3), Some(256), Some(256)])];
        let mut initializer = vec![];
        if slots_in {
            input.push(value(INPUT_SLOTS, &[None, Some(7), Some(256)]));
            let raw: Vec<u8> = (0..7 * 256).flat_map(|i| (i as f32).to_le_bytes()).collect();
            initializer.push(TensorProto { name: Some(default_name.into()), dims: vec![1, 7, 256], data_type: Some(1), raw_data: Some(raw), ..Default::default() });
        }
        ModelProto {
            ir_version: Some(8),
            metadata_props: meta.to_props().into_iter().map(|(k, v)| StringStringEntryProto { key: Some(k), value: Some(v) }).collect(),
            graph: Some(GraphProto {
                input,
                initializer,
                output: vec![
                    value(OUTPUT_SLOTS, &[None, Some(7), Some(256)]),
                    value(OUTPUT_ATTN, &[None, Some(7), Some(16), Some(16)]),
                    value(OUTPUT_MASKS, &[None, Some(256), Some(256)]),
                ],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn check(m: &ModelProto, dir: Option<&Path>, foreign: Option<&Preprocess>) -> Result<GraphContract, ContractError> {
        GraphContract::check(Bytes::from(m.encode_to_vec()), dir, foreign)
    }

    #[test]
    fn large_inline_data_becomes_external_data_in_the_same_file() {
        let mut m = model(true);
        m.graph.as_mut().unwrap().doc_string = Some("kept".into());
        let initializer = &mut m.graph.as_mut().unwrap().initializer;
        initializer.push(TensorProto { name: Some("empty".into()), dims: vec![0], data_type: Some(1), ..Default::default() });
        initializer.push(TensorProto { name: Some("floats".into()), dims: vec![2], data_type: Some(1), float_data: vec![1.0, 2.0], ..Default::default() });
        initializer.push(TensorProto { name: Some("w".into()), dims: vec![3], data_type: Some(2), raw_data: Some(vec![9, 8, 7].into()), ..Default::default() });
        let bytes = m.encode_to_vec();
        let out = without_inline_data(&bytes, 4, "m.onnx").unwrap();
        let mut stripped = ModelProto::decode(&out[..]).unwrap();
        // The slots default (7 × 256 floats) becomes external; the 3-byte `w` stays inline.
        let inits = &stripped.graph.as_ref().unwrap().initializer;
        assert!(inits[1..].iter().all(|t| t.external_data.is_empty() && t.data_location.is_none()));
        let t = &mut stripped.graph.as_mut().unwrap().initializer[0];
        assert_eq!(t.raw_data, None);
        assert_eq!(t.data_location, Some(EXTERNAL));
        let entry = |k: &str| t.external_data.iter().find(|e| e.key.as_deref() == Some(k)).and_then(|e| e.value.clone()).unwrap();
        assert_eq!((t.external_data.len(), entry("location").as_str()), (3, "m.onnx"));
        let (o, l): (usize, usize) = (entry("offset").parse().unwrap(), entry("length").parse().unwrap());
        let want: Vec<u8> = (0..7 * 256).flat_map(|i| (i as f32).to_le_bytes()).collect();
        assert_eq!(&bytes[o..o + l], &want[..]);
        // The contract reads the slots default from the file as external data.
        let dir = std::env::temp_dir().join(format!("msf-without-inline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("m.onnx"), &bytes).unwrap();
        let checked = GraphContract::check(Bytes::from(out.clone()), Some(&dir), None);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(checked.unwrap().slots_default, check(&m, None, None).unwrap().slots_default);
        (t.raw_data, t.data_location, t.external_data) = (m.graph.as_ref().unwrap().initializer[0].raw_data.clone(), None, vec![]);
        assert_eq!(stripped, m, "everything else is unchanged");
        // Nothing to move: the same bytes.
        assert_eq!(without_inline_data(&bytes, usize::MAX, "m.onnx").unwrap(), bytes);
        // Not a protobuf, a truncated one, a group, raw_data given twice, or beside external data:
        // not rewritten.
        assert!(without_inline_data(b"\xff\xff", 4, "m.onnx").is_none());
        assert!(without_inline_data(&bytes[..bytes.len() - 3], 4, "m.onnx").is_none());
        assert!(without_inline_data(b"\x0b\x0c", 4, "m.onnx").is_none());
        let in_graph = |tensor: &[u8]| {
            let mut graph = Vec::new();
            prost::encoding::bytes::encode(GRAPH_INITIALIZER, &tensor.to_vec(), &mut graph);
            let mut model = Vec::new();
            prost::encoding::bytes::encode(MODEL_GRAPH, &graph, &mut model);
            model
        };
        let raw = TensorProto { raw_data: Some(vec![1; 8].into()), ..Default::default() }.encode_to_vec();
        assert!(without_inline_data(&in_graph(&raw.repeat(2)), 4, "m.onnx").is_none());
        assert!(without_inline_data(&in_graph(&raw.repeat(2)), 100, "m.onnx").is_none());
        let located = TensorProto { raw_data: Some(vec![1; 8].into()), data_location: Some(EXTERNAL), ..Default::default() }.encode_to_vec();
        assert!(without_inline_data(&in_graph(&located), 4, "m.onnx").is_none());
        assert_eq!(without_inline_data(&in_graph(&located), 100, "m.onnx").unwrap(), in_graph(&located));
    }

    fn err(m: &ModelProto) -> String {
        check(m, None, None).unwrap_err().to_string()
    }

    #[test]
    fn a_well_formed_graph_is_summarised() {
        let c = check(&model(true), None, None).unwrap();
        assert_eq!(c.shapes, GraphShapes { num_slots: 7, slot_dim: 256, grid: 16, mask_size: 256 });
        assert_eq!(c.outputs, [0, 1, 2]);
        assert!(c.slots_input && !c.external_data);
        let d = c.slots_default.unwrap();
        assert_eq!((d.len(), d[0], d[7 * 256 - 1]), (7 * 256, 0.0, (7 * 256 - 1) as f32));
        let c = check(&model(false), None, None).unwrap();
        assert!(!c.slots_input && c.slots_default.is_none());
        // Files of the first form: the default shadows the input under its own name.
        let old = check(&model_with_default(true, INPUT_SLOTS), None, None).unwrap();
        assert_eq!(old.slots_default, check(&model(true), None, None).unwrap().slots_default);
    }

    #[test]
    fn names_ranks_and_sizes_are_checked() {
        let mut m = model(false);
        m.graph.as_mut().unwrap().output.remove(1);
        assert!(err(&m).contains("no output `attn`"), "{}", err(&m));

        let mut m = model(false);
        m.graph.as_mut().unwrap().input[0].name = Some("pixels".into());
        assert!(err(&m).contains("first input is not `image`"), "{}", err(&m));

        let mut m = model(false);
        m.graph.as_mut().unwrap().output[1] = value(OUTPUT_ATTN, &[None, Some(7), Some(256)]);
        assert!(err(&m).contains("`attn` has rank 3, expected 4"), "{}", err(&m));

        let mut m = model(false);
        m.graph.as_mut().unwrap().output[0] = value(OUTPUT_SLOTS, &[None, Some(7), Some(99)]);
        assert!(err(&m).contains("`slots` dim 2 is 99, expected 256"), "{}", err(&m));

        let mut m = model(false);
        m.graph.as_mut().unwrap().input.push(value("extra", &[Some(1)]));
        assert!(err(&m).contains("unexpected input `extra`"), "{}", err(&m));

        // The metadata promises `slots_init`, the graph does not have it.
        let mut m = model(false);
        let meta = ModelMetadata { slots_input: true, ..sample() };
        m.metadata_props = meta.to_props().into_iter().map(|(k, v)| StringStringEntryProto { key: Some(k), value: Some(v) }).collect();
        assert!(err(&m).contains("promises a `slots_init` input"), "{}", err(&m));

        assert!(matches!(GraphContract::check(Bytes::from_static(b""), None, None), Err(ContractError::NoGraph)));
        assert!(matches!(GraphContract::check(Bytes::from_static(b"\xff\xff\xff"), None, None), Err(ContractError::NotOnnx(_))));
    }

    #[test]
    fn the_slots_default_must_hold_one_set_of_slots() {
        let mut m = model(true);
        m.graph.as_mut().unwrap().initializer[0].dims = vec![1, 7, 255];
        assert!(err(&m).contains("do not hold 1792 values"), "{}", err(&m));
        let mut m = model(true);
        m.graph.as_mut().unwrap().initializer[0].raw_data.as_mut().unwrap().pop();
        assert!(err(&m).contains("7167 bytes for 1792 float32 values"), "{}", err(&m));
        // float_data works as well as raw_data.
        let mut m = model(true);
        let t = &mut m.graph.as_mut().unwrap().initializer[0];
        t.raw_data = None;
        t.float_data = vec![0.5; 7 * 256];
        assert_eq!(check(&m, None, None).unwrap().slots_default.unwrap()[3], 0.5);
    }

    #[test]
    fn external_slots_must_stay_in_the_folder_and_be_a_regular_file() {
        let dir = std::env::temp_dir().join(format!("msf-contract-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let data: Vec<u8> = (0..7 * 256).flat_map(|_| 2.0f32.to_le_bytes()).collect();
        std::fs::write(dir.join("slots.bin"), &data).unwrap();
        let external = |location: &str| {
            let mut m = model(true);
            let t = &mut m.graph.as_mut().unwrap().initializer[0];
            t.raw_data = None;
            t.data_location = Some(EXTERNAL);
            t.external_data = vec![StringStringEntryProto { key: Some("location".into()), value: Some(location.into()) }];
            m
        };
        let c = check(&external("slots.bin"), Some(&dir), None).unwrap();
        assert!(c.external_data);
        assert_eq!(c.slots_default.unwrap()[5], 2.0);
        for bad in ["../slots.bin", "/etc/passwd", "missing.bin"] {
            let e = check(&external(bad), Some(&dir), None).unwrap_err().to_string();
            assert!(e.contains("slots_init"), "{bad}: {e}");
        }
        assert!(check(&external("slots.bin"), None, None).unwrap_err().to_string().contains("given as bytes"));
        // A FIFO would block a plain read forever: it is refused by what it is, not read.
        let fifo = dir.join("fifo.bin");
        if std::process::Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success()) {
            let e = check(&external("fifo.bin"), Some(&dir), None).unwrap_err().to_string();
            assert!(e.contains("not a regular file"), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_foreign_graph_needs_preprocessing_and_declared_shapes() {
        let mut m = model(false);
        m.metadata_props.clear();
        assert!(matches!(check(&m, None, None), Err(ContractError::Metadata(MetadataError::NotMsf))));
        let pre = Preprocess::upstream(224, true);
        let c = check(&m, None, Some(&pre)).unwrap();
        assert!(c.metadata.is_none());
        assert_eq!(c.shapes, GraphShapes { num_slots: 7, slot_dim: 256, grid: 16, mask_size: 256 });
        m.graph.as_mut().unwrap().output[1] = value(OUTPUT_ATTN, &[None, Some(7), None, None]);
        let e = check(&m, None, Some(&pre)).unwrap_err().to_string();
        assert!(e.contains("cannot read the attn shape"), "{e}");
    }
}
