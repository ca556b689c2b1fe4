//! Replicate again: an operator re-runs the replication stage of a version galleon published, for its
//! failed regions or to add regions (`POST /api/versions/{definition}/{version}/replicate`, body
//! `{"regions": ["uksouth"], "reason": "…", "by": "…"}`; `galleon rerun`; or a request on the queue). The
//! version is read as Azure shows it now, its publication from its run's journal; the request starts a run
//! of its own (`image.replication.requested`), which ReplicateVersion takes up and which ends in each
//! region's `image.replica.ready` and an `image.ready`. Asking again while it runs, or when every region is
//! complete, changes nothing and says so.

use std::collections::BTreeMap;

use chrono::Utc;
use serde_json::{Value, json};

use super::{
    control::{self, Asker, Refusal},
    owned::RUN_TAG,
    step::Ctx,
};
use crate::{
    azure::arm::{self, ids},
    domain::{
        naming, policy,
        replicate_again::{Decision, decide},
        replication::{region_key, replication_states},
    },
    events::{Cause, FactType, ReplicationRequested, TargetRegion, VersionPublished},
};

/// What an operator asked: the version, the regions to add (none: replicate the failed ones again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    pub definition: String,
    pub version: String,
    pub regions: Vec<String>,
    pub reason: Option<String>,
    pub by: Option<String>,
}

/// Reads the request; `Err` names the field and what is wrong.
pub fn asked(definition: &str, version: &str, body: &Value) -> Result<Asked, String> {
    naming::image_definition(definition)
        .map_err(|e| format!("definition: '{definition}': {}", e.rule))?;
    if version.parse::<naming::Version>().is_err() {
        return Err(format!(
            "version: '{version}' is not a gallery version (major.minor.patch)"
        ));
    }
    let body = control::body(body, "{\"regions\": [\"uksouth\"], \"reason\": \"…\"}")?;
    if !(body.is_null() || body.is_object()) {
        return Err("body: must be a JSON object such as {\"regions\": [\"uksouth\"]}".into());
    }
    if let Some(unknown) = body.as_object().and_then(|o| {
        o.keys()
            .find(|k| !["regions", "reason", "by"].contains(&k.as_str()))
    }) {
        return Err(format!(
            "body: unknown field '{unknown}' (regions, reason, by)"
        ));
    }
    let regions = match body.get("regions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) if list.len() <= 50 => list
            .iter()
            .map(|r| {
                r.as_str()
                    .map(str::to_owned)
                    .filter(|name| policy::region_name_ok(&region_key(name)))
                    .ok_or_else(|| {
                        format!("regions: {r} is not an ARM region name (such as uksouth)")
                    })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("regions: must be a list of at most 50 region names".into()),
    };
    let text = |field: &str, max: usize| match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(t)) if t.chars().count() <= max => Ok(Some(t.clone())),
        Some(Value::String(_)) => Err(format!("{field}: longer than {max} characters")),
        Some(_) => Err(format!("{field}: must be a string")),
    };
    Ok(Asked {
        definition: definition.to_owned(),
        version: version.to_owned(),
        regions,
        reason: text("reason", 500)?,
        by: text("by", 100)?,
    })
}

/// The version's target regions as its GET shows them (only the properties galleon sends back).
fn target_regions(version: &Value) -> Result<Vec<TargetRegion>, String> {
    let keep = [
        "name",
        "regionalReplicaCount",
        "storageAccountType",
        "excludeFromLatest",
        "encryption",
    ];
    version
        .pointer("/properties/publishingProfile/targetRegions")
        .and_then(Value::as_array)
        .ok_or("it shows no publishingProfile.targetRegions")?
        .iter()
        .map(|r| {
            let known: serde_json::Map<String, Value> = r
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| keep.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            serde_json::from_value(Value::Object(known))
                .map_err(|e| format!("a target region: {e}"))
        })
        .collect()
}

/// The publication of `version_id` in its run's journal.
async fn publication(
    ctx: &Ctx,
    run: &str,
    version_id: &str,
) -> Result<Option<VersionPublished>, Refusal> {
    let entries = ctx
        .journal
        .run(run)
        .await
        .map_err(|e| Refusal::journal(&e))?
        .unwrap_or_default();
    let published = FactType::VersionPublished.cloud_event_type();
    Ok(entries
        .into_iter()
        .filter(|e| e.fact.get("type").and_then(Value::as_str) == Some(published.as_str()))
        .filter_map(|e| {
            serde_json::from_value::<VersionPublished>(e.fact.get("data")?.clone()).ok()
        })
        .find(|p| p.version_id.eq_ignore_ascii_case(version_id)))
}

/// Replicates the default gallery's version again as `asked`; answers what was done (or why nothing).
pub async fn replicate(ctx: &Ctx, asked: &Asked, asker: &Asker) -> Result<Value, Refusal> {
    let p = &ctx.config.policy;
    let id = ids::image_version(
        &p.subscription_id,
        &p.resource_group,
        &p.gallery,
        &asked.definition,
        &asked.version,
    );
    let version = ctx
        .arm
        .get(&id, arm::GALLERY_API, &[("$expand", "ReplicationStatus")])
        .await
        .map_err(|e| Refusal::azure(&e, &id))?
        .ok_or_else(|| {
            Refusal::new(
                404,
                "VersionNotFound",
                format!(
                    "no version {} of image definition {} in gallery {}",
                    asked.version, asked.definition, p.gallery
                ),
            )
        })?;
    let Some(version_run) = version
        .pointer(&format!("/tags/{RUN_TAG}"))
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return Err(Refusal::new(
            409,
            "NotPublishedByGalleon",
            format!(
                "{id} has no {RUN_TAG} tag: galleon did not publish it and replicates only what it published; add regions with az sig image-version update --add publishingProfile.targetRegions name=<region>"
            ),
        ));
    };
    let Some(mut publication) = publication(ctx, &version_run, &id).await? else {
        return Err(Refusal::new(
            409,
            "PublicationNotInJournal",
            format!(
                "the journal of run {version_run} does not hold {id}'s publication, which a replication needs; add the regions with az sig image-version update --add publishingProfile.targetRegions name=<region>"
            ),
        ));
    };
    let current = target_regions(&version).map_err(|why| {
        Refusal::new(
            502,
            "UnreadableTargetRegions",
            format!("{id}: {why}; add the regions with az sig image-version update"),
        )
    })?;
    let home = publication.plan.location.clone();
    let decided = decide(
        &current,
        &replication_states(&version),
        &home,
        &asked.regions,
    )
    .map_err(|r| Refusal::new(409, r.code, format!("{id}: {}", r.message)))?;
    let replication = match decided {
        Decision::Nothing { regions } => {
            return Ok(
                json!({"versionId": id, "replicating": false, "alreadyReplicated": regions}),
            );
        }
        Decision::Underway { regions } => {
            return Ok(json!({"versionId": id, "replicating": false, "underway": regions}));
        }
        Decision::Replicate(r) => r,
    };
    publication.plan.target_regions = replication.regions.clone();
    let data = ReplicationRequested {
        publication,
        added_regions: replication.added.clone(),
        again_regions: replication.again.clone(),
        ready_regions: replication.ready.clone(),
        version_run: version_run.clone(),
        reason: asked.reason.clone(),
        by: asker.by.clone(),
        requested_at: Utc::now(),
    };
    let root = format!("replicate:{}:{id}", asker.id);
    let cause = Cause::root(&root, asker.traceparent(&root));
    let subject = super::version_subject(&data.publication.plan);
    control::send(ctx, ctx.fact(&cause, &subject, "", &data)).await?;
    tracing::info!(version = %id, added = ?replication.added, again = ?replication.again, "an operator asked to replicate a version again");
    let mut answer = BTreeMap::new();
    answer.insert("versionId", json!(id));
    answer.insert("replicating", json!(true));
    answer.insert("run", json!(cause.correlation_id));
    answer.insert("versionRun", json!(version_run));
    answer.insert("added", json!(replication.added));
    answer.insert("again", json!(replication.again));
    answer.insert("ready", json!(replication.ready));
    Ok(json!(answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked_with_the_field_named() {
        let ok = asked(
            "ubuntu-2404",
            "1.0.0",
            &json!({"regions": ["uksouth"], "reason": "UK team", "by": "jo"}),
        )
        .expect("valid");
        assert_eq!(ok.regions, vec!["uksouth".to_owned()]);
        assert_eq!(ok.by.as_deref(), Some("jo"));
        assert_eq!(
            asked("u", "1.0.0", &json!("")).expect("no body").regions,
            Vec::<String>::new()
        );
        for (definition, version, body, field) in [
            ("bad name!", "1.0.0", Value::Null, "definition:"),
            ("u", "latest", Value::Null, "version:"),
            ("u", "1.0.0", json!({"regions": "uksouth"}), "regions:"),
            ("u", "1.0.0", json!({"regions": [5]}), "regions:"),
            (
                "u",
                "1.0.0",
                json!({"regions": ["west europe!"]}),
                "regions:",
            ),
            ("u", "1.0.0", json!({"region": ["uksouth"]}), "body:"),
            ("u", "1.0.0", json!({"reason": 5}), "reason:"),
            ("u", "1.0.0", json!("{x"), "body:"),
            ("u", "1.0.0", json!([1]), "body:"),
        ] {
            let e = asked(definition, version, &body).expect_err("refused");
            assert!(e.starts_with(field), "{e}");
        }
    }

    #[test]
    fn target_regions_are_read_as_azure_shows_them() {
        let version = json!({"properties": {"publishingProfile": {"targetRegions": [
            {"name": "West Europe", "regionalReplicaCount": 2, "storageAccountType": "Standard_LRS", "somethingNew": 1},
            {"name": "northeurope", "regionalReplicaCount": 1}
        ]}}});
        let regions = target_regions(&version).expect("readable");
        assert_eq!(regions[0].name, "West Europe");
        assert_eq!(regions[0].regional_replica_count, 2);
        assert_eq!(regions[1].storage_account_type, None);
        assert!(target_regions(&json!({})).is_err());
    }
}
