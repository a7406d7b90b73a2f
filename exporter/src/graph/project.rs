//! The projection MLP from backbone features to slot-attention inputs (`m.encode_project.{0,1,3}`:
//! LayerNorm → Linear → GELU → Linear).

use super::builder::Builder;
use super::weights::{LayerNorm, Linear, Weights};
use super::GraphError;
use msf_models::ProjectConfig;

pub(super) struct Project<'a> {
    norm: LayerNorm<'a>,
    fc1: Linear<'a>,
    fc2: Linear<'a>,
}

impl<'a> Project<'a> {
    /// `vb`: `keys::PROJECT_PREFIX` (a `Sequential`: the children are numbered).
    pub(super) fn new(vb: &Weights<'a>, c: &ProjectConfig) -> Result<Project<'a>, GraphError> {
        Ok(Project {
            norm: LayerNorm::new(&vb.pp(0), c.ln_eps)?,
            fc1: Linear::new(&vb.pp(1), c.hidden_dim, c.in_dim)?.quantizable(),
            fc2: Linear::new(&vb.pp(3), c.out_dim, c.hidden_dim)?.quantizable(),
        })
    }

    /// Features (B, N, E) → (B, N, out_dim).
    pub(super) fn emit(&self, g: &mut Builder, x: &str) -> String {
        let f = self.norm.emit(g, x);
        let f = self.fc1.emit(g, &f);
        let f = g.gelu(&f);
        self.fc2.emit(g, &f)
    }
}
