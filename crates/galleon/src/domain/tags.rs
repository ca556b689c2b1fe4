//! Whether a manifest's tags fit Azure's rules once galleon adds its own, checked before anything is
//! written: Azure refuses the whole write otherwise, after galleon has started (50 tags at most, names
//! of 1-512 characters without `<>%&\?/` or control characters, values of at most 256).

use std::collections::BTreeMap;

/// Tags one Azure resource may carry.
pub const MAX_TAGS: usize = 50;
const MAX_NAME: usize = 512;
const MAX_VALUE: usize = 256;

/// The tags galleon sets on the managed image and the image version it makes (ownership: what it may
/// delete), which a manifest may not set itself.
pub const OWNERSHIP: [&str; 4] = [RUN, SOURCE, SOURCE_ETAG, MANAGED];
/// The run that made the resource.
pub const RUN: &str = "galleon-run";
/// What it was made from (the VHD's URL without its query, or the source image's id).
pub const SOURCE: &str = "galleon-source";
/// The ETag of the VHD it was made from.
pub const SOURCE_ETAG: &str = "galleon-source-etag";
/// Made by galleon.
pub const MANAGED: &str = "galleon-managed";

/// Tags galleon may add to a version later (`galleon mark … bad|pin`).
pub const MARKS: usize = 2;

/// Checks `tags` for a resource that galleon adds `added` tags of its own to; `Err` says what is wrong.
pub fn check(tags: &BTreeMap<String, String>, added: usize) -> Result<(), String> {
    let room = MAX_TAGS - added;
    if tags.len() > room {
        return Err(format!(
            "{} tags are given, and Azure allows {MAX_TAGS} per resource: galleon adds {added} of its own, which leaves room for {room}",
            tags.len()
        ));
    }
    for (name, value) in tags {
        if name.trim().is_empty() {
            return Err("a tag has an empty name".into());
        }
        if let Some(c) = name
            .chars()
            .find(|c| matches!(c, '<' | '>' | '%' | '&' | '\\' | '?' | '/') || c.is_control())
        {
            return Err(format!(
                "tag name '{}' holds '{}', which Azure does not allow in tag names (<, >, %, &, \\, ?, / and control characters)",
                name.escape_debug(),
                c.escape_debug()
            ));
        }
        if name.chars().count() > MAX_NAME {
            return Err(format!(
                "tag name '{}…' is longer than Azure's {MAX_NAME} characters",
                name.chars().take(40).collect::<String>()
            ));
        }
        if value.chars().count() > MAX_VALUE {
            return Err(format!(
                "the value of tag '{name}' has {} characters, more than Azure's {MAX_VALUE}",
                value.chars().count()
            ));
        }
        if added > 0 && OWNERSHIP.iter().any(|own| own.eq_ignore_ascii_case(name)) {
            return Err(format!(
                "tag '{name}' is galleon's own: it records which run made a resource and from what, and decides what galleon may delete"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn tags_fit_azure_with_galleons_own() {
        let added = OWNERSHIP.len() + MARKS;
        let n = |count: usize| -> BTreeMap<String, String> {
            (0..count)
                .map(|i| (format!("t{i}"), "v".to_owned()))
                .collect()
        };
        let long_name = "x".repeat(513);
        let long_value = "v".repeat(257);
        // (tags, galleon adds, error contains, or None)
        let table: Vec<(BTreeMap<String, String>, usize, Option<&str>)> = vec![
            (tags(&[]), added, None),
            (
                tags(&[("team", "platform"), ("cost center", "4711")]),
                added,
                None,
            ),
            (tags(&[("url", "https://x/y?z=1&w=<2>")]), added, None),
            (n(44), added, None),
            (n(45), added, Some("leaves room for 44")),
            (n(50), 0, None),
            (n(51), 0, Some("allows 50")),
            (tags(&[("k8s.io/role", "x")]), added, Some("holds '/'")),
            (tags(&[("100%", "x")]), added, Some("holds '%'")),
            (tags(&[(" ", "x")]), added, Some("empty name")),
            (tags(&[(long_name.as_str(), "x")]), added, Some("512")),
            (
                tags(&[("notes", long_value.as_str())]),
                added,
                Some("257 characters"),
            ),
            (tags(&[("Galleon-Run", "x")]), added, Some("galleon's own")),
            (
                tags(&[("galleon-managed", "x")]),
                added,
                Some("galleon's own"),
            ),
            // The definition carries no ownership tags: the names are the user's there.
            (tags(&[("galleon-run", "x")]), 0, None),
            (tags(&[("galleon-team", "x")]), added, None),
        ];
        for (given, added, want) in table {
            let got = check(&given, added);
            match want {
                None => assert_eq!(got, Ok(()), "{given:?}"),
                Some(text) => assert!(
                    got.as_ref().is_err_and(|e| e.contains(text)),
                    "{given:?}: {got:?}, expected {text}"
                ),
            }
        }
    }
}
