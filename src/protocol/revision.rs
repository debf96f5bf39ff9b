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
    /// What a request by id names, and the key the store and every cache hold the revision under.
    pub id: Uuid,
    /// The group of revisions of one transformation; a request for the latest revision names the
    /// group.
    pub revision_group_id: Uuid,
    /// Shown to users; the runtime names the component's or workflow's node after it (`tr_name`).
    pub name: String,
    /// Free text for users; read so that every field of hetida's model is accepted, not executed.
    #[serde(default)]
    pub description: String,
    /// hetida's grouping in its user interface; part of the model, not of an execution.
    #[serde(default = "default_category")]
    pub category: String,
    /// The revision's label within its group (`tr_tag` in the runtime request); "latest" is not a
    /// tag, only the newest released revision is.
    pub version_tag: String,
    /// When the revision was disabled; a DISABLED revision without a release time counts as
    /// released then.
    #[serde(default)]
    pub disabled_timestamp: Option<DateTime<Utc>>,
    /// When the revision was released: the newest of a group's RELEASED revisions is its "latest"
    /// (spec §3).
    #[serde(default)]
    pub released_timestamp: Option<DateTime<Utc>>,
    /// Whether the revision counts for "latest of a group" (RELEASED only) and whether it may be
    /// cached for good (DRAFTs change and are read fresh).
    pub state: State,
    /// Component or workflow: says which kind of `content` to expect and how the runtime request is
    /// built.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// The revision's markdown documentation; kept only so that the model is hetida's whole model.
    #[serde(default)]
    pub documentation: String,
    /// The Python source of a component, or the operator graph of a workflow: what actually runs.
    pub content: Content,
    /// The inputs and outputs a wiring names; a component's runtime interface, a workflow's mirror
    /// of its content.
    pub io_interface: IoInterface,
    /// The wiring used when a request brings none (as hetida executes a revision "with its test
    /// wiring").
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
    /// The revision the request names, whose inputs and outputs the wiring addresses.
    pub root: std::sync::Arc<TransformationRevision>,
    /// Every revision a workflow's operators use, at any depth, so that preparing needs no further
    /// look-up.
    pub nested: std::collections::HashMap<Uuid, std::sync::Arc<TransformationRevision>>,
}

/// A revision's lifecycle stage: decides whether it may be executed by group, and whether it may be
/// cached for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    /// Being edited: may change at any time, so it is read fresh for every request and never the
    /// latest of a group.
    Draft,
    /// Published and immutable: the candidates for "latest of a group", cached for good.
    Released,
    /// Withdrawn from use; still immutable, still executable by id, never the latest of a group.
    Disabled,
}

/// The two kinds of transformation hetida executes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Kind {
    /// Python code with a `main` function: wrapped in an ad-hoc workflow to run (spec §5.2).
    Component,
    /// A graph of operators, each a nested component or workflow.
    Workflow,
}

/// A component's Python source, or a workflow's operator graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// The module source; the runtime calls its `main` with the inputs as keyword arguments.
    Component(String),
    /// The operator graph, walked into the runtime's node tree.
    Workflow(WorkflowContent),
}

/// hetida's data types of inputs and outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DataType {
    /// A Python `int`.
    Int,
    /// A Python `float`.
    Float,
    /// A Python `str`.
    String,
    /// A pandas DataFrame.
    Dataframe,
    /// A pandas Series (one time series).
    Series,
    /// hetida's long-format frame of several time series.
    Multitsframe,
    /// A Python `bool` (a default is written in Python's spelling, `"True"`).
    Boolean,
    /// Anything: no conversion by the runtime, and a link to or from any other type is allowed.
    Any,
    /// A Plotly figure as JSON, the output type of visualisation components.
    Plotlyjson,
}

impl DataType {
    /// The spelling hetida uses on the wire (`"INT"`, `"SERIES"`, ...), for the runtime request and
    /// its output types.
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
    /// Must be wired by the request (or the test wiring): it has no value of its own.
    #[default]
    Required,
    /// May stay unwired: the runtime then uses the input's default `value`.
    Optional,
}

/// The inputs and outputs a wiring may address, with their names, types and defaults.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct IoInterface {
    /// In order; a REQUIRED one must be wired, an OPTIONAL one may use its default.
    #[serde(default)]
    pub inputs: Vec<TransformationInput>,
    /// In order; the runtime reports results under their names, with their types.
    #[serde(default)]
    pub outputs: Vec<TransformationOutput>,
}

/// An input of a revision: what an input wiring names by `name`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransformationInput {
    /// The input's id; a workflow operator's input of this revision has the same id.
    pub id: Uuid,
    /// What input wirings and the component's keyword arguments call it; may be missing in a DRAFT.
    #[serde(default)]
    pub name: Option<String>,
    /// How the runtime parses the value it is given.
    pub data_type: DataType,
    /// Whether the input needs a wiring or has a default.
    #[serde(default, rename = "type")]
    pub input_type: InputType,
    /// Default value of an OPTIONAL input (in practice a string the runtime parses).
    #[serde(default)]
    pub value: Option<serde_json::Value>,
}

/// An output of a revision: what an output wiring and the response name by `name`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransformationOutput {
    /// The output's id; a workflow operator's output of this revision has the same id.
    pub id: Uuid,
    /// What the response's `output_results` and output wirings call it; may be missing in a DRAFT.
    #[serde(default)]
    pub name: Option<String>,
    /// What the runtime returns, and the type the response reports for it.
    pub data_type: DataType,
}

/// Where the designer's editor draws an operator, connector or link point; part of hetida's model,
/// no part of an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Position {
    /// Horizontal, in the editor's pixels.
    pub x: i64,
    /// Vertical, in the editor's pixels.
    pub y: i64,
}

/// A workflow's graph: operators (nested revisions), links between them, and its own IO.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WorkflowContent {
    /// The uses of nested revisions, each a node of the graph.
    #[serde(default)]
    pub operators: Vec<Operator>,
    /// The edges between operators, and from the workflow's inputs and to its outputs.
    #[serde(default)]
    pub links: Vec<Link>,
    /// Fixed values fed into operator inputs.
    #[serde(default)]
    pub constants: Vec<Constant>,
    /// The workflow's own inputs, each attached to an exposed operator input.
    #[serde(default)]
    pub inputs: Vec<WorkflowContentInput>,
    /// The workflow's own outputs, each taken from an operator output.
    #[serde(default)]
    pub outputs: Vec<WorkflowContentOutput>,
}

/// One use of a nested revision inside a workflow; `id` is the operator's own id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operator {
    /// The operator's own id, unique in its workflow; links and workflow IO point at it.
    pub id: Uuid,
    /// The nested revision's group; read to accept hetida's model, the revision itself is named by
    /// `transformation_id`.
    pub revision_group_id: Uuid,
    /// The operator's name in this workflow; the runtime names its node after it.
    pub name: String,
    /// Whether the nested revision is a component or a workflow.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// The nested revision's state as the workflow saw it when it was saved.
    pub state: State,
    /// The nested revision's tag as the workflow saw it when it was saved.
    pub version_tag: String,
    /// The revision this operator runs: the key of `RevisionTree::nested`.
    pub transformation_id: Uuid,
    /// Its inputs: the nested revision's inputs as this operator shows them.
    #[serde(default)]
    pub inputs: Vec<OperatorInput>,
    /// Its outputs: the nested revision's outputs as this operator shows them.
    #[serde(default)]
    pub outputs: Vec<OperatorOutput>,
    /// Where the editor draws the operator.
    #[serde(default)]
    pub position: Position,
}

/// An operator's input: one of the nested revision's inputs, as the workflow uses it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorInput {
    /// The nested revision's input id.
    pub id: Uuid,
    /// The nested revision's input name; connections and workflow inputs refer to it.
    #[serde(default)]
    pub name: Option<String>,
    /// The input's type, as the nested revision declares it.
    pub data_type: DataType,
    /// Where the editor draws the connector.
    #[serde(default)]
    pub position: Position,
    /// Whether it must be wired or may use its default.
    #[serde(default, rename = "type")]
    pub input_type: InputType,
    /// Its default, as the nested revision declares it.
    #[serde(default)]
    pub value: Option<serde_json::Value>,
    /// Whether the workflow exposes it as an input of its own (always so for a REQUIRED one).
    #[serde(default)]
    pub exposed: bool,
}

/// An operator's output: one of the nested revision's outputs, as the workflow uses it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorOutput {
    /// The nested revision's output id.
    pub id: Uuid,
    /// The nested revision's output name; connections and workflow outputs refer to it.
    #[serde(default)]
    pub name: Option<String>,
    /// The output's type, as the nested revision declares it.
    pub data_type: DataType,
    /// Where the editor draws the connector.
    #[serde(default)]
    pub position: Position,
}

/// An edge of a workflow: a value flowing from an output (or a workflow input) to an input (or a
/// workflow output).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    /// The link's own id.
    pub id: Uuid,
    /// Where the value comes from.
    pub start: Vertex,
    /// Where the value goes.
    pub end: Vertex,
    /// The bends the editor draws the link through.
    #[serde(default)]
    pub path: Vec<Position>,
}

/// One end of a link: an operator's connector, or (operator `None`) the workflow's own IO.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vertex {
    /// The operator whose connector this is; `None` for the workflow's own input, constant or
    /// output.
    #[serde(default)]
    pub operator: Option<Uuid>,
    /// The connector: the operator's input or output, or the workflow's own IO.
    pub connector: Connector,
}

/// A connection point of a link: an input or output of an operator or of the workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connector {
    /// The input's or output's id.
    pub id: Uuid,
    /// Its name: what the runtime's connections name the operator input or output by.
    #[serde(default)]
    pub name: Option<String>,
    /// Its data type; a link's ends agree or one is ANY.
    pub data_type: DataType,
    /// Where the editor draws it.
    #[serde(default)]
    pub position: Position,
}

/// A dynamic workflow input, attached to an exposed operator input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowContentInput {
    /// The input's id: what the runtime request's root inputs and the io_interface call it.
    pub id: Uuid,
    /// The name input wirings address (`workflow_input_name`); may be missing in a DRAFT, then it
    /// cannot be wired.
    #[serde(default)]
    pub name: Option<String>,
    /// How the runtime parses the value given.
    pub data_type: DataType,
    /// Where the editor draws it.
    #[serde(default)]
    pub position: Position,
    /// The operator whose input it feeds.
    pub operator_id: Uuid,
    /// Which input of that operator it feeds.
    pub connector_id: Uuid,
    /// That operator's name, as the editor shows it.
    #[serde(default)]
    pub operator_name: Option<String>,
    /// That operator input's name: how the runtime hands the value on into the operator.
    #[serde(default)]
    pub connector_name: Option<String>,
    /// Whether a request must wire it or it may use its default.
    #[serde(default, rename = "type")]
    pub input_type: InputType,
    /// Its default value, used when it stays unwired.
    #[serde(default)]
    pub value: Option<serde_json::Value>,
}

/// A fixed value fed to an operator input; not wirable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Constant {
    /// The constant's own id.
    pub id: Uuid,
    /// Always empty: a constant has no name, so no wiring can address it.
    #[serde(default)]
    pub name: Option<String>,
    /// How the runtime parses `value`.
    pub data_type: DataType,
    /// Where the editor draws it.
    #[serde(default)]
    pub position: Position,
    /// The operator whose input it feeds.
    pub operator_id: Uuid,
    /// Which input of that operator it feeds.
    pub connector_id: Uuid,
    /// That operator's name, as the editor shows it.
    #[serde(default)]
    pub operator_name: Option<String>,
    /// That operator input's name: how the runtime hands the value on into the operator.
    #[serde(default)]
    pub connector_name: Option<String>,
    /// The value as text, parsed by the runtime per `data_type`.
    pub value: String,
}

/// A workflow output, taken from an operator output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowContentOutput {
    /// The output's id: what the io_interface calls it.
    pub id: Uuid,
    /// The name the response's `output_results` and output wirings use; may be missing in a DRAFT.
    #[serde(default)]
    pub name: Option<String>,
    /// The output's data type, reported in the response's output types.
    pub data_type: DataType,
    /// Where the editor draws it.
    #[serde(default)]
    pub position: Position,
    /// The operator whose output it is.
    pub operator_id: Uuid,
    /// Which output of that operator it is.
    pub connector_id: Uuid,
    /// That operator's name, as the editor shows it.
    #[serde(default)]
    pub operator_name: Option<String>,
    /// That operator output's name: how the runtime takes the value out of the operator.
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
