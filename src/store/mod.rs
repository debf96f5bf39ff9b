//! Where transformation revisions come from (spec §3, §4, §8).
//!
//! * [`dir`]: a directory of hetida export files (`*.json`) and component files (`*.py`, read by
//!   [`py_component`] as hetida's importer reads them); the default, `dir:./transformations`.
//! * [`http`]: the hetida backend's REST API.
//! * [`Store`]: either, behind a cache. RELEASED revisions never change, so they are kept
//!   (bounded); "latest released revision of a group" is kept for a short TTL, so a new release
//!   is picked up within it; DRAFT and DISABLED revisions are read fresh every time.
//!
//! Whatever the source, a worker asks for a revision by id, for the latest released revision of
//! a group, or for a whole [`RevisionTree`] to prepare.

pub mod dir;
pub mod http;
pub mod py_component;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::protocol::ProtocolError;
use crate::protocol::revision::{RevisionTree, State, TransformationRevision};

pub use dir::{DirIndex, DirProblem, DirProblems};
pub use http::{HttpBackend, HttpOptions};

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

/// Where revisions come from, as configured (`--store`); cheap to carry across `fork`.
#[derive(Debug, Clone)]
pub enum StoreSource {
    /// Indexed before forking; the workers share it.
    Dir(Arc<DirIndex>),
    /// A client is built in each worker (it needs the worker's async runtime).
    Http(HttpOptions),
}

/// How much the store may remember.
#[derive(Debug, Clone, Copy)]
pub struct CacheOptions {
    /// How long "latest released revision of a group" may be answered from memory.
    pub latest_ttl: Duration,
    /// Released revisions kept at most; beyond it the cache starts over.
    pub capacity: usize,
}

#[derive(Debug)]
enum Backend {
    Dir(Arc<DirIndex>),
    Http(Box<HttpBackend>),
}

#[derive(Debug, Default)]
struct Cache {
    released: HashMap<Uuid, Arc<TransformationRevision>>,
    latest: HashMap<Uuid, (Instant, Uuid)>,
}

/// A revision store with its cache; one per worker.
#[derive(Debug)]
pub struct Store {
    backend: Backend,
    cache: Mutex<Cache>,
    options: CacheOptions,
}

impl Store {
    /// Must be called inside a tokio runtime for an HTTP source.
    pub fn new(source: &StoreSource, options: CacheOptions) -> Result<Store, StoreError> {
        let backend = match source {
            StoreSource::Dir(index) => Backend::Dir(index.clone()),
            StoreSource::Http(o) => Backend::Http(Box::new(HttpBackend::new(o.clone())?)),
        };
        Ok(Store {
            backend,
            cache: Mutex::new(Cache::default()),
            options,
        })
    }

    fn remember(&self, r: &Arc<TransformationRevision>) {
        if r.state != State::Released {
            return;
        }
        let mut cache = self.cache.lock().expect("store cache");
        if cache.released.len() >= self.options.capacity {
            cache.released.clear();
        }
        cache.released.insert(r.id, r.clone());
    }

    fn cached(&self, id: Uuid) -> Option<Arc<TransformationRevision>> {
        self.cache
            .lock()
            .expect("store cache")
            .released
            .get(&id)
            .cloned()
    }

    /// The revision `id`, whatever its state.
    pub async fn revision(&self, id: Uuid) -> Result<Arc<TransformationRevision>, StoreError> {
        if let Some(r) = self.cached(id) {
            return Ok(r);
        }
        let r = match &self.backend {
            Backend::Dir(index) => index.revision(id).cloned(),
            Backend::Http(http) => http.revision(id).await?.map(Arc::new),
        }
        .ok_or(StoreError::RevisionNotFound { id })?;
        self.remember(&r);
        Ok(r)
    }

    /// The latest RELEASED revision of `group` (spec §3).
    pub async fn latest_released(
        &self,
        group: Uuid,
    ) -> Result<Arc<TransformationRevision>, StoreError> {
        let known = self
            .cache
            .lock()
            .expect("store cache")
            .latest
            .get(&group)
            .copied();
        if let Some((at, id)) = known
            && at.elapsed() < self.options.latest_ttl
        {
            return self.revision(id).await;
        }
        let latest = match &self.backend {
            Backend::Dir(index) => index.latest_released(group).cloned(),
            Backend::Http(http) => {
                latest_released_of(http.released_of_group(group).await?.iter()).cloned()
            }
        }
        .ok_or(StoreError::NoReleasedRevision { group })?;
        self.remember(&latest);
        self.cache
            .lock()
            .expect("store cache")
            .latest
            .insert(group, (Instant::now(), latest.id));
        Ok(latest)
    }

    /// `id` and every revision nested in it, at any depth.
    pub async fn tree(&self, id: Uuid) -> Result<RevisionTree, StoreError> {
        match &self.backend {
            Backend::Dir(index) => index.tree(id),
            Backend::Http(http) => {
                // All from memory when every revision of the tree was released (and so cached).
                if let Some(root) = self.cached(id)
                    && let Ok(tree) = collect_tree(root, |n| Ok(self.cached(n)))
                {
                    return Ok(tree);
                }
                let all = http.with_dependencies(id).await?;
                let root = all
                    .iter()
                    .find(|r| r.id == id)
                    .cloned()
                    .ok_or(StoreError::RevisionNotFound { id })?;
                let by_id: HashMap<Uuid, Arc<TransformationRevision>> =
                    all.into_iter().map(|r| (r.id, r)).collect();
                let tree = collect_tree(root, |n| Ok(by_id.get(&n).cloned()))?;
                self.remember(&tree.root);
                for r in tree.nested.values() {
                    self.remember(r);
                }
                Ok(tree)
            }
        }
    }
}
