//! Small objects kept in memory after a read: a chart of a long run reads one pre-aggregate
//! per segment, and a dashboard asks again for every key and every few seconds. Objects are
//! immutable under keys no other write uses, so a kept copy is never stale; one whose segment
//! was merged away is no longer asked for and leaves in its turn.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use axum::body::Bytes;

/// Bytes kept in all.
pub const CACHE_BYTES: usize = 32 << 20;
/// The largest object kept: coarse pre-aggregates, not the segments a full read walks.
pub const MAX_OBJECT: usize = 256 << 10;

/// Objects by key, the oldest put first out.
#[derive(Debug, Default)]
pub struct Cache(Mutex<Kept>);

#[derive(Debug, Default)]
struct Kept {
    bytes: usize,
    objects: HashMap<String, Bytes>,
    order: VecDeque<String>,
}

impl Cache {
    /// The kept copy of `key`.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .objects
            .get(key)
            .cloned()
    }

    /// Drops the copy of a deleted object, so that this process reads it as gone (another
    /// replica's copy only serves a listing made before the delete, whole as it was).
    pub fn forget(&self, key: &str) {
        let mut k = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = k.objects.remove(key) {
            k.bytes -= b.len();
            k.order.retain(|o| o != key);
        }
    }

    /// Keeps `bytes` as `key` when small enough, putting out the oldest to make room.
    pub fn put(&self, key: &str, bytes: &Bytes) {
        if bytes.len() > MAX_OBJECT {
            return;
        }
        let mut k = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if k.objects.contains_key(key) {
            return;
        }
        while k.bytes + bytes.len() > CACHE_BYTES {
            let Some(old) = k.order.pop_front() else { break };
            if let Some(b) = k.objects.remove(&old) {
                k.bytes -= b.len();
            }
        }
        k.bytes += bytes.len();
        k.objects.insert(key.to_owned(), bytes.clone());
        k.order.push_back(key.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_objects_are_kept_within_the_budget_oldest_out_first() {
        let c = Cache::default();
        let piece = Bytes::from(vec![7u8; MAX_OBJECT]);
        let n = CACHE_BYTES / MAX_OBJECT;
        for i in 0..n {
            c.put(&format!("k{i}"), &piece);
        }
        assert!((0..n).all(|i| c.get(&format!("k{i}")).is_some_and(|b| b == piece)));
        c.put("one more", &piece);
        assert!(c.get("k0").is_none(), "the oldest went out");
        assert!(c.get("k1").is_some() && c.get("one more").is_some());
        c.put("big", &Bytes::from(vec![0u8; MAX_OBJECT + 1]));
        assert!(c.get("big").is_none(), "too large to keep");
        assert!(c.get("k1").is_some(), "nothing went out for it");
        c.forget("k1");
        assert!(c.get("k1").is_none());
        c.put("k1 again", &piece);
        assert!(c.get("k2").is_some(), "the forgotten copy made room");
    }
}
