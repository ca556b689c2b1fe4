//! The ledger: which facts each function has handled, in a blob container of galleon's own. Service Bus
//! delivers at least once and, in Azure, detects duplicates only when the topic was created with it; the
//! ledger makes a fact act once either way. A copy of a fact that another delivery is handling (or has
//! handled) is dropped; a redelivery of the very message (same sequence number) takes over, since its
//! first delivery may have died midway.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::azure::{
    AzureError,
    blob::{Blobs, WriteIf, redact},
};

/// Where one fact stands for one function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Handling {
    Working,
    Done,
}

/// The record of one fact handled by one function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub function: String,
    pub fact_id: String,
    /// The Service Bus sequence number of the delivery handling it: a redelivery keeps it, a copy sent
    /// twice has another.
    pub sequence_number: Option<i64>,
    pub state: Handling,
    pub at: DateTime<Utc>,
}

/// What the ledger says about a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Handle it; mark it done afterwards with this token.
    Mine(Token),
    /// Already handled: drop it.
    Done,
    /// Another copy of the same fact is being handled (or will be redelivered): drop this one.
    Copy { sequence_number: Option<i64> },
}

/// Proof of a claim, to mark it done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    url: String,
    e_tag: String,
    record: Record,
}

impl Token {
    /// When the fact was first handled: by this delivery, or by the one it took over from.
    pub fn first_handled_at(&self) -> DateTime<Utc> {
        self.record.at
    }
}

/// The pure decision on an existing record.
pub fn decide(existing: &Record, sequence_number: Option<i64>) -> Decision {
    match existing.state {
        Handling::Done => Decision::Done,
        Handling::Working if existing.sequence_number == sequence_number => Decision::TakeOver,
        Handling::Working => Decision::Copy,
    }
}

/// The record of a delivery taking over from `existing`: it keeps the first delivery's time, since the
/// facts it sends again are stamped with it and so must be the same facts.
pub fn taken_over(existing: &Record, delivery: Record) -> Record {
    Record {
        at: existing.at,
        ..delivery
    }
}

/// What to do about an existing record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Done,
    TakeOver,
    Copy,
}

#[derive(Clone, Debug)]
pub struct Ledger {
    blobs: Blobs,
    container: String,
}

/// A fact id as a blob name: ids are UUIDs, but nothing from a message is trusted as a path.
fn safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(200)
        .collect()
}

impl Ledger {
    pub fn new(blobs: Blobs, container_url: &str) -> Ledger {
        Ledger {
            blobs,
            container: container_url.trim_end_matches('/').to_owned(),
        }
    }

    fn url(&self, function: &str, fact_id: &str) -> String {
        format!(
            "{}/handled/{}/{}.json",
            self.container,
            safe(function),
            safe(fact_id)
        )
    }

    /// Writes a record under a condition (`None`: the condition failed), creating the state container
    /// the first time.
    async fn put(
        &self,
        url: &str,
        body: Bytes,
        condition: WriteIf,
    ) -> Result<Option<String>, AzureError> {
        match self
            .blobs
            .put_small(url, body.clone(), condition.clone())
            .await
        {
            Err(e) if e.is_not_found() => {
                tracing::info!(container = %redact(&self.container), "creating galleon's state container");
                self.blobs.create_container(&self.container).await?;
                self.blobs.put_small(url, body, condition).await
            }
            other => other,
        }
    }

    async fn put_record(
        &self,
        url: &str,
        record: &Record,
        condition: WriteIf,
    ) -> Result<Option<String>, AzureError> {
        let body = Bytes::from(serde_json::to_vec(record).unwrap_or_default());
        self.put(url, body, condition).await
    }

    /// Claims `fact_id` for `function`, for the delivery with `sequence_number`.
    pub async fn claim(
        &self,
        function: &str,
        fact_id: &str,
        sequence_number: Option<i64>,
    ) -> Result<Claim, AzureError> {
        let url = self.url(function, fact_id);
        let record = Record {
            function: function.to_owned(),
            fact_id: fact_id.to_owned(),
            sequence_number,
            state: Handling::Working,
            at: Utc::now(),
        };
        if let Some(e_tag) = self.put_record(&url, &record, WriteIf::Absent).await? {
            return Ok(Claim::Mine(Token { url, e_tag, record }));
        }
        let (bytes, props) = self.blobs.read_small(&url, 64 * 1024).await?;
        let existing: Record = serde_json::from_slice(&bytes).map_err(|e| {
            AzureError::permanent(
                "Blob Storage",
                "LedgerRecordUnreadable",
                format!("{}: {e}", redact(&url)),
            )
        })?;
        match decide(&existing, sequence_number) {
            Decision::Done => Ok(Claim::Done),
            Decision::Copy => Ok(Claim::Copy {
                sequence_number: existing.sequence_number,
            }),
            Decision::TakeOver => {
                let record = taken_over(&existing, record);
                match self
                    .put_record(&url, &record, WriteIf::Unchanged(props.e_tag.clone()))
                    .await?
                {
                    Some(e_tag) => Ok(Claim::Mine(Token { url, e_tag, record })),
                    // Another delivery took it over first.
                    None => Ok(Claim::Copy {
                        sequence_number: existing.sequence_number,
                    }),
                }
            }
        }
    }

    /// Marks a claimed fact handled (its facts were all sent).
    pub async fn done(&self, token: Token) -> Result<(), AzureError> {
        let mut record = token.record;
        record.state = Handling::Done;
        record.at = Utc::now();
        self.put_record(&token.url, &record, WriteIf::Unchanged(token.e_tag))
            .await
            .map(|_| ())
    }
}

impl Ledger {
    /// Forgets that `function` is handling `fact_id` (a dead letter an operator resubmits: the delivery that
    /// held it is gone). A record marked done stays, unless `even_done`. Answers whether one was removed.
    pub async fn release(
        &self,
        function: &str,
        fact_id: &str,
        even_done: bool,
    ) -> Result<bool, AzureError> {
        let url = self.url(function, fact_id);
        let (bytes, props) = match self.blobs.read_small(&url, 64 * 1024).await {
            Ok(found) => found,
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(e),
        };
        let record: Option<Record> = serde_json::from_slice(&bytes).ok();
        if !even_done && record.is_some_and(|r| r.state == Handling::Done) {
            return Ok(false);
        }
        self.blobs.delete_if_unchanged(&url, &props.e_tag).await
    }

    /// The names of the notes under `prefix` (`deadletters/`), at most `max`.
    pub async fn note_names(&self, prefix: &str, max: usize) -> Result<Vec<String>, AzureError> {
        match self.blobs.list_names(&self.container, prefix, max).await {
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            other => other,
        }
    }
}

/// How a run ended: its first terminal fact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub run: String,
    /// The CloudEvents type of the terminal fact (`image.ready`, `step.failed`, `vhd.rejected`).
    pub fact_type: String,
    pub fact_id: String,
    pub at: DateTime<Utc>,
}

impl Ledger {
    fn outcome_url(&self, run: &str) -> String {
        format!("{}/runs/{}.json", self.container, safe(run))
    }

    /// Records how a run ended; the first terminal fact wins (a later one is not recorded).
    pub async fn record_outcome(&self, outcome: &Outcome) -> Result<(), AzureError> {
        let url = self.outcome_url(&outcome.run);
        let body = Bytes::from(serde_json::to_vec(outcome).unwrap_or_default());
        // `None`: the run already had an outcome; the first one stands.
        self.put(&url, body, WriteIf::Absent).await.map(|_| ())
    }

    /// Claims the run's ending for `outcome`'s fact before it is announced: `true` when the run had no
    /// ending yet, or its ending is this very fact (a redelivery) or `instead_of` (an ending that was
    /// recorded but never reached subscribers), `false` when another fact ended it.
    pub async fn claim_outcome(
        &self,
        outcome: &Outcome,
        instead_of: &str,
    ) -> Result<bool, AzureError> {
        let url = self.outcome_url(&outcome.run);
        let body = Bytes::from(serde_json::to_vec(outcome).unwrap_or_default());
        if self.put(&url, body, WriteIf::Absent).await?.is_some() {
            return Ok(true);
        }
        Ok(self
            .outcome(&outcome.run)
            .await?
            .is_none_or(|first| first.fact_id == outcome.fact_id || first.fact_id == instead_of))
    }

    /// Writes a small shared note (`pace/<subscription>.json`), replacing what is there.
    pub async fn write_note(&self, name: &str, body: Bytes) -> Result<(), AzureError> {
        let url = format!("{}/{name}", self.container);
        self.put(&url, body, WriteIf::Any).await.map(|_| ())
    }

    /// Reads a small note with its ETag, if there is one.
    pub async fn read_note_tagged(
        &self,
        name: &str,
    ) -> Result<Option<(Bytes, String)>, AzureError> {
        let url = format!("{}/{name}", self.container);
        match self.blobs.read_small(&url, 64 * 1024).await {
            Ok((bytes, props)) => Ok(Some((bytes, props.e_tag))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes a small note under `condition` (absent, or unchanged since read); `false` when another
    /// writer came first.
    pub async fn write_note_if(
        &self,
        name: &str,
        body: Bytes,
        condition: WriteIf,
    ) -> Result<bool, AzureError> {
        let url = format!("{}/{name}", self.container);
        self.put(&url, body, condition).await.map(|t| t.is_some())
    }

    /// Reads a small shared note, if there is one.
    pub async fn read_note(&self, name: &str) -> Result<Option<Bytes>, AzureError> {
        let url = format!("{}/{name}", self.container);
        match self.blobs.read_small(&url, 64 * 1024).await {
            Ok((bytes, _)) => Ok(Some(bytes)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// How a run ended, if it has.
    pub async fn outcome(&self, run: &str) -> Result<Option<Outcome>, AzureError> {
        let url = self.outcome_url(run);
        match self.blobs.read_small(&url, 64 * 1024).await {
            Ok((bytes, _)) => Ok(serde_json::from_slice(&bytes).ok()),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(state: Handling, seq: Option<i64>) -> Record {
        Record {
            function: "PublishVersion".into(),
            fact_id: "f".into(),
            sequence_number: seq,
            state,
            at: Utc::now(),
        }
    }

    #[test]
    fn decisions() {
        // (record state, record seq, delivery seq) → decision
        let table = [
            (Handling::Done, Some(1), Some(1), Decision::Done),
            (Handling::Done, Some(1), Some(2), Decision::Done),
            (Handling::Working, Some(1), Some(1), Decision::TakeOver),
            (Handling::Working, Some(1), Some(2), Decision::Copy),
            (Handling::Working, None, None, Decision::TakeOver),
        ];
        for (state, had, now, want) in table {
            assert_eq!(
                decide(&record(state, had), now),
                want,
                "{state:?} {had:?} {now:?}"
            );
        }
        assert_eq!(safe("a/b?c"), "a_b_c");
    }

    #[test]
    fn a_delivery_taking_over_keeps_the_first_handling_time() {
        let mut first = record(Handling::Working, Some(7));
        first.at -= chrono::Duration::minutes(2);
        let redelivery = record(Handling::Working, Some(7));
        let kept = taken_over(&first, redelivery.clone());
        assert_eq!(kept.at, first.at);
        assert_eq!(kept.sequence_number, redelivery.sequence_number);
        assert_ne!(redelivery.at, first.at, "the redelivery began later");
    }
}
