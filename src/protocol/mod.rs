//! The hetida designer execution protocol (spec: `shared/spec/hetida-protocol.md`).
//!
//! Pure data and pure functions, no IO: what crosses Kafka (requests, responses), what is stored
//! (transformation revisions), and what crosses the runtime HTTP API (runtime request and result).
//!
//! * [`budget`]: the memory a request may take to read, checked before it is read.
//! * [`request`]: parse a Kafka record value into an [`ExecutionRequest`].
//! * [`prepare`]: turn a revision tree into a [`PreparedRevision`] once, then into the runtime
//!   request of each execution.
//! * [`response`]: turn the runtime's answer (or a [`ProtocolError`]) into the Kafka response.
//! * [`pyjson`]: JSON bytes as Python's `json.dumps` writes them, for byte compatibility.

pub mod budget;
pub mod error;
pub mod lenient;
pub mod prepare;
pub mod pyjson;
pub mod request;
pub mod response;
pub mod revision;
pub mod wiring;

/// Header of a response (and of a dead letter) naming the job it belongs to (design decision 7).
pub const JOB_ID_HEADER: &str = "hd-job-id";
/// Header of a dead letter saying why the record is not a request.
pub const DEAD_LETTER_REASON_HEADER: &str = "hd-dead-letter-reason";

pub use budget::job_id_only;
pub use error::{Missing, ProtocolError};
pub use prepare::{PreparedRevision, RuntimeBody, RuntimeRequest};
pub use request::{ExecutionRequest, Target, parse_request};
pub use response::{
    BuiltResponse, Step, Timings, build_response, build_result_response, failure_response,
};
