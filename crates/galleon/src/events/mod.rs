//! Galleon's facts: the CloudEvents 1.0 types of the choreography, their payloads, and how a fact is built
//! (deterministic id, subject path, correlation id and trace context). The public catalog, with a JSON
//! Schema and an example per type, is in `events/` at the repository root.

pub mod features;
mod payload;

use chrono::{DateTime, SecondsFormat, Utc};
use cloudevents::{AttributesReader, Event, EventBuilder, EventBuilderV10};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use uuid::Uuid;

pub use features::*;
pub use payload::*;

/// Where the catalog's schemas are published; `dataschema` of every fact points here.
pub const SCHEMA_BASE: &str =
    "https://raw.githubusercontent.com/galleon-images/galleon/main/events/";

/// The extension attribute carrying a run's correlation id (CloudEvents names are lower-case alphanumerics).
pub const CORRELATION_ATTR: &str = "correlationid";
/// The distributed-tracing extension attribute (W3C trace context).
pub const TRACEPARENT_ATTR: &str = "traceparent";

macro_rules! fact_types {
    ($($variant:ident => $name:literal, $data:ty;)*) => {
        /// Every fact type galleon produces. The wire name is `io.galleon.<name>.v1`; the prefix never changes.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum FactType { $($variant),* }

        impl FactType {
            pub const ALL: &'static [FactType] = &[$(FactType::$variant),*];

            /// The catalog name, e.g. `vhd.accepted.v1`, which names the schema and example files too.
            pub fn name(self) -> &'static str {
                match self { $(FactType::$variant => $name),* }
            }

            /// Reads `data` as this fact's Rust payload type and writes it back: fails when the data does not
            /// fit the type, and shows what the code would emit for it.
            pub fn normalize_payload(self, data: &Value) -> Result<Value, serde_json::Error> {
                match self { $(FactType::$variant => serde_json::to_value(serde_json::from_value::<$data>(data.clone())?)),* }
            }
        }

        $(impl Payload for $data { const TYPE: FactType = FactType::$variant; })*
    };
}

fact_types! {
    VhdAccepted => "vhd.accepted.v1", VhdAccepted;
    VhdRejected => "vhd.rejected.v1", VhdRejected;
    BuildRequested => "build.requested.v1", BuildRequested;
    BuildStarted => "build.started.v1", BuildStarted;
    BuildFinished => "build.finished.v1", BuildFinished;
    BuildSkipped => "build.skipped.v1", BuildSkipped;
    ImageCreated => "image.created.v1", ImageCreated;
    VersionPublished => "image.version.published.v1", VersionPublished;
    ReplicaReady => "image.replica.ready.v1", ReplicaReady;
    ImageReady => "image.ready.v1", ImageReady;
    ImagePartiallyReady => "image.partially.ready.v1", ImagePartiallyReady;
    StepFailed => "step.failed.v1", StepFailed;
    LifecycleRequested => "lifecycle.requested.v1", LifecycleRequested;
    DistributionRequested => "image.distribution.requested.v1", DistributionRequested;
    GalleryShared => "gallery.shared.v1", GalleryShared;
    VersionLifecycle => "image.version.lifecycle.v1", VersionLifecycle;
    VersionMarked => "image.version.marked.v1", VersionMarked;
    ReplicationRequested => "image.replication.requested.v1", ReplicationRequested;
    RequestAccepted => "request.accepted.v1", RequestAccepted;
    RequestRejected => "request.rejected.v1", RequestRejected;
    DeadLetterResubmitted => "deadletter.resubmitted.v1", DeadLetterResubmitted;
    FollowUp => "operation.followup.v1", FollowUp;
}

impl FactType {
    pub const PREFIX: &'static str = "io.galleon.";

    /// The CloudEvents `type`, e.g. `io.galleon.vhd.accepted.v1`.
    pub fn cloud_event_type(self) -> String {
        format!("{}{}", Self::PREFIX, self.name())
    }

    pub fn from_cloud_event_type(ty: &str) -> Option<FactType> {
        let name = ty.strip_prefix(Self::PREFIX)?;
        Self::ALL.iter().copied().find(|t| t.name() == name)
    }

    /// `dataschema`: the schema in the catalog.
    pub fn schema_url(self) -> String {
        format!("{SCHEMA_BASE}{}.schema.json", self.name())
    }

    /// Whether external subscribers receive this fact on the Event Grid topic (the rest stay internal).
    pub fn is_public(self) -> bool {
        matches!(
            self,
            FactType::VhdRejected
                | FactType::BuildStarted
                | FactType::BuildSkipped
                | FactType::BuildFinished
                | FactType::VersionPublished
                | FactType::ReplicaReady
                | FactType::ImageReady
                | FactType::ImagePartiallyReady
                | FactType::StepFailed
                | FactType::VersionLifecycle
                | FactType::GalleryShared
                | FactType::VersionMarked
                | FactType::ReplicationRequested
                | FactType::RequestAccepted
                | FactType::RequestRejected
                | FactType::DeadLetterResubmitted
        )
    }
}

/// A payload type bound to its fact type.
pub trait Payload: Serialize + DeserializeOwned {
    const TYPE: FactType;
}

/// What caused a fact: its id derives from the cause, so a retried step produces the same fact id (and the
/// same Service Bus `MessageId`), and duplicates are dropped downstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// The id of the event or fact being handled.
    pub id: String,
    /// The run's correlation id, carried unchanged through the whole chain.
    pub correlation_id: String,
    /// The W3C trace context to continue, if any.
    pub traceparent: Option<String>,
}

impl Cause {
    /// The cause for a chain that starts at an external event (a BlobCreated, a timer): the correlation id is
    /// derived from that event's id, so redelivery keeps it.
    pub fn root(event_id: &str, traceparent: Option<String>) -> Cause {
        Cause {
            id: event_id.to_owned(),
            correlation_id: Uuid::new_v5(
                &Uuid::NAMESPACE_URL,
                format!("galleon:run:{event_id}").as_bytes(),
            )
            .to_string(),
            traceparent,
        }
    }

    /// The cause a received fact gives the facts that follow it.
    pub fn of(fact: &Fact) -> Cause {
        Cause {
            id: fact.id().to_owned(),
            correlation_id: fact
                .correlation_id()
                .unwrap_or_else(|| fact.id().to_owned()),
            traceparent: fact.traceparent(),
        }
    }
}

/// A fact: one CloudEvent of galleon's catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct Fact {
    event: Event,
}

/// Why a received CloudEvent is not a fact galleon understands.
#[derive(Debug, thiserror::Error)]
pub enum FactError {
    #[error("the message body is not a CloudEvent in structured JSON mode: {0}")]
    NotCloudEvent(#[source] serde_json::Error),
    #[error(
        "unknown fact type '{0}' (galleon understands io.galleon.*.v1 types listed in events/README.md)"
    )]
    UnknownType(String),
    #[error("fact {ty} has data that does not match its schema: {source}")]
    BadData {
        ty: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("fact {0} has no JSON data")]
    NoData(String),
    #[error("could not build the CloudEvent: {0}")]
    Build(String),
}

impl Fact {
    /// Builds the fact announcing `data` about `subject`, caused by `cause`. `discriminator` tells apart
    /// several facts of one type from one cause (a region name, an attempt number); use "" when there is one.
    pub fn new<P: Payload>(
        instance: &str,
        cause: &Cause,
        subject: &str,
        discriminator: &str,
        data: &P,
        time: DateTime<Utc>,
    ) -> Result<Fact, FactError> {
        let data = serde_json::to_value(data).map_err(|e| FactError::Build(e.to_string()))?;
        build_untyped(P::TYPE, instance, cause, subject, discriminator, data, time)
    }
    /// Parses a CloudEvent (structured JSON) and checks it is a known fact with a well-formed payload.
    pub fn from_json(text: &str) -> Result<Fact, FactError> {
        let event: Event = serde_json::from_str(text).map_err(FactError::NotCloudEvent)?;
        let fact = Fact { event };
        let ty = fact
            .fact_type()
            .ok_or_else(|| FactError::UnknownType(fact.event.ty().to_owned()))?;
        let data = fact
            .data_value()
            .ok_or_else(|| FactError::NoData(fact.event.ty().to_owned()))?;
        ty.normalize_payload(&data)
            .map_err(|source| FactError::BadData {
                ty: fact.event.ty().to_owned(),
                source,
            })?;
        Ok(fact)
    }

    pub fn id(&self) -> &str {
        self.event.id()
    }

    pub fn cloud_event_type(&self) -> &str {
        self.event.ty()
    }

    pub fn fact_type(&self) -> Option<FactType> {
        FactType::from_cloud_event_type(self.event.ty())
    }

    pub fn subject(&self) -> Option<&str> {
        self.event.subject()
    }

    pub fn time(&self) -> Option<&DateTime<Utc>> {
        self.event.time()
    }

    pub fn correlation_id(&self) -> Option<String> {
        self.event
            .extension(CORRELATION_ATTR)
            .map(|v| v.to_string())
    }

    pub fn traceparent(&self) -> Option<String> {
        self.event
            .extension(TRACEPARENT_ATTR)
            .map(|v| v.to_string())
    }

    fn data_value(&self) -> Option<Value> {
        match self.event.data()? {
            cloudevents::Data::Json(v) => Some(v.clone()),
            cloudevents::Data::String(s) => serde_json::from_str(s).ok(),
            cloudevents::Data::Binary(b) => serde_json::from_slice(b).ok(),
        }
    }

    /// The payload, typed. Fails when the fact is of another type.
    pub fn data<P: Payload>(&self) -> Result<P, FactError> {
        if self.fact_type() != Some(P::TYPE) {
            return Err(FactError::UnknownType(self.event.ty().to_owned()));
        }
        let data = self
            .data_value()
            .ok_or_else(|| FactError::NoData(self.event.ty().to_owned()))?;
        serde_json::from_value(data).map_err(|source| FactError::BadData {
            ty: self.event.ty().to_owned(),
            source,
        })
    }

    /// The fact as structured-mode CloudEvents JSON.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(&self.event).unwrap_or(Value::Null)
    }

    /// RFC 3339 time of the fact, for logs.
    pub fn time_text(&self) -> String {
        self.time()
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
            .unwrap_or_default()
    }
}

/// Continues a W3C trace: same trace id, a new span id derived from the parent (deterministic, so retried
/// steps produce identical facts), same flags. Returns `None` for malformed input.
pub fn child_traceparent(parent: &str) -> Option<String> {
    let parts: Vec<&str> = parent.trim().split('-').collect();
    let [version, trace_id, span_id, flags] = parts.as_slice() else {
        return None;
    };
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !(hex(version, 2) && hex(trace_id, 32) && hex(span_id, 16) && hex(flags, 2)) {
        return None;
    }
    let derived = Uuid::new_v5(&Uuid::NAMESPACE_OID, parent.as_bytes());
    let span: String = derived.simple().to_string().chars().take(16).collect();
    Some(format!("{version}-{trace_id}-{span}-{flags}"))
}

/// A fresh root trace context, for chains that start without one.
pub fn new_traceparent(seed: &str) -> String {
    let trace = Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("trace:{seed}").as_bytes())
        .simple()
        .to_string();
    let span = Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("span:{seed}").as_bytes())
        .simple()
        .to_string();
    format!("00-{trace}-{}-01", &span[..16])
}

/// Builds a fact of type `ty` from already-serialized `data` (see [`Fact::new`]).
pub fn build_untyped(
    ty: FactType,
    instance: &str,
    cause: &Cause,
    subject: &str,
    discriminator: &str,
    data: Value,
    time: DateTime<Utc>,
) -> Result<Fact, FactError> {
    let id = Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        format!(
            "galleon:{}:{}:{}:{}",
            ty.name(),
            cause.id,
            subject,
            discriminator
        )
        .as_bytes(),
    );
    let mut builder = EventBuilderV10::new()
        .id(id.to_string())
        .ty(ty.cloud_event_type())
        .source(format!("urn:galleon:{instance}"))
        .subject(subject)
        .time(time)
        .data_with_schema("application/json", ty.schema_url(), data)
        .extension(CORRELATION_ATTR, cause.correlation_id.clone());
    if let Some(tp) = cause.traceparent.as_deref().and_then(child_traceparent) {
        builder = builder.extension(TRACEPARENT_ATTR, tp);
    }
    let event = builder
        .build()
        .map_err(|e| FactError::Build(e.to_string()))?;
    Ok(Fact { event })
}
