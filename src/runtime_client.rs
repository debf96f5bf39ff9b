//! TODO(issue): filled by its issue.
