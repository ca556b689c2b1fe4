//! In-memory state of the simulated cloud: resources, long-running operations, version replication
//! schedules and Image Builder runs. Everything time-dependent is derived from timestamps when read,
//! so the state needs no background ticking.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::ArmError;

pub type Time = DateTime<Utc>;

/// Resource types the simulator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    Image,
    Gallery,
    Definition,
    Version,
    Template,
}

impl Kind {
    pub fn type_name(self) -> &'static str {
        match self {
            Kind::Image => "Microsoft.Compute/images",
            Kind::Gallery => "Microsoft.Compute/galleries",
            Kind::Definition => "Microsoft.Compute/galleries/images",
            Kind::Version => "Microsoft.Compute/galleries/images/versions",
            Kind::Template => "Microsoft.VirtualMachineImages/imageTemplates",
        }
    }
}

/// What an operation does to its resource; decides the transitional provisioningState.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verb {
    Create,
    Update,
    Delete,
    Action,
}

/// Which status URL family an operation is polled at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpFamily {
    /// `Microsoft.Compute/locations/{loc}/capsOperations/{id}` (galleries).
    Caps,
    /// `Microsoft.Compute/locations/{loc}/operations/{id}` (images).
    Compute,
    /// `Microsoft.VirtualMachineImages/locations/{loc}/operations/{id}`.
    ImageBuilder,
    /// `/subscriptions/{sub}/operationresults/{id}` (Microsoft.Resources: resource group deletion).
    Resources,
}

impl OpFamily {
    pub fn path(self) -> (&'static str, &'static str) {
        match self {
            OpFamily::Caps => ("Microsoft.Compute", "capsOperations"),
            OpFamily::Compute => ("Microsoft.Compute", "operations"),
            OpFamily::ImageBuilder => ("Microsoft.VirtualMachineImages", "operations"),
            OpFamily::Resources => ("Microsoft.Resources", "operationresults"),
        }
    }
}

/// Terminal and non-terminal LRO states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpStatus {
    InProgress,
    Succeeded,
    Failed,
    Canceled,
}

impl OpStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OpStatus::InProgress => "InProgress",
            OpStatus::Succeeded => "Succeeded",
            OpStatus::Failed => "Failed",
            OpStatus::Canceled => "Canceled",
        }
    }
}

/// A long-running operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Operation {
    pub id: String,
    pub family: OpFamily,
    pub subscription: String,
    pub location: String,
    pub resource_key: String,
    pub resource_id: String,
    pub verb: Verb,
    /// Operation kind, e.g. `GalleryImageVersions_CreateOrUpdate`.
    pub kind: String,
    pub start: Time,
    /// When it ends; `None` = open-ended (finished by a background task).
    pub end: Option<Time>,
    /// Held by fault injection until released.
    pub stalled: bool,
    pub error: Option<ArmError>,
    pub canceled: bool,
    /// What an action's operation answers with once it succeeded (the gallery share's SharingUpdate).
    #[serde(default)]
    pub result: Option<Value>,
}

impl Operation {
    pub fn status(&self, now: Time) -> OpStatus {
        match self.end {
            Some(end) if !self.stalled && now >= end => {
                if self.error.is_some() {
                    OpStatus::Failed
                } else if self.canceled {
                    OpStatus::Canceled
                } else {
                    OpStatus::Succeeded
                }
            }
            _ => OpStatus::InProgress,
        }
    }

    /// Seconds until the planned end (0 when done or unknown).
    pub fn remaining_secs(&self, now: Time) -> f64 {
        match self.end {
            Some(end) if end > now => (end - now).num_milliseconds() as f64 / 1000.0,
            _ => 0.0,
        }
    }

    /// The Azure-AsyncOperation status body.
    pub fn status_body(&self, now: Time) -> Value {
        let status = self.status(now);
        let mut v = json!({
            "name": self.id,
            "status": status.as_str(),
            "startTime": fmt_time(self.start),
        });
        if status != OpStatus::InProgress
            && let Some(end) = self.end
        {
            v["endTime"] = json!(fmt_time(end));
        }
        if status == OpStatus::Failed
            && let Some(e) = &self.error
        {
            v["error"] = e.inner();
        }
        if status == OpStatus::Canceled {
            v["error"] =
                json!({"code": "OperationCanceled", "message": "The operation was canceled."});
        }
        if status == OpStatus::InProgress
            && let Some(end) = self.end
        {
            let total = (end - self.start).num_milliseconds().max(1) as f64;
            let done = (now - self.start).num_milliseconds().max(0) as f64;
            v["percentComplete"] = json!(((done / total) * 100.0).clamp(0.0, 99.0).floor());
        }
        v
    }
}

/// Replication of a gallery image version to one region.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegionReplica {
    /// As the client named it ("West US" or "westus").
    pub name: String,
    pub norm: String,
    pub start: Time,
    pub end: Time,
    pub failed: Option<String>,
}

impl RegionReplica {
    pub fn summary(&self, now: Time) -> Value {
        let (state, progress) = if now >= self.end {
            if self.failed.is_some() {
                ("Failed", 0)
            } else {
                ("Completed", 100)
            }
        } else if now < self.start {
            ("Replicating", 0)
        } else {
            let total = (self.end - self.start).num_milliseconds().max(1) as f64;
            let done = (now - self.start).num_milliseconds() as f64;
            (
                "Replicating",
                ((done / total) * 100.0).floor().clamp(0.0, 99.0) as i64,
            )
        };
        let details = if state == "Failed" {
            self.failed.clone().unwrap_or_default()
        } else {
            String::new()
        };
        json!({"region": self.name, "state": state, "details": details, "progress": progress})
    }
}

/// An Image Builder run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    pub op_id: String,
    pub start: Time,
    /// Planned end of the build phases (before distribution).
    pub planned_end: Time,
    pub cancel_requested: Option<Time>,
    /// Final state and message once finished.
    pub outcome: Option<(String, String, Time)>,
}

impl Run {
    pub fn last_run_status(&self, now: Time) -> Value {
        if let Some((state, message, end)) = &self.outcome {
            if now < *end {
                // A cancel in progress.
                return json!({"startTime": fmt_time(self.start), "runState": "Canceling",
                    "runSubState": "Building", "message": ""});
            }
            return json!({"startTime": fmt_time(self.start), "endTime": fmt_time(*end),
                "runState": state, "message": message});
        }
        if self.cancel_requested.is_some() {
            return json!({"startTime": fmt_time(self.start), "runState": "Canceling",
                "runSubState": "Building", "message": ""});
        }
        let total = (self.planned_end - self.start).num_milliseconds().max(1) as f64;
        let f = (now - self.start).num_milliseconds() as f64 / total;
        let sub = match f {
            f if f < 0.05 => "Queued",
            f if f < 0.2 => "Building",
            f if f < 0.7 => "Customizing",
            f if f < 0.75 => "Validating",
            f if f < 0.8 => "Optimizing",
            _ => "Distributing",
        };
        json!({"startTime": fmt_time(self.start), "runState": "Running", "runSubState": sub, "message": ""})
    }
}

/// One resource, stored as the body Azure returns (without the derived fields).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resource {
    pub kind: Kind,
    pub id: String,
    pub name: String,
    pub subscription: String,
    pub resource_group: String,
    /// Normalized region.
    pub location: String,
    pub body: Value,
    pub last_op: Option<String>,
    #[serde(default)]
    pub regions: Vec<RegionReplica>,
    /// Virtual size (bytes) of the source VHD, for images and versions.
    #[serde(default)]
    pub vhd_size: Option<u64>,
    #[serde(default)]
    pub run: Option<Run>,
    #[serde(default)]
    pub run_outputs: Vec<Value>,
}

/// A resource group (Microsoft.Resources/resourceGroups).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResourceGroup {
    pub id: String,
    pub name: String,
    pub subscription: String,
    /// As the client gave it.
    pub location: String,
    #[serde(default)]
    pub tags: Option<Value>,
    #[serde(default)]
    pub managed_by: Option<String>,
    /// The operation deleting it, once a DELETE was accepted.
    #[serde(default)]
    pub deleting: Option<String>,
}

impl ResourceGroup {
    /// The lower-cased key of a resource group: `/subscriptions/{sub}/resourcegroups/{rg}`.
    pub fn key(sub: &str, rg: &str) -> String {
        format!("/subscriptions/{sub}/resourcegroups/{rg}").to_lowercase()
    }

    /// The body ARM answers with.
    pub fn render(&self) -> Value {
        let state = if self.deleting.is_some() {
            "Deleting"
        } else {
            "Succeeded"
        };
        let mut v = json!({"id": self.id, "name": self.name, "type": "Microsoft.Resources/resourceGroups",
            "location": self.location, "properties": {"provisioningState": state}});
        if let Some(t) = &self.tags {
            v["tags"] = t.clone();
        }
        if let Some(m) = &self.managed_by {
            v["managedBy"] = json!(m);
        }
        v
    }
}

/// The whole simulated cloud.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// Keyed by lower-cased resource id.
    pub resources: BTreeMap<String, Resource>,
    /// Keyed by [`ResourceGroup::key`].
    #[serde(default)]
    pub resource_groups: BTreeMap<String, ResourceGroup>,
    pub operations: HashMap<String, Operation>,
    /// Operation ids in creation order (for listing and pruning).
    pub op_order: Vec<String>,
}

pub fn fmt_time(t: Time) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl State {
    /// Applies what time has finished: removes resources whose delete succeeded.
    pub fn settle(&mut self, now: Time) {
        let done: Vec<String> = self
            .resources
            .iter()
            .filter(|(_, r)| {
                r.last_op
                    .as_ref()
                    .and_then(|id| self.operations.get(id))
                    .is_some_and(|op| {
                        op.verb == Verb::Delete && op.status(now) == OpStatus::Succeeded
                    })
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in done {
            self.resources.remove(&k);
        }
        // A deleted resource group takes its resources with it.
        let gone: Vec<String> = self
            .resource_groups
            .iter()
            .filter(|(_, g)| {
                g.deleting
                    .as_ref()
                    .and_then(|id| self.operations.get(id))
                    .is_some_and(|op| op.status(now) == OpStatus::Succeeded)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            self.resource_groups.remove(&k);
            let prefix = format!("{k}/");
            self.resources.retain(|rk, _| !rk.starts_with(&prefix));
        }
        const KEEP: usize = 20_000;
        if self.op_order.len() > KEEP {
            let drop: Vec<String> = self.op_order.drain(..self.op_order.len() - KEEP).collect();
            for id in drop {
                self.operations.remove(&id);
            }
        }
    }

    pub fn add_op(&mut self, op: Operation) {
        self.op_order.push(op.id.clone());
        self.operations.insert(op.id.clone(), op);
    }

    /// The operation currently running on a resource, if any.
    pub fn running_op(&self, key: &str, now: Time) -> Option<&Operation> {
        let r = self.resources.get(key)?;
        let op = self.operations.get(r.last_op.as_ref()?)?;
        (op.status(now) == OpStatus::InProgress).then_some(op)
    }

    /// provisioningState as Azure shows it now.
    pub fn provisioning_state(&self, r: &Resource, now: Time) -> &'static str {
        let Some(op) = r.last_op.as_ref().and_then(|id| self.operations.get(id)) else {
            return "Succeeded";
        };
        match op.status(now) {
            OpStatus::InProgress => match op.verb {
                Verb::Create => "Creating",
                Verb::Update | Verb::Action => "Updating",
                Verb::Delete => "Deleting",
            },
            OpStatus::Failed => "Failed",
            OpStatus::Canceled => "Canceled",
            OpStatus::Succeeded => "Succeeded",
        }
    }

    /// The resource as GET returns it now.
    pub fn render(&self, r: &Resource, now: Time, expand_replication: bool) -> Value {
        let mut body = r.body.clone();
        let ps = self.provisioning_state(r, now);
        if !body["properties"].is_object() {
            body["properties"] = json!({});
        }
        body["properties"]["provisioningState"] = json!(ps);
        if r.kind == Kind::Version && expand_replication {
            let summary: Vec<Value> = r.regions.iter().map(|g| g.summary(now)).collect();
            let states: Vec<&str> = summary
                .iter()
                .map(|s| s["state"].as_str().unwrap_or(""))
                .collect();
            let agg = if states.contains(&"Failed") {
                "Failed"
            } else if states.iter().all(|s| *s == "Completed") {
                "Completed"
            } else {
                "InProgress"
            };
            body["properties"]["replicationStatus"] =
                json!({"aggregatedState": agg, "summary": summary});
        }
        if r.kind == Kind::Gallery {
            let shown = body["location"].as_str().unwrap_or(&r.location).to_string();
            render_sharing_status(self, &mut body, &shown, now);
        }
        if r.kind == Kind::Template
            && let Some(run) = &r.run
        {
            body["properties"]["lastRunStatus"] = run.last_run_status(now);
        }
        body
    }

    /// Direct children of a resource (for delete refusal).
    pub fn has_children(&self, key: &str) -> bool {
        let prefix = format!("{key}/");
        self.resources
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .next()
            .is_some()
    }
}

/// The gallery's `sharingStatus` as GET shows it (replacing the stored marker of the last share).
fn render_sharing_status(st: &State, body: &mut Value, location: &str, now: Time) {
    let Some(op_id) = body["properties"]["sharingStatus"]["operation"]
        .as_str()
        .map(str::to_string)
    else {
        return;
    };
    let state = match st.operations.get(&op_id).map(|o| o.status(now)) {
        Some(OpStatus::InProgress) => "InProgress",
        Some(OpStatus::Failed | OpStatus::Canceled) => "Failed",
        Some(OpStatus::Succeeded) => "Succeeded",
        None => "Succeeded",
    };
    body["properties"]["sharingStatus"] = json!({
        "aggregatedState": state,
        "summary": [{"region": location, "state": state, "details": ""}],
    });
}
