//! A bounded map that forgets the least recently used entry first: what the store keeps of
//! immutable (RELEASED) revisions and their prepared runtime requests. The old caches started
//! over when full, so one request for a rarely used revision could throw away every hot one.

use std::collections::HashMap;
use std::hash::Hash;

/// At most `capacity` entries; inserting into a full map evicts the least recently used.
#[derive(Debug)]
pub struct Lru<K, V> {
    /// Entries kept at most; at least 1, so that an insert always keeps what it inserts.
    capacity: usize,
    /// Entry and the tick of its last use.
    entries: HashMap<K, (V, u64)>,
    /// Counts uses; the smallest tick is the least recent.
    tick: u64,
}

impl<K: Eq + Hash + Clone, V: Clone> Lru<K, V> {
    /// An empty map of at most `capacity` entries (0 counts as 1).
    pub fn new(capacity: usize) -> Lru<K, V> {
        Lru {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            tick: 0,
        }
    }

    /// The value of `key`, marked as just used.
    pub fn get(&mut self, key: &K) -> Option<V> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(key).map(|(v, used)| {
            *used = tick;
            v.clone()
        })
    }

    /// Keeps `value` under `key`. Evicting scans the entries once, which only a miss on a full
    /// cache pays (a few microseconds at the default 1,024 entries, against a revision load).
    pub fn insert(&mut self, key: K, value: V) {
        self.tick += 1;
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(key, (value, self.tick));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let mut c = Lru::new(2);
        c.insert("a", 1);
        c.insert("b", 2);
        assert_eq!(c.get(&"a"), Some(1), "a is now the most recent");
        c.insert("c", 3);
        assert_eq!(c.get(&"b"), None, "b was the least recent");
        assert_eq!((c.get(&"a"), c.get(&"c")), (Some(1), Some(3)));
        c.insert("c", 4);
        assert_eq!(c.entries.len(), 2, "replacing a key evicts nothing");
        assert_eq!((c.get(&"a"), c.get(&"c")), (Some(1), Some(4)));
    }
}
