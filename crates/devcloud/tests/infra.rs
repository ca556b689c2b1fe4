//! infra/, the function folders, the routing file and the settings the code reads agree: every function's
//! trigger has its Service Bus subscription, queue or Event Grid subscription in the routing file (which
//! the Bicep reads, so routing is declared once), every connection and %setting% a binding names is set
//! by infra, and every setting the code reads is set by infra or documented with its default in
//! docs/settings.md. A mutated copy shows each check fails when one side loses an entry. Also: the RBAC
//! action each ARM request needs, as the e2e tests check infra's custom role against them.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use common::{action_allows, rbac_action, repo_root};
use serde_json::Value;

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path, ext));
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
    out
}

fn text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The settings galleon's code reads (names it looks up in its environment).
fn read_by_code(src: &Path) -> BTreeSet<String> {
    captured(
        src,
        "rs",
        r#""(GALLEON_[A-Z0-9_]+|[A-Za-z]+__[A-Za-z]+|FUNCTIONS_CUSTOMHANDLER_PORT)""#,
    )
}

/// Names infra's Bicep sets: every quoted or key-position token that looks like a setting.
fn set_by_infra(infra: &Path) -> BTreeSet<String> {
    captured(
        infra,
        "bicep",
        r"(?m)(?:'|^\s*)(GALLEON_[A-Z0-9_]+|[A-Za-z]+__[A-Za-z]+|[A-Z][A-Z0-9_]+)(?:'|\s*:)",
    )
}

/// The first group of `pattern` wherever it matches in the `ext` files under `dir`.
fn captured(dir: &Path, ext: &str, pattern: &str) -> BTreeSet<String> {
    let name = regex::Regex::new(pattern).expect("regex");
    files(dir, ext)
        .iter()
        .flat_map(|f| {
            name.captures_iter(&text(f))
                .map(|c| c[1].to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// docs/settings.md: setting → its default column.
fn documented(docs: &Path) -> BTreeMap<String, String> {
    let row = regex::Regex::new(r"(?m)^\|\s*`([^`]+)`\s*\|\s*([^|]*?)\s*\|").expect("regex");
    row.captures_iter(&text(&docs.join("settings.md")))
        .map(|c| (c[1].to_owned(), c[2].to_owned()))
        .collect()
}

/// The role definitions (ids, lower case) a Bicep module assigns to galleon's identity.
fn roles_assigned_to_galleon(bicep: &str) -> BTreeSet<String> {
    let vars: BTreeMap<String, String> =
        regex::Regex::new(r"(?m)^var (\w+) = '([0-9a-fA-F-]{36})'")
            .expect("regex")
            .captures_iter(bicep)
            .map(|c| (c[1].to_owned(), c[2].to_ascii_lowercase()))
            .collect();
    regex::Regex::new(
        r"roleDefinitionId: subscriptionResourceId\('Microsoft.Authorization/roleDefinitions', (\w+)\)\s*principalId: galleonPrincipalId",
    )
    .expect("regex")
    .captures_iter(bicep)
    .filter_map(|c| vars.get(&c[1]).cloned())
    .collect()
}

/// The roles the routing file gives `galleon` in `assignments` (ids, lower case; an unknown role as
/// written).
fn roles_declared_for_galleon(assignments: &Value) -> BTreeSet<String> {
    assignments
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["principal"] == "galleon" && a.get("scope").is_none())
        .filter_map(|a| a["role"].as_str())
        .map(|r| {
            devcloud_messaging::rbac::BuiltInRole::parse(r)
                .map_or_else(|| r.to_owned(), |role| role.id().to_owned())
        })
        .collect()
}

/// The data roles the local Service Bus and Event Grid enforce (the routing file's `roleAssignments`) are
/// the ones infra assigns galleon's identity on the namespace and on each topic.
fn role_drift(root: &Path, routing: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let modules = root.join("infra/modules");
    let bus = roles_assigned_to_galleon(&text(&modules.join("servicebus.bicep")));
    let declared = roles_declared_for_galleon(&routing["serviceBus"]["roleAssignments"]);
    if bus != declared {
        problems.push(format!(
            "Service Bus namespace: roleAssignments in events/subscriptions.json give galleon {declared:?}, infra assigns {bus:?}"
        ));
    }
    let grid = roles_assigned_to_galleon(&text(&modules.join("eventgrid-topics.bicep")));
    for topic in routing
        .pointer("/eventGrid/topics")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let declared = roles_declared_for_galleon(&topic["roleAssignments"]);
        if grid != declared {
            problems.push(format!(
                "Event Grid topic {}: roleAssignments in events/subscriptions.json give galleon {declared:?}, infra assigns {grid:?}",
                topic["name"]
            ));
        }
    }
    problems
}

/// Every disagreement between the code in `src` and the tree at `root` (infra/, functions/, events/,
/// docs/), each naming what is missing where.
fn inconsistencies(src: &Path, root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let infra = set_by_infra(&root.join("infra"));
    let docs = documented(&root.join("docs"));
    // Settings the code reads.
    for s in read_by_code(src) {
        match docs.get(&s) {
            // The Functions host sets it for the process it starts.
            _ if s == "FUNCTIONS_CUSTOMHANDLER_PORT" => {}
            _ if infra.contains(&s) => {}
            Some(default) if !default.contains("required") => {}
            Some(_) => problems.push(format!(
                "{s} is required (docs/settings.md) but infra does not set it"
            )),
            None => problems.push(format!(
                "{s} is read by galleon but neither set by infra nor documented with its default in docs/settings.md"
            )),
        }
    }
    // The routing file, read by infra.
    let routing: Value =
        serde_json::from_str(&text(&root.join("events/subscriptions.json"))).unwrap_or_default();
    if !files(&root.join("infra"), "bicep").iter().any(|f| {
        let t = text(f);
        t.contains("loadJsonContent(") && t.contains("events/subscriptions.json")
    }) {
        problems.push(
            "no Bicep file reads events/subscriptions.json with loadJsonContent: routing would be declared twice"
                .into(),
        );
    }
    let names = |pointer: &str| -> BTreeMap<String, String> {
        routing
            .pointer(pointer)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| {
                Some((
                    s["name"].as_str()?.to_ascii_lowercase(),
                    s["function"].as_str().unwrap_or_default().to_owned(),
                ))
            })
            .collect()
    };
    // The deployed topics take only Entra ID tokens: the routing file says so too, so the local cloud
    // refuses keys as Azure will.
    let entra_only = files(&root.join("infra"), "bicep").iter().any(|f| {
        let t = text(f);
        t.contains("Microsoft.EventGrid/topics@") && t.contains("disableLocalAuth: true")
    });
    for topic in routing
        .pointer("/eventGrid/topics")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if topic["disableLocalAuth"].as_bool().unwrap_or(false) != entra_only {
            problems.push(format!(
                "Event Grid topic {}: disableLocalAuth in events/subscriptions.json differs from infra ({entra_only})",
                topic["name"]
            ));
        }
    }
    problems.extend(role_drift(root, &routing));
    let subscriptions = names("/serviceBus/subscriptions");
    let queues = names("/serviceBus/queues");
    let grid = names("/eventGrid/subscriptions");
    let mut triggered = BTreeSet::new();
    for dir in std::fs::read_dir(root.join("functions"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let function = dir.file_name().to_string_lossy().into_owned();
        let json: Value =
            serde_json::from_str(&text(&dir.path().join("function.json"))).unwrap_or_default();
        for binding in json["bindings"].as_array().into_iter().flatten() {
            let field = |k: &str| binding[k].as_str().unwrap_or_default().to_owned();
            for token in binding
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(_, v)| v.as_str())
            {
                for setting in token.split('%').skip(1).step_by(2) {
                    if !infra.contains(setting) {
                        problems.push(format!("{function}: %{setting}% is not set by infra"));
                    }
                }
            }
            let connection = field("connection");
            match field("type").as_str() {
                "serviceBusTrigger" => {
                    triggered.insert(function.clone());
                    let (entity, known) = if binding.get("queueName").is_some() {
                        (field("queueName"), &queues)
                    } else {
                        (field("subscriptionName"), &subscriptions)
                    };
                    if known.get(&entity.to_ascii_lowercase()) != Some(&function) {
                        problems.push(format!(
                            "{function}: its trigger's {entity} is not routed to it in events/subscriptions.json"
                        ));
                    }
                    let needed = format!("{connection}__fullyQualifiedNamespace");
                    if !infra.contains(&needed) {
                        problems.push(format!("{function}: {needed} is not set by infra"));
                    }
                }
                "eventGridTrigger" => {
                    triggered.insert(function.clone());
                    if !grid.values().any(|f| *f == function) {
                        problems.push(format!(
                            "{function}: no Event Grid subscription in events/subscriptions.json delivers to it"
                        ));
                    }
                }
                "eventGrid" => {
                    let needed = format!("{connection}__topicEndpointUri");
                    if !infra.contains(&needed) {
                        problems.push(format!("{function}: {needed} is not set by infra"));
                    }
                }
                _ => {}
            }
        }
    }
    problems.extend(unwatched_resting_places(root));
    for (entity, function) in subscriptions.iter().chain(&queues).chain(&grid) {
        if !function.is_empty() && !triggered.contains(function) {
            problems.push(format!(
                "{entity} in events/subscriptions.json delivers to {function}, which has no function.json trigger"
            ));
        }
    }
    problems
}

/// Every place a message or an event can come to rest with nothing to read it has an alert
/// (infra/modules/alerts.bicep, docs/alerts.md): the dead-letter queue of each queue that forwards no dead
/// letters, and the dead-lettered and dropped events of every Event Grid system topic main.bicep makes.
fn unwatched_resting_places(root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let main = text(&root.join("infra/main.bicep"));
    let alerts = text(&root.join("infra/modules/alerts.bicep"));
    // A module's block: from its declaration to the first line that closes it at the left margin.
    let block = |path: &str| -> Option<String> {
        let start = main.find(&format!("'{path}'"))?;
        let rest = &main[start..];
        let end = rest.find("\n}").map_or(rest.len(), |e| e + 2);
        Some(rest[..end].to_owned())
    };
    let Some(wiring) = block("modules/alerts.bicep") else {
        return vec![
            "infra/main.bicep does not deploy modules/alerts.bicep: dead letters nothing reads would go unnoticed"
                .into(),
        ];
    };
    if !wiring.contains("routing.serviceBus.queues") {
        problems.push(
            "the alerts module is not given the routing file's queues (routing.serviceBus.queues)"
                .into(),
        );
    }
    if !alerts.contains("[for q in queues: if (!contains(q, 'forwardDeadLetteredMessagesTo'))") {
        problems.push(
            "alerts.bicep does not watch the dead-letter queue of every queue that forwards none"
                .into(),
        );
    }
    let topic_module =
        regex::Regex::new(r"module (\w+) 'modules/eventgrid-systemtopic\.bicep'").expect("regex");
    let topics: Vec<String> = topic_module
        .captures_iter(&main)
        .map(|c| c[1].to_owned())
        .collect();
    if topics.is_empty() {
        problems.push("main.bicep makes no Event Grid system topic module".into());
    }
    for topic in topics {
        if !wiring.contains(&format!("{topic}.outputs.id")) {
            problems.push(format!(
                "the Event Grid system topic {topic} has no alert on its dead-lettered and dropped events"
            ));
        }
    }
    for metric in [
        "DeadletteredMessages",
        "DeadLetteredCount",
        "DroppedEventCount",
    ] {
        if !alerts.contains(&format!("metricName: '{metric}'")) {
            problems.push(format!("alerts.bicep has no alert on {metric}"));
        }
    }
    problems
}

#[test]
fn infra_functions_routing_and_settings_agree() {
    let root = repo_root();
    let problems = inconsistencies(&root.join("crates/galleon/src"), &root);
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(read_by_code(&root.join("crates/galleon/src")).len() > 40);
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("dir");
    for entry in std::fs::read_dir(from).expect("dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[test]
fn the_consistency_check_fails_when_one_side_loses_an_entry() {
    let root = repo_root();
    let src = root.join("crates/galleon/src");
    let fresh = || {
        let dir = tempfile::tempdir().expect("dir");
        for part in ["infra", "functions", "events", "docs"] {
            copy(&root.join(part), &dir.path().join(part));
        }
        assert!(inconsistencies(&src, dir.path()).is_empty());
        dir
    };
    let edit = |path: &Path, from: &str, to: &str| {
        let t = text(path);
        assert!(t.contains(from), "{} holds {from}", path.display());
        std::fs::write(path, t.replace(from, to)).expect("write");
    };
    let expect = |dir: &Path, needle: &str| {
        let problems = inconsistencies(&src, dir);
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "{needle}: {problems:#?}"
        );
    };

    // infra stops setting a required setting.
    let dir = fresh();
    for f in files(&dir.path().join("infra"), "bicep") {
        let t = text(&f);
        std::fs::write(&f, t.replace("GALLEON_STATE_CONTAINER_URL", "X_STATE")).expect("write");
    }
    expect(dir.path(), "GALLEON_STATE_CONTAINER_URL");

    // The routing file loses a function's subscription.
    let dir = fresh();
    edit(
        &dir.path().join("events/subscriptions.json"),
        "\"name\": \"replicate-version\"",
        "\"name\": \"replicate-version-gone\"",
    );
    expect(dir.path(), "ReplicateVersion");

    // A documented default is lost for a setting infra leaves to its default.
    let dir = fresh();
    let infra = set_by_infra(&dir.path().join("infra"));
    let left_to_default = read_by_code(&src)
        .into_iter()
        .find(|s| !infra.contains(s))
        .expect("a setting infra leaves to its default");
    edit(
        &dir.path().join("docs/settings.md"),
        &format!("`{left_to_default}`"),
        "`SOMETHING_ELSE`",
    );
    expect(dir.path(), &left_to_default);

    // A function's timer schedule is no longer set.
    let dir = fresh();
    for f in files(&dir.path().join("infra"), "bicep") {
        let t = text(&f);
        std::fs::write(&f, t.replace("GALLEON_LIFECYCLE_SCHEDULE", "X_SCHEDULE")).expect("write");
    }
    expect(dir.path(), "%GALLEON_LIFECYCLE_SCHEDULE%");

    // A system topic loses its alerts; the alerts lose a metric.
    let dir = fresh();
    edit(
        &dir.path().join("infra/main.bicep"),
        "      resourcesTopic.outputs.id\n",
        "",
    );
    expect(dir.path(), "resourcesTopic has no alert");
    let dir = fresh();
    edit(
        &dir.path().join("infra/modules/alerts.bicep"),
        "metricName: 'DroppedEventCount'",
        "metricName: 'DeliverySuccessCount'",
    );
    expect(dir.path(), "DroppedEventCount");

    // The routing file lets a deployed topic's local cloud twin take keys.
    let dir = fresh();
    edit(
        &dir.path().join("events/subscriptions.json"),
        "\"disableLocalAuth\": true",
        "\"disableLocalAuth\": false",
    );
    expect(dir.path(), "disableLocalAuth");

    // The local cloud would let galleon do more (or less) than its roles in Azure allow.
    let dir = fresh();
    edit(
        &dir.path().join("events/subscriptions.json"),
        "\"role\": \"Azure Service Bus Data Receiver\"",
        "\"role\": \"Azure Service Bus Data Owner\"",
    );
    expect(dir.path(), "roleAssignments");
    let dir = fresh();
    edit(
        &dir.path().join("infra/modules/eventgrid-topics.bicep"),
        "roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSender)",
        "roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'none')",
    );
    expect(dir.path(), "roleAssignments");

    // infra stops reading the routing file.
    let dir = fresh();
    for f in files(&dir.path().join("infra"), "bicep") {
        let t = text(&f);
        std::fs::write(&f, t.replace("loadJsonContent(", "json(")).expect("write");
    }
    expect(dir.path(), "loadJsonContent");
}

/// checkov (a maintained policy scanner, from PyPI; scripts/setup.sh installs it into .venv-infra) parses
/// every Bicep file and finds nothing: each finding is fixed or skipped inline with its reason. checkov
/// reports a parse error with exit code 0, so the count is read from its JSON.
#[test]
fn the_bicep_parses_and_passes_the_policy_scanner() {
    let checkov = repo_root().join(".venv-infra/bin/checkov");
    if !checkov.is_file() {
        assert!(
            std::env::var_os("CI").is_none(),
            "checkov is missing in CI: scripts/setup.sh installs it"
        );
        eprintln!("checkov is missing (scripts/setup.sh installs it): the scan is skipped");
        return;
    }
    let out = std::process::Command::new(&checkov)
        .args([
            "--framework",
            "bicep",
            "--skip-download",
            "-o",
            "json",
            "-d",
        ])
        .arg(repo_root().join("infra"))
        .output()
        .expect("checkov runs");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "checkov printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let summary = &report["summary"];
    assert_eq!(summary["parsing_errors"], 0, "{report:#}");
    assert_eq!(
        summary["failed"], 0,
        "{:#}",
        report["results"]["failed_checks"]
    );
    assert!(
        summary["resource_count"].as_u64().unwrap_or(0) > 50,
        "{summary}"
    );
    for skipped in report["results"]["skipped_checks"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let reason = skipped["check_result"]["suppress_comment"]
            .as_str()
            .unwrap_or("");
        assert!(
            reason.split_whitespace().count() >= 3,
            "{} skipped without a reason: {skipped:#}",
            skipped["check_id"]
        );
    }
    // Every Bicep file parsed: none is missing from pycep's view.
    let files = files(&repo_root().join("infra"), "bicep").len();
    assert!(files >= 10, "{files} Bicep files");
}

#[test]
fn arm_requests_need_the_actions_azure_names() {
    for (method, path, action) in [
        (
            "GET",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g?api-version=1",
            "Microsoft.Compute/galleries/read",
        ),
        (
            "PUT",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/d/versions/1.0.0",
            "Microsoft.Compute/galleries/images/versions/write",
        ),
        (
            "PATCH",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/d/versions/1.0.0",
            "Microsoft.Compute/galleries/images/versions/write",
        ),
        (
            "DELETE",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/images/i",
            "Microsoft.Compute/images/delete",
        ),
        (
            "GET",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/d/versions",
            "Microsoft.Compute/galleries/images/versions/read",
        ),
        (
            "POST",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/share",
            "Microsoft.Compute/galleries/share/action",
        ),
        (
            "POST",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.VirtualMachineImages/imageTemplates/t/run",
            "Microsoft.VirtualMachineImages/imageTemplates/run/action",
        ),
        (
            "GET",
            "/subscriptions/s/providers/Microsoft.Compute/locations/westeurope/operations/op-1",
            "Microsoft.Compute/locations/operations/read",
        ),
        (
            "GET",
            "/subscriptions/s/resourceGroups/rg",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
        ),
    ] {
        assert_eq!(
            rbac_action(method, path).as_deref(),
            Some(action),
            "{method} {path}"
        );
    }
    assert_eq!(rbac_action("GET", "/_devcloud/requests"), None);
    for (role, needed, allowed) in [
        (
            "Microsoft.Compute/galleries/*",
            "Microsoft.Compute/galleries/images/versions/write",
            true,
        ),
        (
            "Microsoft.Compute/galleries/read",
            "Microsoft.Compute/galleries/images/read",
            false,
        ),
        (
            "microsoft.compute/galleries/images/read",
            "Microsoft.Compute/galleries/images/read",
            true,
        ),
        (
            "Microsoft.Compute/*/read",
            "Microsoft.Compute/galleries/images/read",
            true,
        ),
        (
            "Microsoft.Compute/*/read",
            "Microsoft.Compute/galleries/images/write",
            false,
        ),
        ("*", "Microsoft.Compute/images/delete", true),
    ] {
        assert_eq!(action_allows(role, needed), allowed, "{role} {needed}");
    }
}
