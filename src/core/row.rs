//! The row being built by `log()` calls until it is committed: numbers apart from other
//! values, so the hot path moves 16-byte pairs instead of whole `Value`s.

use super::record::encode_row;
use super::record::RowKind;
use super::value::Value;

const OTHER: u32 = 1 << 31;

/// An open history row: the values logged at the current step so far.
#[derive(Default, Clone)]
pub struct PendingRow {
    nums: Vec<(u32, f64)>,
    others: Vec<(u32, Value)>,
    /// Per key id: 0 when absent, else index + 1 into `nums`, or into `others` with `OTHER`.
    slots: Vec<u32>,
}

impl PendingRow {
    /// Makes room for key ids up to `id`.
    pub fn add_key(&mut self) {
        self.slots.push(0);
    }

    /// True when nothing was staged.
    pub fn is_empty(&self) -> bool {
        self.nums.is_empty() && self.others.is_empty()
    }

    /// Sets a number, replacing an earlier value of the same key.
    #[inline(always)]
    pub fn put_num(&mut self, id: u32, x: f64) {
        let slot = self.slots[id as usize];
        if slot == 0 {
            self.nums.push((id, x));
            self.slots[id as usize] = self.nums.len() as u32;
        } else if slot & OTHER == 0 {
            self.nums[slot as usize - 1].1 = x;
        } else {
            self.others[(slot & !OTHER) as usize - 1].1 = Value::Num(x);
        }
    }

    /// Sets a non-number value, replacing an earlier value of the same key.
    pub fn put_other(&mut self, id: u32, v: Value) {
        let slot = self.slots[id as usize];
        if slot & OTHER != 0 {
            self.others[(slot & !OTHER) as usize - 1].1 = v;
            return;
        }
        if slot != 0 {
            let i = slot as usize - 1;
            self.nums.remove(i);
            for (moved, _) in &self.nums[i..] {
                self.slots[*moved as usize] -= 1;
            }
        }
        self.others.push((id, v));
        self.slots[id as usize] = self.others.len() as u32 | OTHER;
    }

    /// Empties the row.
    pub fn clear(&mut self) {
        for (id, _) in &self.nums {
            self.slots[*id as usize] = 0;
        }
        for (id, _) in &self.others {
            self.slots[*id as usize] = 0;
        }
        self.nums.clear();
        self.others.clear();
    }

    /// Puts back a copy taken before a refused call.
    pub fn restore(&mut self, saved: PendingRow) {
        let slots = std::mem::take(&mut self.slots);
        *self = saved;
        self.slots.resize(slots.len(), 0);
    }

    /// Frames the row onto `buf`, then hands each value to `last` and empties the row.
    pub fn commit(
        &mut self,
        buf: &mut Vec<u8>,
        kind: RowKind,
        step: u64,
        ts_ms: i64,
        mut last: impl FnMut(u32, Value),
    ) {
        encode_row(buf, kind, step, ts_ms, &self.nums, &self.others);
        for (id, x) in self.nums.drain(..) {
            self.slots[id as usize] = 0;
            last(id, Value::Num(x));
        }
        for (id, v) in self.others.drain(..) {
            self.slots[id as usize] = 0;
            last(id, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::frame::Frames;
    use crate::core::record::{decode, Record};
    use crate::core::value::ValueRef;

    #[test]
    fn replacing_a_number_with_text_keeps_the_other_slots_right() {
        let mut row = PendingRow::default();
        for _ in 0..3 {
            row.add_key();
        }
        row.put_num(0, 1.0);
        row.put_num(1, 2.0);
        row.put_num(2, 3.0);
        row.put_other(0, Value::Str("a".into()));
        row.put_num(2, 4.0);
        row.put_num(0, 5.0);
        let mut buf = Vec::new();
        let mut seen = Vec::new();
        row.commit(&mut buf, RowKind::History, 0, 0, |id, v| seen.push((id, v)));
        assert!(row.is_empty());
        let f = Frames::new(&buf).next().unwrap();
        let Record::Row(r) = decode(f.payload).unwrap() else {
            panic!()
        };
        let mut vals: Vec<_> = r.values().map(|v| v.unwrap()).collect();
        vals.sort_by_key(|v| v.0);
        assert_eq!(
            vals,
            vec![
                (0, ValueRef::Num(5.0)),
                (1, ValueRef::Num(2.0)),
                (2, ValueRef::Num(4.0))
            ]
        );
        assert_eq!(seen.len(), 3);
    }
}
