//! One error type for everything that can go wrong with one execution request. Each variant
//! becomes a failure response (design decision 6): the requester always gets an answer.

use uuid::Uuid;

/// A revision a request needs that the store does not have. The store reports it and the
/// failure response names it; both use this one type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Missing {
    /// No revision has the id asked for.
    #[error("transformation revision {id} was not found")]
    Revision {
        /// The id asked for.
        id: Uuid,
    },
    /// A request named a revision group, and none of the group is RELEASED.
    #[error("revision group {group} has no RELEASED transformation revision")]
    ReleasedOfGroup {
        /// The revision group asked for.
        group: Uuid,
    },
    /// A workflow uses a revision the store does not have, so it cannot be prepared.
    #[error(
        "transformation revision {root} uses transformation revision {missing}, which was not found"
    )]
    Nested {
        /// The revision executed, whose tree was loaded.
        root: Uuid,
        /// The nested revision that was not found, at whatever depth.
        missing: Uuid,
    },
}

/// Why one request got a failure response instead of its result: each variant is one step of
/// the execution failing, with hetida's error type for it ([`ProtocolError::error_type`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProtocolError {
    /// Tombstone, not UTF-8, not JSON or not a JSON object: nothing to execute. Such a record also
    /// goes, untouched, to the dead-letter topic.
    #[error("the record is not an execution request: {reason}")]
    NotARequest {
        /// What the record is instead (empty, not UTF-8, where the JSON breaks, ...).
        reason: String,
    },
    /// A JSON object, but not a request hetida's validation accepts (a wiring, an id, a field
    /// is wrong); answered as hetida's `ValidationError`.
    #[error("invalid execution request: {reason}")]
    InvalidRequest {
        /// The request's job id if it could be read, so that the requester can match the
        /// failure to its request.
        job_id: Option<Uuid>,
        /// What the validation objects to, and where.
        reason: String,
    },
    /// A revision the request needs is not in the store.
    #[error(transparent)]
    Missing(#[from] Missing),
    /// The request's wiring does not fit the revision's inputs and outputs (a name unknown, a
    /// REQUIRED input unwired, a constant wired).
    #[error("the wiring does not fit transformation revision {revision}: {reason}")]
    WiringMismatch {
        /// The revision executed.
        revision: Uuid,
        /// Which input or output does not fit, and how.
        reason: String,
    },
    /// The revision itself cannot be turned into a runtime request (a wrong content for its
    /// type, an unnamed workflow input, workflows nested too deep).
    #[error("transformation revision {revision} cannot be executed: {reason}")]
    InvalidRevision {
        /// The revision at fault (the executed one or one nested in it).
        revision: Uuid,
        /// What about it cannot be executed.
        reason: String,
    },
    /// The store could not be asked (the backend unreachable or answering errors): the
    /// revision may exist, so this is no "not found".
    #[error("the transformation revision store is unavailable: {reason}")]
    StoreUnavailable {
        /// What the store's failure was.
        reason: String,
    },
    /// The call failed before a whole answer arrived: not connected, timed out, or the
    /// connection broke; `reason` says which.
    #[error("the runtime call failed: {reason}")]
    RuntimeUnreachable {
        /// What failed, after how many attempts.
        reason: String,
    },
    /// The runtime answered, but not with JSON: usually a proxy's or server's error page, so
    /// the message quotes it.
    #[error(
        "the runtime answered HTTP {status} with a body that is not JSON ({reason}): {body_start}"
    )]
    RuntimeAnswerNotJson {
        /// The HTTP status of the answer.
        status: u16,
        /// Where and why the body is not JSON.
        reason: String,
        /// The start of the body, for telling what answered.
        body_start: String,
    },
    /// The runtime answered JSON that is not a `WorkflowExecutionResult` (a field missing or of
    /// the wrong kind).
    #[error(
        "the runtime answered HTTP {status} with JSON that is not a WorkflowExecutionResult ({reason}): {body_start}"
    )]
    RuntimeResultInvalid {
        /// The HTTP status of the answer.
        status: u16,
        /// Which field is wrong, and how.
        reason: String,
        /// The start of the body, for telling what answered.
        body_start: String,
    },
    /// The runtime's answer is larger than the worker reads (`max_answer_bytes`); `reason`
    /// gives the size read or announced and the limit.
    #[error("the runtime's answer is too large: {reason}")]
    RuntimeAnswerTooLarge {
        /// The size and the limit.
        reason: String,
    },
    /// The response does not fit Kafka's limits; `reason` gives its size, the limit and what
    /// raises it.
    #[error("the response cannot be delivered: {reason}")]
    ResponseTooLarge {
        /// The size, the limit and what raises it.
        reason: String,
    },
    /// The service itself failed: a panic in the execution (the last line of defence still
    /// answers the request, design decision 14), or Kafka refused the response for another
    /// reason than its size.
    #[error("unexpected error: {reason}")]
    Internal {
        /// What went wrong (a panic's message, Kafka's refusal).
        reason: String,
    },
}

impl ProtocolError {
    /// `error.type` of the failure response: the reference's exception class for the same path,
    /// so a reader that knows hetida's errors recognises them.
    pub fn error_type(&self) -> &'static str {
        match self {
            ProtocolError::NotARequest { .. } => "UndecodableRequestError",
            ProtocolError::InvalidRequest { .. } => "ValidationError",
            ProtocolError::Missing(Missing::Revision { .. }) => "TrafoExecutionNotFoundError",
            ProtocolError::Missing(Missing::ReleasedOfGroup { .. } | Missing::Nested { .. }) => {
                "DBNotFoundError"
            }
            ProtocolError::WiringMismatch { .. } | ProtocolError::InvalidRevision { .. } => {
                "TrafoExecutionInputValidationError"
            }
            ProtocolError::StoreUnavailable { .. } => "StoreUnavailableError",
            ProtocolError::RuntimeUnreachable { .. } => "TrafoExecutionRuntimeConnectionError",
            ProtocolError::RuntimeAnswerNotJson { .. }
            | ProtocolError::RuntimeResultInvalid { .. } => "TrafoExecutionResultValidationError",
            // aiokafka's exception for the same case, which hetida's producer would raise. An
            // answer over the limit (set from the producer's) makes a response that large.
            ProtocolError::ResponseTooLarge { .. }
            | ProtocolError::RuntimeAnswerTooLarge { .. } => "MessageSizeTooLargeError",
            ProtocolError::Internal { .. } => "UnexpectedError",
        }
    }

    /// The step of the execution that failed (`error.location.function_name`).
    pub fn step(&self) -> &'static str {
        match self {
            ProtocolError::NotARequest { .. } | ProtocolError::InvalidRequest { .. } => {
                "parse_request"
            }
            ProtocolError::Missing(_) | ProtocolError::StoreUnavailable { .. } => {
                "load_transformation_revision"
            }
            ProtocolError::WiringMismatch { .. } | ProtocolError::InvalidRevision { .. } => {
                "prepare_execution_input"
            }
            ProtocolError::RuntimeUnreachable { .. }
            | ProtocolError::RuntimeAnswerNotJson { .. }
            | ProtocolError::RuntimeResultInvalid { .. }
            | ProtocolError::RuntimeAnswerTooLarge { .. } => "run_execution_input",
            ProtocolError::ResponseTooLarge { .. } => "send_response",
            ProtocolError::Internal { .. } => "execute",
        }
    }

    /// The request's job id, where the failure happened after it could be read but is the
    /// failure's own to tell (a request invalid in other ways).
    pub fn job_id(&self) -> Option<Uuid> {
        match self {
            ProtocolError::InvalidRequest { job_id, .. } => *job_id,
            _ => None,
        }
    }

    /// Whether the record is no request at all (it then also goes to the dead-letter topic).
    pub fn is_not_a_request(&self) -> bool {
        matches!(self, ProtocolError::NotARequest { .. })
    }
}

/// The first `max` characters of a body, for error messages that quote what the runtime said.
/// Looks at no more of the body than it needs: bodies may be tens of megabytes.
pub fn body_start(body: &[u8], max: usize) -> String {
    let head = body.get(..max.saturating_mul(4)).unwrap_or(body);
    let text = String::from_utf8_lossy(head);
    let mut chars = text.chars();
    let mut s: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() || head.len() < body.len() {
        s.push('…');
    }
    s
}
