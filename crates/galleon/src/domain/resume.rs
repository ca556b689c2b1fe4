//! How to resume a chain that stopped. "Upload the manifest again" re-runs it only until the version
//! exists: after that a new upload meets the version (AlreadyPublished), so the advice names
//! `galleon rerun <definition> <version>`, which replicates it again.

/// The phrases of galleon's advice that send the operator to upload the manifest again.
const REUPLOAD: [&str; 4] = [
    "upload the manifest again to re-run it",
    "upload the manifest again to re-run the chain",
    "upload the manifest again to resume (steps are idempotent)",
    "upload the manifest again",
];

/// Facts that come once the version exists.
const AFTER_PUBLISH: [&str; 5] = [
    "image.version.published",
    "image.replica.ready",
    "image.replication.requested",
    "image.ready",
    "image.partially.ready",
];

/// The definition and version named by a fact's subject (`…/images/{definition}/versions/{version}`).
fn definition_and_version(subject: &str) -> Option<(&str, &str)> {
    let mut parts = subject.split('/');
    while let Some(part) = parts.next() {
        if part == "images" {
            let definition = parts.next()?;
            let versions = parts.next()?;
            let version = parts.next()?;
            return (versions == "versions" && !definition.is_empty() && !version.is_empty())
                .then_some((definition, version));
        }
    }
    None
}

/// `advice` for a failure of `step` on a fact of `input_type` about `subject`: where the version already
/// exists, "upload the manifest again" becomes `galleon rerun <definition> <version>`.
pub fn advice(step: &str, input_type: &str, subject: Option<&str>, advice: &str) -> String {
    let short = input_type
        .strip_prefix("io.galleon.")
        .and_then(|t| t.rsplit_once(".v"))
        .map_or(input_type, |(t, _)| t);
    let version_exists = step == "ReplicateVersion" || AFTER_PUBLISH.contains(&short);
    let Some((definition, version)) = subject.and_then(definition_and_version) else {
        return advice.to_owned();
    };
    if !version_exists {
        return advice.to_owned();
    }
    let Some(phrase) = REUPLOAD.iter().find(|p| advice.contains(*p)) else {
        return advice.to_owned();
    };
    advice.replacen(
        phrase,
        &format!(
            "replicate it again with `galleon rerun {definition} {version}` (the version exists, so uploading the manifest again would only meet it)"
        ),
        1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBJECT: &str = "galleries/golden/images/ubuntu-2404/versions/1.2.3";

    #[test]
    fn after_the_version_exists_the_advice_is_to_replicate_again() {
        let transient = "Azure kept failing transiently (3 failures in 4 attempts); the chain stopped here. Once Azure recovers, upload the manifest again to re-run it.";
        let rerun = "replicate it again with `galleon rerun ubuntu-2404 1.2.3`";
        let table: [(&str, &str, Option<&str>, &str, bool); 7] = [
            // Replication stopped: rerun.
            (
                "ReplicateVersion",
                "io.galleon.operation.followup.v1",
                Some(SUBJECT),
                transient,
                true,
            ),
            // A dead-lettered fact that came after publication: rerun.
            (
                "DeadLetters",
                "io.galleon.image.version.published.v1",
                Some(SUBJECT),
                "Fix the cause, then upload the manifest again (every step is idempotent).",
                true,
            ),
            (
                "DeadLetters",
                "io.galleon.image.replica.ready.v1",
                Some(SUBJECT),
                transient,
                true,
            ),
            // Before the version exists, uploading again is right.
            (
                "PublishVersion",
                "io.galleon.vhd.accepted.v1",
                Some(SUBJECT),
                transient,
                false,
            ),
            (
                "CreateImage",
                "io.galleon.vhd.accepted.v1",
                Some(SUBJECT),
                transient,
                false,
            ),
            // No version in the subject, or nothing to replace: unchanged.
            (
                "ReplicateVersion",
                "io.galleon.operation.followup.v1",
                Some("images/u.vhd"),
                transient,
                false,
            ),
            (
                "ReplicateVersion",
                "io.galleon.operation.followup.v1",
                Some(SUBJECT),
                "Remove the lock.",
                false,
            ),
        ];
        for (step, ty, subject, given, rerun_expected) in table {
            let got = advice(step, ty, subject, given);
            assert_eq!(got.contains(rerun), rerun_expected, "{step} {ty}: {got}");
            assert_eq!(
                got.contains("upload the manifest again"),
                !rerun_expected && given.contains("upload the manifest again"),
                "{got}"
            );
        }
    }

    #[test]
    fn the_subject_names_the_definition_and_version() {
        assert_eq!(
            definition_and_version(SUBJECT),
            Some(("ubuntu-2404", "1.2.3"))
        );
        assert_eq!(
            definition_and_version("galleries/g/images/d/versions/1.0.0/regions/westeurope"),
            Some(("d", "1.0.0"))
        );
        assert_eq!(definition_and_version("galleries/g/images/d"), None);
        assert_eq!(
            definition_and_version("galleries/g/images//versions/1"),
            None
        );
    }
}
