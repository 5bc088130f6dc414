//! Domain matcher benchmarks: build 1M IOC domains, 4-label suffix lookups (hit and miss), exact
//! lookups, plus a one-shot memory report and an allocation check of the lookup path.
//!
//! `cargo bench --bench matcher`. Under `cargo test --benches` the set is shrunk to 20k names.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};
use iocdns::policy::matcher::{DomainMatcher, DomainMatcherBuilder};

// ---------------------------------------------------------------------------------------------
// Allocation counter

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded verbatim to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded verbatim to the system allocator.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded verbatim to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded verbatim to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// ---------------------------------------------------------------------------------------------
// Data

/// splitmix64: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn label(&mut self, out: &mut String, min: usize, max: usize) {
        const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let n = min + self.below(max - min + 1);
        for _ in 0..n {
            out.push(ALPHA[self.below(ALPHA.len())] as char);
        }
    }
    /// DNS 0x20: flip the case of each letter at random.
    fn mixed_case(&mut self, name: &str) -> String {
        let bits = self.next();
        name.bytes()
            .enumerate()
            .map(|(i, b)| if bits >> (i % 64) & 1 == 1 { b.to_ascii_uppercase() } else { b } as char)
            .collect()
    }
}

const TLDS: &[&str] = &["com", "net", "top", "xyz", "ru", "info"];

/// Query names in one flat buffer (as a packet buffer would be), cycled through by the benches.
struct Queries {
    bytes: Vec<u8>,
    spans: Vec<(u32, u32)>,
}

impl Queries {
    fn new(names: impl IntoIterator<Item = String>) -> Self {
        let mut q = Queries {
            bytes: Vec::new(),
            spans: Vec::new(),
        };
        for n in names {
            q.spans.push((q.bytes.len() as u32, n.len() as u32));
            q.bytes.extend_from_slice(n.as_bytes());
        }
        q
    }
    /// Query `i` modulo the (power-of-two) count: no division in the timed loop.
    #[inline]
    fn get(&self, i: usize) -> &[u8] {
        let (o, l) = self.spans[i & (self.spans.len() - 1)];
        &self.bytes[o as usize..(o + l) as usize]
    }
    fn len(&self) -> usize {
        self.spans.len()
    }
}

struct Data {
    names: Vec<String>,
    /// 4-label names under a listed 2-label domain, random case.
    hits: Queries,
    /// 4-label names with no listed suffix, random case.
    misses: Queries,
    /// Listed names, random case.
    exact: Queries,
}

fn generate(n: usize) -> Data {
    let mut rng = Rng(0x10c_d115);
    let mut names = Vec::with_capacity(n);
    let mut two_label = Vec::new();
    for i in 0..n {
        let mut s = String::with_capacity(48);
        if rng.below(10) < 3 {
            rng.label(&mut s, 8, 20);
            s.push('.');
        } else {
            two_label.push(i);
        }
        rng.label(&mut s, 8, 20);
        s.push('.');
        s.push_str(TLDS[rng.below(TLDS.len())]);
        names.push(s);
    }
    let queries = n.next_power_of_two().min(1 << 20);
    let hits = Queries::new((0..queries).map(|_| {
        let mut q = String::new();
        rng.label(&mut q, 3, 10);
        q.push('.');
        rng.label(&mut q, 3, 10);
        q.push('.');
        q.push_str(&names[two_label[rng.below(two_label.len())]]);
        rng.mixed_case(&q)
    }));
    let misses = Queries::new((0..queries).map(|_| {
        let mut q = String::new();
        rng.label(&mut q, 3, 10);
        q.push('.');
        rng.label(&mut q, 3, 10);
        q.push('.');
        // 21..24 chars: never a listed label (those are 8..20)
        rng.label(&mut q, 21, 24);
        q.push('.');
        q.push_str(TLDS[rng.below(TLDS.len())]);
        rng.mixed_case(&q)
    }));
    let exact = Queries::new((0..queries).map(|_| {
        let name = &names[rng.below(n)];
        rng.mixed_case(name)
    }));
    Data {
        names,
        hits,
        misses,
        exact,
    }
}

fn build(names: &[String], with_capacity: bool) -> DomainMatcher {
    let mut b = if with_capacity {
        DomainMatcherBuilder::with_capacity(names.len())
    } else {
        DomainMatcherBuilder::new()
    };
    for n in names {
        b.insert(n);
    }
    b.build()
}

#[inline]
fn lookup(m: &DomainMatcher, q: &[u8]) -> u32 {
    let mut acc = 0u32;
    m.for_each_suffix(q, |id, exact| {
        acc = acc.wrapping_add(id + 1 + u32::from(exact));
        ControlFlow::Continue(())
    });
    acc
}

// ---------------------------------------------------------------------------------------------
// One-shot reports

fn reports(data: &Data, m: &DomainMatcher) {
    let n = data.names.len();
    for with_cap in [false, true] {
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            let m2 = build(&data.names, with_cap);
            best = best.min(t.elapsed());
            drop(black_box(m2));
        }
        println!(
            "build {n} names from a list, insert + build, builder {}: {:.0} ms (best of 3)",
            if with_cap {
                "with_capacity(n)"
            } else {
                "new()"
            },
            best.as_secs_f64() * 1e3
        );
    }
    println!(
        "random dependent read over 64 MiB on this machine: {:.0} ns (the floor for any \
         lookup whose data is not cached)",
        dram_latency()
    );

    let name_bytes: usize = data.names.iter().map(String::len).sum();
    let mem = m.memory_bytes();
    println!(
        "memory: {} names, {name_bytes} name bytes ({:.1} B/name), memory_bytes {mem} \
         => {:.1} B/domain total, {:.1} B/domain above the name bytes",
        m.len(),
        name_bytes as f64 / m.len() as f64,
        mem as f64 / m.len() as f64,
        (mem - name_bytes) as f64 / m.len() as f64
    );

    // Sanity: every hit query hits, no miss query does, every exact query is found.
    for i in 0..data.hits.len().min(10_000) {
        assert_ne!(lookup(m, data.hits.get(i)), 0, "hit query missed");
        assert_eq!(lookup(m, data.misses.get(i)), 0, "miss query hit");
        assert!(m.get(data.exact.get(i)).is_some(), "exact query missed");
    }

    let before = ALLOCS.load(Ordering::SeqCst);
    let mut acc = 0u32;
    let lookups = 10_000;
    for i in 0..lookups / 4 {
        acc = acc.wrapping_add(lookup(m, data.hits.get(i)));
        acc = acc.wrapping_add(lookup(m, data.misses.get(i)));
        acc = acc.wrapping_add(m.get(data.exact.get(i)).unwrap_or(0));
        acc = acc.wrapping_add(m.get(data.misses.get(i)).unwrap_or(0));
    }
    let allocs = ALLOCS.load(Ordering::SeqCst) - before;
    black_box(acc);
    println!("allocations across {lookups} lookups (hit, miss, exact, exact miss): {allocs}");
    assert_eq!(allocs, 0, "the lookup path allocated");
}

/// Pointer chase through a random cycle over 64 MiB: ns per dependent load.
fn dram_latency() -> f64 {
    let n = (64 << 20) / 8;
    let mut rng = Rng(7);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let mut next = vec![0usize; n];
    for k in 0..n {
        next[order[k]] = order[(k + 1) % n];
    }
    let steps = 2_000_000;
    let mut p = order[0];
    let t = Instant::now();
    for _ in 0..steps {
        p = next[p];
    }
    black_box(p);
    t.elapsed().as_nanos() as f64 / steps as f64
}

// ---------------------------------------------------------------------------------------------
// Criterion

fn benches(c: &mut Criterion, data: &Data, m: &DomainMatcher) {
    let n = data.names.len();

    let mut g = c.benchmark_group("matcher_build");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(n as u64));
    g.bench_function(format!("insert+build {n}"), |b| {
        b.iter_with_large_drop(|| build(black_box(&data.names), false))
    });
    g.finish();

    let mut g = c.benchmark_group("matcher_lookup");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500));
    // cold: cycle through 1M distinct queries (table and arena lines mostly not cached);
    // warm1k: 1024 queries (the lines they touch fit in L2);
    // hot16: 16 queries (everything in L1: the compute cost of a lookup).
    for (label, len) in [("/cold", usize::MAX), ("/warm1k", 1024), ("/hot16", 16)] {
        let mask = len.min(data.hits.len()) - 1;
        let mut i = 0usize;
        g.bench_function(format!("hit 4-label{label}"), |b| {
            b.iter(|| {
                i = (i + 1) & mask;
                lookup(m, black_box(data.hits.get(i)))
            })
        });
        g.bench_function(format!("miss 4-label{label}"), |b| {
            b.iter(|| {
                i = (i + 1) & mask;
                lookup(m, black_box(data.misses.get(i)))
            })
        });
        g.bench_function(format!("exact hit{label}"), |b| {
            b.iter(|| {
                i = (i + 1) & mask;
                m.get(black_box(data.exact.get(i)))
            })
        });
    }
    g.finish();
}

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let n = if bench_mode { 1_000_000 } else { 20_000 };
    let data = generate(n);
    let m = build(&data.names, false);
    reports(&data, &m);
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c, &data, &m);
    c.final_summary();
}
