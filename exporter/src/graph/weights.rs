//! The checkpoint's weights as the blocks read them: a view scoped by key prefix (as candle's
//! `VarBuilder::pp`), and the two torch layers every block is made of, `Linear` and `LayerNorm`.
//!
//! Prefixes come from `msf_models::keys`; a block names its tensors only by their suffix inside
//! its own layer (`norm1.weight`), so the key schema stays defined once.

use super::builder::{transpose, Builder};
use super::{GraphError, Precision};
use std::collections::BTreeMap;
use std::fmt::Display;

/// Read-only view of a validated checkpoint's weights under one key prefix.
#[derive(Clone, Debug)]
pub struct Weights<'a> {
    all: &'a BTreeMap<String, Vec<f32>>,
    /// Without a trailing dot; empty at the root.
    prefix: String,
}

impl<'a> Weights<'a> {
    /// The root view: every key by its full name.
    pub fn new(all: &'a BTreeMap<String, Vec<f32>>) -> Weights<'a> {
        Weights { all, prefix: String::new() }
    }

    /// The view of a sub-layer: `pp(keys::VIT_BLOCKS_PREFIX).pp(3)` reads `m.encode_backbone.1.blocks.3.*`.
    /// A trailing dot is ignored, so the `keys` prefixes can be passed as they are.
    pub fn pp(&self, name: impl Display) -> Weights<'a> {
        let name = name.to_string();
        Weights { all: self.all, prefix: self.key(name.trim_end_matches('.')) }
    }

    /// The full key of `name` inside this view.
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// This view's layer name (its prefix), e.g. `m.encode_project.1`: it names the initializers
    /// made from the layer's weights.
    pub fn name(&self) -> &str {
        &self.prefix
    }

    /// The tensor `name` inside this view.
    pub fn get(&self, name: &str) -> Result<&'a [f32], GraphError> {
        Ok(self.param(name)?.data)
    }

    /// The tensor `name` with its full key (which names its initializer).
    pub(super) fn param(&self, name: &str) -> Result<Param<'a>, GraphError> {
        let key = self.key(name);
        match self.all.get(&key) {
            Some(v) => Ok(Param { key, data: v.as_slice() }),
            None => Err(GraphError::MissingWeight { key }),
        }
    }
}

/// One checkpoint tensor and its full key.
pub(super) struct Param<'a> {
    pub(super) key: String,
    pub(super) data: &'a [f32],
}

impl Param<'_> {
    /// As an initializer of shape `dims`, named by its key.
    pub(super) fn emit(&self, g: &mut Builder, dims: &[usize]) -> String {
        g.f32(&self.key, dims, self.data.to_vec())
    }

    /// A (rows, cols) matrix transposed for `MatMul`, as the initializer `<key>_t` (cols, rows).
    pub(super) fn emit_transposed(&self, g: &mut Builder, rows: usize, cols: usize) -> String {
        g.f32(&format!("{}_t", self.key), &[cols, rows], transpose(self.data, rows, cols))
    }
}

/// A torch `Linear` (weight (out, in), optional bias), written as `x @ Wᵀ (+ b)` with the weight
/// pre-transposed, and optionally a per-output scale folded into weight and bias.
pub(super) struct Linear<'a> {
    name: String,
    weight: &'a [f32],
    bias: Option<&'a [f32]>,
    out_in: (usize, usize),
    scale: Option<Vec<f32>>,
    /// One of the heavy layers that `Precision::Int8` turns into an int8 matmul.
    int8: bool,
}

impl<'a> Linear<'a> {
    /// `weight` and `bias` of `vb`.
    pub(super) fn new(vb: &Weights<'a>, out: usize, inp: usize) -> Result<Linear<'a>, GraphError> {
        let mut l = Linear::no_bias(vb, out, inp)?;
        l.bias = Some(vb.get("bias")?);
        Ok(l)
    }

    /// `weight` of `vb` (a `Linear(bias=False)`).
    pub(super) fn no_bias(vb: &Weights<'a>, out: usize, inp: usize) -> Result<Linear<'a>, GraphError> {
        Ok(Linear { name: vb.name().to_string(), weight: vb.get("weight")?, bias: None, out_in: (out, inp), scale: None, int8: false })
    }

    /// Multiply output `c` by `scale[c]` (a folded attention scale or LayerScale gamma).
    pub(super) fn scaled(mut self, scale: Vec<f32>) -> Self {
        self.scale = Some(scale);
        self
    }

    /// Quantise this layer under `Precision::Int8` (the ViT and projection layers).
    pub(super) fn quantizable(mut self) -> Self {
        self.int8 = true;
        self
    }

    pub(super) fn emit(&self, g: &mut Builder, x: &str) -> String {
        let (o, i) = self.out_in;
        let name = &self.name;
        let mut wt = transpose(self.weight, o, i); // (in, out)
        if let Some(s) = &self.scale {
            for r in 0..i {
                for c in 0..o {
                    wt[r * o + c] *= s[c];
                }
            }
        }
        let y = if self.int8 && g.precision == Precision::Int8 {
            g.int8_matmul(x, name, &wt, i, o)
        } else {
            let wn = g.f32(&format!("{name}.weight_t"), &[i, o], wt);
            g.mm(x, &wn)
        };
        match self.bias {
            Some(b) => {
                let b: Vec<f32> = match &self.scale {
                    Some(s) => b.iter().zip(s).map(|(b, s)| b * s).collect(),
                    None => b.to_vec(),
                };
                let bn = g.f32(&format!("{name}.bias"), &[o], b);
                g.add(&y, &bn)
            }
            None => y,
        }
    }
}

/// A torch `LayerNorm` over the last axis (`weight`, `bias`).
pub(super) struct LayerNorm<'a> {
    weight: Param<'a>,
    bias: Param<'a>,
    eps: f32,
}

impl<'a> LayerNorm<'a> {
    pub(super) fn new(vb: &Weights<'a>, eps: f32) -> Result<LayerNorm<'a>, GraphError> {
        Ok(LayerNorm { weight: vb.param("weight")?, bias: vb.param("bias")?, eps })
    }

    /// Weight and bias as initializers, for a norm applied more than once.
    pub(super) fn params(&self, g: &mut Builder) -> LayerNormParams {
        let n = self.weight.data.len();
        let w = self.weight.emit(g, &[n]);
        let b = self.bias.emit(g, &[n]);
        LayerNormParams { w, b, eps: self.eps }
    }

    pub(super) fn emit(&self, g: &mut Builder, x: &str) -> String {
        self.params(g).emit(g, x)
    }
}

/// A [`LayerNorm`] whose initializers are in the graph.
pub(super) struct LayerNormParams {
    w: String,
    b: String,
    eps: f32,
}

impl LayerNormParams {
    pub(super) fn emit(&self, g: &mut Builder, x: &str) -> String {
        g.layer_norm(x, &self.w, &self.b, self.eps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_scope_keys_by_prefix() {
        let all: BTreeMap<String, Vec<f32>> = [("m.encode_backbone.1.blocks.3.norm1.weight".to_string(), vec![1.0, 2.0])].into();
        let root = Weights::new(&all);
        let block = root.pp(msf_models::keys::VIT_BLOCKS_PREFIX).pp(3);
        assert_eq!(block.name(), "m.encode_backbone.1.blocks.3");
        assert_eq!(block.pp("norm1").key("weight"), "m.encode_backbone.1.blocks.3.norm1.weight");
        assert_eq!(block.get("norm1.weight").unwrap(), &[1.0, 2.0]);
        match block.get("norm1.bias") {
            Err(GraphError::MissingWeight { key }) => assert_eq!(key, "m.encode_backbone.1.blocks.3.norm1.bias"),
            other => panic!("{other:?}"),
        }
    }
}
