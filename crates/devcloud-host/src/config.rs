//! Loading a function app: host.json, app settings (local.settings.json + overrides) and
//! `function.json` files (`<Name>/function.json` at the app root, as the Functions host reads them), with
//! validation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::ncrontab::{Schedule, parse_host_timespan};

/// A problem with the function app (the messages are meant for a person).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid function app:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// Where a Service Bus binding points.
#[derive(Debug, Clone, PartialEq)]
pub enum Entity {
    Queue(String),
    Subscription { topic: String, subscription: String },
    Topic(String),
}

impl Entity {
    /// The REST path of the entity (`queue`, `topic/subscriptions/sub`).
    pub fn path(&self) -> String {
        match self {
            Entity::Queue(q) => q.clone(),
            Entity::Topic(t) => t.clone(),
            Entity::Subscription {
                topic,
                subscription,
            } => format!("{topic}/subscriptions/{subscription}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum AuthLevel {
    Anonymous,
    Function,
    Admin,
}

/// The one trigger of a function.
#[derive(Debug, Clone)]
pub enum Trigger {
    ServiceBus {
        name: String,
        entity: Entity,
        connection: String,
        binary: bool,
    },
    EventGrid {
        name: String,
    },
    Timer {
        name: String,
        schedule_text: String,
        schedule: Schedule,
        run_on_startup: bool,
        use_monitor: Option<bool>,
    },
    Http {
        name: String,
        route: Option<String>,
        methods: Vec<String>,
        auth_level: AuthLevel,
    },
}

impl Trigger {
    pub fn binding_name(&self) -> &str {
        match self {
            Trigger::ServiceBus { name, .. }
            | Trigger::EventGrid { name }
            | Trigger::Timer { name, .. }
            | Trigger::Http { name, .. } => name,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Trigger::ServiceBus { .. } => "serviceBusTrigger",
            Trigger::EventGrid { .. } => "eventGridTrigger",
            Trigger::Timer { .. } => "timerTrigger",
            Trigger::Http { .. } => "httpTrigger",
        }
    }
}

/// An output binding the host applies.
#[derive(Debug, Clone)]
pub enum Output {
    Http {
        name: String,
    },
    ServiceBus {
        name: String,
        entity: Entity,
        connection: String,
        binary: bool,
    },
    EventGrid {
        name: String,
        /// Resolved topic endpoint URI.
        endpoint: String,
        /// Resolved access key, when `topicKeySetting` is used.
        key: Option<String>,
    },
    /// A binding type the local host does not write (blob, queue, ...): logged and skipped.
    Unsupported {
        name: String,
        kind: String,
    },
}

impl Output {
    pub fn name(&self) -> &str {
        match self {
            Output::Http { name }
            | Output::ServiceBus { name, .. }
            | Output::EventGrid { name, .. }
            | Output::Unsupported { name, .. } => name,
        }
    }
}

#[derive(Debug, Clone)]
pub struct FunctionDef {
    /// The folder name, verbatim: the handler path is `/{name}`.
    pub name: String,
    pub dir: PathBuf,
    pub trigger: Trigger,
    pub outputs: Vec<Output>,
    /// Input bindings besides the trigger (not supported locally, kept for listing).
    pub other_inputs: Vec<String>,
    /// `retry` from function.json, else host.json (applied to timer triggers, as in Azure).
    pub retry: Option<RetryPolicy>,
}

/// A function retry policy (`fixedDelay` or `exponentialBackoff`).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; -1 = forever.
    pub max_retry_count: i64,
    pub strategy: RetryStrategy,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RetryStrategy {
    FixedDelay(Duration),
    ExponentialBackoff {
        minimum: Duration,
        maximum: Duration,
    },
}

impl RetryPolicy {
    /// Delay before retry number `retry` (1-based).
    pub fn delay(&self, retry: u32) -> Duration {
        match &self.strategy {
            RetryStrategy::FixedDelay(d) => *d,
            RetryStrategy::ExponentialBackoff { minimum, maximum } => {
                let factor = 2u32.saturating_pow(retry.saturating_sub(1).min(20));
                minimum.saturating_mul(factor).min(*maximum)
            }
        }
    }

    /// Whether retry number `retry` (1-based) may run.
    pub fn allows(&self, retry: u32) -> bool {
        self.max_retry_count < 0 || i64::from(retry) <= self.max_retry_count
    }

    fn parse(v: &Value, what: &str, problems: &mut Vec<String>) -> Option<Self> {
        let strategy = str_field(v, "strategy").unwrap_or("").to_ascii_lowercase();
        let Some(max_retry_count) = field(v, "maxRetryCount").and_then(Value::as_i64) else {
            problems.push(format!("{what}: retry needs an integer maxRetryCount"));
            return None;
        };
        let span = |k: &str, problems: &mut Vec<String>| match str_field(v, k)
            .and_then(parse_host_timespan)
        {
            Some(d) => Some(d),
            None => {
                problems.push(format!("{what}: retry needs {k} as a TimeSpan (hh:mm:ss)"));
                None
            }
        };
        let strategy = match strategy.as_str() {
            "fixeddelay" => RetryStrategy::FixedDelay(span("delayInterval", problems)?),
            "exponentialbackoff" => RetryStrategy::ExponentialBackoff {
                minimum: span("minimumInterval", problems)?,
                maximum: span("maximumInterval", problems)?,
            },
            other => {
                problems.push(format!(
                    "{what}: unknown retry strategy {other:?} (fixedDelay or exponentialBackoff)"
                ));
                return None;
            }
        };
        Some(Self {
            max_retry_count,
            strategy,
        })
    }
}

/// `customHandler.description`.
#[derive(Debug, Clone)]
pub struct HandlerDescription {
    pub executable: PathBuf,
    pub arguments: Vec<String>,
    pub working_dir: PathBuf,
}

/// `extensions.serviceBus` knobs the host honours.
#[derive(Debug, Clone)]
pub struct ServiceBusOptions {
    pub max_concurrent_calls: usize,
    pub max_auto_lock_renewal: Duration,
    pub auto_complete: bool,
}

/// A loaded, validated function app.
#[derive(Debug, Clone)]
pub struct FunctionApp {
    pub root: PathBuf,
    pub host_json: Value,
    pub settings: BTreeMap<String, String>,
    pub handler: HandlerDescription,
    pub functions: Vec<FunctionDef>,
    pub service_bus: ServiceBusOptions,
    pub function_timeout: Option<Duration>,
    pub route_prefix: String,
    /// `Host.LocalHttpPort` from local.settings.json (Core Tools' default port, 7071 if absent).
    pub local_http_port: Option<u16>,
}

fn read_json(path: &Path) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    // host.json and function.json may carry a BOM.
    serde_json::from_str(text.trim_start_matches('\u{feff}')).map_err(|source| ConfigError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Replace `%NAME%` with app settings; unknown names are reported.
pub fn expand_settings(text: &str, settings: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('%') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('%') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = &after[..end];
        match settings.get(name) {
            Some(v) => out.push_str(v),
            None => {
                return Err(format!(
                    "app setting {name:?} (referenced as %{name}%) is not set"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn str_field<'a>(b: &'a Value, key: &str) -> Option<&'a str> {
    // function.json property names are case-insensitive in the host.
    b.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .and_then(|(_, v)| v.as_str())
}

fn field<'a>(b: &'a Value, key: &str) -> Option<&'a Value> {
    b.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

fn bool_field(b: &Value, key: &str) -> Option<bool> {
    match field(b, key)? {
        Value::Bool(v) => Some(*v),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

impl FunctionApp {
    /// Load `app_dir`. `overrides` win over `local.settings.json` `Values`.
    pub fn load(app_dir: &Path, overrides: BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let root = app_dir.canonicalize().map_err(|source| ConfigError::Read {
            path: app_dir.to_path_buf(),
            source,
        })?;
        let host_json = read_json(&root.join("host.json"))?;
        let mut settings = BTreeMap::new();
        let mut local_http_port = None;
        let local = root.join("local.settings.json");
        if local.exists() {
            let v = read_json(&local)?;
            local_http_port = v
                .pointer("/Host/LocalHttpPort")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok());
            if let Some(values) = v.get("Values").and_then(Value::as_object) {
                for (k, v) in values {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    settings.insert(k.clone(), text);
                }
            }
        }
        settings.extend(overrides);

        let mut problems = Vec::new();
        let handler = parse_handler(&root, &host_json, &settings, &mut problems);
        let service_bus = parse_service_bus(&host_json, &mut problems);
        let function_timeout = match host_json.get("functionTimeout").and_then(Value::as_str) {
            None => None,
            Some(t) => parse_host_timespan(t),
        };
        let route_prefix = host_json
            .pointer("/extensions/http/routePrefix")
            .and_then(Value::as_str)
            .unwrap_or("api")
            .trim_matches('/')
            .to_string();
        let allow: Option<Vec<String>> =
            host_json
                .get("functions")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                });

        let mut functions = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for dir in function_dirs(&root) {
            let Some(name) = dir.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
                continue;
            };
            if let Some(allow) = &allow
                && !allow.iter().any(|a| a.eq_ignore_ascii_case(&name))
            {
                continue;
            }
            if !seen.insert(name.to_ascii_lowercase()) {
                problems.push(format!("function {name:?} is defined twice"));
                continue;
            }
            let json = match read_json(&dir.join("function.json")) {
                Ok(j) => j,
                Err(e) => {
                    problems.push(format!("{e}: {}", error_chain(&e)));
                    continue;
                }
            };
            let disabled = bool_field(&json, "disabled").unwrap_or(false)
                || settings
                    .get(&format!("AzureWebJobs.{name}.Disabled"))
                    .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
            if disabled {
                continue;
            }
            if let Some(f) = parse_function(&name, &dir, &json, &settings, &mut problems) {
                functions.push(f);
            }
        }
        if functions.is_empty() && problems.is_empty() {
            problems.push(format!(
                "no function.json found under {} (the Functions host reads <Name>/function.json at the app root; a repository keeping functions/<Name>/ is laid out as the release package is, by devcloud for the local cloud and by scripts/package.sh for Azure)",
                root.display()
            ));
        }
        if !problems.is_empty() {
            return Err(ConfigError::Invalid(problems));
        }
        let host_retry = host_json
            .get("retry")
            .and_then(|r| RetryPolicy::parse(r, "host.json", &mut problems));
        for f in &mut functions {
            if f.retry.is_none() {
                f.retry = host_retry.clone();
            }
        }
        if !problems.is_empty() {
            return Err(ConfigError::Invalid(problems));
        }
        functions.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Self {
            root,
            host_json,
            settings,
            handler,
            functions,
            service_bus,
            function_timeout,
            route_prefix,
            local_http_port,
        })
    }

    pub fn function(&self, name: &str) -> Option<&FunctionDef> {
        self.functions
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    parts.join(": ")
}

/// The function folders: `<Name>/function.json` at the app root, the only place the Functions host reads
/// them from (a `functions/<Name>` folder is not a function).
fn function_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("function.json").is_file())
        .collect();
    out.sort();
    out
}

fn parse_handler(
    root: &Path,
    host: &Value,
    settings: &BTreeMap<String, String>,
    problems: &mut Vec<String>,
) -> HandlerDescription {
    let ch = host.get("customHandler").or_else(|| host.get("httpWorker"));
    let desc = ch.and_then(|c| c.get("description"));
    let exe = desc
        .and_then(|d| str_field(d, "defaultExecutablePath"))
        .unwrap_or_default();
    if desc.is_none() {
        problems.push("host.json: customHandler.description is missing".into());
    } else if exe.is_empty() {
        problems
            .push("host.json: customHandler.description.defaultExecutablePath is missing".into());
    }
    let mut arguments = Vec::new();
    for a in desc
        .and_then(|d| field(d, "arguments"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match a.as_str().map(|s| expand_settings(s, settings)) {
            Some(Ok(s)) => arguments.push(s),
            Some(Err(e)) => problems.push(format!("host.json customHandler arguments: {e}")),
            None => problems.push("host.json customHandler arguments must be strings".into()),
        }
    }
    let wd = desc
        .and_then(|d| str_field(d, "workingDirectory"))
        .unwrap_or("");
    let working_dir = if wd.is_empty() {
        root.to_path_buf()
    } else {
        root.join(wd)
    };
    // Relative paths resolve against the app root when the file exists there, else via PATH.
    let candidate = root.join(exe);
    let executable = if Path::new(exe).is_absolute() || candidate.is_file() {
        candidate
    } else {
        PathBuf::from(exe)
    };
    HandlerDescription {
        executable,
        arguments,
        working_dir,
    }
}

fn parse_service_bus(host: &Value, problems: &mut Vec<String>) -> ServiceBusOptions {
    let sb = host.pointer("/extensions/serviceBus");
    let max_concurrent_calls = match sb.and_then(|s| s.get("maxConcurrentCalls")) {
        None => 16,
        Some(v) => {
            match v.as_u64() {
                Some(n) if n >= 1 => n as usize,
                _ => {
                    problems.push("host.json extensions.serviceBus.maxConcurrentCalls must be a positive integer".into());
                    16
                }
            }
        }
    };
    let max_auto_lock_renewal = sb
        .and_then(|s| s.get("maxAutoLockRenewalDuration"))
        .and_then(Value::as_str)
        .and_then(parse_host_timespan)
        .unwrap_or(Duration::from_secs(300));
    let auto_complete = sb
        .and_then(|s| s.get("autoCompleteMessages"))
        .and_then(Value::as_bool)
        .unwrap_or(true);
    ServiceBusOptions {
        max_concurrent_calls,
        max_auto_lock_renewal,
        auto_complete,
    }
}

/// Does the app define the Service Bus connection named `conn`?
fn has_sb_connection(conn: &str, settings: &BTreeMap<String, String>) -> bool {
    settings.contains_key(conn)
        || settings.contains_key(&format!("{conn}__fullyQualifiedNamespace"))
        || settings.contains_key(&format!("AzureWebJobs{conn}"))
}

fn parse_entity(
    b: &Value,
    settings: &BTreeMap<String, String>,
    what: &str,
    problems: &mut Vec<String>,
) -> Option<Entity> {
    let expand = |key: &str, problems: &mut Vec<String>| -> Option<String> {
        let raw = str_field(b, key)?;
        match expand_settings(raw, settings) {
            Ok(v) => Some(v),
            Err(e) => {
                problems.push(format!("{what}: {key}: {e}"));
                None
            }
        }
    };
    let queue = expand("queueName", problems);
    let topic = expand("topicName", problems);
    let sub = expand("subscriptionName", problems);
    match (queue, topic, sub) {
        (Some(q), None, None) => Some(Entity::Queue(q)),
        (None, Some(t), Some(s)) => Some(Entity::Subscription {
            topic: t,
            subscription: s,
        }),
        (None, Some(t), None) => Some(Entity::Topic(t)),
        _ => {
            problems.push(format!(
                "{what}: needs queueName, or topicName (+ subscriptionName for a trigger)"
            ));
            None
        }
    }
}

fn parse_function(
    name: &str,
    dir: &Path,
    json: &Value,
    settings: &BTreeMap<String, String>,
    problems: &mut Vec<String>,
) -> Option<FunctionDef> {
    let Some(bindings) = field(json, "bindings").and_then(Value::as_array) else {
        problems.push(format!(
            "function {name}: function.json has no \"bindings\" array"
        ));
        return None;
    };
    let mut trigger = None;
    let mut outputs = Vec::new();
    let mut other_inputs = Vec::new();
    let start = problems.len();
    for (i, b) in bindings.iter().enumerate() {
        let kind = str_field(b, "type").unwrap_or("");
        let what = format!("function {name}: binding #{i} ({kind})");
        let Some(bname) = str_field(b, "name").filter(|n| !n.is_empty()) else {
            problems.push(format!("{what}: missing \"name\""));
            continue;
        };
        let bname = bname.to_string();
        let direction = str_field(b, "direction")
            .unwrap_or("in")
            .to_ascii_lowercase();
        let connection = |default: &str| str_field(b, "connection").unwrap_or(default).to_string();
        let binary = str_field(b, "dataType").is_some_and(|d| d.eq_ignore_ascii_case("binary"));
        let lower = kind.to_ascii_lowercase();
        if lower.ends_with("trigger") {
            if trigger.is_some() {
                problems.push(format!("{what}: a function has exactly one trigger"));
                continue;
            }
            let t = match lower.as_str() {
                "servicebustrigger" => {
                    let conn = connection("ServiceBus");
                    if !has_sb_connection(&conn, settings) {
                        problems.push(format!(
                            "{what}: connection {conn:?}: neither app setting {conn:?} nor {conn}__fullyQualifiedNamespace is set"
                        ));
                    }
                    if bool_field(b, "isSessionsEnabled").unwrap_or(false) {
                        problems.push(format!(
                            "{what}: isSessionsEnabled is not supported by the local host"
                        ));
                    }
                    if str_field(b, "cardinality").is_some_and(|c| c.eq_ignore_ascii_case("many")) {
                        problems.push(format!(
                            "{what}: cardinality \"many\" (batches) is not supported by the local host"
                        ));
                    }
                    parse_entity(b, settings, &what, problems).map(|entity| Trigger::ServiceBus {
                        name: bname,
                        entity,
                        connection: conn,
                        binary,
                    })
                }
                "eventgridtrigger" => Some(Trigger::EventGrid { name: bname }),
                "timertrigger" => {
                    let raw = str_field(b, "schedule").unwrap_or("");
                    if raw.is_empty() {
                        problems.push(format!("{what}: missing \"schedule\""));
                        None
                    } else {
                        match expand_settings(raw, settings)
                            .and_then(|text| Schedule::parse(&text).map(|s| (text, s)))
                        {
                            Ok((schedule_text, schedule)) => Some(Trigger::Timer {
                                name: bname,
                                schedule_text,
                                schedule,
                                run_on_startup: bool_field(b, "runOnStartup").unwrap_or(false),
                                use_monitor: bool_field(b, "useMonitor"),
                            }),
                            Err(e) => {
                                problems.push(format!("{what}: {e}"));
                                None
                            }
                        }
                    }
                }
                "httptrigger" => {
                    let methods = field(b, "methods")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_ascii_uppercase)
                                .collect()
                        })
                        .unwrap_or_default();
                    let auth_level = match str_field(b, "authLevel")
                        .unwrap_or("function")
                        .to_ascii_lowercase()
                        .as_str()
                    {
                        "anonymous" => AuthLevel::Anonymous,
                        "function" => AuthLevel::Function,
                        "admin" | "system" => AuthLevel::Admin,
                        other => {
                            problems.push(format!("{what}: unknown authLevel {other:?}"));
                            AuthLevel::Function
                        }
                    };
                    Some(Trigger::Http {
                        name: bname,
                        route: str_field(b, "route").map(|r| r.trim_matches('/').to_string()),
                        methods,
                        auth_level,
                    })
                }
                "blobtrigger" | "queuetrigger" | "cosmosdbtrigger" | "eventhubtrigger" => {
                    problems.push(format!(
                        "{what}: trigger type {kind:?} is not supported by the local host (supported: serviceBusTrigger, eventGridTrigger, timerTrigger, httpTrigger)"
                    ));
                    None
                }
                _ => {
                    problems.push(format!("{what}: unknown trigger type {kind:?}"));
                    None
                }
            };
            if let Some(t) = t {
                trigger = Some(t);
            }
            continue;
        }
        if direction == "out" || direction == "inout" {
            match lower.as_str() {
                "http" => outputs.push(Output::Http { name: bname }),
                "servicebus" => {
                    let conn = connection("ServiceBus");
                    if !has_sb_connection(&conn, settings) {
                        problems.push(format!(
                            "{what}: connection {conn:?}: neither app setting {conn:?} nor {conn}__fullyQualifiedNamespace is set"
                        ));
                    }
                    if let Some(entity) = parse_entity(b, settings, &what, problems) {
                        outputs.push(Output::ServiceBus {
                            name: bname,
                            entity,
                            connection: conn,
                            binary,
                        });
                    }
                }
                "eventgrid" => {
                    let endpoint = if let Some(setting) = str_field(b, "topicEndpointUri") {
                        let setting = setting.trim_matches('%');
                        settings.get(setting).cloned().or_else(|| {
                            problems.push(format!(
                                "{what}: topicEndpointUri names app setting {setting:?}, which is not set"
                            ));
                            None
                        })
                    } else if let Some(conn) = str_field(b, "connection") {
                        settings
                            .get(&format!("{conn}__topicEndpointUri"))
                            .cloned()
                            .or_else(|| {
                                problems.push(format!(
                                    "{what}: app setting {conn}__topicEndpointUri is not set"
                                ));
                                None
                            })
                    } else {
                        problems.push(format!("{what}: needs topicEndpointUri or connection"));
                        None
                    };
                    let key = match str_field(b, "topicKeySetting") {
                        Some(setting) => {
                            let setting = setting.trim_matches('%');
                            let v = settings.get(setting).cloned();
                            if v.is_none() {
                                problems.push(format!(
                                    "{what}: topicKeySetting names app setting {setting:?}, which is not set"
                                ));
                            }
                            v
                        }
                        None => None,
                    };
                    if let Some(endpoint) = endpoint {
                        outputs.push(Output::EventGrid {
                            name: bname,
                            endpoint,
                            key,
                        });
                    }
                }
                "" => problems.push(format!("{what}: missing \"type\"")),
                _ => outputs.push(Output::Unsupported {
                    name: bname,
                    kind: kind.to_string(),
                }),
            }
        } else if kind.is_empty() {
            problems.push(format!("{what}: missing \"type\""));
        } else {
            other_inputs.push(format!("{bname} ({kind})"));
        }
    }
    if trigger.is_none() && problems.len() == start {
        problems.push(format!("function {name}: no trigger binding"));
    }
    let retry = field(json, "retry")
        .and_then(|r| RetryPolicy::parse(r, &format!("function {name}"), problems));
    Some(FunctionDef {
        name: name.to_string(),
        dir: dir.to_path_buf(),
        trigger: trigger?,
        outputs,
        other_inputs,
        retry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    const HOST: &str = r#"{"version":"2.0","customHandler":{"description":{"defaultExecutablePath":"handler","arguments":["--x","%ARG%"]}},
        "extensions":{"serviceBus":{"maxConcurrentCalls":2}},"functionTimeout":"00:00:30"}"#;

    #[test]
    fn loads_the_root_layout_only_and_settings() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "host.json", HOST);
        write(
            d.path(),
            "local.settings.json",
            r#"{"Values":{"ARG":"a","SB__fullyQualifiedNamespace":"127.0.0.1:1","EVERY":"0 */5 * * * *"}}"#,
        );
        write(
            d.path(),
            "Tick/function.json",
            r#"{"bindings":[{"name":"timer","type":"timerTrigger","direction":"in","schedule":"%EVERY%"}]}"#,
        );
        write(
            d.path(),
            "Work/function.json",
            r#"{"bindings":[{"name":"msg","type":"serviceBusTrigger","topicName":"t","subscriptionName":"s","connection":"SB"},{"name":"out","type":"serviceBus","direction":"out","queueName":"q","connection":"SB"}]}"#,
        );
        // Not where the Functions host looks: not a function.
        write(
            d.path(),
            "functions/Elsewhere/function.json",
            r#"{"bindings":[{"name":"timer","type":"timerTrigger","direction":"in","schedule":"%EVERY%"}]}"#,
        );
        let mut over = BTreeMap::new();
        over.insert("ARG".to_string(), "b".to_string());
        let app = FunctionApp::load(d.path(), over).unwrap();
        assert_eq!(app.handler.arguments, vec!["--x", "b"]);
        assert_eq!(app.service_bus.max_concurrent_calls, 2);
        assert_eq!(app.function_timeout, Some(Duration::from_secs(30)));
        let names: Vec<_> = app.functions.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, vec!["Tick", "Work"]);
        match &app.function("work").unwrap().trigger {
            Trigger::ServiceBus { entity, .. } => assert_eq!(entity.path(), "t/subscriptions/s"),
            other => panic!("{other:?}"),
        }
        match &app.function("Tick").unwrap().trigger {
            Trigger::Timer { schedule_text, .. } => assert_eq!(schedule_text, "0 */5 * * * *"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reports_every_problem_clearly() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "host.json", HOST);
        write(
            d.path(),
            "A/function.json",
            r#"{"bindings":[{"name":"x","type":"fooTrigger"}]}"#,
        );
        write(
            d.path(),
            "B/function.json",
            r#"{"bindings":[{"type":"timerTrigger","schedule":"0 * * * * *"}]}"#,
        );
        write(
            d.path(),
            "C/function.json",
            r#"{"bindings":[{"name":"m","type":"serviceBusTrigger","queueName":"q","connection":"Missing"}]}"#,
        );
        write(
            d.path(),
            "D/function.json",
            r#"{"bindings":[{"name":"t","type":"timerTrigger","schedule":"%NOPE%"}]}"#,
        );
        write(
            d.path(),
            "E/function.json",
            r#"{"bindings":[{"name":"m","type":"serviceBusTrigger","queueName":"q","connection":"ARG","isSessionsEnabled":true,"cardinality":"many"}]}"#,
        );
        let err = FunctionApp::load(d.path(), BTreeMap::new())
            .unwrap_err()
            .to_string();
        for needle in [
            "unknown trigger type \"fooTrigger\"",
            "function B: binding #0 (timerTrigger): missing \"name\"",
            "connection \"Missing\"",
            "\"NOPE\"",
            "\"ARG\"",
            "isSessionsEnabled is not supported",
            "cardinality \"many\"",
        ] {
            assert!(err.contains(needle), "{needle} not in {err}");
        }
    }

    #[test]
    fn retry_policies() {
        let mut p = Vec::new();
        let fixed = RetryPolicy::parse(
            &serde_json::json!({"strategy":"fixedDelay","maxRetryCount":2,"delayInterval":"00:00:03"}),
            "t",
            &mut p,
        )
        .unwrap();
        assert_eq!(fixed.delay(5), Duration::from_secs(3));
        assert!(fixed.allows(2) && !fixed.allows(3));
        let exp = RetryPolicy::parse(
            &serde_json::json!({"strategy":"exponentialBackoff","maxRetryCount":-1,"minimumInterval":"00:00:10","maximumInterval":"00:00:30"}),
            "t",
            &mut p,
        )
        .unwrap();
        let delays: Vec<u64> = (1..=4).map(|n| exp.delay(n).as_secs()).collect();
        assert_eq!(delays, vec![10, 20, 30, 30]);
        assert!(exp.allows(1000));
        assert!(p.is_empty());
        assert!(
            RetryPolicy::parse(
                &serde_json::json!({"strategy":"x","maxRetryCount":1}),
                "t",
                &mut p
            )
            .is_none()
        );
        assert!(
            RetryPolicy::parse(
                &serde_json::json!({"strategy":"fixedDelay","maxRetryCount":1}),
                "t",
                &mut p
            )
            .is_none()
        );
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn expands_settings() {
        let mut s = BTreeMap::new();
        s.insert("A".to_string(), "1".to_string());
        assert_eq!(expand_settings("x%A%y%A%", &s).unwrap(), "x1y1");
        assert_eq!(expand_settings("100%", &s).unwrap(), "100%");
        assert!(expand_settings("%B%", &s).is_err());
    }
}
