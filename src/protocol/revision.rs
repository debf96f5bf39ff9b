//! Transformation revisions as stored and exported by hetida (spec §4).
//!
//! Export files sort keys alphabetically; the backend REST API omits null fields. Both read the
//! same here: every optional field treats "absent" and `null` alike.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::wiring::WorkflowWiring;

/// A component or workflow revision, identified by `id`, one of the revisions of `revision_group_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransformationRevision {
    pub id: Uuid,
    pub revision_group_id: Uuid,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "default_category")]
    pub category: String,
    pub version_tag: String,
    #[serde(default)]
    pub disabled_timestamp: Option<DateTime<Utc>>,
    #[serde(default)]
    pub released_timestamp: Option<DateTime<Utc>>,
    pub state: State,
    #[serde(rename = "type")]
    pub kind: Kind,
    #[serde(default)]
    pub documentation: String,
    pub content: Content,
    pub io_interface: IoInterface,
    pub test_wiring: WorkflowWiring,
}

fn default_category() -> String {
    "Other".to_owned()
}

impl TransformationRevision {
    /// The nested revision ids a workflow's operators point at (empty for a component).
    pub fn nested_ids(&self) -> impl Iterator<Item = Uuid> + '_ {
        let operators = match &self.content {
            Content::Workflow(w) => w.operators.as_slice(),
            Content::Component(_) => &[],
        };
        operators.iter().map(|o| o.transformation_id)
    }

    /// When this revision counts as released, for "latest of a group" (spec §3). A DISABLED
    /// revision without `released_timestamp` was released when it was disabled.
    pub fn effective_released_timestamp(&self) -> Option<DateTime<Utc>> {
        self.released_timestamp.or(self.disabled_timestamp)
    }
}

/// A revision to execute together with every revision nested in it at any depth, keyed by
/// revision id (a component's tree has no nested revisions). What `store` hands to `prepare`.
#[derive(Debug, Clone)]
pub struct RevisionTree {
    pub root: std::sync::Arc<TransformationRevision>,
    pub nested: std::collections::HashMap<Uuid, std::sync::Arc<TransformationRevision>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    Draft,
    Released,
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Kind {
    Component,
    Workflow,
}

/// A component's Python source, or a workflow's operator graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Component(String),
    Workflow(WorkflowContent),
}

/// hetida's data types of inputs and outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DataType {
    Int,
    Float,
    String,
    Dataframe,
    Series,
    Multitsframe,
    Boolean,
    Any,
    Plotlyjson,
}

impl DataType {
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Int => "INT",
            DataType::Float => "FLOAT",
            DataType::String => "STRING",
            DataType::Dataframe => "DATAFRAME",
            DataType::Series => "SERIES",
            DataType::Multitsframe => "MULTITSFRAME",
            DataType::Boolean => "BOOLEAN",
            DataType::Any => "ANY",
            DataType::Plotlyjson => "PLOTLYJSON",
        }
    }
}

/// Whether an input must be wired or has a default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum InputType {
    #[default]
    Required,
    Optional,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct IoInterface {
    #[serde(default)]
    pub inputs: Vec<TransformationInput>,
    #[serde(default)]
    pub outputs: Vec<TransformationOutput>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransformationInput {
    pub id: Uuid,
    #[serde(default)]
    pub name: Option<String>,
    pub data_type: DataType,
    #[serde(default, rename = "type")]
    pub input_type: InputType,
    /// Default value of an OPTIONAL input (in practice a string the runtime parses).
    #[serde(default)]
    pub value: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransformationOutput {
    pub id: Uuid,
    #[serde(default)]
    pub name: Option<String>,
    pub data_type: DataType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Position {
    pub x: i64,
    pub y: i64,
}

/// A workflow's graph: operators (nested revisions), links between them, and its own IO.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WorkflowContent {
    #[serde(default)]
    pub operators: Vec<Operator>,
    #[serde(default)]
    pub links: Vec<Link>,
    #[serde(default)]
    pub constants: Vec<Constant>,
    #[serde(default)]
    pub inputs: Vec<WorkflowContentInput>,
    #[serde(default)]
    pub outputs: Vec<WorkflowContentOutput>,
}

/// One use of a nested revision inside a workflow; `id` is the operator's own id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operator {
    pub id: Uuid,
    pub revision_group_id: Uuid,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub state: State,
    pub version_tag: String,
    pub transformation_id: Uuid,
    #[serde(default)]
    pub inputs: Vec<OperatorInput>,
    #[serde(default)]
    pub outputs: Vec<OperatorOutput>,
    #[serde(default)]
    pub position: Position,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorInput {
    pub id: Uuid,
    #[serde(default)]
    pub name: Option<String>,
    pub data_type: DataType,
    #[serde(default)]
    pub position: Position,
    #[serde(default, rename = "type")]
    pub input_type: InputType,
    #[serde(default)]
    pub value: Option<serde_json::Value>,
    #[serde(default)]
    pub exposed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorOutput {
    pub id: Uuid,
    #[serde(default)]
    pub name: Option<String>,
    pub data_type: DataType,
    #[serde(default)]
    pub position: Position,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub id: Uuid,
    pub start: Vertex,
    pub end: Vertex,
    #[serde(default)]
    pub path: Vec<Position>,
}

/// One end of a link: an operator's connector, or (operator `None`) the workflow's own IO.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vertex {
    #[serde(default)]
    pub operator: Option<Uuid>,
    pub connector: Connector,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connector {
    pub id: Uuid,
    #[serde(default)]
    pub name: Option<String>,
    pub data_type: DataType,
    #[serde(default)]
    pub position: Position,
}

/// A dynamic workflow input, attached to an exposed operator input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowContentInput {
    pub id: Uuid,
    #[serde(default)]
    pub name: Option<String>,
    pub data_type: DataType,
    #[serde(default)]
    pub position: Position,
    pub operator_id: Uuid,
    pub connector_id: Uuid,
    #[serde(default)]
    pub operator_name: Option<String>,
    #[serde(default)]
    pub connector_name: Option<String>,
    #[serde(default, rename = "type")]
    pub input_type: InputType,
    #[serde(default)]
    pub value: Option<serde_json::Value>,
}

/// A fixed value fed to an operator input; not wirable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Constant {
    pub id: Uuid,
    #[serde(default)]
    pub name: Option<String>,
    pub data_type: DataType,
    #[serde(default)]
    pub position: Position,
    pub operator_id: Uuid,
    pub connector_id: Uuid,
    #[serde(default)]
    pub operator_name: Option<String>,
    #[serde(default)]
    pub connector_name: Option<String>,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowContentOutput {
    pub id: Uuid,
    #[serde(default)]
    pub name: Option<String>,
    pub data_type: DataType,
    #[serde(default)]
    pub position: Position,
    pub operator_id: Uuid,
    pub connector_id: Uuid,
    #[serde(default)]
    pub operator_name: Option<String>,
    #[serde(default)]
    pub connector_name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_and_workflow_content_are_told_apart() {
        let c: Content = serde_json::from_str(r#""def main(): pass""#).unwrap();
        assert!(matches!(c, Content::Component(_)));
        let w: Content = serde_json::from_str(r#"{"operators": []}"#).unwrap();
        assert!(matches!(w, Content::Workflow(_)));
    }
}
