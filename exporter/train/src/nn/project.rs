//! Projection MLP from backbone features to slot-attention inputs (`m.encode_project.{0,1,3}`:
//! LayerNorm → Linear → GELU → Linear).

use super::gelu;
use msf_models::ProjectConfig;
use tch::{nn, nn::Module, Tensor};

#[derive(Debug)]
pub struct Project {
    norm: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl Project {
    pub fn new(p: &nn::Path, c: &ProjectConfig) -> Project {
        let (i, h, o) = (c.in_dim as i64, c.hidden_dim as i64, c.out_dim as i64);
        Project {
            norm: nn::layer_norm(p / "0", vec![i], nn::LayerNormConfig { eps: c.ln_eps as f64, ..Default::default() }),
            fc1: nn::linear(p / "1", i, h, Default::default()),
            fc2: nn::linear(p / "3", h, o, Default::default()),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.fc2.forward(&gelu(&self.fc1.forward(&self.norm.forward(x))))
    }
}
