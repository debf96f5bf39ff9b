//! `WorkflowWiring`: which adapter feeds each workflow input and receives each output (spec §2.4–2.7).

use serde::{Deserialize, Serialize};

/// How the inputs and outputs of one execution are connected to data sources and sinks.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WorkflowWiring {
    #[serde(default)]
    pub input_wirings: Vec<InputWiring>,
    #[serde(default)]
    pub output_wirings: Vec<OutputWiring>,
    /// Dashboard layout, carried through untouched to the runtime.
    #[serde(default)]
    pub dashboard_positionings: Vec<serde_json::Value>,
}

/// Source of one workflow input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputWiring {
    pub workflow_input_name: String,
    pub adapter_id: serde_json::Value,
    #[serde(default)]
    pub ref_id: Option<String>,
    #[serde(default)]
    pub ref_id_type: Option<String>,
    #[serde(default)]
    pub ref_key: Option<String>,
    #[serde(default, rename = "type")]
    pub external_type: Option<String>,
    #[serde(default)]
    pub use_default_value: bool,
    #[serde(default)]
    pub filters: serde_json::Map<String, serde_json::Value>,
}

/// Sink of one workflow output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputWiring {
    pub workflow_output_name: String,
    pub adapter_id: serde_json::Value,
    #[serde(default)]
    pub ref_id: Option<String>,
    #[serde(default)]
    pub ref_id_type: Option<String>,
    #[serde(default)]
    pub ref_key: Option<String>,
    #[serde(default, rename = "type")]
    pub external_type: Option<String>,
    #[serde(default)]
    pub filters: serde_json::Map<String, serde_json::Value>,
}
