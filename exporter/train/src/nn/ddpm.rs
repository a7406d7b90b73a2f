//! The DDPM forward (noising) process that trains SlotDiffusion's decoder: upstream's
//! `NoiseSchedule` (diffusers `DDPMScheduler`, "scaled_linear" β from 0.0015 to 0.0195 over 1000
//! steps, ε-prediction). Upstream has no sampling loop, so neither does this.

use tch::{Device, Kind, Tensor};

/// The schedule's constants (upstream's are the default).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DdpmConfig {
    pub steps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
}

impl Default for DdpmConfig {
    fn default() -> Self {
        DdpmConfig { steps: 1000, beta_start: 0.0015, beta_end: 0.0195 }
    }
}

/// ᾱ_t and the two coefficients of [`Ddpm::add_noise`], per timestep.
#[derive(Debug)]
pub struct Ddpm {
    pub config: DdpmConfig,
    /// ᾱ_t = Π_{s≤t} (1 − β_s), computed in f64.
    pub alphas_cumprod: Vec<f64>,
    /// √ᾱ_t and √(1 − ᾱ_t), (T,) float on the CPU.
    signal: Tensor,
    noise: Tensor,
}

/// "scaled_linear" β: linear in √β, then squared.
pub fn scaled_linear_betas(c: &DdpmConfig) -> Vec<f64> {
    let (a, b) = (c.beta_start.sqrt(), c.beta_end.sqrt());
    let n = c.steps.max(2) - 1;
    (0..c.steps).map(|i| (a + (b - a) * i as f64 / n as f64).powi(2)).collect()
}

impl Ddpm {
    pub fn new(config: &DdpmConfig) -> Ddpm {
        let alphas_cumprod: Vec<f64> = scaled_linear_betas(config)
            .iter()
            .scan(1.0, |acc, beta| {
                *acc *= 1.0 - beta;
                Some(*acc)
            })
            .collect();
        let coef = |f: &dyn Fn(f64) -> f64| Tensor::from_slice(&alphas_cumprod.iter().map(|&a| f(a) as f32).collect::<Vec<_>>());
        Ddpm { signal: coef(&f64::sqrt), noise: coef(&|a| (1.0 - a).sqrt()), alphas_cumprod, config: config.clone() }
    }

    /// x_t = √ᾱ_t · x0 + √(1 − ᾱ_t) · ε, with `t` (B,) int64 one timestep per sample of `x0` (B, …).
    pub fn add_noise(&self, x0: &Tensor, noise: &Tensor, t: &Tensor) -> Tensor {
        let mut shape = vec![-1i64];
        shape.resize(x0.dim(), 1);
        let pick = |c: &Tensor| c.to_device(x0.device()).index_select(0, &t.to_device(x0.device())).view(shape.as_slice()).to_kind(x0.kind());
        pick(&self.signal) * x0 + pick(&self.noise) * noise
    }

    /// `b` timesteps drawn uniformly from [0, steps) (int64), from tch's global generator.
    pub fn sample_timesteps(&self, b: i64, device: Device) -> Tensor {
        Tensor::randint(self.config.steps as i64, [b], (Kind::Int64, device))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_end_points_and_noising() {
        let d = Ddpm::new(&DdpmConfig::default());
        let betas = scaled_linear_betas(&d.config);
        assert!((betas[0] - 0.0015).abs() < 1e-15 && (betas[999] - 0.0195).abs() < 1e-15);
        assert!((d.alphas_cumprod[0] - 0.9985).abs() < 1e-15);
        assert!(d.alphas_cumprod.windows(2).all(|w| w[1] < w[0]));
        // Nearly all signal is gone at the last step (ᾱ ≈ 1.42e-4: √ᾱ ≈ 0.012).
        assert!((d.alphas_cumprod[999] - 1.423e-4).abs() < 1e-7, "{}", d.alphas_cumprod[999]);

        let x0 = Tensor::ones([2, 1, 2, 2], (Kind::Float, Device::Cpu));
        let eps = Tensor::full([2, 1, 2, 2], 2.0, (Kind::Float, Device::Cpu));
        let t = Tensor::from_slice(&[0i64, 999]);
        let x = d.add_noise(&x0, &eps, &t);
        for (i, &ti) in [0usize, 999].iter().enumerate() {
            let a = d.alphas_cumprod[ti];
            let want = a.sqrt() + 2.0 * (1.0 - a).sqrt();
            assert!((x.double_value(&[i as i64, 0, 1, 1]) - want).abs() < 1e-6, "t = {ti}");
        }
        let t = d.sample_timesteps(64, Device::Cpu);
        assert!(t.min().int64_value(&[]) >= 0 && t.max().int64_value(&[]) < 1000);
    }
}
