//! The directory store: every revision file below a directory, as hetida's
//! `load_transformation_revisions_from_directory` finds them: `*.json` in hetida's export
//! format, and `*.py` component files (the form hetida ships its base components in), read by
//! [`super::py_component`]. Both kinds share one index, so a duplicate id or a workflow using a
//! revision no file defines is found whichever kind of file is involved.
//!
//! Where hetida logs a broken file and goes on without it, we refuse the directory: a revision
//! silently missing would only show up later as failed executions.
//!
//! Opened synchronously with `std::fs` only, because the supervisor opens it before it forks
//! (no threads, no runtime there); the workers inherit the index through `fork`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use uuid::Uuid;

use super::error::StoreError;
use super::py_component::{self, ComponentFileError};
use super::released::latest_released_of;
use crate::protocol::Missing;
use crate::protocol::revision::{RevisionTree, TransformationRevision};

/// One thing wrong with a store directory; `check` lists them all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirProblem {
    /// A directory that cannot be listed, or a file that cannot be read or is not UTF-8 text.
    #[error("{path}: cannot be read: {reason}")]
    Unreadable {
        /// The directory or file.
        path: PathBuf,
        /// The operating system's error, or the UTF-8 decoder's.
        reason: String,
    },
    /// A `.json` file that is not a revision in hetida's export format.
    #[error("{path}: not a transformation revision: {reason}")]
    Malformed {
        /// The `.json` file.
        path: PathBuf,
        /// serde's error, with the line and column.
        reason: String,
    },
    /// A `.py` file hetida would not import, or that is no component (the error says which line).
    #[error("{path}: {error}")]
    Component {
        /// The `.py` file.
        path: PathBuf,
        /// What is wrong with it, and where.
        error: ComponentFileError,
    },
    /// Two files define one revision id: a request for it could mean either.
    #[error("{path}: revision {id} is already defined in {first}")]
    DuplicateId {
        /// The later file, in path order.
        path: PathBuf,
        /// The id both files define.
        id: Uuid,
        /// The file that defines it first.
        first: PathBuf,
    },
    /// A workflow uses a revision no file defines: executing it could only fail.
    #[error("{path}: workflow {id} uses revision {missing}, which no file defines")]
    MissingNested {
        /// The workflow's file.
        path: PathBuf,
        /// The workflow's revision id.
        id: Uuid,
        /// The revision it uses, directly, that no file defines.
        missing: Uuid,
    },
}

/// Every problem found while opening a directory, in the order found (files in path order).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} problem(s) in the revision directory:\n{}", .0.len(), .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
pub struct DirProblems(pub Vec<DirProblem>);

/// The revisions of a directory, indexed by id and by revision group.
#[derive(Debug, Clone, Default)]
pub struct DirIndex {
    /// Each revision with the file it came from, in path order (entries sorted, subdirectories
    /// where they sort), which decides ties of "latest" (the last one wins, as in the reference).
    revisions: Vec<(PathBuf, Arc<TransformationRevision>)>,
    /// Revision id -> its position in `revisions`; one per id, as a duplicate refuses the
    /// directory.
    by_id: HashMap<Uuid, usize>,
    /// Revision group -> the positions of its revisions in `revisions`, ascending, so ties of
    /// "latest" are broken in the same order.
    by_group: HashMap<Uuid, Vec<usize>>,
}

/// The kinds of revision file hetida's directory loader reads.
fn is_revision_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "json" || e == "py")
}

fn revision_files(dir: &Path, out: &mut Vec<PathBuf>, problems: &mut Vec<DirProblem>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            problems.push(DirProblem::Unreadable {
                path: dir.to_owned(),
                reason: e.to_string(),
            });
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            revision_files(&path, out, problems);
        } else if is_revision_file(&path) {
            out.push(path);
        }
    }
}

impl DirIndex {
    /// Reads and indexes every revision below `dir`; all problems at once, or the index.
    pub fn open(dir: &Path) -> Result<DirIndex, DirProblems> {
        let mut problems = Vec::new();
        let mut files = Vec::new();
        revision_files(dir, &mut files, &mut problems);
        // One "now" for every component file that has no release time of its own.
        let opened_at = chrono::Utc::now();
        let mut index = DirIndex::default();
        for path in files {
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    problems.push(DirProblem::Unreadable {
                        path,
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            let revision = if path.extension().is_some_and(|e| e == "py") {
                py_component::read_component(&text, &path, opened_at).map_err(|error| {
                    DirProblem::Component {
                        path: path.clone(),
                        error,
                    }
                })
            } else {
                serde_json::from_str::<TransformationRevision>(&text).map_err(|e| {
                    DirProblem::Malformed {
                        path: path.clone(),
                        reason: e.to_string(),
                    }
                })
            };
            let revision = match revision {
                Ok(r) => r,
                Err(problem) => {
                    problems.push(problem);
                    continue;
                }
            };
            if let Some(&first) = index.by_id.get(&revision.id) {
                problems.push(DirProblem::DuplicateId {
                    path,
                    id: revision.id,
                    first: index.revisions[first].0.clone(),
                });
                continue;
            }
            let i = index.revisions.len();
            index.by_id.insert(revision.id, i);
            index
                .by_group
                .entry(revision.revision_group_id)
                .or_default()
                .push(i);
            index.revisions.push((path, Arc::new(revision)));
        }
        for (path, r) in &index.revisions {
            for missing in r.nested_ids().filter(|id| !index.by_id.contains_key(id)) {
                problems.push(DirProblem::MissingNested {
                    path: path.clone(),
                    id: r.id,
                    missing,
                });
            }
        }
        if problems.is_empty() {
            Ok(index)
        } else {
            Err(DirProblems(problems))
        }
    }

    /// How many revisions the directory holds.
    pub fn len(&self) -> usize {
        self.revisions.len()
    }

    /// Whether the directory holds no revision at all.
    pub fn is_empty(&self) -> bool {
        self.revisions.is_empty()
    }

    /// Every revision with the file it came from, in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&Path, &Arc<TransformationRevision>)> {
        self.revisions.iter().map(|(p, r)| (p.as_path(), r))
    }

    /// The revision `id`, whatever its state.
    pub fn revision(&self, id: Uuid) -> Option<&Arc<TransformationRevision>> {
        self.by_id.get(&id).map(|&i| &self.revisions[i].1)
    }

    /// The latest RELEASED revision of `group` (spec §3).
    pub fn latest_released(&self, group: Uuid) -> Option<&Arc<TransformationRevision>> {
        let members = self.by_group.get(&group)?;
        latest_released_of(members.iter().map(|&i| &self.revisions[i].1))
    }

    /// The revision a request asks for: its id, or the latest released revision of its group.
    pub fn resolve(&self, target: crate::protocol::Target) -> Result<Uuid, StoreError> {
        match target {
            crate::protocol::Target::Id(id) => Ok(id),
            crate::protocol::Target::LatestOfGroup(group) => self
                .latest_released(group)
                .map(|r| r.id)
                .ok_or(Missing::ReleasedOfGroup { group }.into()),
        }
    }

    /// `id` and every revision nested in it at any depth.
    pub fn tree(&self, id: Uuid) -> Result<RevisionTree, StoreError> {
        let root = self.revision(id).ok_or(Missing::Revision { id })?;
        super::collect_tree(root.clone(), |nested| Ok(self.revision(nested).cloned()))
    }
}
