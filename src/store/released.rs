//! Which revision of a group is its latest released one (spec §3).

use std::sync::Arc;

use crate::protocol::revision::{State, TransformationRevision};

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
