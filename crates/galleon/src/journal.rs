//! The run journal: every fact of a run as galleon sent it, one JSON line each, in one append blob per run
//! (`journal/<run>.jsonl` in the state container), and per day an index of the runs that started
//! (`journal/index/<date>.jsonl`), so where a run stands is read from one blob, and the recent runs from
//! one or two, never by scanning Azure. A fact sent twice (a redelivered step) is written once.

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    azure::{AzureError, blob::Blobs},
    events::Fact,
};

/// A run journal is read whole; a run has tens of facts, not thousands.
const MAX_JOURNAL: u64 = 4 * 1024 * 1024;
/// Writers racing for the end of the same blob (the day's index, in a burst of uploads) try again at
/// most this often, each after a short random wait that grows with the tries.
const TRIES: u32 = 12;

/// One line of a run's journal: the fact (a CloudEvent), when it was sent and, for a scheduled fact,
/// when it is due.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub sent_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<DateTime<Utc>>,
    pub fact: Value,
}

impl Entry {
    pub fn id(&self) -> &str {
        self.fact.get("id").and_then(Value::as_str).unwrap_or("")
    }
}

/// One line of a day's index: a run that started that day, with its first fact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Started {
    pub run: String,
    pub at: DateTime<Utc>,
    #[serde(rename = "type")]
    pub first_type: String,
    #[serde(default)]
    pub subject: Option<String>,
}

/// The lines of a journal in order, each fact once (the first copy), unreadable lines skipped.
pub fn entries(text: &[u8]) -> Vec<Entry> {
    let mut seen = std::collections::HashSet::new();
    text.split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice::<Entry>(line).ok())
        .filter(|e| seen.insert(e.id().to_owned()))
        .collect()
}

/// The runs of a day's index, each once, in the order they started.
pub fn started(text: &[u8]) -> Vec<Started> {
    let mut seen = std::collections::HashSet::new();
    text.split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice::<Started>(line).ok())
        .filter(|s| seen.insert(s.run.clone()))
        .collect()
}

/// Whether a journal already holds the fact `id` (as a fact's own id, not an id its data names).
fn holds(text: &[u8], id: &str) -> bool {
    text.split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice::<Entry>(line).ok())
        .any(|e| e.id() == id)
}

/// A run id as a blob name: correlation ids are UUIDs, but nothing from a message is trusted as a path.
fn safe(run: &str) -> String {
    run.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect()
}

#[derive(Clone, Debug)]
pub struct Journal {
    blobs: Blobs,
    container: String,
}

impl Journal {
    pub fn new(blobs: Blobs, container_url: &str) -> Journal {
        Journal {
            blobs,
            container: container_url.trim_end_matches('/').to_owned(),
        }
    }

    fn run_url(&self, run: &str) -> String {
        format!("{}/journal/{}.jsonl", self.container, safe(run))
    }

    fn index_url(&self, day: NaiveDate) -> String {
        format!("{}/journal/index/{day}.jsonl", self.container)
    }

    /// Appends `fact` to its run's journal unless it is there already; the first fact of a run also
    /// enters the day's index.
    pub async fn append(
        &self,
        run: &str,
        fact: &Fact,
        due: Option<DateTime<Utc>>,
    ) -> Result<(), AzureError> {
        let now = Utc::now();
        let entry = Entry {
            sent_at: now,
            due,
            fact: fact.to_json(),
        };
        let url = self.run_url(run);
        let line = line_of(&entry);
        let made = self.append_line(&url, line, fact.id()).await?;
        if made {
            let started = Started {
                run: run.to_owned(),
                at: now,
                first_type: fact.cloud_event_type().to_owned(),
                subject: fact.subject().map(str::to_owned),
            };
            self.append_to_index(&self.index_url(now.date_naive()), line_of(&started))
                .await?;
        }
        Ok(())
    }

    /// Appends `line` at the end of the append blob `url` (made when missing, with the state container)
    /// unless a line already names fact `id`. Answers whether this call made the blob.
    async fn append_line(&self, url: &str, line: Bytes, id: &str) -> Result<bool, AzureError> {
        let mut made = false;
        let mut tries = 0;
        while tries < TRIES {
            let (text, length) = match self.blobs.read_small(url, MAX_JOURNAL).await {
                Ok((text, properties)) => (text, properties.content_length),
                Err(e) if e.is_not_found() => {
                    made |= self.create(url).await?;
                    tries += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if holds(&text, id) {
                return Ok(made);
            }
            if self.blobs.append_at(url, line.clone(), length).await? {
                return Ok(made);
            }
            // Another writer appended first: read again, after a moment (a v4 UUID is random bits).
            tries += 1;
            let jitter = (uuid::Uuid::new_v4().as_u128() % 100) as u64;
            tokio::time::sleep(std::time::Duration::from_millis(
                (20 + jitter) * u64::from(tries.min(5)),
            ))
            .await;
        }
        Err(AzureError::transient(
            "Blob Storage",
            "JournalContended",
            format!(
                "{} kept growing under {TRIES} tries to append",
                crate::azure::blob::redact(url)
            ),
        ))
    }

    /// Appends a run to a day's index. Many runs start at once on a busy day: the line goes at the end
    /// unconditionally (no read, no position to lose a race on); a repeated line is read once.
    async fn append_to_index(&self, url: &str, line: Bytes) -> Result<(), AzureError> {
        match self.blobs.append(url, line.clone()).await {
            Err(e) if e.is_not_found() => {
                self.create(url).await?;
                self.blobs.append(url, line).await
            }
            other => other,
        }
    }

    async fn create(&self, url: &str) -> Result<bool, AzureError> {
        match self.blobs.create_append_if_absent(url).await {
            Err(e) if e.is_not_found() => {
                self.blobs.create_container(&self.container).await?;
                self.blobs.create_append_if_absent(url).await
            }
            other => other,
        }
    }

    /// A run's facts in the order they were sent (`None`: no such run).
    pub async fn run(&self, run: &str) -> Result<Option<Vec<Entry>>, AzureError> {
        match self.blobs.read_small(&self.run_url(run), MAX_JOURNAL).await {
            Ok((text, _)) => Ok(Some(entries(&text))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The runs that started on the last `days` days (today first), newest first.
    pub async fn recent(&self, days: u32) -> Result<Vec<Started>, AzureError> {
        let today = Utc::now().date_naive();
        let mut runs = Vec::new();
        for back in 0..days.max(1) {
            let day = today - chrono::Days::new(u64::from(back));
            match self
                .blobs
                .read_small(&self.index_url(day), MAX_JOURNAL)
                .await
            {
                Ok((text, _)) => {
                    let mut day_runs = started(&text);
                    day_runs.reverse();
                    runs.extend(day_runs);
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(runs)
    }
}

fn line_of<T: Serialize>(value: &T) -> Bytes {
    let mut line = serde_json::to_vec(value).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn line(id: &str, ty: &str) -> String {
        format!(
            "{}\n",
            json!({"sentAt": "2026-12-02T10:00:00Z", "fact": {"id": id, "type": ty}})
        )
    }

    #[test]
    fn a_fact_written_twice_is_read_once_in_the_order_first_written() {
        let text = [
            line("a", "io.galleon.vhd.accepted.v1"),
            line("b", "io.galleon.image.version.published.v1"),
            line("a", "io.galleon.vhd.accepted.v1"),
            "not json\n".to_owned(),
            line("c", "io.galleon.image.ready.v1"),
        ]
        .concat();
        let ids: Vec<String> = entries(text.as_bytes())
            .iter()
            .map(|e| e.id().to_owned())
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert!(holds(text.as_bytes(), "b"));
        assert!(!holds(text.as_bytes(), "d"));
        // An id that only begins another, or that a fact's data names, is not held.
        assert!(!holds(line("abc", "t").as_bytes(), "ab"));
        let failed = format!(
            "{}\n",
            json!({"sentAt": "2026-12-02T10:00:00Z", "fact": {"id": "f", "data": {"input": {"id": "x"}}}})
        );
        assert!(!holds(failed.as_bytes(), "x"));
    }

    #[test]
    fn the_index_lists_each_run_once() {
        let l = |run: &str| {
            format!(
                "{}\n",
                json!({"run": run, "at": "2026-12-02T10:00:00Z", "type": "io.galleon.vhd.accepted.v1"})
            )
        };
        let text = [l("r1"), l("r2"), l("r1")].concat();
        let runs: Vec<String> = started(text.as_bytes())
            .into_iter()
            .map(|s| s.run)
            .collect();
        assert_eq!(runs, ["r1", "r2"]);
        assert_eq!(safe("../x y"), "___x_y");
    }
}
