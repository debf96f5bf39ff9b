//! Where transformation revisions come from (spec §3, §4, §8).
//!
//! * [`dir`]: a directory of hetida export files (the default, `dir:./transformations`).
//!
//! Whatever the source, a worker asks for a revision by id, for the latest released revision of
//! a group, or for a whole [`RevisionTree`] to prepare.

pub mod dir;

use std::collections::HashMap;
use std::sync::Arc;

use uuid::Uuid;

use crate::protocol::ProtocolError;
use crate::protocol::revision::{RevisionTree, State, TransformationRevision};

pub use dir::{DirIndex, DirProblem, DirProblems};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    #[error("transformation revision {id} was not found")]
    RevisionNotFound { id: Uuid },
    #[error("revision group {group} has no RELEASED transformation revision")]
    NoReleasedRevision { group: Uuid },
    #[error(
        "transformation revision {root} uses transformation revision {missing}, which was not found"
    )]
    NestedRevisionMissing { root: Uuid, missing: Uuid },
    #[error("revision store unavailable: {reason}")]
    Unavailable { reason: String },
    #[error("revision store spec `{spec}`: {reason}")]
    BadSpec { spec: String, reason: String },
}

impl From<StoreError> for ProtocolError {
    fn from(e: StoreError) -> ProtocolError {
        match e {
            StoreError::RevisionNotFound { id } => ProtocolError::RevisionNotFound { id },
            StoreError::NoReleasedRevision { group } => ProtocolError::NoReleasedRevision { group },
            StoreError::NestedRevisionMissing { root, missing } => {
                ProtocolError::NestedRevisionMissing { root, missing }
            }
            other => ProtocolError::StoreUnavailable {
                reason: other.to_string(),
            },
        }
    }
}

/// Spec §3: among RELEASED revisions the greatest `released_timestamp` wins; on a tie the one
/// that comes last in store order. DRAFT and DISABLED never count.
pub fn latest_released_of<'a>(
    revisions: impl Iterator<Item = &'a Arc<TransformationRevision>>,
) -> Option<&'a Arc<TransformationRevision>> {
    revisions.filter(|r| r.state == State::Released).fold(
        None,
        |best: Option<&Arc<TransformationRevision>>, r| match best {
            Some(b) if b.released_timestamp > r.released_timestamp => Some(b),
            _ => Some(r),
        },
    )
}

/// Loads `root` and everything nested in it, breadth first, each revision once.
pub fn collect_tree(
    root: Arc<TransformationRevision>,
    mut load: impl FnMut(Uuid) -> Result<Option<Arc<TransformationRevision>>, StoreError>,
) -> Result<RevisionTree, StoreError> {
    let mut nested: HashMap<Uuid, Arc<TransformationRevision>> = HashMap::new();
    let mut pending: Vec<Uuid> = root.nested_ids().collect();
    while let Some(id) = pending.pop() {
        if nested.contains_key(&id) {
            continue;
        }
        let r = load(id)?.ok_or(StoreError::NestedRevisionMissing {
            root: root.id,
            missing: id,
        })?;
        pending.extend(r.nested_ids());
        nested.insert(id, r);
    }
    Ok(RevisionTree { root, nested })
}
