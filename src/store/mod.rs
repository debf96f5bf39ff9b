//! Where transformation revisions come from (spec §3, §4, §8).
//!
//! * `dir`: a directory of hetida export files (`*.json`) and component files (`*.py`, read by
//!   `py_component` as hetida's importer reads them); the default, `dir:transformations`.
//! * `http`: the hetida backend's REST API.
//! * [`Store`]: either, with the worker's one cache. RELEASED revisions never change, so they
//!   and their prepared runtime requests are kept (the least recently used go first when it is
//!   full); "latest released revision of a group" is kept for a short TTL, so a new release is
//!   picked up within it; DRAFT and DISABLED revisions are read and prepared fresh every time.
//!
//! Whatever the source, a worker asks for the prepared revision a request targets
//! ([`Store::prepared`]); `check`, `prepare` and tests also ask for single revisions and trees.

mod cache;
mod dir;
mod error;
mod http;
mod py_component;
mod released;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use crate::protocol::revision::{RevisionTree, State, TransformationRevision};
use crate::protocol::{Missing, PreparedRevision, ProtocolError, Target};
use cache::Lru;

pub use dir::{DirIndex, DirProblem, DirProblems};
pub use error::StoreError;
pub use http::{HttpBackend, HttpOptions};
pub use released::latest_released_of;

/// Loads `root` and everything nested in it, at any depth; a revision used in several places
/// is loaded once.
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
        let r = load(id)?.ok_or(Missing::Nested {
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
    /// Options only: each worker builds its own client, whose connections and their tasks live
    /// on that worker's runtime.
    Http(HttpOptions),
}

/// How much the store may remember.
#[derive(Debug, Clone, Copy)]
pub struct CacheOptions {
    /// How long "latest released revision of a group" may be answered from memory.
    pub latest_ttl: Duration,
    /// Released revisions (and prepared runtime requests) kept at most; beyond it the least
    /// recently used go.
    pub capacity: usize,
}

/// A [`StoreSource`] opened in the worker.
#[derive(Debug)]
enum Backend {
    /// The index the supervisor built before forking, all in memory: needs no cache of
    /// revisions.
    Dir(Arc<DirIndex>),
    /// This worker's client of the backend (boxed: far larger than the other variant).
    Http(Box<HttpBackend>),
}

/// What a worker remembers. RELEASED revisions never change, so they and their prepared
/// runtime requests are kept; the answer to "latest of a group" changes with a new release, so
/// it is kept for the TTL only.
#[derive(Debug)]
struct Cache {
    /// Released revisions read from the backend. A directory store does not use it: its index
    /// is in memory already.
    released: Lru<Uuid, Arc<TransformationRevision>>,
    /// Prepared runtime requests of released revisions, by the revision executed.
    prepared: Lru<Uuid, Arc<PreparedRevision>>,
    /// Group -> when its latest released revision was looked up, and which it was.
    latest: HashMap<Uuid, (Instant, Uuid)>,
}

/// A revision store with its cache; one per worker.
#[derive(Debug)]
pub struct Store {
    /// Where revisions are read from when the cache does not have them.
    backend: Backend,
    /// Shared by the worker's concurrent executions; locked only for one lookup or insert,
    /// never across an `.await`.
    cache: Mutex<Cache>,
    /// How long `cache.latest` may answer "latest released revision of a group" before the
    /// backend (or index) is asked again; from [`CacheOptions::latest_ttl`].
    latest_ttl: Duration,
}

impl Store {
    /// A worker's store over `source`, with an empty cache. For an HTTP source its methods
    /// must run inside a tokio runtime.
    pub fn new(source: &StoreSource, options: CacheOptions) -> Result<Store, StoreError> {
        let backend = match source {
            StoreSource::Dir(index) => Backend::Dir(index.clone()),
            StoreSource::Http(o) => Backend::Http(Box::new(HttpBackend::new(o.clone())?)),
        };
        Ok(Store {
            backend,
            cache: Mutex::new(Cache {
                released: Lru::new(options.capacity),
                prepared: Lru::new(options.capacity),
                latest: HashMap::new(),
            }),
            latest_ttl: options.latest_ttl,
        })
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().expect("store cache")
    }

    fn remember(&self, r: &Arc<TransformationRevision>) {
        if r.state == State::Released {
            self.cache().released.insert(r.id, r.clone());
        }
    }

    /// The revision `id`, whatever its state.
    pub async fn revision(&self, id: Uuid) -> Result<Arc<TransformationRevision>, StoreError> {
        let http = match &self.backend {
            Backend::Dir(index) => {
                return index
                    .revision(id)
                    .cloned()
                    .ok_or(Missing::Revision { id }.into());
            }
            Backend::Http(http) => http,
        };
        if let Some(r) = self.cache().released.get(&id) {
            return Ok(r);
        }
        let r = http
            .revision(id)
            .await?
            .map(Arc::new)
            .ok_or(Missing::Revision { id })?;
        self.remember(&r);
        Ok(r)
    }

    /// The latest RELEASED revision of `group` (spec §3).
    pub async fn latest_released(
        &self,
        group: Uuid,
    ) -> Result<Arc<TransformationRevision>, StoreError> {
        let known = self.cache().latest.get(&group).copied();
        if let Some((at, id)) = known
            && at.elapsed() < self.latest_ttl
        {
            return self.revision(id).await;
        }
        let latest = match &self.backend {
            Backend::Dir(index) => index.latest_released(group).cloned(),
            Backend::Http(http) => {
                let latest =
                    latest_released_of(http.released_of_group(group).await?.iter()).cloned();
                if let Some(r) = &latest {
                    self.remember(r);
                }
                latest
            }
        }
        .ok_or(Missing::ReleasedOfGroup { group })?;
        self.cache()
            .latest
            .insert(group, (Instant::now(), latest.id));
        Ok(latest)
    }

    /// `id` and every revision nested in it, at any depth.
    pub async fn tree(&self, id: Uuid) -> Result<RevisionTree, StoreError> {
        let http = match &self.backend {
            Backend::Dir(index) => return index.tree(id),
            Backend::Http(http) => http,
        };
        // All from memory when every revision of the tree was released (and so cached).
        let root = self.cache().released.get(&id);
        if let Some(root) = root
            && let Ok(tree) = collect_tree(root, |n| Ok(self.cache().released.get(&n)))
        {
            return Ok(tree);
        }
        let all = http.with_dependencies(id).await?;
        let root = all
            .iter()
            .find(|r| r.id == id)
            .cloned()
            .ok_or(Missing::Revision { id })?;
        let by_id: HashMap<Uuid, Arc<TransformationRevision>> =
            all.into_iter().map(|r| (r.id, r)).collect();
        let tree = collect_tree(root, |n| Ok(by_id.get(&n).cloned()))?;
        self.remember(&tree.root);
        for r in tree.nested.values() {
            self.remember(r);
        }
        Ok(tree)
    }

    /// The prepared runtime request of the revision a request asks for: prepared once per
    /// released revision, afresh for drafts (which may change between requests).
    pub async fn prepared(&self, target: Target) -> Result<Arc<PreparedRevision>, ProtocolError> {
        let id = match target {
            Target::Id(id) => id,
            Target::LatestOfGroup(group) => self.latest_released(group).await?.id,
        };
        if let Some(p) = self.cache().prepared.get(&id) {
            crate::metrics::worker().revision_cache(true);
            return Ok(p);
        }
        crate::metrics::worker().revision_cache(false);
        let tree = self.tree(id).await?;
        let prepared = Arc::new(PreparedRevision::new(&tree)?);
        if tree.root.state == State::Released {
            self.cache().prepared.insert(id, prepared.clone());
        }
        Ok(prepared)
    }
}
