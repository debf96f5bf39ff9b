//! Why the store cannot give a revision.

use crate::protocol::Missing;
use crate::protocol::ProtocolError;

/// Why the store cannot give a revision. In a worker it becomes the matching [`ProtocolError`],
/// and so the `error` of the failure response.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// A revision asked for is not there.
    #[error(transparent)]
    Missing(#[from] Missing),
    /// The store could not answer: the backend unreachable or slow, or answering an error
    /// status or something that is no revision.
    #[error("revision store unavailable: {reason}")]
    Unavailable {
        /// What went wrong, naming the URL.
        reason: String,
    },
    /// The configured store cannot be used at all; found when a worker builds its store, so
    /// the worker fails to boot.
    #[error("revision store spec `{spec}`: {reason}")]
    BadSpec {
        /// The store as configured (for the backend, its API URL).
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl From<StoreError> for ProtocolError {
    fn from(e: StoreError) -> ProtocolError {
        match e {
            StoreError::Missing(missing) => ProtocolError::Missing(missing),
            // The failure response says "the store is unavailable" itself: its reason is only
            // what went wrong, so the words are not said twice.
            StoreError::Unavailable { reason } => ProtocolError::StoreUnavailable { reason },
            other => ProtocolError::StoreUnavailable {
                reason: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unavailable_store_is_said_unavailable_once() {
        let e = ProtocolError::from(StoreError::Unavailable {
            reason: "GET http://backend/api/transformations/x: connection refused".into(),
        });
        let text = e.to_string();
        assert_eq!(text.matches("unavailable").count(), 1, "{text}");
        assert!(text.ends_with("connection refused"), "{text}");
    }
}
