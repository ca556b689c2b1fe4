//! Table tests of the build decisions.

use chrono::TimeZone;
use serde_json::json;

use super::*;

const T: &str = "/subscriptions/8c3e1f7a-2b4d-4e5f-9a6b-7c8d9e0f1a2b/resourceGroups/rg-images/providers/Microsoft.VirtualMachineImages/imageTemplates/ubuntu";

fn template(source: Value, distribute: Value) -> Value {
    json!({"id": T, "location": "westeurope", "properties": {
        "source": source, "distribute": distribute, "customize": [{"type": "Shell", "name": "x", "inline": ["true"]}],
        "buildTimeoutInMinutes": 0}})
}

fn platform() -> Value {
    json!({"type": "PlatformImage", "publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"})
}

#[test]
fn the_builds_file_and_the_setting_make_one_list() {
    let file = format!(
        r#"{{"templates": [{{"templateId": "{T}", "onlyWhenSourceChanged": true, "publish": {{"imageDefinition": "ubuntu", "osType": "Linux", "hyperVGeneration": "V2"}}}}]}}"#
    );
    let other = T.replace("/ubuntu", "/windows");
    let ids = format!("{}, {other},", T.to_uppercase());
    let entries = parse(Some(&ids), Some(("builds.json", &file))).expect("valid");
    assert_eq!(
        entries.len(),
        2,
        "the file's entry is not repeated by the setting's id in another case"
    );
    assert!(entries[0].only_when_source_changed);
    assert_eq!(entries[1].template_id, other);
    assert!(!entries[1].only_when_source_changed);
    assert_eq!(entries[1].cancel_margin(), DEFAULT_CANCEL_MARGIN_MINUTES);
    assert_eq!(
        find(&entries, "WINDOWS").map(|e| e.template_id.as_str()),
        Some(other.as_str())
    );
    assert_eq!(
        find(&entries, &T.to_lowercase()).map(|e| e.name()),
        Some("ubuntu")
    );
    assert!(find(&entries, "debian").is_none());

    // (setting, file) → the error names the cause
    let table: [(&str, &str, &str); 5] = [
        (
            "/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/images/i",
            "",
            "not an Image Builder template id",
        ),
        (
            "",
            r#"{"templates": [{"templateId": "x", "bogus": 1}]}"#,
            "unknown field",
        ),
        ("", r#"{"templates": "#, "not a valid builds file"),
        (
            "",
            &format!(r#"{{"templates": [{{"templateId": "{T}"}}, {{"templateId": "{T}"}}]}}"#),
            "listed twice",
        ),
        (
            "",
            &format!(
                r#"{{"templates": [{{"templateId": "{T}", "publish": {{"vhd": "a.vhd"}}}}]}}"#
            ),
            "must not name \"vhd\"",
        ),
    ];
    for (ids, file, want) in table {
        let file = (!file.is_empty()).then_some(("builds.json", file));
        let err = parse(Some(ids), file).expect_err(want);
        assert!(err.contains(want), "{err}");
    }
    assert_eq!(parse(None, None), Ok(Vec::new()));
}

#[test]
fn a_templates_shape_is_read_from_what_azure_answers() {
    let t = template(
        platform(),
        json!([{"type": "VHD", "runOutputName": "vhd"},
               {"type": "SharedImage", "runOutputName": "acg", "galleryImageId": "/x",
                "targetRegions": [{"name": "westeurope"}, {"name": "northeurope"}, {"name": "eastus"}]}]),
    );
    let s = shape(&t).expect("valid");
    assert_eq!(s.location, "westeurope");
    assert_eq!(
        s.build_timeout_minutes, DEFAULT_BUILD_TIMEOUT_MINUTES,
        "0 is Image Builder's default"
    );
    assert!(matches!(&s.source, Source::Platform { version, .. } if version == "latest"));
    assert_eq!(s.distributions.len(), 2);
    let w = warnings(&s);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("'acg'")
            && w[0].contains("3 regions")
            && w[0].contains("let galleon replicate")
    );

    // Filled in after a run: not a change of what the template builds.
    let mut after = t.clone();
    after["properties"]["source"]["exactVersion"] = json!("24.04.202611200");
    assert_eq!(
        shape(&after).map(|s| s.fingerprint).ok(),
        Some(s.fingerprint.clone())
    );
    let mut other_steps = t.clone();
    other_steps["properties"]["customize"] = json!([]);
    assert_ne!(
        shape(&other_steps).map(|s| s.fingerprint).ok(),
        Some(s.fingerprint)
    );

    // Home region only: no warning.
    let home = template(
        platform(),
        json!([{"type": "SharedImage", "runOutputName": "acg", "targetRegions": [{"name": "WestEurope"}]}]),
    );
    assert!(warnings(&shape(&home).expect("valid")).is_empty());

    // Sources: (source, want)
    let def =
        "/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/galleries/g/images/base";
    let table = [
        (
            json!({"type": "SharedImageVersion", "imageVersionId": format!("{def}/versions/1.2.3")}),
            Source::Gallery {
                definition_id: def.into(),
                version: Some("1.2.3".into()),
            },
        ),
        (
            json!({"type": "SharedImageVersion", "imageVersionId": format!("{def}/versions/latest")}),
            Source::Gallery {
                definition_id: def.into(),
                version: None,
            },
        ),
        (
            json!({"type": "SharedImageVersion", "imageVersionId": def}),
            Source::Gallery {
                definition_id: def.into(),
                version: None,
            },
        ),
        (
            json!({"type": "ManagedImage", "imageId": "/i"}),
            Source::ManagedImage { id: "/i".into() },
        ),
    ];
    for (source, want) in table {
        let t = template(source, json!([{"type": "VHD", "runOutputName": "v"}]));
        assert_eq!(shape(&t).map(|s| s.source), Ok(want));
    }
    for (t, want) in [
        (
            json!({"properties": {"source": platform()}}),
            "no distribute",
        ),
        (template(platform(), json!([])), "distributes nothing"),
        (
            template(json!({"type": "ISO"}), json!([{"type": "VHD"}])),
            "source type",
        ),
        (json!({}), "no properties"),
    ] {
        assert!(shape(&t).is_err_and(|e| e.contains(want)), "{want}");
    }
}

#[test]
fn a_vhd_or_managed_image_output_needs_to_know_where_it_is_published() {
    let t = |kind: &str| {
        shape(&template(
            platform(),
            json!([{"type": kind, "runOutputName": "out"}]),
        ))
        .expect("valid")
    };
    let bare = parse(Some(T), None).expect("valid").remove(0);
    let mut regions_only = bare.clone();
    regions_only.publish =
        serde_json::from_value(json!({"targetRegions": [{"name": "northeurope"}]})).ok();
    let mut with_publish = bare.clone();
    with_publish.publish = serde_json::from_value(
        json!({"imageDefinition": "u", "osType": "Linux", "hyperVGeneration": "V2"}),
    )
    .ok();
    assert_eq!(
        check_publish(&regions_only),
        Ok(()),
        "regions alone are a valid publish"
    );
    let mut bad = bare.clone();
    bad.publish = serde_json::from_value(
        json!({"targetRegions": [{"name": "west europe!"}], "osType": "Solaris"}),
    )
    .ok();
    assert!(check_publish(&bad).is_err_and(|r| r.code == "ManifestInvalid"));
    // (kind, has publish) → problem?
    for (kind, entry, problem) in [
        ("VHD", &bare, true),
        ("ManagedImage", &bare, true),
        ("SharedImage", &bare, false),
        ("VHD", &regions_only, true),
        ("SharedImage", &regions_only, false),
        ("VHD", &with_publish, false),
        ("ManagedImage", &with_publish, false),
        ("Iso", &with_publish, true),
    ] {
        assert_eq!(
            publish_problem(&t(kind), entry).is_some(),
            problem,
            "{kind}"
        );
    }
}

#[test]
fn the_latest_version_is_the_numerically_highest() {
    let table: [(&[&str], Option<&str>); 4] = [
        (&["1.9.0", "1.10.0", "1.2.0"], Some("1.10.0")),
        (
            &["24.04.202611200", "24.04.202612010"],
            Some("24.04.202612010"),
        ),
        (&["2022.1.5"], Some("2022.1.5")),
        (&[], None),
    ];
    for (names, want) in table {
        assert_eq!(
            latest_version(names.iter().copied()).as_deref(),
            want,
            "{names:?}"
        );
    }
}

#[test]
fn the_schedule_skips_only_an_unchanged_source_built_the_same_way() {
    let at = Utc
        .with_ymd_and_hms(2026, 11, 11, 10, 12, 40)
        .single()
        .expect("time");
    let src = |v: Option<&str>| BuildSource {
        kind: "PlatformImage".into(),
        id: "Canonical:ubuntu-24_04-lts:server".into(),
        version: v.map(str::to_owned),
    };
    let last = LastBuild {
        source: src(Some("24.04.202611200")),
        fingerprint: "f1".into(),
        finished_at: at,
    };
    // (source now, fingerprint now, last) → skip?
    let table = [
        (src(Some("24.04.202611200")), "f1", Some(&last), true),
        (src(Some("24.04.202612010")), "f1", Some(&last), false),
        (src(Some("24.04.202611200")), "f2", Some(&last), false),
        (src(Some("24.04.202611200")), "f1", None, false),
        (
            src(None),
            "f1",
            Some(&LastBuild {
                source: src(None),
                ..last.clone()
            }),
            false,
        ),
    ];
    for (now, fingerprint, last, skip) in table {
        let why = unchanged(&now, fingerprint, last);
        assert_eq!(why.is_some(), skip, "{now:?} {fingerprint}");
        if let Some(why) = why {
            assert!(
                why.contains("24.04.202611200") && why.contains("2026-11-11T10:12:40Z"),
                "{why}"
            );
        }
    }
}

#[test]
fn the_run_status_and_its_deadline() {
    let t = json!({"properties": {"lastRunStatus": {"startTime": "2026-12-09T09:00:02Z", "endTime": "",
        "runState": "Running", "runSubState": "Customizing", "message": ""}}});
    let s = RunStatus::of(&t).expect("a status");
    assert!(s.in_progress());
    assert_eq!(s.sub_state.as_deref(), Some("Customizing"));
    assert_eq!(s.message, None, "an empty message is no message");
    assert_eq!(s.end, None);
    let start = s.start.expect("start");
    assert!(!overdue(start, 150, start + chrono::Duration::minutes(150)));
    assert!(overdue(start, 150, start + chrono::Duration::minutes(151)));
    assert_eq!(RunStatus::of(&json!({"properties": {}})), None, "never run");
    // The run galleon asked for, a moment before Image Builder started it; not one two hours on.
    assert!(same_run(start - chrono::Duration::seconds(3), start));
    assert!(!same_run(start - chrono::Duration::hours(2), start));
    let done = RunStatus::of(&json!({"properties": {"lastRunStatus": {"runState": "Failed"}}}))
        .expect("status");
    assert!(!done.in_progress());
}

#[test]
fn advice_says_where_the_log_is_and_what_to_do() {
    assert_eq!(advice("Succeeded", false, None), None);
    for (state, timed_out, want) in [
        ("Failed", false, "customizer"),
        ("Canceled", true, "buildTimeoutInMinutes"),
        ("Canceled", false, "other than galleon"),
        ("PartiallySucceeded", false, "go on into the chain"),
    ] {
        let a = advice(
            state,
            timed_out,
            Some("/subscriptions/s/resourceGroups/IT_rg_t_1"),
        )
        .expect("advice");
        assert!(a.contains(want), "{state}: {a}");
        assert!(
            a.contains("customization.log") && a.contains("IT_rg_t_1"),
            "{a}"
        );
    }
}

#[test]
fn a_managed_image_made_elsewhere_is_checked_against_the_plan() {
    let plan: crate::events::Plan = serde_json::from_value(
        serde_json::from_str::<Value>(include_str!(
            "../../../../events/vhd.accepted.v1.example.json"
        ))
        .map(|e| e["data"]["plan"].clone())
        .unwrap_or_default(),
    )
    .unwrap_or_else(|e| panic!("example plan: {e}"));
    assert_eq!(
        (plan.location.as_str(), plan.os_type, plan.os_state),
        (
            "westeurope",
            crate::events::OsType::Linux,
            crate::events::OsState::Generalized
        )
    );
    let id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/images/built";
    // An image as Azure answers it, matching the plan (generation 2 Linux, generalized, westeurope).
    let good = json!({"id": id, "location": "West Europe", "properties": {
        "provisioningState": "Succeeded", "hyperVGeneration": "V2",
        "storageProfile": {"osDisk": {"osType": "Linux", "osState": "Generalized"}}}});
    assert_eq!(
        image_problem(&good, &plan),
        None,
        "West Europe is westeurope"
    );
    type Change = fn(&mut Value);
    // (what differs, the change, what the reason names)
    let table: [(&str, Change, &[&str]); 7] = [
        (
            "OS type",
            |i| i["properties"]["storageProfile"]["osDisk"]["osType"] = json!("Windows"),
            &["osType Windows", "Linux"],
        ),
        (
            "OS state",
            |i| i["properties"]["storageProfile"]["osDisk"]["osState"] = json!("Specialized"),
            &["osState Specialized", "Generalized"],
        ),
        (
            "generation",
            |i| i["properties"]["hyperVGeneration"] = json!("V1"),
            &["hyperVGeneration V1", "V2"],
        ),
        (
            "no generation (made before generations: V1)",
            |i| {
                if let Some(p) = i["properties"].as_object_mut() {
                    p.remove("hyperVGeneration");
                }
            },
            &["hyperVGeneration V1"],
        ),
        (
            "region",
            |i| i["location"] = json!("eastus2"),
            &["is in eastus2", "made in westeurope"],
        ),
        (
            "still being made",
            |i| i["properties"]["provisioningState"] = json!("Creating"),
            &["provisioningState 'Creating'"],
        ),
        (
            "failed",
            |i| i["properties"]["provisioningState"] = json!("Failed"),
            &["provisioningState 'Failed'"],
        ),
    ];
    for (what, change, names) in table {
        let mut image = good.clone();
        change(&mut image);
        let why = image_problem(&image, &plan).unwrap_or_else(|| panic!("{what}: not refused"));
        assert!(why.contains(id), "{what}: {why}");
        for n in names {
            assert!(why.contains(n), "{what}: {why}");
        }
    }
}

#[test]
fn a_gallery_sources_latest_is_the_highest_version_made_and_included_in_latest() {
    let v = |name: &str, state: &str, profile: Value| json!({"name": name, "properties": {"provisioningState": state, "publishingProfile": profile}});
    let versions = [
        v("1.0.0", "Succeeded", json!({"excludeFromLatest": false})),
        v("1.9.0", "Succeeded", json!({})),
        v(
            "1.10.0",
            "Succeeded",
            json!({"targetRegions": [{"name": "northeurope", "excludeFromLatest": true}]}),
        ),
        v("2.0.0", "Succeeded", json!({"excludeFromLatest": true})),
        v(
            "1.11.0",
            "Succeeded",
            json!({"targetRegions": [{"name": "West Europe", "excludeFromLatest": true}]}),
        ),
        v("1.12.0", "Creating", json!({})),
        v("1.13.0", "Failed", json!({})),
    ];
    // Excluded in another region only: still westeurope's latest.
    assert_eq!(
        latest_gallery_version(&versions, "westeurope").as_deref(),
        Some("1.10.0")
    );
    assert_eq!(
        latest_gallery_version(&versions, "northeurope").as_deref(),
        Some("1.11.0")
    );
    assert_eq!(latest_gallery_version(&versions[3..], "westeurope"), None);
    // Image Builder's exactVersion: a gallery version's whole id, a platform image's version.
    assert_eq!(
        exact_version_name(
            "/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/galleries/g/images/base/versions/1.10.0"
        ),
        "1.10.0"
    );
    assert_eq!(exact_version_name("24.04.202611200"), "24.04.202611200");
}
