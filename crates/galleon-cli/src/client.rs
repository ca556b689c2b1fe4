//! Where the app is and how to ask it: the URL and function key (flags, environment, or the local
//! cloud's connection file), one GET, and every way it can go wrong as a cause and a fix.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// What went wrong, what to do, and the exit code that says it: 3 not found, 4 refused (key), 5 the app
/// could not be reached or failed, 6 the local setup is incomplete, 7 galleon refused the request (a
/// version it did not publish). (2: bad usage, from clap or the app.)
#[derive(Debug)]
pub struct Problem {
    cause: String,
    fix: String,
    code: u8,
}

impl Problem {
    pub fn local(cause: impl Into<String>, fix: impl Into<String>) -> Problem {
        Problem {
            cause: cause.into(),
            fix: fix.into(),
            code: 6,
        }
    }

    /// The app could not be reached or failed for now (exit 5): worth another look.
    pub fn passing(&self) -> bool {
        self.code == 5
    }

    pub fn cause(&self) -> &str {
        &self.cause
    }

    pub fn exit(&self) -> std::process::ExitCode {
        eprintln!("galleon: {}", self.cause);
        if !self.fix.is_empty() {
            eprintln!("fix: {}", self.fix);
        }
        std::process::ExitCode::from(self.code)
    }
}

/// A path segment as it may go in a URL (a run id is a GUID; anything else is escaped).
pub fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
}

/// The local cloud's connection file, from the current directory up (`.devcloud/connection.json`).
fn connection_file(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|d| d.join(".devcloud/connection.json"))
        .find(|p| p.is_file())
}

impl Client {
    /// `--url`, else `GALLEON_URL` (with `GALLEON_FUNCTIONS_KEY`), else the running local cloud.
    pub fn from_environment(url: Option<&str>) -> Result<Client, Problem> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let (base, key) = match url.map(str::to_owned).or_else(|| env("GALLEON_URL")) {
            Some(base) => (base, env("GALLEON_FUNCTIONS_KEY")),
            None => {
                let here = std::env::current_dir().unwrap_or_default();
                let file = connection_file(&here).ok_or_else(|| {
                    Problem::local(
                        "no galleon app to ask: GALLEON_URL is not set and no local cloud runs here (.devcloud/connection.json)",
                        "start the local cloud (target/release/devcloud up), or set GALLEON_URL=https://<app>.azurewebsites.net and GALLEON_FUNCTIONS_KEY=<a function or host key>",
                    )
                })?;
                let text = std::fs::read_to_string(&file).map_err(|e| {
                    Problem::local(format!("cannot read {}: {e}", file.display()), "")
                })?;
                let connection: Value = serde_json::from_str(&text).map_err(|e| {
                    Problem::local(
                        format!(
                            "{} is not the local cloud's connection file: {e}",
                            file.display()
                        ),
                        "restart the local cloud (devcloud up) to write it again",
                    )
                })?;
                let field = |name: &str| {
                    connection
                        .get(name)
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                };
                let base = field("functionsHost").ok_or_else(|| {
                    Problem::local(
                        format!("{} names no functionsHost", file.display()),
                        "restart the local cloud (devcloud up) with this version",
                    )
                })?;
                (
                    base,
                    field("functionsKey").or_else(|| env("GALLEON_FUNCTIONS_KEY")),
                )
            }
        };
        // reqwest is built without a crypto provider of its own: rustls's ring one (as the handler).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(60))
            .user_agent(concat!("galleon-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Problem::local(format!("cannot make an HTTP client: {e}"), ""))?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
            key,
        })
    }

    /// GETs `path` (under the base URL) as JSON; a refusal becomes a problem with its fix.
    pub async fn get(&self, path: &str) -> Result<Value, Problem> {
        self.send(self.http.get(format!("{}/{path}", self.base)))
            .await
    }

    /// POSTs `body` to `path` (under the base URL); answers as [`Client::get`].
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, Problem> {
        self.send(self.http.post(format!("{}/{path}", self.base)).json(body))
            .await
    }

    async fn send(&self, mut request: reqwest::RequestBuilder) -> Result<Value, Problem> {
        if let Some(key) = &self.key {
            request = request.header("x-functions-key", key);
        }
        let response = request.send().await.map_err(|e| Problem {
            cause: format!("{} did not answer: {e}", self.base),
            fix: "check GALLEON_URL (or that the local cloud is up)".into(),
            code: 5,
        })?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let said = body
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("HTTP {status}"));
        match status {
            200..=299 => Ok(body),
            401 | 403 => Err(Problem {
                cause: format!("{} refused the key (HTTP {status})", self.base),
                fix: "set GALLEON_FUNCTIONS_KEY to a function key of Runs or a host key (Azure portal: the function app, App keys)".into(),
                code: 4,
            }),
            404 => Err(Problem {
                cause: said,
                fix: "`galleon status` lists the recent runs".into(),
                code: 3,
            }),
            400 => Err(Problem {
                cause: said,
                fix: "see `galleon --help`".into(),
                code: 2,
            }),
            409 => Err(Problem {
                cause: said,
                // galleon's refusal names its own fix (a version it did not publish, a region it cannot add).
                fix: String::new(),
                code: 7,
            }),
            _ => Err(Problem {
                cause: format!("{} answered HTTP {status}: {said}", self.base),
                fix: "try again; if it lasts, read the function app's logs".into(),
                code: 5,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_go_into_urls_escaped() {
        assert_eq!(segment("629cc102-bfd2"), "629cc102-bfd2");
        assert_eq!(segment("../a b"), "%2E%2E%2Fa%20b");
    }

    #[test]
    fn the_connection_file_is_found_from_below() {
        let dir = std::env::temp_dir().join(format!("galleon-cli-{}", std::process::id()));
        let deep = dir.join("a/b");
        std::fs::create_dir_all(&deep).expect("dirs");
        std::fs::create_dir_all(dir.join(".devcloud")).expect("dir");
        std::fs::write(dir.join(".devcloud/connection.json"), "{}").expect("file");
        assert_eq!(
            connection_file(&deep),
            Some(dir.join(".devcloud/connection.json"))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
