//! From a revision tree to the runtime request (`WorkflowExecutionInput`, spec §5).
//!
//! All work that depends only on the revisions happens once, in [`PreparedRevision::new`]: the
//! component wrapper, the node tree, `components` and `code_modules`, serialised to Python-style
//! bytes. A released revision never changes, so the store keeps its `PreparedRevision` and each
//! request only validates its wiring and splices a few ids into the stored bytes.

use std::collections::HashSet;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::error::{Missing, ProtocolError};
use super::lenient::is_python_identifier;
use super::pyjson;
use super::request::ExecutionRequest;
use super::revision::{
    Content, DataType, InputType, Kind, RevisionTree, TransformationRevision, WorkflowContent,
};
use super::wiring::{OutputWiring, WorkflowWiring};

/// Name of the ad-hoc workflow a component is wrapped in (spec §5.2).
const WRAPPER_NAME: &str = "COMPONENT EXECUTION WRAPPER WORKFLOW";

/// A workflow input as the wiring validation sees it.
#[derive(Debug, Clone)]
struct WiringSlot {
    /// What an input wiring names it by (`workflow_input_name`); empty for constants.
    name: String,
    /// Constants cannot be wired.
    constant: bool,
    /// OPTIONAL inputs may stay unwired: their default is used.
    optional: bool,
}

impl WiringSlot {
    /// A root node input's slot: the node already says whether it is a constant and whether it
    /// may stay unwired (`default`).
    fn of(input: &NodeInput<'_>) -> WiringSlot {
        WiringSlot {
            name: input.name.unwrap_or_default().to_owned(),
            constant: input.constant,
            optional: input.default,
        }
    }
}

/// Everything about one revision tree that does not depend on the request.
#[derive(Debug, Clone)]
pub struct PreparedRevision {
    /// The executed revision (the component itself when wrapped): `trafo_id`.
    trafo_id: Uuid,
    /// `configuration.name`: the root workflow's id, or the wrapper's.
    configuration_name: Uuid,
    /// `"code_modules": [...], "components": [...], "workflow": {"id": "` up to the root node id.
    /// Shared by every request's body, never copied (most of the body: all component sources).
    head: Bytes,
    /// The root node after its id, through the closing brace; shared like `head`.
    workflow_tail: Bytes,
    /// The root workflow's inputs and constants, to check a request's wiring against.
    inputs: Vec<WiringSlot>,
    /// Workflow outputs in order, with their data types (`output_types_by_output_name`).
    outputs: Vec<(String, DataType)>,
    /// Used when the request has no wiring.
    test_wiring: WorkflowWiring,
}

/// The body to POST to the runtime, and what the response needs from it.
#[derive(Debug, Clone)]
pub struct RuntimeRequest {
    /// The body, its constant parts shared with every other request for the same revision.
    pub body: RuntimeBody,
    /// The request's job id, which the response carries back.
    pub job_id: Uuid,
}

/// A runtime request body as a sequence of pieces. The revision's constant parts (for the seed's
/// Volatility workflow, 216 KB of component sources and workflow) are pieces shared by every
/// request; only the request's own parts are written anew. Sent as they are (vectored writes),
/// so the constant parts are never copied per request.
#[derive(Debug, Clone)]
pub struct RuntimeBody {
    pieces: Vec<Bytes>,
}

impl RuntimeBody {
    /// The pieces in order, to be written one after the other.
    pub fn pieces(&self) -> &[Bytes] {
        &self.pieces
    }

    /// Length in bytes.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.pieces.iter().map(Bytes::len).sum()
    }

    /// The body in one buffer (for tools and comparisons; the worker never needs it).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut all = Vec::with_capacity(self.len());
        for p in &self.pieces {
            all.extend_from_slice(p);
        }
        all
    }
}

impl From<Bytes> for RuntimeBody {
    fn from(body: Bytes) -> RuntimeBody {
        RuntimeBody { pieces: vec![body] }
    }
}

// The runtime request's parts, as serde structs. Fields are declared in the reference's order
// (spec §5.3, §5.4): the body is written in declaration order and must match it byte for byte.

/// An entry of `code_modules`: a component's source.
#[derive(Serialize)]
struct CodeModule<'a> {
    code: &'a str,
    uuid: Uuid,
}

/// An input of a `components` entry.
#[derive(Serialize)]
struct ComponentInput<'a> {
    id: Uuid,
    #[serde(rename = "type")]
    data_type: &'static str,
    name: &'a Option<String>,
    default: bool,
    default_value: &'a Option<Value>,
}

/// An output of a `components` entry.
#[derive(Serialize)]
struct ComponentOutput<'a> {
    id: Uuid,
    name: &'a Option<String>,
    #[serde(rename = "type")]
    data_type: &'static str,
}

/// An entry of `components`: a component's interface; its code is the code module of the same id.
#[derive(Serialize)]
struct Component<'a> {
    uuid: Uuid,
    name: &'a str,
    tag: &'a str,
    code_module_uuid: Uuid,
    function_name: &'static str,
    inputs: Vec<ComponentInput<'a>>,
    outputs: Vec<ComponentOutput<'a>>,
}

/// An operator of a workflow node.
#[derive(Serialize)]
#[serde(untagged)]
enum SubNode<'a> {
    /// A component operator, by reference: the component itself is in `components`.
    Component {
        id: Uuid,
        component_uuid: Uuid,
        name: &'a str,
    },
    /// A nested workflow, in full.
    Workflow(Node<'a>),
}

/// A link between two operators of a workflow node.
#[derive(Serialize)]
struct Connection<'a> {
    input_in_workflow_id: Uuid,
    input_name: &'a Option<String>,
    output_in_workflow_id: Uuid,
    output_name: &'a Option<String>,
}

/// The value a workflow constant feeds its operator (a string, parsed by the runtime per type).
#[derive(Serialize)]
struct ConstantValue<'a> {
    value: &'a str,
}

/// A workflow node's input or constant.
#[derive(Serialize)]
struct NodeInput<'a> {
    id: Uuid,
    #[serde(rename = "type")]
    data_type: &'static str,
    name: Option<&'a str>,
    id_of_sub_node: Uuid,
    #[serde(rename = "constantValue")]
    constant_value: Option<ConstantValue<'a>>,
    default_value: Option<&'a Value>,
    constant: bool,
    default: bool,
    name_in_subnode: Option<&'a str>,
}

/// A workflow node's output.
#[derive(Serialize)]
struct NodeOutput<'a> {
    id: Uuid,
    name: &'a str,
    /// Kept as the type, not its name: the root's outputs are read back for
    /// `output_types_by_output_name`.
    #[serde(rename = "type", serialize_with = "data_type_name")]
    data_type: DataType,
    id_of_sub_node: Uuid,
    name_in_subnode: Option<&'a str>,
}

/// A workflow node of the runtime's `WorkflowNode` tree (spec §5.3).
#[derive(Serialize)]
struct Node<'a> {
    id: Uuid,
    sub_nodes: Vec<SubNode<'a>>,
    connections: Vec<Connection<'a>>,
    inputs: Vec<NodeInput<'a>>,
    outputs: Vec<NodeOutput<'a>>,
    name: &'a str,
    tr_id: Uuid,
    tr_name: &'a str,
    tr_tag: &'a str,
}

/// Walks a revision tree into the runtime's node tree and the list of components it uses.
struct TreeWalk<'a> {
    tree: &'a RevisionTree,
    /// Components in order of first use; the reference's order is its database's row order,
    /// which the runtime does not depend on (spec §5.4).
    components: Vec<&'a TransformationRevision>,
    seen: HashSet<Uuid>,
}

impl<'a> TreeWalk<'a> {
    fn nested(
        &self,
        revision: &TransformationRevision,
        id: Uuid,
    ) -> Result<&'a TransformationRevision, ProtocolError> {
        self.tree
            .nested
            .get(&id)
            .map(|r| r.as_ref())
            .ok_or(ProtocolError::Missing(Missing::Nested {
                root: self.tree.root.id,
                missing: id,
            }))
            .and_then(|r| {
                if r.id == id {
                    Ok(r)
                } else {
                    Err(ProtocolError::InvalidRevision {
                        revision: revision.id,
                        reason: format!("nested revision map holds {} under id {id}", r.id),
                    })
                }
            })
    }

    fn use_component(&mut self, c: &'a TransformationRevision) {
        if self.seen.insert(c.id) {
            self.components.push(c);
        }
    }

    /// The root node: the root workflow itself, or the wrapper a component runs in; with the
    /// `configuration.name` that goes with it.
    fn root(&mut self) -> Result<(Node<'a>, Uuid), ProtocolError> {
        let tree: &'a RevisionTree = self.tree;
        let root = tree.root.as_ref();
        // The root node's id is fresh for every execution; it is serialised as nil here and
        // spliced in per request.
        match (&root.kind, &root.content) {
            (Kind::Workflow, Content::Workflow(content)) => Ok((
                self.node(root, content, Uuid::nil(), &root.name, 0)?,
                root.id,
            )),
            (Kind::Component, Content::Component(_)) => {
                self.use_component(root);
                let wrapper = Wrapper::new(root)?;
                Ok((wrapper.node(root), wrapper.workflow_id))
            }
            (kind, _) => Err(ProtocolError::InvalidRevision {
                revision: root.id,
                reason: format!("its type is {kind:?} but its content does not match"),
            }),
        }
    }

    /// The node of workflow `revision`, placed as operator `id` named `name` in its parent.
    fn node(
        &mut self,
        revision: &'a TransformationRevision,
        content: &'a WorkflowContent,
        id: Uuid,
        name: &'a str,
        depth: usize,
    ) -> Result<Node<'a>, ProtocolError> {
        if depth > 64 {
            return Err(ProtocolError::InvalidRevision {
                revision: self.tree.root.id,
                reason: "workflows are nested more than 64 levels deep (a cycle?)".into(),
            });
        }
        Ok(Node {
            id,
            sub_nodes: self.sub_nodes(revision, content, depth)?,
            connections: connections(content),
            inputs: workflow_inputs(revision, content)?,
            outputs: workflow_outputs(revision, content)?,
            name,
            tr_id: revision.id,
            tr_name: &revision.name,
            tr_tag: &revision.version_tag,
        })
    }

    /// One sub node per operator: a component by reference (and collected for `components`),
    /// a nested workflow walked in full.
    fn sub_nodes(
        &mut self,
        revision: &'a TransformationRevision,
        content: &'a WorkflowContent,
        depth: usize,
    ) -> Result<Vec<SubNode<'a>>, ProtocolError> {
        let mut sub_nodes = Vec::with_capacity(content.operators.len());
        for op in &content.operators {
            let nested = self.nested(revision, op.transformation_id)?;
            sub_nodes.push(match &nested.content {
                Content::Component(_) => {
                    self.use_component(nested);
                    SubNode::Component {
                        id: op.id,
                        component_uuid: nested.id,
                        name: &op.name,
                    }
                }
                Content::Workflow(w) => {
                    SubNode::Workflow(self.node(nested, w, op.id, &op.name, depth + 1)?)
                }
            });
        }
        Ok(sub_nodes)
    }
}

/// Links between two operators; a link from or to the workflow's own inputs and outputs is no
/// connection (spec §5.3).
fn connections(content: &WorkflowContent) -> Vec<Connection<'_>> {
    content
        .links
        .iter()
        .filter_map(|l| {
            Some(Connection {
                input_in_workflow_id: l.start.operator?,
                input_name: &l.start.connector.name,
                output_in_workflow_id: l.end.operator?,
                output_name: &l.end.connector.name,
            })
        })
        .collect()
}

/// The workflow's inputs, then its constants (spec §5.3).
fn workflow_inputs<'a>(
    revision: &TransformationRevision,
    content: &'a WorkflowContent,
) -> Result<Vec<NodeInput<'a>>, ProtocolError> {
    let mut inputs = Vec::with_capacity(content.inputs.len() + content.constants.len());
    for d in &content.inputs {
        let name = workflow_io_name(revision, d.name.as_deref(), "input", d.id)?;
        inputs.push(NodeInput {
            id: d.id,
            data_type: d.data_type.as_str(),
            name: Some(name),
            id_of_sub_node: d.operator_id,
            constant_value: None,
            default_value: d.value.as_ref(),
            constant: false,
            default: d.input_type == InputType::Optional,
            name_in_subnode: d.connector_name.as_deref(),
        });
    }
    for k in &content.constants {
        inputs.push(NodeInput {
            id: k.id,
            data_type: k.data_type.as_str(),
            name: None,
            id_of_sub_node: k.operator_id,
            constant_value: Some(ConstantValue { value: &k.value }),
            default_value: None,
            constant: true,
            default: false,
            name_in_subnode: k.connector_name.as_deref(),
        });
    }
    Ok(inputs)
}

/// The workflow's outputs, in order.
fn workflow_outputs<'a>(
    revision: &TransformationRevision,
    content: &'a WorkflowContent,
) -> Result<Vec<NodeOutput<'a>>, ProtocolError> {
    let mut outputs = Vec::with_capacity(content.outputs.len());
    for x in &content.outputs {
        outputs.push(NodeOutput {
            id: x.id,
            name: workflow_io_name(revision, x.name.as_deref(), "output", x.id)?,
            data_type: x.data_type,
            id_of_sub_node: x.operator_id,
            name_in_subnode: x.connector_name.as_deref(),
        });
    }
    Ok(outputs)
}

/// A workflow's own inputs and outputs must be named identifiers to be wired (spec §5.3); a
/// DRAFT may still have unnamed ones, which the reference fails on with an opaque `KeyError`.
fn workflow_io_name<'a>(
    revision: &TransformationRevision,
    name: Option<&'a str>,
    what: &str,
    id: Uuid,
) -> Result<&'a str, ProtocolError> {
    match name {
        Some(n) if is_python_identifier(n) => Ok(n),
        Some(n) if !n.is_empty() => Err(ProtocolError::InvalidRevision {
            revision: revision.id,
            reason: format!(
                "workflow {what} {id} is named `{n}`, which is not a valid Python identifier"
            ),
        }),
        _ => Err(ProtocolError::InvalidRevision {
            revision: revision.id,
            reason: format!(
                "workflow {what} {id} of `{}` has no name; name it (or connect it to a constant) before executing",
                revision.name
            ),
        }),
    }
}

fn component_source(c: &TransformationRevision) -> &str {
    match &c.content {
        Content::Component(code) => code,
        Content::Workflow(_) => unreachable!("only components are collected"),
    }
}

impl PreparedRevision {
    /// Does every per-revision step of spec §5 once.
    pub fn new(tree: &RevisionTree) -> Result<PreparedRevision, ProtocolError> {
        let mut walk = TreeWalk {
            tree,
            components: Vec::new(),
            seen: HashSet::new(),
        };
        let (node, configuration_name) = walk.root()?;
        Ok(PreparedRevision {
            trafo_id: tree.root.id,
            configuration_name,
            head: head(&walk.components).into(),
            workflow_tail: root_tail(&node).into(),
            inputs: node.inputs.iter().map(WiringSlot::of).collect(),
            outputs: node
                .outputs
                .iter()
                .map(|o| (o.name.to_owned(), o.data_type))
                .collect(),
            test_wiring: tree.root.test_wiring.clone(),
        })
    }

    /// Workflow outputs with their data types, in workflow order.
    pub fn output_types(&self) -> &[(String, DataType)] {
        &self.outputs
    }

    /// Validates and completes the wiring (spec §5.6) and writes the runtime request body.
    pub fn runtime_request(
        &self,
        request: &ExecutionRequest,
    ) -> Result<RuntimeRequest, ProtocolError> {
        let wiring = self.complete_wiring(request.wiring.as_ref().unwrap_or(&self.test_wiring))?;
        let wiring_json = pyjson::to_vec(&wiring);
        // The root node's id: random per execution, as in the reference.
        let mut node_id = Vec::with_capacity(37);
        write_uuid(&mut node_id, Uuid::new_v4());
        node_id.push(b'"');
        let mut body = Vec::with_capacity(wiring_json.len() + 256);
        body.extend_from_slice(b", \"configuration\": {\"name\": \"");
        write_uuid(&mut body, self.configuration_name);
        body.extend_from_slice(b"\", \"engine\": \"plain\", \"run_pure_plot_operators\": ");
        body.extend_from_slice(if request.run_pure_plot_operators {
            b"true"
        } else {
            b"false"
        });
        body.extend_from_slice(
            b", \"return_individual_node_results\": false}, \"workflow_wiring\": ",
        );
        body.extend_from_slice(&wiring_json);
        body.extend_from_slice(b", \"job_id\": \"");
        write_uuid(&mut body, request.job_id);
        body.extend_from_slice(b"\", \"trafo_id\": \"");
        write_uuid(&mut body, self.trafo_id);
        body.extend_from_slice(b"\"}");
        Ok(RuntimeRequest {
            body: RuntimeBody {
                pieces: vec![
                    self.head.clone(),
                    node_id.into(),
                    self.workflow_tail.clone(),
                    body.into(),
                ],
            },
            job_id: request.job_id,
        })
    }

    fn complete_wiring(&self, wiring: &WorkflowWiring) -> Result<WorkflowWiring, ProtocolError> {
        let mismatch = |reason: String| ProtocolError::WiringMismatch {
            revision: self.trafo_id,
            reason,
        };
        for slot in self.inputs.iter().filter(|s| !s.constant && !s.optional) {
            if !wiring
                .input_wirings
                .iter()
                .any(|w| w.workflow_input_name == slot.name)
            {
                return Err(mismatch(format!(
                    "Wiring Incomplete: Workflow Input '{}' has no wiring!",
                    slot.name
                )));
            }
        }
        for w in &wiring.input_wirings {
            if !self
                .inputs
                .iter()
                .any(|s| !s.constant && s.name == w.workflow_input_name)
            {
                return Err(mismatch(format!(
                    "Wiring does not match: There is no workflow input '{}'!",
                    w.workflow_input_name
                )));
            }
        }
        for w in &wiring.output_wirings {
            if !self
                .outputs
                .iter()
                .any(|(name, _)| *name == w.workflow_output_name)
            {
                return Err(mismatch(format!(
                    "Wiring does not match: There is no workflow output '{}'!",
                    w.workflow_output_name
                )));
            }
        }
        let mut completed = wiring.clone();
        for (name, _) in &self.outputs {
            if !wiring
                .output_wirings
                .iter()
                .any(|w| w.workflow_output_name == *name)
            {
                completed
                    .output_wirings
                    .push(OutputWiring::direct_provisioning(name));
            }
        }
        Ok(completed)
    }
}

/// Writes `id` hyphenated in lower case, as Python's `str(uuid)`, without a formatter.
fn write_uuid(out: &mut Vec<u8>, id: Uuid) {
    out.extend_from_slice(
        id.hyphenated()
            .encode_lower(&mut Uuid::encode_buffer())
            .as_bytes(),
    );
}

/// The body up to the root node's id: `code_modules`, `components` and the start of `workflow`.
fn head(components: &[&TransformationRevision]) -> Vec<u8> {
    let code_modules: Vec<CodeModule<'_>> = components
        .iter()
        .map(|c| CodeModule {
            code: component_source(c),
            uuid: c.id,
        })
        .collect();
    let components: Vec<Component<'_>> = components.iter().map(|c| component(c)).collect();
    let mut head = Vec::with_capacity(4096);
    head.extend_from_slice(b"{\"code_modules\": ");
    pyjson::write(&mut head, &code_modules);
    head.extend_from_slice(b", \"components\": ");
    pyjson::write(&mut head, &components);
    head.extend_from_slice(b", \"workflow\": {\"id\": \"");
    head
}

/// The root node's bytes after its (nil) id's closing quote.
fn root_tail(node: &Node<'_>) -> Vec<u8> {
    let bytes = pyjson::to_vec(node);
    let prefix = br#"{"id": "00000000-0000-0000-0000-000000000000""#;
    debug_assert!(bytes.starts_with(prefix));
    bytes[prefix.len()..].to_vec()
}

/// Writes a data type as its name, as the `&'static str` type fields are written.
fn data_type_name<S: serde::Serializer>(data_type: &DataType, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(data_type.as_str())
}

fn component(c: &TransformationRevision) -> Component<'_> {
    Component {
        uuid: c.id,
        name: &c.name,
        tag: &c.version_tag,
        code_module_uuid: c.id,
        function_name: "main",
        inputs: c
            .io_interface
            .inputs
            .iter()
            .map(|i| ComponentInput {
                id: i.id,
                data_type: i.data_type.as_str(),
                name: &i.name,
                default: i.input_type == InputType::Optional,
                default_value: &i.value,
            })
            .collect(),
        outputs: c
            .io_interface
            .outputs
            .iter()
            .map(|o| ComponentOutput {
                id: o.id,
                name: &o.name,
                data_type: o.data_type.as_str(),
            })
            .collect(),
    }
}

/// The ad-hoc workflow a component runs in (spec §5.2). Its ids are derived from the component's
/// id instead of drawn at random, so that the same request gives the same runtime request
/// (spec quirk 10) — the root node id stays fresh per execution, as in the reference.
struct Wrapper {
    workflow_id: Uuid,
    operator_id: Uuid,
    input_ids: Vec<Uuid>,
    output_ids: Vec<Uuid>,
}

impl Wrapper {
    fn new(c: &TransformationRevision) -> Result<Wrapper, ProtocolError> {
        let derive = |what: &str| Uuid::new_v5(&c.id, what.as_bytes());
        for i in &c.io_interface.inputs {
            workflow_io_name(c, i.name.as_deref(), "input", i.id)?;
        }
        for o in &c.io_interface.outputs {
            workflow_io_name(c, o.name.as_deref(), "output", o.id)?;
        }
        Ok(Wrapper {
            workflow_id: derive("wrapper-workflow"),
            operator_id: derive("wrapper-operator"),
            input_ids: c
                .io_interface
                .inputs
                .iter()
                .map(|i| derive(&format!("input:{}", i.id)))
                .collect(),
            output_ids: c
                .io_interface
                .outputs
                .iter()
                .map(|o| derive(&format!("output:{}", o.id)))
                .collect(),
        })
    }

    fn node<'a>(&self, c: &'a TransformationRevision) -> Node<'a> {
        Node {
            id: Uuid::nil(),
            sub_nodes: vec![SubNode::Component {
                id: self.operator_id,
                component_uuid: c.id,
                name: &c.name,
            }],
            connections: Vec::new(),
            inputs: c
                .io_interface
                .inputs
                .iter()
                .zip(&self.input_ids)
                .map(|(i, id)| NodeInput {
                    id: *id,
                    data_type: i.data_type.as_str(),
                    name: i.name.as_deref(),
                    id_of_sub_node: self.operator_id,
                    constant_value: None,
                    default_value: i.value.as_ref(),
                    constant: false,
                    default: i.input_type == InputType::Optional,
                    name_in_subnode: i.name.as_deref(),
                })
                .collect(),
            outputs: c
                .io_interface
                .outputs
                .iter()
                .zip(&self.output_ids)
                .map(|(o, id)| NodeOutput {
                    id: *id,
                    name: o.name.as_deref().unwrap_or_default(),
                    data_type: o.data_type,
                    id_of_sub_node: self.operator_id,
                    name_in_subnode: o.name.as_deref(),
                })
                .collect(),
            name: WRAPPER_NAME,
            tr_id: self.workflow_id,
            tr_name: WRAPPER_NAME,
            tr_tag: &c.version_tag,
        }
    }
}
