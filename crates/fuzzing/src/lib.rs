//! A seeded mutation fuzzer on the stable toolchain, for the parsers' fuzz tests: proptest makes the
//! inputs (real seeds with bytes flipped, cut, spliced and JSON nodes replaced, plus random bytes), runs
//! the target until a time budget is spent, and shrinks a failure to a small input to keep as a test.
//!
//! The budget is `GALLEON_FUZZ_SECONDS` per target (3 s when unset, as in CI; `scripts/fuzz.sh` gives
//! each 60 s). `GALLEON_FUZZ_SEED` (a number) replays the same inputs.

use std::fmt::Debug;
use std::panic;
use std::time::{Duration, Instant};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use serde_json::{Map, Value};

/// Cases per batch: the budget is looked at between batches.
const BATCH: u32 = 256;

/// How long each target runs: `GALLEON_FUZZ_SECONDS`, else 3 s.
pub fn budget() -> Duration {
    let seconds = std::env::var("GALLEON_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(3.0);
    Duration::from_secs_f64(seconds)
}

fn base_seed() -> u64 {
    std::env::var("GALLEON_FUZZ_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x5eed)
        })
}

fn rng_for(seed: u64, batch: u64) -> TestRng {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&batch.to_le_bytes());
    bytes[16..24].copy_from_slice(b"galleon!");
    TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
}

/// What a fuzz run did: the cases tried and the time it took.
#[derive(Debug, Clone, Copy)]
pub struct Ran {
    pub cases: u64,
    pub elapsed: Duration,
}

/// Runs `target` on inputs drawn from `strategy` until [`budget`] is spent. A panic, or an `Err` the target
/// returns (a broken invariant), is shrunk to a small input and fails the caller with that input, the
/// reason and the seed. Prints one line with the number of cases, so a run shows it really happened.
pub fn fuzz<S, F>(name: &str, strategy: S, target: F) -> Ran
where
    S: Strategy,
    S::Value: Debug,
    F: Fn(S::Value) -> Result<(), String>,
{
    let budget = budget();
    let seed = base_seed();
    let started = Instant::now();
    let mut cases = 0u64;
    let mut batch = 0u64;
    // Panics are expected while shrinking; the one that matters is reported below.
    let hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let mut failure = None;
    while started.elapsed() < budget {
        let config = Config {
            cases: BATCH,
            failure_persistence: None,
            max_shrink_iters: 4096,
            ..Config::default()
        };
        let mut runner = TestRunner::new_with_rng(config, rng_for(seed, batch));
        let outcome = runner.run(&strategy, |input| {
            target(input).map_err(TestCaseError::fail)
        });
        cases += u64::from(BATCH);
        batch += 1;
        match outcome {
            Ok(()) => {}
            Err(TestError::Fail(why, input)) => {
                failure = Some(format!("{why}\nminimal input: {input:?}"));
                break;
            }
            Err(TestError::Abort(why)) => {
                failure = Some(format!("the fuzzer stopped: {why}"));
                break;
            }
        }
    }
    panic::set_hook(hook);
    let elapsed = started.elapsed();
    if let Some(failure) = failure {
        panic!(
            "fuzz target {name} failed after {cases} cases (GALLEON_FUZZ_SEED={seed}): {failure}\nKeep the minimal input as a regression test beside the target."
        );
    }
    println!(
        "fuzz target {name}: {cases} cases in {:.1} s, no failure (GALLEON_FUZZ_SEED={seed})",
        elapsed.as_secs_f64()
    );
    Ran { cases, elapsed }
}

/// Little-endian or big-endian.
#[derive(Debug, Clone, Copy)]
pub enum Endian {
    Little,
    Big,
}

/// One change to a byte string. Positions are [`Index`]es, taken modulo the length at the time.
#[derive(Debug, Clone)]
pub enum Edit {
    /// Sets one byte.
    Set(Index, u8),
    /// Flips one bit.
    Flip(Index, u8),
    /// Writes a boundary value (0, 1, 0x7f…, 0x80…, 0xff…) of 1, 2, 4 or 8 bytes.
    Boundary(Index, u8, usize, Endian),
    /// Cuts the bytes from here on.
    Truncate(Index),
    /// Removes up to this many bytes.
    Remove(Index, u8),
    /// Inserts bytes.
    Insert(Index, Vec<u8>),
    /// Copies a run of bytes from one place over another.
    Copy(Index, Index, u8),
}

const BOUNDARIES: [u64; 10] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0x8000,
    0x7fff_ffff,
    0x8000_0000,
    u64::MAX,
];

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Edit::Flip(i, b)),
        3 => (any::<Index>(), 0u8..4, 0..BOUNDARIES.len(), any::<bool>()).prop_map(|(i, w, v, le)| {
            Edit::Boundary(i, w, v, if le { Endian::Little } else { Endian::Big })
        }),
        1 => any::<Index>().prop_map(Edit::Truncate),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, n)| Edit::Remove(i, n)),
        1 => (any::<Index>(), vec(any::<u8>(), 1..16)).prop_map(|(i, b)| Edit::Insert(i, b)),
        1 => (any::<Index>(), any::<Index>(), any::<u8>()).prop_map(|(a, b, n)| Edit::Copy(a, b, n)),
    ]
}

/// Up to `most` edits.
pub fn edits(most: usize) -> impl Strategy<Value = Vec<Edit>> {
    vec(edit(), 1..most.max(2))
}

/// Applies `edits` to `bytes` in order.
pub fn apply(bytes: &mut Vec<u8>, edits: &[Edit]) {
    for e in edits {
        let len = bytes.len();
        match e {
            Edit::Insert(at, more) => {
                let at = if len == 0 { 0 } else { at.index(len + 1) };
                bytes.splice(at..at, more.iter().copied());
            }
            _ if len == 0 => {}
            Edit::Set(at, b) => bytes[at.index(len)] = *b,
            Edit::Flip(at, bit) => bytes[at.index(len)] ^= 1 << (bit % 8),
            Edit::Boundary(at, width, value, endian) => {
                let width = 1usize << (width % 4);
                let at = at.index(len);
                let value = BOUNDARIES[*value % BOUNDARIES.len()];
                let raw = match endian {
                    Endian::Little => value.to_le_bytes(),
                    Endian::Big => value.to_be_bytes(),
                };
                let raw = match endian {
                    Endian::Little => &raw[..width],
                    Endian::Big => &raw[8 - width..],
                };
                let end = (at + width).min(len);
                bytes[at..end].copy_from_slice(&raw[..end - at]);
            }
            Edit::Truncate(at) => bytes.truncate(at.index(len)),
            Edit::Remove(at, n) => {
                let at = at.index(len);
                let end = (at + usize::from(*n).max(1)).min(len);
                bytes.drain(at..end);
            }
            Edit::Copy(from, to, n) => {
                let from = from.index(len);
                let to = to.index(len);
                let n = usize::from(*n).max(1).min(len - from).min(len - to);
                bytes.copy_within(from..from + n, to);
            }
        }
    }
}

/// Byte strings: a seed with a few [`Edit`]s (mostly), or random bytes.
pub fn bytes_from(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let mutated = (select(seeds), edits(8)).prop_map(|(mut seed, edits)| {
        apply(&mut seed, &edits);
        seed
    });
    prop_oneof![
        8 => mutated,
        1 => vec(any::<u8>(), 0..512),
    ]
}

/// Text: [`bytes_from`] the seeds' bytes, read as UTF-8 with invalid sequences replaced.
pub fn text_from(seeds: Vec<String>) -> impl Strategy<Value = String> {
    bytes_from(seeds.into_iter().map(String::into_bytes).collect())
        .prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// One change to a JSON document: a node replaced, removed or wrapped. The node is an [`Index`] into the
/// document's nodes (depth first) at the time.
#[derive(Debug, Clone)]
pub enum JsonEdit {
    Replace(Index, Value),
    Remove(Index),
    /// `x` becomes `[x]` or `{"value": x}`: a member of the wrong type, holding the right thing.
    Wrap(Index, bool),
}

/// Strings worth trying where a document has a string: the seeds' own strings and keys (a dictionary),
/// boundary texts, and random ones.
fn string(dictionary: Vec<String>) -> impl Strategy<Value = String> {
    let boundary: Vec<String> = [
        "",
        " ",
        "0",
        "-1",
        "1e999",
        "null",
        "true",
        "../../etc/passwd",
        "a/b/../../c",
        "https://",
        "https://other.example/x.vhd?sig=AAAA",
        "/subscriptions//resourceGroups/",
        "2026-02-30T25:61:61Z",
        "9999-12-31T23:59:59Z",
        "\u{0}",
        "\u{feff}x",
        "ÿ🦀é",
        "%%",
        "%GALLEON%",
    ]
    .into_iter()
    .map(String::from)
    .chain(std::iter::once("A".repeat(5000)))
    .collect();
    prop_oneof![
        4 => select(if dictionary.is_empty() { vec![String::new()] } else { dictionary }),
        2 => select(boundary),
        1 => vec(any::<char>(), 0..24).prop_map(String::from_iter),
    ]
}

fn leaf(dictionary: Vec<String>) -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        2 => select(vec![0i64, 1, -1, 2, 3, 63, 64, 255, 256, 1 << 31, i64::MAX, i64::MIN]).prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => Just(Value::from(u64::MAX)),
        1 => select(vec![0.5f64, -0.0, 1e308, -1e-308, 3.25]).prop_map(Value::from),
        5 => string(dictionary.clone()).prop_map(Value::String),
        1 => Just(Value::Array(Vec::new())),
        1 => Just(Value::Object(Map::new())),
        1 => (string(dictionary), string(Vec::new())).prop_map(|(k, v)| {
            let mut m = Map::new();
            m.insert(k, Value::String(v));
            Value::Object(m)
        }),
    ]
}

fn json_edit(dictionary: Vec<String>) -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        5 => (any::<Index>(), leaf(dictionary)).prop_map(|(i, v)| JsonEdit::Replace(i, v)),
        2 => any::<Index>().prop_map(JsonEdit::Remove),
        1 => (any::<Index>(), any::<bool>()).prop_map(|(i, a)| JsonEdit::Wrap(i, a)),
    ]
}

fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// JSON pointers of every node but the root, depth first.
fn pointers(value: &Value, at: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(m) => {
            for (k, v) in m {
                let p = format!("{at}/{}", escape(k));
                out.push(p.clone());
                pointers(v, &p, out);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(v, &p, out);
            }
        }
        _ => {}
    }
}

/// Strings and keys found in `value`.
fn words(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Object(m) => {
            for (k, v) in m {
                out.push(k.clone());
                words(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| words(v, out)),
        _ => {}
    }
}

/// Applies `edits` to `doc` in order.
pub fn apply_json(doc: &mut Value, edits: &[JsonEdit]) {
    for e in edits {
        let mut all = Vec::new();
        pointers(doc, "", &mut all);
        let pick = |i: &Index| (!all.is_empty()).then(|| all[i.index(all.len())].clone());
        match e {
            JsonEdit::Replace(i, v) => match pick(i) {
                Some(p) => {
                    if let Some(node) = doc.pointer_mut(&p) {
                        *node = v.clone();
                    }
                }
                None => *doc = v.clone(),
            },
            JsonEdit::Remove(i) => {
                let Some(p) = pick(i) else { continue };
                let (parent, last) = p.rsplit_once('/').unwrap_or(("", ""));
                let key = last.replace("~1", "/").replace("~0", "~");
                match doc.pointer_mut(parent) {
                    Some(Value::Object(m)) => {
                        m.remove(&key);
                    }
                    Some(Value::Array(a)) => {
                        if let Ok(n) = key.parse::<usize>()
                            && n < a.len()
                        {
                            a.remove(n);
                        }
                    }
                    _ => {}
                }
            }
            JsonEdit::Wrap(i, as_array) => {
                let node = match pick(i) {
                    Some(p) => doc.pointer_mut(&p),
                    None => Some(&mut *doc),
                };
                if let Some(node) = node {
                    let inner = node.take();
                    *node = if *as_array {
                        Value::Array(vec![inner])
                    } else {
                        let mut m = Map::new();
                        m.insert("value".into(), inner);
                        Value::Object(m)
                    };
                }
            }
        }
    }
}

/// JSON documents as bytes: a seed with nodes replaced, removed or wrapped (values drawn from the seeds'
/// own strings and boundary values), sometimes then edited byte by byte; or a seed's bytes edited.
pub fn json_from(seeds: Vec<Value>) -> impl Strategy<Value = Vec<u8>> {
    let mut dictionary = Vec::new();
    seeds.iter().for_each(|s| words(s, &mut dictionary));
    dictionary.sort();
    dictionary.dedup();
    let texts: Vec<Vec<u8>> = seeds
        .iter()
        .map(|s| serde_json::to_vec_pretty(s).unwrap_or_default())
        .collect();
    let structural = (
        select(seeds),
        vec(json_edit(dictionary), 1..4),
        proptest::option::weighted(0.1, edits(3)),
    )
        .prop_map(|(mut doc, json_edits, byte_edits)| {
            apply_json(&mut doc, &json_edits);
            let mut bytes = serde_json::to_vec(&doc).unwrap_or_default();
            if let Some(e) = byte_edits {
                apply(&mut bytes, &e);
            }
            bytes
        });
    prop_oneof![
        4 => structural,
        1 => bytes_from(texts),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;
    use serde_json::json;

    #[test]
    fn edits_stay_inside_the_bytes() {
        // Every edit on every length, including empty: none may panic.
        let mut runner = TestRunner::deterministic();
        for len in [0usize, 1, 2, 7, 64] {
            runner
                .run(&edits(8), |e| {
                    let mut b = vec![0xAAu8; len];
                    apply(&mut b, &e);
                    Ok(())
                })
                .expect("edits apply to any length");
        }
    }

    #[test]
    fn json_edits_change_the_named_node() {
        let mut doc = json!({"a": {"b": [1, 2]}, "c/d": "x"});
        // Nodes depth first: /a, /a/b, /a/b/0, /a/b/1, /c~1d.
        let mut all = Vec::new();
        pointers(&doc, "", &mut all);
        assert_eq!(all, ["/a", "/a/b", "/a/b/0", "/a/b/1", "/c~1d"]);
        let index = |n: usize, of: usize| {
            // An Index that maps to n out of `of`.
            let mut runner = TestRunner::deterministic();
            loop {
                let i = any::<Index>()
                    .new_tree(&mut runner)
                    .map(|t| t.current())
                    .expect("an index");
                if i.index(of) == n {
                    return i;
                }
            }
        };
        apply_json(&mut doc, &[JsonEdit::Remove(index(4, 5))]);
        assert_eq!(doc, json!({"a": {"b": [1, 2]}}));
        apply_json(&mut doc, &[JsonEdit::Wrap(index(1, 4), true)]);
        assert_eq!(doc, json!({"a": {"b": [[1, 2]]}}));
    }

    #[test]
    fn a_failing_target_is_reported_with_a_small_input() {
        let outcome = panic::catch_unwind(|| {
            fuzz("finds-0xff", bytes_from(vec![vec![0u8; 32]]), |b| {
                if b.contains(&0xff) {
                    Err("found 0xff".into())
                } else {
                    Ok(())
                }
            })
        });
        let message = outcome
            .err()
            .and_then(|p| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        assert!(message.contains("found 0xff"), "{message}");
        assert!(message.contains("minimal input"), "{message}");
    }
}
