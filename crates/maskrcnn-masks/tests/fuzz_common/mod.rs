//! A small deterministic fuzzer shared by the `fuzz_*` tests of every crate (included with
//! `#[path]`, so there is one copy and no extra crate).
//!
//! Each test starts from small valid files it writes itself and feeds the reader mutated copies:
//! byte-level edits (flips, interesting values, truncation, insertion, splices between seeds)
//! and the test's own structured edits. Every case must return (`Ok` or `Err`) without a panic,
//! within [`CASE_TIME_LIMIT`], and without live heap memory passing [`MEMORY_LIMIT`] (a counting
//! allocator refuses the allocation, which aborts the run with a message saying where the input
//! is). A failing input is hex-printed and saved, so it can be turned into a regression test.
//!
//! `MASKRCNN_FUZZ_CASES=N` runs N cases per fuzz test instead of each test's short CI default;
//! `MASKRCNN_FUZZ_SEED=S` changes the seed (the default seed keeps CI reproducible).

#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Live heap bytes a fuzz binary may hold. The seeds are a few kilobytes, so a reader that needs
/// more than this for a mutated one trusts a size field it should have checked.
pub const MEMORY_LIMIT: usize = 3 << 30;

/// Longest one case may take (release build). Readers of inputs this small finish in
/// milliseconds; a case this slow is a reader whose work follows a declared size, not the data.
pub const CASE_TIME_LIMIT: Duration = Duration::from_secs(5);

struct CountingAllocator;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !reserve(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !reserve(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() && !reserve(new_size - layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            if new_size > layout.size() {
                LIVE_BYTES.fetch_sub(new_size - layout.size(), Ordering::Relaxed);
            }
        } else if new_size < layout.size() {
            LIVE_BYTES.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        p
    }
}

/// Counts `bytes` as live, or refuses (leaving the count unchanged) past [`MEMORY_LIMIT`].
fn reserve(bytes: usize) -> bool {
    let before = LIVE_BYTES.fetch_add(bytes, Ordering::Relaxed);
    if before.saturating_add(bytes) <= MEMORY_LIMIT {
        PEAK_BYTES.fetch_max(before + bytes, Ordering::Relaxed);
        return true;
    }
    LIVE_BYTES.fetch_sub(bytes, Ordering::Relaxed);
    // The allocation failure aborts the process; say why and print the input first, without
    // allocating (stack buffers only).
    let mut err = std::io::stderr();
    let _ = err.write_all(b"\nfuzz: an allocation would take live memory past the fuzz limit: the reader trusted a declared size. The input, in hex:\n");
    let (ptr, len) = CURRENT_INPUT.with(Cell::get);
    if ptr != 0 {
        // SAFETY: `run` sets this to the input it is reading and clears it after the case.
        let input = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for chunk in input[..len.min(4096)].chunks(32) {
            let mut line = [0u8; 65];
            for (i, b) in chunk.iter().enumerate() {
                line[2 * i] = DIGITS[(b >> 4) as usize];
                line[2 * i + 1] = DIGITS[(b & 15) as usize];
            }
            line[2 * chunk.len()] = b'\n';
            let _ = err.write_all(&line[..2 * chunk.len() + 1]);
        }
    }
    false
}

thread_local! {
    /// The input the current case of this thread is reading, as (address, length).
    static CURRENT_INPUT: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Live heap bytes now.
pub fn live_bytes() -> usize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// Runs `f` and returns its result with the most heap it held above what was live before, for
/// tests of a reader's own memory bound. The peak is process-wide, so tests running beside it
/// count too: bounds checked with it should be generous (they catch gigabytes, not kilobytes).
pub fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = live_bytes();
    PEAK_BYTES.store(before, Ordering::Relaxed);
    let out = f();
    (out, PEAK_BYTES.load(Ordering::Relaxed).saturating_sub(before))
}

/// xorshift64*: tiny, seedable, and the same everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Cases per fuzz test: `MASKRCNN_FUZZ_CASES` when set, else the test's CI default.
pub fn cases(ci_default: usize) -> usize {
    match std::env::var("MASKRCNN_FUZZ_CASES") {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("MASKRCNN_FUZZ_CASES={v:?} is not a number")),
        Err(_) => ci_default,
    }
}

fn base_seed() -> u64 {
    match std::env::var("MASKRCNN_FUZZ_SEED") {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("MASKRCNN_FUZZ_SEED={v:?} is not a number")),
        Err(_) => 0x6d61_736b_7263_6e6e,
    }
}

/// A per-test scratch folder under cargo's target/tmp, emptied first, for readers that take a
/// path.
pub fn scratch_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a case's input file. Removing the old file first matters: ext4 flushes a file that is
/// truncated and rewritten in place (`auto_da_alloc`), which made each case wait on the disk.
pub fn write_input(path: &Path, bytes: &[u8]) {
    let _ = std::fs::remove_file(path);
    std::fs::write(path, bytes).unwrap();
}

/// Values that break size and offset arithmetic.
pub const INTERESTING_U64: [u64; 14] = [
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
];

/// One to four random byte-level edits of `seed`; `others` are splice sources and `tokens`
/// format words worth inserting (chunk names, JSON keys...).
pub fn mutate_bytes(rng: &mut Rng, seed: &[u8], others: &[&[u8]], tokens: &[&[u8]]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        match rng.below(10) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = *rng.pick(&[0u8, 1, 0x7f, 0x80, 0xff, b'-', b'9', b'"', b'[', b'{']);
            }
            2 if len > 0 => data.truncate(rng.below(len)),
            3 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                data.splice(i..i, bytes);
            }
            4 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(64)).min(len);
                data.drain(a..b);
            }
            5 if len > 0 => {
                // Duplicate a stretch (repeated chunks, repeated JSON members).
                let a = rng.below(len);
                let b = (a + 1 + rng.below(256)).min(len);
                let copy = data[a..b].to_vec();
                let at = rng.below(data.len() + 1);
                data.splice(at..at, copy);
            }
            6 if len >= 8 => {
                // An interesting integer of 2, 4 or 8 bytes, either byte order.
                let width = *rng.pick(&[2usize, 4, 8]);
                if len >= width {
                    let i = rng.below(len - width + 1);
                    let v = *rng.pick(&INTERESTING_U64);
                    let bytes = if rng.chance(2) { v.to_le_bytes() } else { v.to_be_bytes() };
                    let bytes = if rng.chance(2) { &bytes[..width] } else { &bytes[8 - width..] };
                    data[i..i + width].copy_from_slice(bytes);
                }
            }
            7 if !others.is_empty() => {
                // Splice: our head with another seed's tail.
                let other = *rng.pick(others);
                let cut = rng.below(data.len() + 1);
                let from = rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            8 if !tokens.is_empty() => {
                let token = *rng.pick(tokens);
                let i = rng.below(len + 1);
                data.splice(i..i, token.iter().copied());
            }
            _ if len > 0 => {
                // Small arithmetic on one byte (a length off by one, a count one more).
                let i = rng.below(len);
                data[i] = data[i].wrapping_add([1u8, 255, 16, 240][rng.below(4)]);
            }
            _ => {}
        }
    }
    data
}

/// The first `limit` bytes as hex, 32 to a line.
pub fn hex(bytes: &[u8], limit: usize) -> String {
    let mut out = String::new();
    for (i, chunk) in bytes[..bytes.len().min(limit)].chunks(32).enumerate() {
        out.push_str(&format!("{:06x}: ", i * 32));
        for b in chunk {
            out.push_str(&format!("{b:02x}"));
        }
        out.push('\n');
    }
    if bytes.len() > limit {
        out.push_str(&format!("... ({} bytes in all)\n", bytes.len()));
    }
    out
}

/// Runs `cases` cases: `make(rng, case)` builds an input, `read(input)` feeds it to the reader
/// (its result is ignored: `Ok` and `Err` are both fine). Fails the test, with every failing
/// input hex-printed and saved beside the scratch folder, when a case panics or is too slow.
/// Returns how many cases ran and how long they took.
pub fn run<T>(
    test: &str,
    cases: usize,
    mut make: impl FnMut(&mut Rng, usize) -> Vec<u8>,
    mut read: impl FnMut(&[u8]) -> T,
) -> (usize, Duration) {
    let seed = base_seed();
    let mut rng = Rng::new(seed ^ fnv(test.as_bytes()));
    let failures_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
    let mut failures: Vec<String> = Vec::new();
    let start = Instant::now();
    let mut ran = 0;
    for case in 0..cases {
        ran += 1;
        let input = make(&mut rng, case);
        let case_start = Instant::now();
        CURRENT_INPUT.with(|c| c.set((input.as_ptr() as usize, input.len())));
        let outcome = catch_unwind(AssertUnwindSafe(|| drop(read(&input))));
        CURRENT_INPUT.with(|c| c.set((0, 0)));
        let took = case_start.elapsed();
        let problem = match outcome {
            Err(payload) => Some(format!("panicked: {}", panic_message(&payload))),
            Ok(()) if took > CASE_TIME_LIMIT => Some(format!("took {took:?}, over the {CASE_TIME_LIMIT:?} limit")),
            Ok(()) => None,
        };
        if let Some(problem) = problem {
            std::fs::create_dir_all(&failures_dir).unwrap();
            let saved = failures_dir.join(format!("{test}-seed{seed}-case{case}.bin"));
            std::fs::write(&saved, &input).unwrap();
            failures.push(format!(
                "{test} case {case} (MASKRCNN_FUZZ_SEED={seed}) {problem}\ninput saved to {}\n{}",
                saved.display(),
                hex(&input, 2048)
            ));
            if failures.len() >= 5 {
                break;
            }
        }
    }
    let elapsed = start.elapsed();
    eprintln!("fuzz {test}: {ran} cases in {elapsed:.2?}");
    assert!(failures.is_empty(), "{} failing fuzz case(s):\n{}", failures.len(), failures.join("\n"));
    (ran, elapsed)
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}

/// Mutations of a JSON document as a value: a random node replaced by a hostile value, removed,
/// duplicated or retyped. Keeps the document parseable, so the reader's own checks are reached.
pub mod json {
    use super::Rng;
    use serde_json::{json, Value};

    /// Numbers and shapes that break size arithmetic, plus wrong types.
    pub fn hostile_value(rng: &mut Rng) -> Value {
        match rng.below(22) {
            0 => json!(-1),
            1 => json!(0),
            2 => json!(1),
            3 => json!(u32::MAX),
            4 => json!(u32::MAX as u64 + 1),
            5 => json!(u64::MAX),
            6 => json!(i64::MIN),
            7 => json!(1e300),
            8 => json!(-1e300),
            9 => json!(0.5),
            10 => json!(-0.0),
            11 => json!(65535),
            12 => json!(100000),
            13 => Value::Null,
            14 => json!(true),
            15 => json!("x"),
            16 => json!([]),
            17 => json!({}),
            18 => json!([u32::MAX, u32::MAX]),
            19 => json!([1e300, 1e300, -1e300, 5.0, 5.0, -1e300]),
            20 => json!(4e9),
            _ => json!(1e18),
        }
    }

    /// Number of nodes (the root included).
    fn count(v: &Value) -> usize {
        1 + match v {
            Value::Array(a) => a.iter().map(count).sum(),
            Value::Object(o) => o.values().map(count).sum(),
            _ => 0,
        }
    }

    /// Calls `edit` on the `index`-th node in pre-order; returns whether it was found.
    fn edit_node(v: &mut Value, index: &mut usize, edit: &mut dyn FnMut(&mut Value)) -> bool {
        if *index == 0 {
            edit(v);
            return true;
        }
        *index -= 1;
        match v {
            Value::Array(a) => a.iter_mut().any(|c| edit_node(c, index, edit)),
            Value::Object(o) => o.values_mut().any(|c| edit_node(c, index, edit)),
            _ => false,
        }
    }

    /// One to three structured edits of `doc`.
    pub fn mutate(rng: &mut Rng, doc: &Value) -> Value {
        let mut doc = doc.clone();
        for _ in 0..1 + rng.below(3) {
            let mut index = rng.below(count(&doc));
            edit_node(&mut doc, &mut index, &mut |target| edit(rng, target));
        }
        doc
    }

    fn edit(rng: &mut Rng, target: &mut Value) {
        {
            match rng.below(8) {
                0..=3 => *target = hostile_value(rng),
                4 => match target {
                    // Drop a member or an element.
                    Value::Object(o) if !o.is_empty() => {
                        let key = o.keys().nth(rng.below(o.len())).unwrap().clone();
                        o.remove(&key);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        let i = rng.below(a.len());
                        a.remove(i);
                    }
                    other => *other = hostile_value(rng),
                },
                5 => match target {
                    // Duplicate an element (repeated ids, extra polygons, extra runs).
                    Value::Array(a) if !a.is_empty() => {
                        let i = rng.below(a.len());
                        let copy = a[i].clone();
                        a.insert(rng.below(a.len() + 1), copy);
                    }
                    other => *other = json!([other.clone()]),
                },
                6 => match target {
                    // Number arithmetic: off by one, scaled, negated.
                    Value::Number(num) => {
                        let x = num.as_f64().unwrap_or(0.0);
                        let y = match rng.below(5) {
                            0 => x + 1.0,
                            1 => x - 1.0,
                            2 => x * 1000.0,
                            3 => -x,
                            _ => x / 3.0,
                        };
                        *target = if y.fract() == 0.0 && y.abs() < 9e15 { json!(y as i64) } else { json!(y) };
                    }
                    other => *other = hostile_value(rng),
                },
                _ => {
                    // Wrap in or unwrap from a list: the type confusion of polygons vs RLE.
                    *target = match target.take() {
                        Value::Array(mut a) if a.len() == 1 => a.remove(0),
                        other => json!([other]),
                    }
                }
            }
        }
    }
}
