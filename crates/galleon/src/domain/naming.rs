//! Azure resource names and gallery image version numbers: validated with the service's real rules
//! (shared/reference/arm-contract.md §5) and derived deterministically from the input, so a redelivered
//! fact names the same resources.

use chrono::{DateTime, Datelike, Timelike, Utc};

/// Why a name cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} name '{name}' is invalid: {rule}")]
pub struct NameError {
    pub kind: &'static str,
    pub name: String,
    pub rule: &'static str,
}

fn check(
    kind: &'static str,
    name: &str,
    max: usize,
    inner: fn(u8) -> bool,
    last_ok: fn(u8) -> bool,
    rule: &'static str,
) -> Result<(), NameError> {
    let bytes = name.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= max
        && bytes[0].is_ascii_alphanumeric()
        && bytes.iter().all(|b| inner(*b))
        && bytes.last().is_some_and(|b| last_ok(*b));
    if ok {
        Ok(())
    } else {
        Err(NameError {
            kind,
            name: name.to_owned(),
            rule,
        })
    }
}

/// Gallery: 1–80 letters, digits, `_`, `.`; starts and ends with a letter or digit; no hyphens.
pub fn gallery(name: &str) -> Result<(), NameError> {
    check(
        "gallery",
        name,
        80,
        |b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.',
        |b| b.is_ascii_alphanumeric(),
        "1-80 letters, digits, '_' or '.', starting and ending with a letter or digit (no hyphens)",
    )
}

/// Image definition: 1–80 letters, digits, `_`, `-`, `.`; starts and ends with a letter or digit.
pub fn image_definition(name: &str) -> Result<(), NameError> {
    check(
        "image definition",
        name,
        80,
        |b| b.is_ascii_alphanumeric() || b"_-.".contains(&b),
        |b| b.is_ascii_alphanumeric(),
        "1-80 letters, digits, '_', '-' or '.', starting and ending with a letter or digit",
    )
}

/// Managed image: 1–80 letters, digits, `_`, `.`, `-`; starts with a letter or digit, ends with a letter,
/// digit or `_`.
pub fn managed_image(name: &str) -> Result<(), NameError> {
    check(
        "managed image",
        name,
        80,
        |b| b.is_ascii_alphanumeric() || b"_-.".contains(&b),
        |b| b.is_ascii_alphanumeric() || b == b'_',
        "1-80 letters, digits, '_', '-' or '.', starting with a letter or digit and ending with a letter, digit or '_'",
    )
}

/// Resource group: 1–90 letters, digits, `-`, `_`, `.`, `(`, `)`; not ending with `.`.
pub fn resource_group_ok(name: &str) -> bool {
    (1..=90).contains(&name.len())
        && !name.ends_with('.')
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || "-_.()".contains(c))
}

/// A gallery image version: `Major.Minor.Patch`, each a non-negative 32-bit signed integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

impl std::str::FromStr for Version {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Version, NameError> {
        let err = || NameError {
            kind: "image version",
            name: s.to_owned(),
            rule: "Major.Minor.Patch with each part a whole number from 0 to 2147483647",
        };
        let parts: Vec<&str> = s.split('.').collect();
        let [a, b, c] = parts.as_slice() else {
            return Err(err());
        };
        let part = |p: &str| -> Result<u32, NameError> {
            if p.is_empty() || p.len() > 10 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            p.parse::<u32>()
                .ok()
                .filter(|n| *n <= i32::MAX as u32)
                .ok_or_else(err)
        };
        Ok(Version(part(a)?, part(b)?, part(c)?))
    }
}

/// The version for an upload with no explicit version: `YYYY.MMDD.HHMMSS` of the VHD blob's creation time
/// (UTC). Deterministic for one upload (redeliveries agree), increasing across uploads, valid in every part.
pub fn version_from_time(created: DateTime<Utc>) -> Version {
    Version(
        created.year().max(0) as u32,
        created.month() * 100 + created.day(),
        created.hour() * 10_000 + created.minute() * 100 + created.second(),
    )
}

/// The managed image a run makes for a version: `<definition>-<version>-<run mark>`, shortened from the
/// left of the definition when too long, so it stays within 80 characters. The run's mark (the first 8
/// letters and digits of its id) makes the name the run's alone: a rerun never meets an earlier run's
/// image, and at image ready the run deletes its image without reading it first ([`is_runs_image`]).
pub fn managed_image_for(definition: &str, version: Version, run: &str) -> String {
    let mark = run_mark(run);
    let suffix = if mark.is_empty() {
        format!("-{version}")
    } else {
        format!("-{version}-{mark}")
    };
    let room = 80usize.saturating_sub(suffix.len());
    let stem: String = definition.chars().take(room).collect();
    let stem = stem.trim_end_matches(['.', '-']);
    format!("{stem}{suffix}")
}

/// A run's mark in the names it makes: the first 8 ASCII letters and digits of its id, lowercased.
fn run_mark(run: &str) -> String {
    run.chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Whether a managed image's resource id names an image `run` made ([`managed_image_for`]).
pub fn is_runs_image(image_id: &str, run: &str) -> bool {
    let mark = run_mark(run);
    let name = image_id.rsplit('/').next().unwrap_or_default();
    mark.len() == 8
        && image_id.contains("/providers/Microsoft.Compute/images/")
        && name.ends_with(&format!("-{mark}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn gallery_names() {
        let long = "g".repeat(81);
        for (name, ok) in [
            ("golden", true),
            ("golden_images.prod", true),
            ("a", true),
            ("my-gallery", false),
            ("_golden", false),
            ("golden.", false),
            ("", false),
            ("g/../x", false),
            (long.as_str(), false),
        ] {
            assert_eq!(gallery(name).is_ok(), ok, "gallery {name:?}");
        }
    }

    #[test]
    fn image_definition_names() {
        for (name, ok) in [
            ("ubuntu-2404", true),
            ("win.2025_core", true),
            ("-leading", false),
            ("trailing-", false),
            ("has space", false),
            ("ümlaut", false),
        ] {
            assert_eq!(image_definition(name).is_ok(), ok, "definition {name:?}");
        }
    }

    #[test]
    fn managed_image_names_may_end_with_underscore() {
        assert!(managed_image("img_").is_ok());
        assert!(managed_image("img.").is_err());
    }

    #[test]
    fn versions_parse_and_bound() {
        for (text, want) in [
            ("1.0.0", Some(Version(1, 0, 0))),
            ("2026.1121.104301", Some(Version(2026, 1121, 104301))),
            ("2147483647.0.0", Some(Version(2147483647, 0, 0))),
            ("2147483648.0.0", None),
            ("1.0", None),
            ("1.0.0.0", None),
            ("1.-1.0", None),
            ("1.a.0", None),
            ("1..0", None),
            ("99999999999.0.0", None),
        ] {
            assert_eq!(text.parse::<Version>().ok(), want, "{text}");
        }
        assert!(Version(1, 2, 3) < Version(1, 10, 0));
    }

    #[test]
    fn versions_from_upload_time_are_valid_and_ordered() {
        let a = Utc
            .with_ymd_and_hms(2026, 11, 21, 10, 43, 1)
            .single()
            .expect("time");
        let b = Utc
            .with_ymd_and_hms(2026, 12, 1, 0, 0, 0)
            .single()
            .expect("time");
        let va = version_from_time(a);
        assert_eq!(va.to_string(), "2026.1121.104301");
        assert_eq!(va.to_string().parse::<Version>(), Ok(va));
        assert!(va < version_from_time(b));
        let last = Utc
            .with_ymd_and_hms(2026, 12, 31, 23, 59, 59)
            .single()
            .expect("time");
        assert_eq!(version_from_time(last).to_string(), "2026.1231.235959");
    }

    #[test]
    fn managed_image_names_fit() {
        let v = Version(2026, 1121, 104301);
        let run = "1E1F6A4D-807e-5c5a-87cb-5f44fb8d7a03";
        assert_eq!(
            managed_image_for("ubuntu-2404", v, run),
            "ubuntu-2404-2026.1121.104301-1e1f6a4d"
        );
        assert_eq!(
            managed_image_for("ubuntu-2404", v, ""),
            "ubuntu-2404-2026.1121.104301"
        );
        let long = "d".repeat(80);
        let name = managed_image_for(&long, v, run);
        assert_eq!(name.len(), 80);
        assert!(name.ends_with("-2026.1121.104301-1e1f6a4d"), "{name}");
        assert!(managed_image(&name).is_ok(), "{name}");
    }

    #[test]
    fn a_runs_image_is_known_by_its_name() {
        let v = Version(1, 0, 0);
        let run = "1e1f6a4d-807e-5c5a-87cb-5f44fb8d7a03";
        let id = |name: &str| {
            format!("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/images/{name}")
        };
        for (image_id, runs) in [
            (id(&managed_image_for("ubuntu", v, run)), true),
            // Another run's image of the same version, an image named by hand, an older galleon's name.
            (
                id(&managed_image_for(
                    "ubuntu",
                    v,
                    "9a9a9a9a-0000-0000-0000-000000000000",
                )),
                false,
            ),
            (id("ubuntu-golden"), false),
            (id(&managed_image_for("ubuntu", v, "")), false),
            // A gallery version is never a managed image.
            (
                format!(
                    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/ubuntu/versions/x-{}",
                    "1e1f6a4d"
                ),
                false,
            ),
        ] {
            assert_eq!(is_runs_image(&image_id, run), runs, "{image_id}");
        }
        assert!(!is_runs_image(&id("x-"), ""), "no run, no mark");
    }
}
