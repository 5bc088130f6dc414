//! Domain-suffix matcher: a frozen set of names that answers "which of this query name's label
//! suffixes are listed?" without allocating.
//!
//! Build-then-freeze: [`DomainMatcherBuilder`] collects names off the query path, [`build`]
//! returns an immutable [`DomainMatcher`] that is `Send + Sync` and shared behind an `Arc`.
//!
//! # Layout
//!
//! * **Arena** (`[u8]`): one entry per distinct name, in id (insertion) order: `id: u32 LE`,
//!   `len: u8` (`255` escapes to a following `u32 LE` length), then the lowercased name bytes
//!   (trailing dot stripped). 5 bytes of overhead per name.
//! * **Table** (`[u64]`): open addressing with linear probing, load factor at most 0.6 once built
//!   (0.7 while building). The home slot is the high half of `hash * capacity` (any capacity, no
//!   power-of-two waste). A slot is `(arena offset + 1) << 32 | BELOW << 31 | 31-bit hash tag`;
//!   `0` is empty. Besides the listed names the table holds a *marker* (offset 0) for every proper
//!   label suffix of a listed name that is not itself listed (`com` for `evil.com`); `BELOW` on a
//!   slot means "some listed name ends in `.<this name>`".
//! * **Hash**: each label is hashed on its own (ASCII case folded 8 bytes at a time, SWAR) and the
//!   labels are chained from the right: `H(label.rest) = mix(H(rest), h(label))`, so walking a
//!   query name from its last label yields every suffix hash in one pass.
//!
//! A suffix walk goes right to left (`com`, `evil.com`, `www.evil.com`, ...) and stops at the first
//! suffix without `BELOW`: whatever the number of labels, a miss under a listed TLD costs two
//! probes (the TLD's slot stays hot) and a hit on `evil.com` the same plus one arena read (unless
//! names below `evil.com` are listed too). Listed slots are confirmed
//! by comparing bytes in the arena, so a reported match is never a hash collision; markers are not
//! confirmed, and a colliding marker only makes a walk go one label further than needed. Matches
//! are buffered on the stack and reported longest first. Nothing on the lookup path allocates.
//!
//! # Names
//!
//! A name is compared as bytes after removing one trailing dot and folding ASCII `A-Z` to
//! `a-z`; other bytes (including non-UTF-8 ones in a query) compare verbatim, so they can only
//! ever match a name inserted with the same bytes. Suffixes start at the beginning of the name and
//! right after every `.`; the empty suffix (the root) is never reported by
//! [`DomainMatcher::for_each_suffix`], although `""` / `"."` can be inserted and found with
//! [`DomainMatcher::get`].
//!
//! [`build`]: DomainMatcherBuilder::build

use std::fmt;
use std::ops::ControlFlow;

/// Collects normalised names and assigns each distinct name a dense id (`0..len`).
///
/// Deduplication uses the same arena and open-addressing table as the frozen matcher (grown by
/// doubling), so the builder never holds a second copy of the names.
#[derive(Default)]
pub struct DomainMatcherBuilder {
    arena: Vec<u8>,
    table: Vec<u64>,
    /// Distinct names (the next id).
    len: u32,
    /// Occupied slots: names plus markers.
    used: usize,
}

impl fmt::Debug for DomainMatcherBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DomainMatcherBuilder")
            .field("len", &self.len)
            .field("used_slots", &self.used)
            .field("table_slots", &self.table.len())
            .field("arena_bytes", &self.arena.len())
            .finish()
    }
}

impl DomainMatcherBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty builder sized for about `n` names.
    pub fn with_capacity(n: usize) -> Self {
        // A guess at the average entry size (header + a typical domain); capacity that stays
        // unused is never touched, so it costs address space, not memory.
        let mut arena = Vec::new();
        reserve_arena(&mut arena, n.saturating_mul(32));
        Self {
            arena,
            // Room for `n` names and about `n / 2` parent markers at the final load factor.
            table: huge_table(final_capacity(n.saturating_add(n / 2))),
            len: 0,
            used: 0,
        }
    }

    /// Inserts a name (ASCII, any case, optional trailing dot) and returns its id. Inserting the
    /// same name twice returns the same id.
    ///
    /// # Panics
    ///
    /// If the names take more than 4 GiB in total (ids and arena offsets are `u32`).
    pub fn insert(&mut self, name: &str) -> u32 {
        let name = strip_dot(name.as_bytes());
        // The name itself plus at most one marker per parent.
        let parents = name.iter().filter(|&&b| b == b'.').count();
        self.reserve_slots(1 + parents);

        // Append the entry first (its id is provisional), hash the stored lowercase bytes, and
        // take it back out if the name turns out to be a duplicate.
        let off = self.arena.len();
        assert!(
            off + name.len() + 9 < u32::MAX as usize,
            "DomainMatcherBuilder: more than 4 GiB of names"
        );
        reserve_arena(&mut self.arena, name.len() + 9);
        push_header(&mut self.arena, self.len, name.len());
        let start = self.arena.len();
        self.arena.extend_from_slice(name);
        self.arena[start..].make_ascii_lowercase();
        let stored = &self.arena[start..];
        let (h, parent) = hash_name_and_parent(stored);
        if let Some(p) = parent {
            // Start the parent's cache miss now so that it overlaps the name's own probe (the
            // parent is marked below when the name is new).
            std::hint::black_box(self.table[home(p, self.table.len())]);
        }
        match find(&self.table, &self.arena, h, stored) {
            (Ok(id), _) => {
                self.arena.truncate(off);
                id
            }
            (Err(slot), below) => {
                // `below`: a marker for this name exists already (a longer name came first).
                self.table[slot] = listed_slot(off, h, below);
                self.used += 1;
                self.used += mark_parents(&mut self.table, &self.arena, start, name.len());
                let id = self.len;
                self.len += 1;
                id
            }
        }
    }

    /// Number of distinct names inserted.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True when no name was inserted.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Freezes the set.
    pub fn build(self) -> DomainMatcher {
        let Self {
            arena,
            mut table,
            len,
            used,
        } = self;
        // Keep the dedup table if its load is between 0.4 and 2/3 (it grows at 0.7, so a table
        // that just doubled is rehashed); otherwise rehash into one at load 0.6.
        let cap = table.len();
        if used == 0 || cap * 2 < used * 3 || cap * 2 > used * 5 {
            drop(table);
            table = huge_table(final_capacity(used));
            rehash(&mut table, &arena);
        }
        DomainMatcher {
            arena: arena.into_boxed_slice(),
            table: table.into_boxed_slice(),
            len,
        }
    }

    /// Makes room for `extra` more slots at a load factor of at most 0.7.
    fn reserve_slots(&mut self, extra: usize) {
        let need = self.used + extra;
        if need * 10 <= self.table.len() * 7 {
            return;
        }
        let mut cap = (self.table.len() * 2).max(16);
        while need * 10 > cap * 7 {
            cap *= 2;
        }
        self.table = Vec::new(); // free the old table before allocating the new one
        self.table = huge_table(cap);
        self.used = rehash(&mut self.table, &self.arena);
    }
}

/// An immutable set of names with suffix lookups.
#[derive(Default)]
pub struct DomainMatcher {
    arena: Box<[u8]>,
    table: Box<[u64]>,
    len: u32,
}

impl fmt::Debug for DomainMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DomainMatcher")
            .field("len", &self.len)
            .field("table_slots", &self.table.len())
            .field("arena_bytes", &self.arena.len())
            .finish()
    }
}

/// Matches buffered per walk in [`DomainMatcher::for_each_suffix`]; a query with more listed
/// suffixes than this takes one more walk per `RING` matches.
const RING: usize = 8;

impl DomainMatcher {
    /// Number of distinct names.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True when the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Id of exactly this name, if listed.
    pub fn get(&self, name: &[u8]) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        let name = strip_dot(name);
        find(&self.table, &self.arena, hash_name(name), name).0.ok()
    }

    /// Calls `f(id, exact)` for every label suffix of `qname` that is listed, the full name first
    /// (`exact == true`) and then ever shorter parents. `f` may stop the walk with `Break`.
    pub fn for_each_suffix(&self, qname: &[u8], mut f: impl FnMut(u32, bool) -> ControlFlow<()>) {
        if self.len == 0 {
            return;
        }
        let name = strip_dot(qname);
        // Walk suffixes right to left (depth 0 is the last label) while something is listed
        // below the current one, buffering matches; then report them longest first. Only a query
        // with more than RING listed suffixes needs another walk (limited to the shorter ones).
        let mut limit = usize::MAX;
        loop {
            let mut ring = [(0u32, 0usize); RING]; // (id, depth)
            let mut found = 0usize;
            let mut exact = false;
            let mut h = SEED;
            let mut end = name.len();
            let mut depth = 0;
            while depth < limit {
                let start = label_start(name, end);
                h = chain(h, label_hash(&name[start..end]));
                let (id, below) = find(&self.table, &self.arena, h, &name[start..]);
                // The empty suffix ("com." has "com." and "") is never reported.
                if let Ok(id) = id
                    && start < name.len()
                {
                    ring[found % RING] = (id, depth);
                    found += 1;
                    exact = start == 0;
                }
                if !below || start == 0 {
                    break;
                }
                end = start - 1;
                depth += 1;
            }
            let first = found.saturating_sub(RING);
            for k in (first..found).rev() {
                if f(ring[k % RING].0, exact).is_break() {
                    return;
                }
                exact = false;
            }
            if first == 0 {
                return;
            }
            limit = ring[first % RING].1;
        }
    }

    /// Heap bytes held by the matcher (name arena plus table).
    pub fn memory_bytes(&self) -> usize {
        self.arena.len() + std::mem::size_of_val(&*self.table)
    }

    /// Every listed name with its id, in id order (used to carry a feed's last good entries
    /// into a new snapshot when its new version is refused). Names come back normalised:
    /// lowercase, without a trailing dot.
    pub fn names(&self) -> impl Iterator<Item = (u32, &[u8])> + '_ {
        let arena = &self.arena[..];
        let mut off = 0usize;
        std::iter::from_fn(move || {
            if off >= arena.len() {
                return None;
            }
            let (id, start, len) = decode(arena, off);
            off = start + len;
            Some((id, &arena[start..start + len]))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Table

/// Slot flag: some listed name is below this one.
const BELOW: u64 = 1 << 31;
const TAG: u64 = BELOW - 1;

/// A zeroed table of `cap` slots, on huge pages where the kernel allows (see `huge`: the frozen
/// table is read at random on every query). `vec![0; n]` maps fresh zero pages, so the advice
/// comes before any page is touched.
fn huge_table(cap: usize) -> Vec<u64> {
    let mut table = vec![0; cap];
    super::huge::advise_huge_pages(&mut table);
    table
}

/// Table capacity for `slots` occupied slots: load factor at most 0.6.
fn final_capacity(slots: usize) -> usize {
    if slots == 0 {
        0
    } else {
        slots + slots.div_ceil(3) * 2 + 1
    }
}

#[inline]
fn listed_slot(off: usize, h: u64, below: bool) -> u64 {
    ((off as u64 + 1) << 32) | if below { BELOW } else { 0 } | (h & TAG)
}

#[inline]
fn home(h: u64, cap: usize) -> usize {
    ((u128::from(h) * cap as u128) >> 64) as usize
}

/// Looks `name` (any case, hash `h`) up: `Ok(id)` or `Err(first empty slot of its run)`, and
/// whether some listed name is below it (its `BELOW` flag, or a marker with its tag).
#[inline]
fn find(table: &[u64], arena: &[u8], h: u64, name: &[u8]) -> (Result<u32, usize>, bool) {
    let cap = table.len();
    if cap == 0 {
        return (Err(0), false);
    }
    let tag = h & TAG;
    let mut below = false;
    let mut i = home(h, cap);
    loop {
        let slot = table[i];
        if slot == 0 {
            return (Err(i), below);
        }
        if slot & TAG == tag {
            match slot >> 32 {
                0 => below = true,
                off => {
                    if let Some(id) = entry_matches(arena, off as usize - 1, name) {
                        return (Ok(id), below || slot & BELOW != 0);
                    }
                }
            }
        }
        i += 1;
        if i == cap {
            i = 0;
        }
    }
}

/// Records that something is listed below `name`: sets `BELOW` on its slot if it is listed,
/// otherwise adds a marker unless one with its tag is already in its run. Returns the number of
/// slots taken (0 or 1). Slots never move, so a later [`find`] sees what this saw, in order.
fn mark(table: &mut [u64], arena: &[u8], h: u64, name: &[u8]) -> usize {
    let cap = table.len();
    let tag = h & TAG;
    let mut i = home(h, cap);
    loop {
        let slot = table[i];
        if slot == 0 {
            table[i] = BELOW | tag;
            return 1;
        }
        if slot & TAG == tag {
            match slot >> 32 {
                0 => return 0,
                off => {
                    if entry_matches(arena, off as usize - 1, name).is_some() {
                        table[i] = slot | BELOW;
                        return 0;
                    }
                }
            }
        }
        i += 1;
        if i == cap {
            i = 0;
        }
    }
}

/// Marks every proper label suffix of the name at `arena[start..start + len]`. Returns the number
/// of slots taken.
fn mark_parents(table: &mut [u64], arena: &[u8], start: usize, len: usize) -> usize {
    let name = &arena[start..start + len];
    let mut taken = 0;
    let mut h = SEED;
    let mut end = len;
    loop {
        let s = label_start(name, end);
        if s == 0 {
            return taken;
        }
        h = chain(h, label_hash(&name[s..end]));
        taken += mark(table, arena, h, &name[s..]);
        end = s - 1;
    }
}

/// Fills an empty `table` from the arena: every name (distinct, so no comparisons), then the
/// markers. Returns the number of slots taken.
///
/// Work goes in batches: hash a batch, load all its home slots in a tight loop (their cache
/// misses overlap instead of being paid one after the other), then place it.
fn rehash(table: &mut [u64], arena: &[u8]) -> usize {
    const BATCH: usize = 32;
    let cap = table.len();
    let mut used = 0;

    // Names.
    let mut off = 0;
    while off < arena.len() {
        let mut batch = [(0usize, 0u64, 0usize); BATCH]; // (entry offset, hash, home)
        let mut n = 0;
        while n < BATCH && off < arena.len() {
            let (_, start, len) = decode(arena, off);
            let h = hash_name(&arena[start..start + len]);
            batch[n] = (off, h, home(h, cap));
            n += 1;
            off = start + len;
        }
        touch(table, batch[..n].iter().map(|b| b.2));
        for &(entry, h, mut i) in &batch[..n] {
            while table[i] != 0 {
                i += 1;
                if i == cap {
                    i = 0;
                }
            }
            table[i] = listed_slot(entry, h, false);
            used += 1;
        }
    }

    // Markers: every proper suffix of every name.
    let mut batch = [(0usize, 0usize, 0u64); BATCH]; // (suffix start, suffix end, hash)
    let mut n = 0;
    let mut off = 0;
    while off < arena.len() {
        let (_, start, len) = decode(arena, off);
        let name = &arena[start..start + len];
        let mut h = SEED;
        let mut end = len;
        loop {
            let s = label_start(name, end);
            if s == 0 {
                break;
            }
            h = chain(h, label_hash(&name[s..end]));
            if n == BATCH {
                used += mark_batch(table, arena, &batch);
                n = 0;
            }
            batch[n] = (start + s, start + len, h);
            n += 1;
            end = s - 1;
        }
        off = start + len;
    }
    used + mark_batch(table, arena, &batch[..n])
}

/// Loads the slots `homes` so that their cache misses are in flight together.
#[inline]
fn touch(table: &[u64], homes: impl Iterator<Item = usize>) {
    let mut x = 0u64;
    for i in homes {
        x ^= table[i];
    }
    std::hint::black_box(x);
}

fn mark_batch(table: &mut [u64], arena: &[u8], batch: &[(usize, usize, u64)]) -> usize {
    let cap = table.len();
    touch(table, batch.iter().map(|b| home(b.2, cap)));
    batch
        .iter()
        .map(|&(a, b, h)| mark(table, arena, h, &arena[a..b]))
        .sum()
}

// ---------------------------------------------------------------------------------------------
// Arena entries

/// Makes room for `extra` bytes, doubling like `Vec` does, but into memory advised for huge
/// pages before it is touched (a plain `Vec` reallocation would land the arena on 4 KiB pages;
/// see `huge`). Costs the same copy a `Vec` growth does.
fn reserve_arena(arena: &mut Vec<u8>, extra: usize) {
    if arena.capacity() - arena.len() >= extra {
        return;
    }
    let cap = (arena.capacity() * 2).max(arena.len() + extra).max(4096);
    let mut grown = Vec::with_capacity(cap);
    super::huge::advise_huge_pages(grown.spare_capacity_mut());
    grown.extend_from_slice(arena);
    *arena = grown;
}

fn push_header(arena: &mut Vec<u8>, id: u32, len: usize) {
    arena.extend_from_slice(&id.to_le_bytes());
    if len < 255 {
        arena.push(len as u8);
    } else {
        arena.push(255);
        arena.extend_from_slice(&(len as u32).to_le_bytes());
    }
}

/// `(id, name start, name len)` of the entry at `off`.
#[inline]
fn decode(arena: &[u8], off: usize) -> (u32, usize, usize) {
    let id = u32::from_le_bytes(arena[off..off + 4].try_into().unwrap());
    let len = arena[off + 4];
    if len < 255 {
        (id, off + 5, usize::from(len))
    } else {
        let len = u32::from_le_bytes(arena[off + 5..off + 9].try_into().unwrap());
        (id, off + 9, len as usize)
    }
}

/// Id of the entry at `off` if its name equals `name` ignoring ASCII case.
#[inline]
fn entry_matches(arena: &[u8], off: usize, name: &[u8]) -> Option<u32> {
    let (id, start, len) = decode(arena, off);
    (len == name.len() && eq_lower(&arena[start..start + len], name)).then_some(id)
}

/// `stored` (already lowercase) equals `name` folded to lowercase. Same lengths.
#[inline]
fn eq_lower(stored: &[u8], name: &[u8]) -> bool {
    let mut a = stored.chunks_exact(8);
    let mut b = name.chunks_exact(8);
    for (x, y) in (&mut a).zip(&mut b) {
        if u64::from_le_bytes(x.try_into().unwrap())
            != lower(u64::from_le_bytes(y.try_into().unwrap()))
        {
            return false;
        }
    }
    a.remainder()
        .iter()
        .zip(b.remainder())
        .all(|(&x, &y)| x == y.to_ascii_lowercase())
}

// ---------------------------------------------------------------------------------------------
// Names and hashing

#[inline]
fn strip_dot(name: &[u8]) -> &[u8] {
    name.strip_suffix(b".").unwrap_or(name)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const LOW7: u64 = 0x7f * ONES;

/// Start of the label that ends at `end`: the byte after the last `.` before `end`, or 0.
/// Scans 8 bytes at a time from the right.
#[inline]
fn label_start(name: &[u8], end: usize) -> usize {
    let mut p = end;
    while p >= 8 {
        let x = read8(name, p - 8) ^ (u64::from(b'.') * ONES);
        // High bit of each byte of `x` that is zero (exact: no carries between bytes).
        let zero = !(((x & LOW7) + LOW7) | x | LOW7);
        if zero != 0 {
            return p - 8 + (7 - zero.leading_zeros() as usize / 8) + 1;
        }
        p -= 8;
    }
    name[..p]
        .iter()
        .rposition(|&b| b == b'.')
        .map_or(0, |i| i + 1)
}

const SEED: u64 = 0x243f_6a88_85a3_08d3;
const P0: u64 = 0xa076_1d64_78bd_642f;
const P1: u64 = 0xe703_7ed1_a0b4_28db;
const P2: u64 = 0x8ebc_6af0_9c88_c6e3;
const P3: u64 = 0x5899_65cc_7537_4cc3;

/// 64x64 -> 128 multiply, halves folded (the wyhash/foldhash mixer).
#[inline(always)]
fn mum(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

/// ASCII lowercase of 8 packed bytes (SWAR); non-ASCII bytes are left alone.
#[inline(always)]
fn lower(w: u64) -> u64 {
    let low7 = w & LOW7;
    let ge_a = low7 + (0x80 - u64::from(b'A')) * ONES; // bit 7 set where byte >= 'A'
    let gt_z = low7 + (0x7f - u64::from(b'Z')) * ONES; // bit 7 set where byte > 'Z'
    let upper = ge_a & !gt_z & !w & (0x80 * ONES);
    w | (upper >> 2)
}

#[inline(always)]
fn read8(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().unwrap())
}

#[inline(always)]
fn read4(b: &[u8], i: usize) -> u64 {
    u64::from(u32::from_le_bytes(b[i..i + 4].try_into().unwrap()))
}

/// Case-insensitive hash of one label.
#[inline(always)]
fn label_hash(l: &[u8]) -> u64 {
    let n = l.len();
    let mut seed = P0 ^ n as u64;
    let (a, b) = if n <= 16 {
        if n >= 8 {
            (read8(l, 0), read8(l, n - 8))
        } else if n >= 4 {
            ((read4(l, 0) << 32) | read4(l, n - 4), 0)
        } else if n > 0 {
            let w = (u64::from(l[0]) << 16) | (u64::from(l[n / 2]) << 8) | u64::from(l[n - 1]);
            (w, 0)
        } else {
            (0, 0)
        }
    } else {
        let mut i = 0;
        while n - i > 16 {
            seed = mum(lower(read8(l, i)) ^ P1, lower(read8(l, i + 8)) ^ seed);
            i += 16;
        }
        (read8(l, n - 16), read8(l, n - 8))
    };
    mum(lower(a) ^ P1, lower(b) ^ seed)
}

/// Hash of `label.rest` from the hash of `rest` and the hash of `label`.
#[inline(always)]
fn chain(rest: u64, label: u64) -> u64 {
    mum(rest ^ P2, label ^ P3)
}

/// [`hash_name`] and the hash of the name's parent (without its first label), if any.
fn hash_name_and_parent(name: &[u8]) -> (u64, Option<u64>) {
    let mut h = SEED;
    let mut parent = None;
    let mut end = name.len();
    loop {
        let start = label_start(name, end);
        h = chain(h, label_hash(&name[start..end]));
        if start == 0 {
            return (h, parent);
        }
        parent = Some(h);
        end = start - 1;
    }
}

/// Hash of a whole (trailing-dot-stripped) name: the same value the suffix walk computes.
fn hash_name(name: &[u8]) -> u64 {
    let mut h = SEED;
    let mut end = name.len();
    loop {
        let start = label_start(name, end);
        h = chain(h, label_hash(&name[start..end]));
        if start == 0 {
            return h;
        }
        end = start - 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn build(names: &[&str]) -> DomainMatcher {
        let mut b = DomainMatcherBuilder::new();
        for n in names {
            b.insert(n);
        }
        b.build()
    }

    fn suffixes(m: &DomainMatcher, q: &[u8]) -> Vec<(u32, bool)> {
        let mut out = Vec::new();
        m.for_each_suffix(q, |id, exact| {
            out.push((id, exact));
            ControlFlow::Continue(())
        });
        out
    }

    /// The naive reference: a map of normalised names and the suffix walk of the original code.
    #[derive(Default)]
    struct Naive {
        ids: HashMap<Vec<u8>, u32>,
    }

    impl Naive {
        fn norm(name: &[u8]) -> Vec<u8> {
            strip_dot(name).to_ascii_lowercase()
        }
        fn insert(&mut self, name: &str) -> u32 {
            let next = self.ids.len() as u32;
            *self.ids.entry(Self::norm(name.as_bytes())).or_insert(next)
        }
        fn get(&self, name: &[u8]) -> Option<u32> {
            self.ids.get(&Self::norm(name)).copied()
        }
        fn suffixes(&self, q: &[u8]) -> Vec<(u32, bool)> {
            let name = Self::norm(q);
            let mut rest = &name[..];
            let mut exact = true;
            let mut out = Vec::new();
            while !rest.is_empty() {
                if let Some(&id) = self.ids.get(rest) {
                    out.push((id, exact));
                }
                match rest.iter().position(|&b| b == b'.') {
                    Some(i) => rest = &rest[i + 1..],
                    None => break,
                }
                exact = false;
            }
            out
        }
    }

    #[test]
    fn lowercase_swar_matches_std() {
        for b in 0..=255u8 {
            let w = u64::from_le_bytes([b, b'Q', b, 0xC0, b'z', b, b'[', b'@']);
            let expect = u64::from_le_bytes(
                [b, b'Q', b, 0xC0, b'z', b, b'[', b'@'].map(|x| x.to_ascii_lowercase()),
            );
            assert_eq!(lower(w), expect, "byte {b:#x}");
        }
    }

    #[test]
    fn case_insensitive_and_trailing_dot() {
        let m = build(&["Evil.COM.", "bad.example"]);
        assert_eq!(m.len(), 2);
        for q in [&b"evil.com"[..], b"EVIL.COM", b"eViL.cOm.", b"evil.com."] {
            assert_eq!(m.get(q), Some(0), "{q:?}");
        }
        assert_eq!(m.get(b"BAD.EXAMPLE."), Some(1));
        assert_eq!(suffixes(&m, b"WwW.EvIl.CoM"), vec![(0, false)]);
        assert_eq!(suffixes(&m, b"WwW.EvIl.CoM."), vec![(0, false)]);
        assert_eq!(suffixes(&m, b"EVIL.com."), vec![(0, true)]);
        // only one trailing dot is stripped
        assert_eq!(m.get(b"evil.com.."), None);
    }

    #[test]
    fn exact_vs_suffix_order_and_break() {
        let m = build(&["com", "evil.com", "a.b.evil.com", "b.evil.com"]);
        assert_eq!(
            suffixes(&m, b"a.b.evil.com"),
            vec![(2, true), (3, false), (1, false), (0, false)]
        );
        assert_eq!(
            suffixes(&m, b"x.a.b.evil.com"),
            vec![(2, false), (3, false), (1, false), (0, false)]
        );
        assert_eq!(suffixes(&m, b"evil.com"), vec![(1, true), (0, false)]);
        let mut seen = Vec::new();
        m.for_each_suffix(b"a.b.evil.com", |id, _| {
            seen.push(id);
            if id == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!(seen, vec![2, 3]);
    }

    #[test]
    fn children_before_parents() {
        // Listing deep names first leaves markers that a later parent must keep.
        let mut b = DomainMatcherBuilder::new();
        assert_eq!(b.insert("a.b.evil.com"), 0);
        assert_eq!(b.insert("evil.com"), 1);
        assert_eq!(b.insert("com"), 2);
        assert_eq!(b.insert("b.evil.com"), 3);
        let m = b.build();
        assert_eq!(
            suffixes(&m, b"x.A.b.evil.com"),
            vec![(0, false), (3, false), (1, false), (2, false)]
        );
        assert_eq!(
            suffixes(&m, b"b.evil.com"),
            vec![(3, true), (1, false), (2, false)]
        );
        assert_eq!(suffixes(&m, b"c.evil.com"), vec![(1, false), (2, false)]);
        assert_eq!(
            suffixes(&m, b"x.c.b.evil.com"),
            vec![(3, false), (1, false), (2, false)]
        );
        assert_eq!(suffixes(&m, b"net"), vec![]);
    }

    #[test]
    fn no_partial_label_matches() {
        let m = build(&["vil.com", "evil.co", "ample.org"]);
        assert!(suffixes(&m, b"evil.com").is_empty());
        assert!(suffixes(&m, b"www.evil.com").is_empty());
        assert!(suffixes(&m, b"evil.co.uk").is_empty());
        assert!(suffixes(&m, b"example.org").is_empty());
        assert_eq!(m.get(b"evil.com"), None);
        assert_eq!(m.get(b"il.com"), None);
        assert_eq!(suffixes(&m, b"x.vil.com"), vec![(0, false)]);
        let m = build(&["evil.com"]);
        assert!(suffixes(&m, b"vil.com").is_empty());
        assert!(suffixes(&m, b"notevil.com").is_empty());
        assert!(suffixes(&m, b"evil.com.au").is_empty());
    }

    #[test]
    fn root_and_empty_names() {
        // The root can be stored and fetched but is never a reported suffix.
        let mut b = DomainMatcherBuilder::new();
        assert_eq!(b.insert(""), 0);
        assert_eq!(b.insert("."), 0);
        assert_eq!(b.insert("com"), 1);
        let m = b.build();
        assert_eq!(m.get(b""), Some(0));
        assert_eq!(m.get(b"."), Some(0));
        assert!(suffixes(&m, b"").is_empty());
        assert!(suffixes(&m, b".").is_empty());
        assert_eq!(suffixes(&m, b"com."), vec![(1, true)]);
        assert_eq!(suffixes(&m, b"com.."), vec![]); // "com." then "" (not reported)

        let empty = DomainMatcherBuilder::new().build();
        assert!(empty.is_empty());
        assert_eq!(empty.len(), 0);
        assert_eq!(empty.get(b"com"), None);
        assert_eq!(empty.get(b""), None);
        assert!(suffixes(&empty, b"a.b.c").is_empty());
        let d = DomainMatcher::default();
        assert_eq!(d.get(b"x"), None);
        assert_eq!(d.memory_bytes(), 0);
        assert!(DomainMatcherBuilder::with_capacity(100).build().is_empty());

        // empty labels are labels like any other
        let m = build(&["..com", ".com", "a..b"]);
        assert_eq!(suffixes(&m, b"x..com"), vec![(1, false)]);
        assert_eq!(suffixes(&m, b"...com"), vec![(0, false), (1, false)]);
        assert_eq!(suffixes(&m, b"A..B"), vec![(2, true)]);
    }

    #[test]
    fn non_utf8_and_odd_bytes() {
        let m = build(&["evil.com", "caf\u{e9}.fr", "a_b-c.net"]);
        assert_eq!(suffixes(&m, b"\xff\xfe.evil.com"), vec![(0, false)]);
        assert_eq!(suffixes(&m, b"\xffevil.com"), vec![]);
        assert_eq!(m.get(b"\xff"), None);
        assert_eq!(m.get(b"evil.com\xff"), None);
        assert_eq!(m.get("CAF\u{e9}.FR".as_bytes()), Some(1));
        assert_eq!(m.get("CAF\u{c9}.FR".as_bytes()), None); // only ASCII is case folded
        assert_eq!(m.get(b"A_B-C.NET"), Some(2));
        assert_eq!(m.get(b"caf\xe9.fr"), None); // Latin-1, not the UTF-8 bytes
        let all: Vec<u8> = (0..=255u8).collect();
        m.for_each_suffix(&all, |_, _| ControlFlow::Continue(()));
        assert_eq!(m.get(&all), None);
    }

    #[test]
    fn long_names_and_labels() {
        let l63 = "a".repeat(63);
        let n255 = format!("{l63}.{l63}.{l63}.{}", "b".repeat(63)); // 255 bytes
        assert_eq!(n255.len(), 255);
        let n254 = &n255[1..];
        let n1000 = format!("{}.{}", "x".repeat(500), "Y".repeat(499));
        let mut b = DomainMatcherBuilder::new();
        let ids: Vec<u32> = [&n255[..], n254, &n1000, &l63, "b"]
            .iter()
            .map(|n| b.insert(n))
            .collect();
        assert_eq!(ids, vec![0, 1, 2, 3, 4]);
        let m = b.build();
        assert_eq!(m.get(n255.to_uppercase().as_bytes()), Some(0));
        assert_eq!(m.get(format!("{n255}.").as_bytes()), Some(0));
        assert_eq!(m.get(n254.as_bytes()), Some(1));
        assert_eq!(m.get(n1000.as_bytes()), Some(2));
        assert_eq!(m.get(n1000.to_lowercase().as_bytes()), Some(2));
        assert_eq!(m.get(&n1000.as_bytes()[1..]), None);
        assert_eq!(m.get(l63.as_bytes()), Some(3));
        assert_eq!(suffixes(&m, n255.as_bytes()), vec![(0, true)]); // n254 is not a label suffix
        let q = format!("{l63}.{}", "b".repeat(63));
        assert_eq!(suffixes(&m, q.as_bytes()), vec![]);
        let q = format!("{l63}.b");
        assert_eq!(suffixes(&m, q.as_bytes()), vec![(4, false)]);
        // labels of every length 0..=70 (all hash paths), listed and queried in another case
        let labels: Vec<String> = (0..=70)
            .map(|n| "Ab3".repeat(n).chars().take(n).collect())
            .collect();
        let mut b = DomainMatcherBuilder::new();
        for l in &labels {
            b.insert(&format!("{l}.example"));
        }
        let m = b.build();
        for (i, l) in labels.iter().enumerate() {
            let q = format!("X.{}.EXAMPLE", l.to_uppercase());
            assert_eq!(suffixes(&m, q.as_bytes()), vec![(i as u32, false)], "{q}");
            assert_eq!(m.get(format!("{l}x.example").as_bytes()), None);
        }
    }

    #[test]
    fn many_listed_suffixes_take_several_walks() {
        // Every third suffix of a 100-label name listed: up to 34 matches for one query, more
        // than RING, so the walk is repeated for the shorter ones.
        let labels: Vec<String> = (0..100).map(|i| format!("l{i}")).collect();
        let mut naive = Naive::default();
        let mut b = DomainMatcherBuilder::new();
        for i in (0..labels.len()).step_by(3) {
            let n = labels[i..].join(".");
            assert_eq!(b.insert(&n), naive.insert(&n));
        }
        let m = b.build();
        for len in [1, 2, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100] {
            let q = labels[100 - len..].join(".").to_uppercase();
            assert_eq!(
                suffixes(&m, q.as_bytes()),
                naive.suffixes(q.as_bytes()),
                "{len}"
            );
        }
        // Break in the middle of the second walk.
        let q = labels.join(".");
        let mut seen = Vec::new();
        m.for_each_suffix(q.as_bytes(), |id, exact| {
            seen.push((id, exact));
            if seen.len() == 12 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!(seen, naive.suffixes(q.as_bytes())[..12]);

        // the same with empty labels only
        let mut b = DomainMatcherBuilder::new();
        let mut naive = Naive::default();
        for n in [".", "..", "...", &".".repeat(40), &".".repeat(70)] {
            assert_eq!(b.insert(n), naive.insert(n));
        }
        let m = b.build();
        for len in [0, 1, 2, 3, 15, 16, 17, 33, 40, 64, 65, 71, 200] {
            let q = ".".repeat(len);
            assert_eq!(
                suffixes(&m, q.as_bytes()),
                naive.suffixes(q.as_bytes()),
                "{len}"
            );
        }
        let mut seen = 0;
        m.for_each_suffix(".".repeat(200).as_bytes(), |_, _| {
            seen += 1;
            if seen == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!(seen, 2);
    }

    #[test]
    fn ids_dense_and_stable() {
        let mut b = DomainMatcherBuilder::with_capacity(4);
        assert!(b.is_empty());
        assert_eq!(b.insert("a.com"), 0);
        assert_eq!(b.insert("b.com"), 1);
        assert_eq!(b.insert("A.COM."), 0);
        assert_eq!(b.insert("c.com"), 2);
        assert_eq!(b.insert("b.com."), 1);
        assert_eq!(b.len(), 3);
        // force several table growths
        let mut expect = vec![];
        for i in 0..5000 {
            expect.push(b.insert(&format!("n{i}.test")));
            assert_eq!(b.insert(&format!("N{i}.TEST.")), expect[i]);
        }
        assert_eq!(expect, (3..5003).collect::<Vec<u32>>());
        assert_eq!(b.insert("c.com"), 2);
        assert_eq!(b.len(), 5003);
        let m = b.build();
        assert_eq!(m.len(), 5003);
        assert!(!m.is_empty());
        for i in 0..5000 {
            assert_eq!(m.get(format!("n{i}.test").as_bytes()), Some(i as u32 + 3));
        }
        assert_eq!(m.get(b"a.com"), Some(0));
        assert_eq!(m.get(b"n5000.test"), None);
        let mb = m.memory_bytes();
        let name_bytes: usize =
            3 * 5 + (0..5000).map(|i| format!("n{i}.test").len()).sum::<usize>();
        assert!(mb > name_bytes && mb < name_bytes + 5003 * 64, "{mb}");
        let dbg = format!("{m:?}");
        assert!(dbg.contains("len: 5003"), "{dbg}");
    }

    #[test]
    fn build_right_sizes_the_table() {
        for n in [1usize, 2, 10, 100, 1000, 10_000] {
            for with_cap in [false, true] {
                let mut b = if with_cap {
                    DomainMatcherBuilder::with_capacity(n)
                } else {
                    DomainMatcherBuilder::new()
                };
                for i in 0..n {
                    b.insert(&format!("d{i}.example"));
                }
                let m = b.build();
                let cap = m.table.len();
                let used = m.table.iter().filter(|&&s| s != 0).count();
                assert_eq!(used, n + 1, "n names and the `example` marker");
                assert!(cap * 2 >= used * 3, "load over 2/3: n {n} cap {cap}");
                assert!(
                    cap * 2 <= used * 5 || cap == final_capacity(used),
                    "load under 0.4: n {n} cap {cap}"
                );
                for i in 0..n {
                    assert_eq!(m.get(format!("D{i}.EXAMPLE").as_bytes()), Some(i as u32));
                }
            }
        }
    }

    /// Two slots with the same tag in one run: `find` and `mark` must agree on what they see.
    #[test]
    fn tag_collisions_in_a_run() {
        let mut arena = Vec::new();
        push_header(&mut arena, 0, 8);
        arena.extend_from_slice(b"evil.com");
        let other = arena.len();
        push_header(&mut arena, 1, 9);
        arena.extend_from_slice(b"other.net");
        let h = hash_name(b"evil.com");
        let cap = 8;
        let i = home(h, cap);
        let (j, k) = ((i + 1) % cap, (i + 2) % cap);

        // A foreign marker with our tag, then our listed slot without BELOW.
        let mut table = vec![0u64; cap];
        table[i] = BELOW | (h & TAG);
        table[j] = listed_slot(0, h, false);
        assert_eq!(find(&table, &arena, h, b"EVIL.com"), (Ok(0), true));
        assert_eq!(mark(&mut table, &arena, h, b"evil.com"), 0);
        assert_eq!(
            table[j] & BELOW,
            0,
            "stops at the marker, which find sees first too"
        );

        // A foreign listed name with our tag, then our listed slot.
        let mut table = vec![0u64; cap];
        table[i] = listed_slot(other, h, true);
        table[j] = listed_slot(0, h, false);
        assert_eq!(find(&table, &arena, h, b"evil.com"), (Ok(0), false));
        assert_eq!(mark(&mut table, &arena, h, b"evil.com"), 0);
        assert_eq!(find(&table, &arena, h, b"evil.com"), (Ok(0), true));
        assert_eq!(table[i] & BELOW, BELOW);

        // Not listed: a foreign listed name with our tag, then a new marker after it.
        let mut table = vec![0u64; cap];
        table[i] = listed_slot(other, h, false);
        assert_eq!(find(&table, &arena, h, b"evil.com"), (Err(j), false));
        assert_eq!(mark(&mut table, &arena, h, b"evil.com"), 1);
        assert_eq!(table[j], BELOW | (h & TAG));
        assert_eq!(find(&table, &arena, h, b"evil.com"), (Err(k), true));
        assert_eq!(mark(&mut table, &arena, h, b"evil.com"), 0);

        // Wrap-around at the end of the table.
        let mut table = vec![0u64; cap];
        let last = cap - 1;
        for (n, slot) in table.iter_mut().enumerate() {
            if n != 0 && n != last {
                *slot = 1; // occupied, tag 1, marker-only without BELOW: never matches
            }
        }
        let h2 = u64::MAX; // home is the last slot, tag 0x7fff_ffff
        assert_eq!(home(h2, cap), last);
        table[last] = 1;
        assert_eq!(find(&table, &arena, h2, b"x"), (Err(0), false));
    }

    #[test]
    fn names_in_id_order() {
        let mut b = DomainMatcherBuilder::new();
        for n in [
            "B.example.",
            "a.example",
            "b.example",
            "",
            "x".repeat(300).as_str(),
        ] {
            b.insert(n);
        }
        let m = b.build();
        let names: Vec<(u32, Vec<u8>)> = m.names().map(|(id, n)| (id, n.to_vec())).collect();
        assert_eq!(
            names,
            vec![
                (0, b"b.example".to_vec()),
                (1, b"a.example".to_vec()),
                (2, Vec::new()),
                (3, vec![b'x'; 300]),
            ]
        );
        assert_eq!(DomainMatcher::default().names().count(), 0);
    }

    #[test]
    fn send_sync_default_debug() {
        fn check<T: Send + Sync + Default + fmt::Debug>() {}
        check::<DomainMatcher>();
        fn check_b<T: Default + fmt::Debug>() {}
        check_b::<DomainMatcherBuilder>();
    }

    mod proptests {
        use super::*;
        use proptest::prelude::*;

        const LABELS: &[&[u8]] = &[
            b"a",
            b"B",
            b"evil",
            b"EVIL",
            b"eViL",
            b"com",
            b"Com",
            b"x-y",
            b"",
            b"vil",
            b"0123456789abcdefghij",
            b"0123456789ABCDEFGHIJ",
            b"\xff",
            b"\xc3\xa9",
        ];

        fn label() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                8 => prop::sample::select(LABELS).prop_map(<[u8]>::to_vec),
                1 => prop::collection::vec(any::<u8>(), 0..20),
            ]
        }

        fn name() -> impl Strategy<Value = Vec<u8>> {
            (prop::collection::vec(label(), 1..6), any::<bool>()).prop_map(|(labels, dot)| {
                let mut n = labels.join(&b'.');
                if dot {
                    n.push(b'.');
                }
                n
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn agrees_with_naive(
                inserted in prop::collection::vec(name(), 0..40),
                queries in prop::collection::vec(name(), 0..40),
            ) {
                let mut naive = Naive::default();
                let mut b = DomainMatcherBuilder::new();
                let mut listed = Vec::new();
                for n in &inserted {
                    // insert takes &str: invalid UTF-8 names go through lossily, like a caller would
                    let s = String::from_utf8_lossy(n);
                    prop_assert_eq!(b.insert(&s), naive.insert(&s));
                    listed.push(s.into_owned().into_bytes());
                }
                prop_assert_eq!(b.len(), naive.ids.len());
                let m = b.build();
                prop_assert_eq!(m.len(), naive.ids.len());
                for q in queries.iter().chain(&listed).chain(&inserted) {
                    prop_assert_eq!(m.get(q), naive.get(q));
                    prop_assert_eq!(suffixes(&m, q), naive.suffixes(q));
                    let mut upper = q.to_ascii_uppercase();
                    prop_assert_eq!(suffixes(&m, &upper), naive.suffixes(&upper));
                    upper.splice(0..0, b"www.".iter().copied());
                    prop_assert_eq!(suffixes(&m, &upper), naive.suffixes(&upper));
                }
            }
        }
    }
}
