//! Galleon's configuration: app settings from the environment, validated once at start-up with an error
//! that names the setting and the expected form. Every setting is listed in `local.settings.example.json`.

use std::fmt;

/// How log lines are written to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (for Application Insights and log shippers).
    Json,
    /// Human-readable lines (for a terminal).
    Text,
}

/// Everything galleon reads from its app settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `FUNCTIONS_CUSTOMHANDLER_PORT`: set by the Functions host.
    pub port: u16,
    /// `GALLEON_INSTANCE`: names this deployment in every fact's `source` (`urn:galleon:<instance>`).
    pub instance: String,
    /// `GALLEON_MAX_INVOCATION_BYTES`: largest invocation body accepted.
    pub max_invocation_bytes: usize,
    /// `GALLEON_LOG_FORMAT`: `json` (default) or `text`.
    pub log_format: LogFormat,
}

/// A setting that is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub setting: &'static str,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "app setting {}: {}", self.setting, self.problem)
    }
}

impl std::error::Error for ConfigError {}

fn err(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        problem: problem.into(),
    }
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (the environment, or a table in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };

        let port = match get("FUNCTIONS_CUSTOMHANDLER_PORT") {
            None => {
                return Err(err(
                    "FUNCTIONS_CUSTOMHANDLER_PORT",
                    "is not set; the Functions host sets it when it starts galleon (to run galleon by hand, set it to a free port such as 7072)",
                ));
            }
            Some(v) => v.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                err(
                    "FUNCTIONS_CUSTOMHANDLER_PORT",
                    format!("'{v}' is not a TCP port (1-65535)"),
                )
            })?,
        };

        let instance = get("GALLEON_INSTANCE")
            .or_else(|| get("WEBSITE_SITE_NAME"))
            .unwrap_or_else(|| "local".to_owned());
        if instance.len() > 64
            || !instance
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(err(
                "GALLEON_INSTANCE",
                format!(
                    "'{instance}' must be 1-64 letters, digits, '.', '_' or '-' (it becomes urn:galleon:<instance>)"
                ),
            ));
        }

        let max_invocation_bytes = match get("GALLEON_MAX_INVOCATION_BYTES") {
            None => 4 * 1024 * 1024,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (64 * 1024..=256 * 1024 * 1024).contains(n))
                .ok_or_else(|| {
                    err(
                        "GALLEON_MAX_INVOCATION_BYTES",
                        format!("'{v}' must be a byte count from 65536 to 268435456"),
                    )
                })?,
        };

        let log_format = match get("GALLEON_LOG_FORMAT").as_deref() {
            None | Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            Some(other) => {
                return Err(err(
                    "GALLEON_LOG_FORMAT",
                    format!("'{other}' must be 'json' or 'text'"),
                ));
            }
        };

        Ok(Config {
            port,
            instance,
            max_invocation_bytes,
            log_format,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_with_only_the_port() {
        let c = config(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "7072")]).expect("valid");
        assert_eq!(c.port, 7072);
        assert_eq!(c.instance, "local");
        assert_eq!(c.max_invocation_bytes, 4 * 1024 * 1024);
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn instance_falls_back_to_the_site_name() {
        let c = config(&[
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "1"),
            ("WEBSITE_SITE_NAME", "func-galleon-prod"),
        ])
        .expect("valid");
        assert_eq!(c.instance, "func-galleon-prod");
    }

    #[test]
    fn each_bad_setting_is_named() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "FUNCTIONS_CUSTOMHANDLER_PORT"),
            (
                &[("FUNCTIONS_CUSTOMHANDLER_PORT", "http")],
                "FUNCTIONS_CUSTOMHANDLER_PORT",
            ),
            (
                &[("FUNCTIONS_CUSTOMHANDLER_PORT", "0")],
                "FUNCTIONS_CUSTOMHANDLER_PORT",
            ),
            (
                &[("FUNCTIONS_CUSTOMHANDLER_PORT", "70000")],
                "FUNCTIONS_CUSTOMHANDLER_PORT",
            ),
            (
                &[
                    ("FUNCTIONS_CUSTOMHANDLER_PORT", "7072"),
                    ("GALLEON_INSTANCE", "has space"),
                ],
                "GALLEON_INSTANCE",
            ),
            (
                &[
                    ("FUNCTIONS_CUSTOMHANDLER_PORT", "7072"),
                    ("GALLEON_MAX_INVOCATION_BYTES", "12"),
                ],
                "GALLEON_MAX_INVOCATION_BYTES",
            ),
            (
                &[
                    ("FUNCTIONS_CUSTOMHANDLER_PORT", "7072"),
                    ("GALLEON_LOG_FORMAT", "xml"),
                ],
                "GALLEON_LOG_FORMAT",
            ),
        ];
        for (pairs, setting) in cases {
            let e = config(pairs).expect_err("must be rejected");
            assert_eq!(e.setting, *setting, "{pairs:?}");
            assert!(e.to_string().contains(setting));
        }
    }
}
