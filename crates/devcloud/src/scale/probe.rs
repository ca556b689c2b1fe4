//! What the scale run measures besides galleon's events: the local Resource Manager's request log
//! (every request with its method, operation kind and status, 429s included) and the galleon handler
//! process the Functions host runs (peak RSS and CPU time, from /proc).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

/// Requests of one operation kind.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KindCount {
    pub kind: String,
    pub requests: u64,
    /// Of them, answered 429.
    pub throttled: u64,
}

/// Counts from the ARM request log since a starting point.
#[derive(Debug, Clone, Default)]
pub struct ArmTally {
    /// The log's running total when the tally started or last looked.
    seen_total: u64,
    /// Requests by class (`reads`: GET/HEAD, `writes`: PUT/PATCH/POST, `deletes`: DELETE), as the local
    /// ARM's token buckets count them.
    pub by_class: BTreeMap<&'static str, u64>,
    /// 429 answers by class.
    pub throttled_by_class: BTreeMap<&'static str, u64>,
    kinds: HashMap<String, (u64, u64)>,
    /// Requests the log had already dropped (it keeps the newest 5,000) before the tally read them.
    pub missed: u64,
}

/// The token-bucket class of an HTTP method, as the local ARM charges it.
pub fn class_of(method: &str) -> &'static str {
    match method {
        "GET" | "HEAD" => "reads",
        "DELETE" => "deletes",
        _ => "writes",
    }
}

impl ArmTally {
    /// Starts counting at the log's present end.
    pub fn start(arm: &devcloud_arm::Arm) -> ArmTally {
        let log = arm.log.lock().unwrap_or_else(|p| p.into_inner());
        ArmTally {
            seen_total: log.total,
            ..ArmTally::default()
        }
    }

    /// Counts the requests logged since the last look.
    pub fn update(&mut self, arm: &devcloud_arm::Arm) {
        let log = arm.log.lock().unwrap_or_else(|p| p.into_inner());
        let new = log.total.saturating_sub(self.seen_total);
        let kept = (new as usize).min(log.entries.len());
        self.missed += new - kept as u64;
        for entry in log.entries.iter().skip(log.entries.len() - kept) {
            self.count(&entry.method, &entry.kind, entry.status);
        }
        self.seen_total = log.total;
    }

    fn count(&mut self, method: &str, kind: &str, status: u16) {
        let class = class_of(method);
        *self.by_class.entry(class).or_default() += 1;
        let k = self.kinds.entry(kind.to_owned()).or_default();
        k.0 += 1;
        if status == 429 {
            *self.throttled_by_class.entry(class).or_default() += 1;
            k.1 += 1;
        }
    }

    pub fn total(&self) -> u64 {
        self.by_class.values().sum()
    }

    pub fn throttled(&self) -> u64 {
        self.throttled_by_class.values().sum()
    }

    /// The `n` operation kinds with the most requests, most first.
    pub fn busiest(&self, n: usize) -> Vec<KindCount> {
        let mut all: Vec<KindCount> = self
            .kinds
            .iter()
            .map(|(kind, (requests, throttled))| KindCount {
                kind: kind.clone(),
                requests: *requests,
                throttled: *throttled,
            })
            .collect();
        all.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.kind.cmp(&b.kind)));
        all.truncate(n);
        all
    }
}

/// One look at a process in /proc.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    /// VmHWM: the peak resident set size so far, in KiB.
    peak_rss_kib: u64,
    /// utime + stime, in clock ticks.
    cpu_ticks: u64,
}

/// Parses what is needed from /proc/<pid>/status and /proc/<pid>/stat.
fn parse_sample(status: &str, stat: &str) -> Option<Sample> {
    let peak_rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count fields after the last ')'.
    // There, field 3 (state) is the first; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Sample {
        peak_rss_kib,
        cpu_ticks: utime + stime,
    })
}

fn sample(pid: u32) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_sample(&status, &stat)
}

/// Clock ticks per second of /proc's CPU times.
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions; it only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// The handler process(es) the Functions host ran during the run (a restarted handler is a new pid).
#[derive(Debug, Default)]
pub struct HandlerProbe {
    /// pid → (first sample, last sample).
    seen: BTreeMap<u32, (Sample, Sample)>,
}

/// Peak RSS and CPU time of the handler process(es).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HandlerFigures {
    pub pids: Vec<u32>,
    /// The highest VmHWM of any handler process, MiB.
    pub peak_rss_mib: f64,
    /// CPU (user + system) used by the handler process(es) between the first and the last look.
    pub cpu_seconds: f64,
}

impl HandlerProbe {
    /// Looks at the process `pid` (0 = none running now).
    pub fn look(&mut self, pid: u32) {
        if pid == 0 {
            return;
        }
        if let Some(now) = sample(pid) {
            self.seen
                .entry(pid)
                .and_modify(|(_, last)| *last = now)
                .or_insert((now, now));
        }
    }

    /// `None` when no process could be read (not Linux, or the handler never ran).
    pub fn figures(&self) -> Option<HandlerFigures> {
        if self.seen.is_empty() {
            return None;
        }
        let ticks: u64 = self
            .seen
            .values()
            .map(|(first, last)| last.cpu_ticks.saturating_sub(first.cpu_ticks))
            .sum();
        Some(HandlerFigures {
            pids: self.seen.keys().copied().collect(),
            peak_rss_mib: self
                .seen
                .values()
                .map(|(_, last)| last.peak_rss_kib)
                .max()
                .unwrap_or(0) as f64
                / 1024.0,
            cpu_seconds: ticks as f64 / ticks_per_second(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_fields_are_read_after_the_command_name() {
        let status = "Name:\tgalleon\nVmPeak:\t  900 kB\nVmHWM:\t    9876 kB\nVmRSS:\t 9000 kB\n";
        let stat = "4242 (gal leon) S 1 4242 4242 0 -1 4194560 500 0 0 0 37 5 0 0 20 0 4 0";
        assert_eq!(
            parse_sample(status, stat),
            Some(Sample {
                peak_rss_kib: 9876,
                cpu_ticks: 42
            })
        );
        assert_eq!(parse_sample("Name: x\n", stat), None);
    }

    #[test]
    fn this_process_can_be_read() {
        let mut probe = HandlerProbe::default();
        probe.look(std::process::id());
        probe.look(std::process::id());
        let f = probe.figures().expect("/proc of this process");
        assert_eq!(f.pids, [std::process::id()]);
        assert!(f.peak_rss_mib > 0.0, "{f:?}");
        assert!(HandlerProbe::default().figures().is_none());
    }

    #[test]
    fn the_tally_counts_classes_429s_and_kinds() {
        let mut t = ArmTally::default();
        t.count("GET", "GalleryImageVersions_Get", 200);
        t.count("GET", "GalleryImageVersions_Get", 429);
        t.count("PUT", "GalleryImageVersions_CreateOrUpdate", 201);
        t.count("PATCH", "GalleryImageVersions_Update", 429);
        t.count("DELETE", "Images_Delete", 202);
        assert_eq!(t.total(), 5);
        assert_eq!(t.throttled(), 2);
        assert_eq!(t.by_class.get("writes"), Some(&2));
        assert_eq!(t.throttled_by_class.get("reads"), Some(&1));
        assert_eq!(
            t.busiest(1),
            [KindCount {
                kind: "GalleryImageVersions_Get".into(),
                requests: 2,
                throttled: 1
            }]
        );
    }
}
