//! The ONNX interface of an exported MSF decomposition graph: names, shapes and metadata.
//!
//! Graph (B is dynamic):
//! - input [`INPUT_IMAGE`]: f32 (B, 3, S, S), RGB, normalised; S = `Preprocess::graph_input_size()`
//!   (256 with the bicubic resize in the graph, 224 without).
//! - input [`INPUT_SLOTS`] (left out only with `msf-export --no-slots-in`): f32 (N, K, D) initial
//!   slots, e.g. the previous frame's. N = B feeds them; N = 0 (an empty tensor) takes the learned
//!   mean, the initializer [`SLOTS_DEFAULT`] (1, K, D). An ordinary required input, so every runtime
//!   lists it (files of the first form, where an initializer named `slots_init` shadowed the input
//!   as its default, still load).
//! - output [`OUTPUT_SLOTS`]: f32 (B, K, D); [`OUTPUT_ATTN`]: f32 (B, K, G, G) last-iteration
//!   softmax-over-slots attention; [`OUTPUT_MASKS`]: i64 (B, 256, 256) slot index per pixel.

use crate::config::{ModelConfig, Preprocess};
use crate::onnx;
use serde::{Deserialize, Serialize};

pub const INPUT_IMAGE: &str = "image";
pub const INPUT_SLOTS: &str = "slots_init";
/// The initializer holding the learned initial slots (1, K, D) that an empty [`INPUT_SLOTS`] selects.
pub const SLOTS_DEFAULT: &str = "slots_init_default";
pub const OUTPUT_SLOTS: &str = "slots";
pub const OUTPUT_ATTN: &str = "attn";
pub const OUTPUT_MASKS: &str = "masks";

/// Version of this contract; bumped when names, shapes or metadata change incompatibly.
pub const SPEC_VERSION: u32 = 1;

/// Metadata keys (`ModelProto.metadata_props`) written by the exporter and read by the runtime.
pub mod meta_keys {
    pub const SPEC_VERSION: &str = "msf.spec_version";
    pub const KIND: &str = "msf.kind";
    /// JSON of [`crate::ModelConfig`].
    pub const CONFIG: &str = "msf.config";
    /// JSON of [`crate::Preprocess`].
    pub const PREPROCESS: &str = "msf.preprocess";
    pub const SOURCE_SHA256: &str = "msf.source_sha256";
    pub const SLOTS_INPUT: &str = "msf.slots_input";
    /// `fp32`, `fp16` or `int8`.
    pub const PRECISION: &str = "msf.precision";
    /// Tool and version that wrote the file (informational).
    pub const PRODUCER: &str = "msf.producer";
}

/// Everything the runtime needs to know about an exported model besides its graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelMetadata {
    pub spec_version: u32,
    pub config: ModelConfig,
    pub preprocess: Preprocess,
    pub source_sha256: String,
    pub slots_input: bool,
    pub precision: String,
    pub producer: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("the ONNX file has no MSF metadata (no `{}` key): it was not written by msf-export; pass the preprocessing explicitly to use it anyway", meta_keys::SPEC_VERSION)]
    NotMsf,
    #[error("MSF metadata key `{0}` is missing")]
    Missing(&'static str),
    #[error("MSF metadata key `{key}` is invalid: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("MSF metadata spec version {found} is not supported (this build reads version {supported})")]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("not an ONNX model: {0}")]
    NotOnnx(String),
}

impl ModelMetadata {
    /// Key/value pairs for `ModelProto.metadata_props`.
    pub fn to_props(&self) -> Vec<(String, String)> {
        vec![
            (meta_keys::SPEC_VERSION.into(), self.spec_version.to_string()),
            (meta_keys::KIND.into(), self.config.kind.as_str().into()),
            (meta_keys::CONFIG.into(), to_json(&self.config)),
            (meta_keys::PREPROCESS.into(), to_json(&self.preprocess)),
            (meta_keys::SOURCE_SHA256.into(), self.source_sha256.clone()),
            (meta_keys::SLOTS_INPUT.into(), self.slots_input.to_string()),
            (meta_keys::PRECISION.into(), self.precision.clone()),
            (meta_keys::PRODUCER.into(), self.producer.clone()),
        ]
    }

    /// Parse and validate metadata from key/value pairs; `Err(NotMsf)` when no MSF key is present.
    pub fn from_props<'a, I>(props: I) -> Result<Self, MetadataError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let map: std::collections::HashMap<&str, &str> = props.into_iter().collect();
        let version = map.get(meta_keys::SPEC_VERSION).ok_or(MetadataError::NotMsf)?;
        let spec_version: u32 = version.trim().parse().map_err(|_| MetadataError::Invalid {
            key: meta_keys::SPEC_VERSION,
            reason: format!("`{version}` is not a number"),
        })?;
        if spec_version != SPEC_VERSION {
            return Err(MetadataError::UnsupportedVersion { found: spec_version, supported: SPEC_VERSION });
        }
        let get = |key: &'static str| map.get(key).copied().ok_or(MetadataError::Missing(key));
        let parse_json = |key: &'static str| -> Result<serde_json::Value, MetadataError> {
            serde_json::from_str(get(key)?)
                .map_err(|e| MetadataError::Invalid { key, reason: e.to_string() })
        };
        let config: ModelConfig = serde_json::from_value(parse_json(meta_keys::CONFIG)?)
            .map_err(|e| MetadataError::Invalid { key: meta_keys::CONFIG, reason: e.to_string() })?;
        let preprocess: Preprocess = serde_json::from_value(parse_json(meta_keys::PREPROCESS)?)
            .map_err(|e| MetadataError::Invalid { key: meta_keys::PREPROCESS, reason: e.to_string() })?;
        let kind = get(meta_keys::KIND)?;
        if kind != config.kind.as_str() {
            return Err(MetadataError::Invalid {
                key: meta_keys::KIND,
                reason: format!("`{kind}` disagrees with the config's kind `{}`", config.kind),
            });
        }
        let slots_input = match get(meta_keys::SLOTS_INPUT)? {
            "true" => true,
            "false" => false,
            other => {
                return Err(MetadataError::Invalid {
                    key: meta_keys::SLOTS_INPUT,
                    reason: format!("`{other}` is not true/false"),
                })
            }
        };
        let meta = ModelMetadata {
            spec_version,
            config,
            preprocess,
            source_sha256: get(meta_keys::SOURCE_SHA256)?.to_string(),
            slots_input,
            precision: get(meta_keys::PRECISION)?.to_string(),
            producer: map.get(meta_keys::PRODUCER).copied().unwrap_or("").to_string(),
        };
        meta.validate()?;
        Ok(meta)
    }

    /// Reject values that would make the runtime allocate nonsense or divide by zero (the exporter
    /// checks what it is about to write the same way).
    pub fn validate(&self) -> Result<(), MetadataError> {
        let bad = |key, reason: &str| Err(MetadataError::Invalid { key, reason: reason.to_string() });
        let c = &self.config;
        let dims = [c.vit.embed_dim, c.vit.depth, c.vit.grid, c.slots.num_slots, c.slots.slot_dim];
        if dims.iter().any(|&d| d == 0 || d > 1 << 16) {
            return bad(meta_keys::CONFIG, "a dimension is zero or absurdly large");
        }
        if c.slots.num_slots > MAX_SLOTS {
            // Masks are 8-bit: ids 0..=254 name slots and 255 marks void; more would be written wrong.
            return bad(meta_keys::CONFIG, &format!("{} slots: masks are 8-bit, at most {MAX_SLOTS} slots (ids 0-254; 255 marks void)", c.slots.num_slots));
        }
        let p = &self.preprocess;
        if p.image_size == 0 || p.image_size > MAX_IMAGE_SIZE || p.backbone_size == 0 || p.backbone_size > MAX_IMAGE_SIZE {
            return bad(meta_keys::PREPROCESS, &format!("image sizes must be in 1..={MAX_IMAGE_SIZE} (upstream uses 256 and 224)"));
        }
        if p.std.iter().any(|s| !s.is_finite() || *s == 0.0) || p.mean.iter().any(|m| !m.is_finite()) {
            return bad(meta_keys::PREPROCESS, "mean/std must be finite and std non-zero");
        }
        Ok(())
    }

    /// Read the metadata of an ONNX file's bytes without decoding its graph or weights.
    pub fn from_onnx_bytes(bytes: &[u8]) -> Result<Self, MetadataError> {
        let props = decode_props(bytes)?;
        Self::from_props(props.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

/// Most slots a model may have: mask pixels are 8-bit slot ids and 255 marks void.
pub const MAX_SLOTS: usize = 255;
/// Largest `image_size` / `backbone_size`: one 2048² frame already takes ~50 MB as f32.
pub const MAX_IMAGE_SIZE: usize = 2048;

/// Only `ModelProto.metadata_props` (field 14): prost skips the graph and its weights unread.
#[derive(Clone, PartialEq, prost::Message)]
struct ModelPropsOnly {
    #[prost(int64, optional, tag = "1")]
    ir_version: Option<i64>,
    #[prost(message, repeated, tag = "14")]
    metadata_props: Vec<onnx::StringStringEntryProto>,
}

/// Metadata key/value pairs of an ONNX file's bytes.
pub fn decode_props(bytes: &[u8]) -> Result<Vec<(String, String)>, MetadataError> {
    use prost::Message;
    let m = ModelPropsOnly::decode(bytes).map_err(|e| MetadataError::NotOnnx(e.to_string()))?;
    if m.ir_version.is_none() {
        return Err(MetadataError::NotOnnx("no ir_version field".into()));
    }
    Ok(m.metadata_props
        .into_iter()
        .map(|p| (p.key.unwrap_or_default(), p.value.unwrap_or_default()))
        .collect())
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("config types serialise infallibly")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::*;

    pub(crate) fn sample() -> ModelMetadata {
        ModelMetadata {
            spec_version: SPEC_VERSION,
            config: ModelConfig {
                kind: ModelKind::SlateMsf,
                vit: VitConfig { embed_dim: 384, depth: 12, num_heads: 6, mlp_dim: 1536, patch_size: 14, grid: 16, ln_eps: 1e-6 },
                project: ProjectConfig { in_dim: 384, hidden_dim: 768, out_dim: 256, ln_eps: 1e-5 },
                slots: SlotConfig { num_slots: 7, slot_dim: 256, ffn_dim: 1024, iters: 3, attn_eps: 1e-5, ln_eps: 1e-5 },
            },
            preprocess: Preprocess::upstream(224, true),
            source_sha256: "ab".repeat(32),
            slots_input: false,
            precision: "fp32".into(),
            producer: "test".into(),
        }
    }

    #[test]
    fn props_round_trip() {
        let m = sample();
        let props = m.to_props();
        let back = ModelMetadata::from_props(props.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(m, back);
    }

    #[test]
    fn missing_and_foreign_metadata_are_errors() {
        assert!(matches!(ModelMetadata::from_props([]), Err(MetadataError::NotMsf)));
        let mut props = sample().to_props();
        props.retain(|(k, _)| k != meta_keys::CONFIG);
        let err = ModelMetadata::from_props(props.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap_err();
        assert!(matches!(err, MetadataError::Missing(meta_keys::CONFIG)), "{err}");
        let mut props = sample().to_props();
        props[0].1 = "99".into();
        let err = ModelMetadata::from_props(props.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap_err();
        assert!(matches!(err, MetadataError::UnsupportedVersion { found: 99, .. }));
    }

    #[test]
    fn props_decode_from_onnx_bytes() {
        use prost::Message;
        let model = onnx::ModelProto {
            ir_version: Some(8),
            metadata_props: sample()
                .to_props()
                .into_iter()
                .map(|(k, v)| onnx::StringStringEntryProto { key: Some(k), value: Some(v) })
                .collect(),
            graph: Some(onnx::GraphProto { name: Some("g".into()), ..Default::default() }),
            ..Default::default()
        };
        let bytes = model.encode_to_vec();
        assert_eq!(ModelMetadata::from_onnx_bytes(&bytes).unwrap(), sample());
        assert!(ModelMetadata::from_onnx_bytes(b"\xff\xff\xff garbage").is_err());
    }
}
