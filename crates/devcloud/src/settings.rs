//! App settings for galleon under `devcloud up`: the `Values` of `local.settings.json` in the app
//! directory (as `func start` reads them), then `--set NAME=VALUE` overrides. The settings that wire
//! galleon to the local services (endpoints, identity, CA) belong to devcloud; `local.settings.json`
//! cannot move them (its copies point at fixed ports), only an explicit `--set` can.

use std::{collections::BTreeMap, path::Path};

use anyhow::{Context, Result, bail};

/// Settings `Cloud::start` derives from where the local services listen.
pub const WIRING: &[&str] = &[
    "FUNCTIONS_WORKER_RUNTIME",
    "AzureWebJobsStorage",
    "ServiceBusConnection__fullyQualifiedNamespace",
    "GalleonEventsTopic__topicEndpointUri",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "AZURE_AUTHORITY_HOST",
    "SSL_CERT_FILE",
    "GALLEON_ARM_ENDPOINT",
    "PATH",
];

/// The file `func start` reads.
pub const LOCAL_SETTINGS: &str = "local.settings.json";

/// Settings from `local.settings.json`, if the app directory has one: its `Values`, minus the wiring
/// settings (returned second, so the caller can say they were skipped).
pub fn local_settings(app_root: &Path) -> Result<(BTreeMap<String, String>, Vec<String>)> {
    let path = app_root.join(LOCAL_SETTINGS);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((BTreeMap::new(), Vec::new()));
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let doc: serde_json::Value =
        serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))?;
    if doc["IsEncrypted"] == true {
        bail!(
            "{} is encrypted (IsEncrypted: true); devcloud reads plain Values only: func settings decrypt",
            path.display()
        );
    }
    let mut values = BTreeMap::new();
    let mut skipped = Vec::new();
    let Some(map) = doc.get("Values") else {
        return Ok((values, skipped));
    };
    let map = map
        .as_object()
        .with_context(|| format!("{}: Values must be an object", path.display()))?;
    for (name, value) in map {
        // The Functions host takes strings; func also accepts numbers and booleans and uses their text.
        let text = match value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(_) | serde_json::Value::Bool(_) => value.to_string(),
            other => bail!(
                "{}: Values.{name} must be a string, not {other}",
                path.display()
            ),
        };
        if WIRING.contains(&name.as_str()) {
            skipped.push(name.clone());
        } else {
            values.insert(name.clone(), text);
        }
    }
    Ok((values, skipped))
}

/// `NAME=VALUE` (the value may contain `=`).
pub fn parse_assignment(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("expected NAME=VALUE, got {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_read_wiring_is_skipped() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(
            dir.path().join(LOCAL_SETTINGS),
            r#"{"IsEncrypted": false, "Values": {"GALLEON_GALLERY": "mine", "GALLEON_MAX_ATTEMPTS": 3,
                "GALLEON_ARM_ENDPOINT": "https://127.0.0.1:7443", "IDENTITY_HEADER": "x"}}"#,
        )
        .expect("write");
        let (values, skipped) = local_settings(dir.path()).expect("read");
        assert_eq!(values["GALLEON_GALLERY"], "mine");
        assert_eq!(values["GALLEON_MAX_ATTEMPTS"], "3");
        assert!(!values.contains_key("GALLEON_ARM_ENDPOINT"));
        assert_eq!(skipped, ["GALLEON_ARM_ENDPOINT", "IDENTITY_HEADER"]);
    }

    #[test]
    fn missing_file_is_empty_and_bad_files_say_why() {
        let dir = tempfile::tempdir().expect("dir");
        assert!(local_settings(dir.path()).expect("none").0.is_empty());
        std::fs::write(dir.path().join(LOCAL_SETTINGS), r#"{"IsEncrypted": true}"#).expect("w");
        let e = local_settings(dir.path()).expect_err("encrypted");
        assert!(format!("{e:#}").contains("encrypted"));
        std::fs::write(dir.path().join(LOCAL_SETTINGS), r#"{"Values": {"A": [1]}}"#).expect("w");
        let e = local_settings(dir.path()).expect_err("array");
        assert!(format!("{e:#}").contains("Values.A"));
    }

    #[test]
    fn assignments() {
        assert_eq!(
            parse_assignment("A=b=c"),
            Ok(("A".to_owned(), "b=c".to_owned()))
        );
        assert_eq!(parse_assignment("A="), Ok(("A".to_owned(), String::new())));
        assert!(parse_assignment("=x").is_err());
        assert!(parse_assignment("novalue").is_err());
    }
}
