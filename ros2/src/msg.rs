//! The ROS 2 messages the node speaks, as serde types in the field order of their `.msg` files
//! (CDR is positional): `sensor_msgs/Image`, `sensor_msgs/CompressedImage`,
//! `std_msgs/Float32MultiArray`, `std_msgs/String`. Byte arrays go through `serde_bytes`, which
//! CDR writes as one `sequence<uint8>` (length + bytes) instead of byte by byte.

use ros2_client::{Message, MessageTypeName};
use serde::{Deserialize, Serialize};

/// `builtin_interfaces/Time`, kept as it came (no conversion through nanoseconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Time {
    pub sec: i32,
    pub nanosec: u32,
}

impl Time {
    pub fn nanos(self) -> i64 {
        i64::from(self.sec) * 1_000_000_000 + i64::from(self.nanosec)
    }
}

/// `std_msgs/Header`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub stamp: Time,
    pub frame_id: String,
}

/// `sensor_msgs/Image`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Image {
    pub header: Header,
    pub height: u32,
    pub width: u32,
    pub encoding: String,
    pub is_bigendian: u8,
    pub step: u32,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}
impl Message for Image {}

/// `sensor_msgs/CompressedImage`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CompressedImage {
    pub header: Header,
    pub format: String,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}
impl Message for CompressedImage {}

/// `std_msgs/MultiArrayDimension`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MultiArrayDimension {
    pub label: String,
    pub size: u32,
    pub stride: u32,
}

/// `std_msgs/MultiArrayLayout`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MultiArrayLayout {
    pub dim: Vec<MultiArrayDimension>,
    pub data_offset: u32,
}

/// `std_msgs/Float32MultiArray`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Float32MultiArray {
    pub layout: MultiArrayLayout,
    pub data: Vec<f32>,
}
impl Message for Float32MultiArray {}

impl Float32MultiArray {
    /// A row-major `rows × cols` matrix with its layout filled in as ROS documents it
    /// (`dim[0].stride` = all values, `dim[1].stride` = one row).
    pub fn matrix(rows: usize, row_label: &str, cols: usize, col_label: &str, data: Vec<f32>) -> Self {
        assert_eq!(data.len(), rows * cols, "matrix size");
        let dim = |label: &str, size: usize, stride: usize| MultiArrayDimension {
            label: label.to_string(),
            size: size as u32,
            stride: stride as u32,
        };
        Float32MultiArray {
            layout: MultiArrayLayout { dim: vec![dim(row_label, rows, rows * cols), dim(col_label, cols, cols)], data_offset: 0 },
            data,
        }
    }
}

/// `std_msgs/String`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StringMsg {
    pub data: String,
}
impl Message for StringMsg {}

pub fn image_type() -> MessageTypeName {
    MessageTypeName::new("sensor_msgs", "Image")
}
pub fn compressed_type() -> MessageTypeName {
    MessageTypeName::new("sensor_msgs", "CompressedImage")
}
pub fn float32_array_type() -> MessageTypeName {
    MessageTypeName::new("std_msgs", "Float32MultiArray")
}
pub fn string_type() -> MessageTypeName {
    MessageTypeName::new("std_msgs", "String")
}
