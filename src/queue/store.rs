//! [`SeqStore`]: a queue's entries indexed by sequence number.
//!
//! Sequence numbers of a queue are dense and grow, so entries live in small
//! fixed-size chunks of slots, addressed by `seq / CHUNK`. A chunk is freed
//! the moment its last entry goes, so an idle queue holds no chunk at all and
//! a backlog costs one slot per message plus a pointer per chunk. Compared
//! with a hash map this halves the memory of a deep queue (no hashing
//! slack, no key copies) and iterates in sequence order for free.

use std::collections::VecDeque;

const CHUNK_BITS: u32 = 6;
/// Slots per chunk.
pub const CHUNK: usize = 1 << CHUNK_BITS;
const MASK: u64 = CHUNK as u64 - 1;

struct Chunk<T> {
    slots: Box<[Option<T>]>,
    live: u32,
}

impl<T> Chunk<T> {
    fn new() -> Self {
        Self {
            slots: (0..CHUNK).map(|_| None).collect(),
            live: 0,
        }
    }
}

/// Entries by sequence number. See the module comment.
pub struct SeqStore<T> {
    /// Chunk index of `chunks[0]`.
    base: u64,
    /// `None`: a chunk with no entries (freed). The first chunk, if any, is
    /// never `None`.
    chunks: VecDeque<Option<Chunk<T>>>,
    len: usize,
    /// No entry has a sequence number below this (a hint kept exact enough
    /// that finding the first entry is O(1) amortised).
    front: u64,
}

impl<T> Default for SeqStore<T> {
    fn default() -> Self {
        Self {
            base: 0,
            chunks: VecDeque::new(),
            len: 0,
            front: 0,
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for SeqStore<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<T> SeqStore<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn slot(&self, seq: u64) -> Option<&Option<T>> {
        let ci = (seq >> CHUNK_BITS).checked_sub(self.base)?;
        let c = self.chunks.get(usize::try_from(ci).ok()?)?.as_ref()?;
        c.slots.get((seq & MASK) as usize)
    }

    pub fn get(&self, seq: u64) -> Option<&T> {
        self.slot(seq)?.as_ref()
    }

    pub fn get_mut(&mut self, seq: u64) -> Option<&mut T> {
        let ci = (seq >> CHUNK_BITS).checked_sub(self.base)?;
        let c = self.chunks.get_mut(usize::try_from(ci).ok()?)?.as_mut()?;
        c.slots.get_mut((seq & MASK) as usize)?.as_mut()
    }

    pub fn contains(&self, seq: u64) -> bool {
        self.get(seq).is_some()
    }

    /// Stores `v` at `seq`; answers it back if the slot is taken.
    pub fn insert(&mut self, seq: u64, v: T) -> Result<(), T> {
        let chunk = seq >> CHUNK_BITS;
        if self.chunks.is_empty() {
            self.base = chunk;
        }
        while chunk < self.base {
            self.chunks.push_front(None);
            self.base -= 1;
        }
        let Ok(ci) = usize::try_from(chunk - self.base) else {
            return Err(v);
        };
        while self.chunks.len() <= ci {
            self.chunks.push_back(None);
        }
        let c = self.chunks[ci].get_or_insert_with(Chunk::new);
        let slot = &mut c.slots[(seq & MASK) as usize];
        if slot.is_some() {
            return Err(v);
        }
        *slot = Some(v);
        c.live += 1;
        if self.len == 0 || seq < self.front {
            self.front = seq;
        }
        self.len += 1;
        Ok(())
    }

    pub fn remove(&mut self, seq: u64) -> Option<T> {
        let ci = usize::try_from((seq >> CHUNK_BITS).checked_sub(self.base)?).ok()?;
        let c = self.chunks.get_mut(ci)?.as_mut()?;
        let v = c.slots.get_mut((seq & MASK) as usize)?.take()?;
        c.live -= 1;
        if c.live == 0 {
            self.chunks[ci] = None;
            while matches!(self.chunks.front(), Some(None)) {
                self.chunks.pop_front();
                self.base += 1;
            }
            while matches!(self.chunks.back(), Some(None)) {
                self.chunks.pop_back();
            }
        }
        self.len -= 1;
        if seq == self.front {
            self.front = self.next_from(seq + 1).map_or(0, |(s, _)| s);
        }
        Some(v)
    }

    pub fn clear(&mut self) {
        self.chunks.clear();
        self.len = 0;
        self.front = 0;
    }

    /// The entry with the lowest sequence number.
    pub fn first(&self) -> Option<(u64, &T)> {
        if self.len == 0 {
            return None;
        }
        self.next_from(self.front)
    }

    /// The first entry at or after `seq`.
    pub fn next_from(&self, seq: u64) -> Option<(u64, &T)> {
        if self.len == 0 {
            return None;
        }
        let mut seq = seq.max(self.base << CHUNK_BITS);
        loop {
            let ci = usize::try_from((seq >> CHUNK_BITS) - self.base).ok()?;
            let chunk = self.chunks.get(ci)?;
            match chunk {
                None => seq = (seq | MASK) + 1,
                Some(c) => {
                    let start = (seq & MASK) as usize;
                    for (i, s) in c.slots[start..].iter().enumerate() {
                        if let Some(v) = s {
                            return Some((seq + i as u64, v));
                        }
                    }
                    seq = (seq | MASK) + 1;
                }
            }
        }
    }

    /// Every entry in sequence order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &T)> + '_ {
        let base = self.base;
        self.chunks
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (i, c)))
            .flat_map(move |(i, c)| {
                let start = (base + i as u64) << CHUNK_BITS;
                c.slots
                    .iter()
                    .enumerate()
                    .filter_map(move |(j, s)| s.as_ref().map(|v| (start + j as u64, v)))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn insert_get_remove_in_any_order() {
        let mut s = SeqStore::default();
        for seq in [500u64, 3, 64, 65, 1000, 2] {
            assert!(s.insert(seq, seq * 10).is_ok());
        }
        assert!(s.insert(64, 0).is_err(), "a taken slot is refused");
        assert_eq!(s.len(), 6);
        assert_eq!(s.first(), Some((2, &20)));
        assert_eq!(
            s.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            vec![2, 3, 64, 65, 500, 1000]
        );
        assert_eq!(s.remove(2), Some(20));
        assert_eq!(s.first(), Some((3, &30)));
        assert_eq!(s.remove(3), Some(30));
        assert_eq!(s.first(), Some((64, &640)));
        assert_eq!(s.next_from(66), Some((500, &5000)));
        assert_eq!(s.remove(7), None);
        for seq in [64, 65, 500, 1000] {
            assert!(s.remove(seq).is_some());
        }
        assert!(s.is_empty());
        assert!(s.chunks.is_empty(), "an empty store holds no chunk");
    }

    proptest! {
        #[test]
        fn behaves_like_a_btreemap(ops in proptest::collection::vec((0u8..3, 0u64..600), 1..400)) {
            let mut s = SeqStore::default();
            let mut m = BTreeMap::new();
            for (op, seq) in ops {
                match op {
                    0 => {
                        let a = s.insert(seq, seq).is_ok();
                        let b = m.insert(seq, seq).is_none();
                        if !b { m.insert(seq, seq); }
                        prop_assert_eq!(a, b);
                    }
                    1 => prop_assert_eq!(s.remove(seq), m.remove(&seq)),
                    _ => {
                        let mut got = Vec::new();
                        while let Some((k, _)) = s.first() {
                            if k >= seq { break; }
                            s.remove(k);
                            got.push(k);
                        }
                        let keep = m.split_off(&seq);
                        let want: Vec<_> = m.keys().copied().collect();
                        m = keep;
                        prop_assert_eq!(got, want);
                    }
                }
                prop_assert_eq!(s.len(), m.len());
                prop_assert_eq!(s.first().map(|(k, _)| k), m.keys().next().copied());
                let a: Vec<_> = s.iter().map(|(k, v)| (k, *v)).collect();
                let b: Vec<_> = m.iter().map(|(k, v)| (*k, *v)).collect();
                prop_assert_eq!(a, b);
                let probe = seq / 2;
                prop_assert_eq!(s.next_from(probe).map(|(k, _)| k), m.range(probe..).next().map(|(k, _)| *k));
            }
        }
    }
}
