//! Key interning: a metric name crosses into the log once, then travels as a small id.

use rustc_hash::FxHashMap;

/// Maps metric names to dense ids in the order they were first logged.
#[derive(Default, Debug, Clone)]
pub struct KeyTable {
    ids: FxHashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl KeyTable {
    /// The id of `name`, if it was interned before.
    #[inline]
    pub fn get(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// Interns `name`, returning its id and whether it is new.
    pub fn intern(&mut self, name: &str) -> (u32, bool) {
        if let Some(id) = self.get(name) {
            return (id, false);
        }
        let id = self.names.len() as u32;
        self.names.push(name.into());
        self.ids.insert(name.into(), id);
        (id, true)
    }

    /// The name behind an id.
    #[inline]
    pub fn name(&self, id: u32) -> Option<&str> {
        self.names.get(id as usize).map(|n| &**n)
    }

    /// How many keys are interned; also the next id.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True before the first key.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}
