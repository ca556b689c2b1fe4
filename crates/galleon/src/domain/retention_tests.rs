//! Table tests of retention.

use chrono::TimeZone;
use serde_json::json;

use super::*;

fn day(d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, d, 9, 0, 0)
        .single()
        .expect("time")
}

fn version(n: u32) -> Version {
    Version {
        id: format!("/v/1.0.{n}"),
        name: format!("1.0.{n}"),
        published: Some(day(n)),
        state: "Succeeded".into(),
        excluded: false,
        end_of_life: None,
        block_deletion: false,
        pinned: false,
        bad: false,
    }
}

fn keep(n: u32) -> Policy {
    Policy {
        keep: Some(n),
        max_age_days: None,
        grace_days: Some(0.0),
        delete_sources: false,
    }
}

/// Applies the decisions as Azure would, for the next run.
fn apply(versions: &mut Vec<Version>, decisions: &[Decision], now: DateTime<Utc>) {
    for d in decisions {
        match d.step {
            Step::ExcludeFromLatest => versions
                .iter_mut()
                .filter(|v| v.id == d.version.id)
                .for_each(|v| v.excluded = true),
            Step::EndOfLife => versions
                .iter_mut()
                .filter(|v| v.id == d.version.id)
                .for_each(|v| v.end_of_life = Some(now)),
            Step::Delete => versions.retain(|v| v.id != d.version.id),
            Step::DeletionBlocked => {}
        }
    }
}

fn steps(decisions: &[Decision]) -> Vec<(String, Step)> {
    decisions
        .iter()
        .map(|d| (d.version.name.clone(), d.step.clone()))
        .collect()
}

#[test]
fn keep_three_of_six_takes_the_three_oldest_through_exclude_then_end_of_life_then_delete() {
    let mut versions: Vec<Version> = (1..=6).map(version).collect();
    let now = day(20);
    let old = |s: Step| {
        vec![
            ("1.0.3".to_owned(), s.clone()),
            ("1.0.2".to_owned(), s.clone()),
            ("1.0.1".to_owned(), s),
        ]
    };
    let first = decide(&keep(3), &versions, now);
    assert_eq!(steps(&first), old(Step::ExcludeFromLatest));
    assert!(
        first[0].why.contains("3 newer versions are kept"),
        "{}",
        first[0].why
    );
    apply(&mut versions, &first, now);
    let second = decide(&keep(3), &versions, now);
    assert_eq!(steps(&second), old(Step::EndOfLife));
    apply(&mut versions, &second, now);
    let third = decide(&keep(3), &versions, now);
    assert_eq!(steps(&third), old(Step::Delete));
    apply(&mut versions, &third, now);
    let names: Vec<&str> = versions.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["1.0.4", "1.0.5", "1.0.6"]);
    assert!(
        decide(&keep(3), &versions, now).is_empty(),
        "then nothing more"
    );
}

#[test]
fn the_newest_pinned_and_unfinished_versions_are_never_touched_and_bad_ones_go_first() {
    let now = day(20);
    let mut vs: Vec<Version> = (1..=4).map(version).collect();
    vs[0].pinned = true; // 1.0.1
    vs[2].bad = true; // 1.0.3
    vs.push(Version {
        state: "Creating".into(),
        published: None,
        ..version(9)
    });
    // keep 2: the newest (1.0.4) and 1.0.2 (1.0.3 is bad and does not count); 1.0.1 is pinned.
    assert_eq!(
        steps(&decide(&keep(2), &vs, now)),
        [("1.0.3".to_owned(), Step::ExcludeFromLatest)]
    );
    let bad = decide(&keep(2), &vs, now);
    assert!(bad[0].why.contains("marked bad"), "{}", bad[0].why);
    // keep 1 of a bad newest: the newest is never touched, even marked bad.
    let mut only = vec![Version {
        bad: true,
        ..version(1)
    }];
    assert!(decide(&keep(1), &only, now).is_empty());
    only.push(version(2));
    assert_eq!(
        steps(&decide(&keep(1), &only, now)),
        [("1.0.1".to_owned(), Step::ExcludeFromLatest)]
    );
}

#[test]
fn the_newest_usable_version_is_never_retired_while_a_newer_one_is_not_usable() {
    let now = day(20);
    let max_age = Policy {
        keep: None,
        max_age_days: Some(5.0),
        grace_days: None,
        delete_sources: false,
    };
    let newest = |state: &str, published: Option<DateTime<Utc>>, bad: bool| Version {
        state: state.into(),
        published,
        bad,
        ..version(4)
    };
    // 1.0.1-1.0.3 succeeded long ago; 1.0.4 is the newest; what is retired.
    let table: [(&Policy, Version, &[&str]); 6] = [
        // Azure is still making 1.0.4 (or still replicating it, or failed): 1.0.3 stays until it succeeds.
        (
            &max_age,
            newest("Creating", Some(day(19)), false),
            &["1.0.2", "1.0.1"],
        ),
        (
            &max_age,
            newest("Updating", Some(day(19)), false),
            &["1.0.2", "1.0.1"],
        ),
        (
            &max_age,
            newest("Failed", Some(day(19)), false),
            &["1.0.2", "1.0.1"],
        ),
        // 1.0.4 is marked bad: it stays as the newest (an operator's tag), and so does 1.0.3.
        (
            &max_age,
            newest("Succeeded", Some(day(19)), true),
            &["1.0.2", "1.0.1"],
        ),
        // keep 1 counts the failed newest, and still keeps the last good one.
        (
            &keep(1),
            newest("Failed", Some(day(19)), false),
            &["1.0.2", "1.0.1"],
        ),
        // A usable newest: every old one goes.
        (
            &max_age,
            newest("Succeeded", Some(day(19)), false),
            &["1.0.3", "1.0.2", "1.0.1"],
        ),
    ];
    for (policy, fourth, retired) in table {
        let mut vs: Vec<Version> = (1..=3).map(version).collect();
        vs.push(fourth.clone());
        let names: Vec<String> = decide(policy, &vs, now)
            .into_iter()
            .map(|d| d.version.name)
            .collect();
        assert_eq!(names, retired, "1.0.4 {} bad {}", fourth.state, fourth.bad);
    }
}

#[test]
fn age_grace_and_safety_profiles() {
    let now = day(20);
    let vs: Vec<Version> = (1..=6).map(version).collect();
    // Younger than 10 days (published on the 11th or later: none here but the 20th-… ones): the union of
    // keep and age keeps what either keeps.
    let young = Policy {
        keep: None,
        max_age_days: Some(16.5),
        grace_days: None,
        delete_sources: false,
    };
    let d = decide(&young, &vs, now);
    assert_eq!(
        steps(&d)
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["1.0.3", "1.0.2", "1.0.1"]
    );
    let both = Policy {
        keep: Some(5),
        ..young.clone()
    };
    assert_eq!(
        decide(&both, &vs, now).len(),
        1,
        "keep 5 or younger: only 1.0.1 goes"
    );

    // Grace: an end of life 2 days ago waits out a 7-day grace, then goes.
    let ended = Version {
        excluded: true,
        end_of_life: Some(now - chrono::Duration::days(2)),
        ..version(1)
    };
    let p = Policy {
        grace_days: Some(7.0),
        ..keep(1)
    };
    let vs = vec![ended.clone(), version(2)];
    assert!(decide(&p, &vs, now).is_empty(), "in its grace period");
    assert_eq!(
        steps(&decide(&p, &vs, now + chrono::Duration::days(6))),
        [("1.0.1".to_owned(), Step::Delete)]
    );

    // A protected end of life in the future is not shortened: the version waits, and says so.
    let protected = Version {
        excluded: true,
        block_deletion: true,
        end_of_life: Some(now + chrono::Duration::days(30)),
        ..version(1)
    };
    assert_eq!(
        steps(&decide(&keep(1), &[protected.clone(), version(2)], now)),
        [("1.0.1".to_owned(), Step::DeletionBlocked)]
    );
    // Unprotected, a later end of life is brought forward.
    let later = Version {
        block_deletion: false,
        ..protected
    };
    assert_eq!(
        steps(&decide(&keep(1), &[later, version(2)], now)),
        [("1.0.1".to_owned(), Step::EndOfLife)]
    );
}

#[test]
fn versions_are_read_as_azure_lists_them() {
    let v = Version::of(
        &json!({"id": "/x/versions/1.2.3", "name": "1.2.3", "tags": {"galleon-pin": "True", "galleon-bad": "no"},
        "properties": {"provisioningState": "Succeeded", "publishingProfile": {"publishedDate": "2026-12-01T09:00:00Z",
            "excludeFromLatest": true, "endOfLifeDate": "2027-01-01T00:00:00+00:00"},
            "safetyProfile": {"blockDeletionBeforeEndOfLife": true}}}),
    );
    assert!(v.pinned && !v.bad && v.excluded && v.block_deletion);
    assert_eq!(v.published, Some(day(1)));
    assert_eq!(
        v.end_of_life,
        Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).single()
    );
}

#[test]
fn a_policy_that_would_delete_everything_or_says_nothing_is_refused() {
    let ok = Retention::parse(r#"{"default": {"keep": 5, "graceDays": 3}, "definitions": {"Ubuntu-2404": {"keep": 10, "deleteSources": true}}, "dryRun": true}"#)
        .expect("valid");
    assert!(ok.dry_run);
    assert_eq!(
        ok.for_definition("ubuntu-2404").and_then(|p| p.keep),
        Some(10)
    );
    assert_eq!(ok.for_definition("debian-12").and_then(|p| p.keep), Some(5));
    assert_eq!(
        ok.for_definition("debian-12").map(Policy::grace),
        Some(chrono::Duration::days(3))
    );
    let only = Retention::parse(r#"{"definitions": {"x": {"maxAgeDays": 30}}}"#).expect("valid");
    assert!(
        only.for_definition("y").is_none(),
        "no default: other definitions are left alone"
    );
    for (text, want) in [
        (r#"{"default": {"keep": 0}}"#, "would delete every version"),
        (
            r#"{"definitions": {"x": {"keep": 0, "maxAgeDays": 0}}}"#,
            "policy x would delete every version",
        ),
        (r#"{"default": {}}"#, "says nothing"),
        (r#"{"default": {"keep": 3, "graceDays": -1}}"#, "0 or more"),
        (r#"{"default": {"kept": 3}}"#, "unknown field"),
        ("keep=3", "not a retention setting"),
    ] {
        assert!(
            Retention::parse(text).is_err_and(|e| e.contains(want)),
            "{text}"
        );
    }
}
