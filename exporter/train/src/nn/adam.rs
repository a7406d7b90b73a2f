//! Adam with its moments in the open, so that `--resume` continues the optimisation exactly
//! where it stopped: libtorch's optimiser (tch's `nn::Adam`) cannot hand its state out. Same
//! update as `torch.optim.Adam` (β 0.9/0.999, ε 1e-8, no weight decay, bias-corrected), checked
//! against tch's in the tests.

use super::encoder::LoadError;
use msf_exporter::checkpoint::Checkpoint;
use tch::{nn::VarStore, Kind, Tensor};

/// Key of the step count in a saved state (a one-element tensor).
const STEP: &str = "step";

pub struct Adam {
    /// The trainable variables, by name (the VarStore's names), in name order.
    params: Vec<(String, Tensor)>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    steps: i64,
    pub lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
}

impl Adam {
    /// Adam over the variables of `vs` that require gradients now (freeze first).
    pub fn new(vs: &VarStore, lr: f64) -> Adam {
        let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let zeros = |p: &Vec<(String, Tensor)>| p.iter().map(|(_, t)| t.zeros_like()).collect();
        Adam { exp_avg: zeros(&params), exp_avg_sq: zeros(&params), params, steps: 0, lr, beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// Scales the gradients so that their joint L2 norm is at most `max` (as PyTorch's
    /// `clip_grad_norm_`, with its 1e-6 guard).
    pub fn clip_grad_norm(&mut self, max: f64) {
        let grads: Vec<Tensor> = self.params.iter().map(|(_, p)| p.grad()).filter(|g| g.defined()).collect();
        if grads.is_empty() {
            return;
        }
        let total = tch::no_grad(|| Tensor::stack(&grads.iter().map(|g| g.norm()).collect::<Vec<_>>(), 0).norm()).double_value(&[]);
        let coef = max / (total + 1e-6);
        if coef < 1.0 {
            for mut g in grads {
                let _ = g.g_mul_scalar_(coef);
            }
        }
    }

    /// One update of every variable that has a gradient.
    pub fn step(&mut self) {
        self.steps += 1;
        let t = self.steps as i32;
        let (c1, c2) = (1.0 - self.beta1.powi(t), 1.0 - self.beta2.powi(t));
        tch::no_grad(|| {
            for (((_, p), m), v) in self.params.iter().zip(&mut self.exp_avg).zip(&mut self.exp_avg_sq) {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let _ = m.g_mul_scalar_(self.beta1).g_add_(&(&g * (1.0 - self.beta1)));
                let _ = v.g_mul_scalar_(self.beta2).g_add_(&(g.square() * (1.0 - self.beta2)));
                let denom = v.sqrt() / c2.sqrt() + self.eps;
                let _ = p.shallow_clone().g_sub_(&(&*m / denom * (self.lr / c1)));
            }
        });
    }

    /// The moments (`exp_avg.<name>`, `exp_avg_sq.<name>`) and the step count, to save.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![(STEP.to_string(), Tensor::from_slice(&[self.steps as f32]))];
        for ((name, _), (m, v)) in self.params.iter().zip(self.exp_avg.iter().zip(&self.exp_avg_sq)) {
            out.push((format!("exp_avg.{name}"), m.shallow_clone()));
            out.push((format!("exp_avg_sq.{name}"), v.shallow_clone()));
        }
        out
    }

    /// Restores a saved [`state`](Self::state); every moment must be there, with its shape.
    pub fn load_state(&mut self, ck: &Checkpoint) -> Result<(), LoadError> {
        let steps = ck.data.get(STEP).and_then(|d| d.first()).ok_or_else(|| LoadError::Missing(vec![STEP.into()]))?;
        let mut missing = vec![];
        tch::no_grad(|| {
            for ((name, _), (m, v)) in self.params.iter().zip(self.exp_avg.iter_mut().zip(self.exp_avg_sq.iter_mut())) {
                for (key, moment) in [(format!("exp_avg.{name}"), m), (format!("exp_avg_sq.{name}"), v)] {
                    let (Some(data), Some(info)) = (ck.data.get(&key), ck.info.get(&key)) else {
                        missing.push(key);
                        continue;
                    };
                    let file: Vec<i64> = info.shape.iter().map(|&d| d as i64).collect();
                    if file != moment.size() {
                        return Err(LoadError::Shape { key, model: moment.size(), file });
                    }
                    moment.copy_(&Tensor::from_slice(data).view(file.as_slice()).to_kind(Kind::Float).to_device(moment.device()));
                }
            }
            Ok(())
        })?;
        if !missing.is_empty() {
            return Err(LoadError::Missing(missing));
        }
        self.steps = *steps as i64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::{self, Module, OptimizerConfig};
    use tch::Device;

    /// A two-layer net and a fixed regression batch; `seed` fixes the initial weights only.
    fn net(seed: i64) -> (VarStore, impl Fn() -> Tensor) {
        tch::manual_seed(seed);
        let vs = VarStore::new(Device::Cpu);
        let (a, b) = (nn::linear(vs.root() / "a", 6, 8, Default::default()), nn::linear(vs.root() / "b", 8, 3, Default::default()));
        tch::manual_seed(0); // the same batch whatever the weights
        let x = Tensor::randn([5, 6], (Kind::Float, Device::Cpu));
        let y = Tensor::randn([5, 3], (Kind::Float, Device::Cpu));
        (vs, move || (b.forward(&a.forward(&x).tanh()) - &y).square().mean(Kind::Float) * 50.0)
    }

    fn values(vs: &VarStore) -> Vec<(String, Vec<f32>)> {
        let mut v: Vec<(String, Vec<f32>)> = vs.variables().into_iter().map(|(k, t)| (k, Vec::try_from(t.flatten(0, -1)).unwrap())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn same_updates_as_libtorch_adam() {
        let (vs1, loss1) = net(3);
        let (vs2, loss2) = net(3);
        let mut ours = Adam::new(&vs1, 0.01);
        let mut theirs = nn::Adam::default().build(&vs2, 0.01).unwrap();
        for _ in 0..8 {
            ours.zero_grad();
            loss1().backward();
            ours.clip_grad_norm(1.0);
            ours.step();
            theirs.zero_grad();
            loss2().backward();
            theirs.clip_grad_norm(1.0);
            theirs.step();
        }
        let (a, b) = (values(&vs1), values(&vs2));
        let moved = a.iter().zip(values(&net(3).0)).any(|(x, y)| x.1 != y.1);
        assert!(moved, "the weights moved");
        for ((k, x), (_, y)) in a.iter().zip(&b) {
            let d = x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
            assert!(d < 1e-6, "{k}: max |Δ| {d}");
        }
    }

    #[test]
    fn saved_state_resumes_exactly() {
        let dir = std::env::temp_dir().join(format!("msf-adam-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let steps = |opt: &mut Adam, loss: &dyn Fn() -> Tensor, n: usize| {
            for _ in 0..n {
                opt.zero_grad();
                loss().backward();
                opt.clip_grad_norm(1.0);
                opt.step();
            }
        };
        let (straight, loss) = net(5);
        let mut opt = Adam::new(&straight, 0.02);
        steps(&mut opt, &loss, 6);

        // 3 steps, save weights and moments, a fresh process-like start, 3 more.
        let (first, loss) = net(5);
        let mut opt = Adam::new(&first, 0.02);
        steps(&mut opt, &loss, 3);
        super::super::save::save_var_store(&first, &dir.join("w.pth")).unwrap();
        super::super::save::save_tensors(opt.state(), &dir.join("adam.pth")).unwrap();
        let load = |p: &str| msf_exporter::checkpoint::load(&dir.join(p), &Default::default(), &|_| true).unwrap();
        let (resumed, loss) = net(9); // other initial weights: everything must come from the files
        let rest = super::super::encoder::load_weights(&resumed, super::super::encoder::checkpoint_tensors(&load("w.pth"))).unwrap();
        assert!(rest.is_empty());
        let mut opt = Adam::new(&resumed, 0.02);
        opt.load_state(&load("adam.pth")).unwrap();
        steps(&mut opt, &loss, 3);
        assert_eq!(values(&resumed), values(&straight), "3 + 3 resumed steps equal 6 straight ones");

        // Restarted moments (what resuming without the state did) land elsewhere.
        let (restarted, loss) = net(9);
        super::super::encoder::load_weights(&restarted, super::super::encoder::checkpoint_tensors(&load("w.pth"))).unwrap();
        let mut opt = Adam::new(&restarted, 0.02);
        steps(&mut opt, &loss, 3);
        assert_ne!(values(&restarted), values(&straight));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
