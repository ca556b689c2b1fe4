//! The Azure Functions custom-handler protocol, and nothing else: the envelope the host POSTs to
//! `/{FunctionName}`, its value encoding, the readiness probe and the answer it expects. Functions never see
//! HTTP or the host's quirks; they get a typed [`Invocation`] and give back an [`Output`].

mod envelope;
mod logs;
mod server;
pub mod trigger;
pub mod values;

use std::{collections::BTreeMap, fmt, future::Future, pin::Pin, sync::Arc};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

pub use logs::{Route, Sink, capture as capture_logs, stdout::flush as flush_stdout};
pub use server::{Limits, Server, router};
pub use trigger::{
    BusMessage, GridEvent, GridSchema, HttpRequest, TimerTick, Trigger, TriggerKind,
};

/// One invocation of one function, decoded.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub function: String,
    /// `X-Azure-Functions-InvocationId`, or a fresh id when the caller sent none.
    pub invocation_id: String,
    /// W3C trace context of the host's request, when it sent one.
    pub traceparent: Option<String>,
    pub trigger: Trigger,
    /// `Metadata.sys.UtcNow`: the host's clock when it invoked.
    pub host_time: Option<DateTime<Utc>>,
    /// `Metadata.RetryContext.RetryCount` when a host retry policy is active.
    pub retry_count: Option<u32>,
}

/// What a function gives back: values for its output bindings, keyed by binding name, and an optional
/// `$return` value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    pub bindings: BTreeMap<String, Value>,
    pub return_value: Option<Value>,
}

impl Output {
    pub fn binding(mut self, name: &str, value: Value) -> Self {
        self.bindings.insert(name.to_owned(), value);
        self
    }
}

/// A failure the host should retry: the answer is non-2xx, so Service Bus abandons (and finally dead-letters)
/// and Event Grid redelivers. Bad *user input* is not a failure; it is an output carrying a rejection.
#[derive(Debug)]
pub struct Failure {
    error: Box<dyn std::error::Error + Send + Sync>,
}

impl Failure {
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Failure {
            error: error.into(),
        }
    }

    /// The error with its whole cause chain, `outer: inner: innermost`.
    pub fn chain(&self) -> String {
        crate::error_chain(&*self.error)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.chain())
    }
}

pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Output, Failure>> + Send>>;
type HandlerFn = dyn Fn(Invocation) -> HandlerFuture + Send + Sync;

/// How one function is bound: its trigger, the trigger's binding name, the output bindings it may fill.
#[derive(Clone)]
pub struct FunctionSpec {
    pub name: String,
    pub trigger: TriggerKind,
    pub trigger_binding: String,
    pub outputs: Vec<String>,
    handler: Arc<HandlerFn>,
}

impl fmt::Debug for FunctionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FunctionSpec")
            .field("name", &self.name)
            .field("trigger", &self.trigger)
            .field("trigger_binding", &self.trigger_binding)
            .field("outputs", &self.outputs)
            .finish()
    }
}

/// The functions this handler serves, by function name (the folder name under `functions/`).
#[derive(Clone, Default, Debug)]
pub struct App {
    functions: BTreeMap<String, FunctionSpec>,
}

impl App {
    pub fn new() -> Self {
        App::default()
    }

    /// Registers `handler` as function `name`, triggered by `trigger` through binding `trigger_binding`,
    /// allowed to fill the output bindings `outputs`.
    pub fn function<F, Fut>(
        mut self,
        name: &str,
        trigger: TriggerKind,
        trigger_binding: &str,
        outputs: &[&str],
        handler: F,
    ) -> Self
    where
        F: Fn(Invocation) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Output, Failure>> + Send + 'static,
    {
        let handler: Arc<HandlerFn> = Arc::new(move |inv| Box::pin(handler(inv)));
        self.functions.insert(
            name.to_owned(),
            FunctionSpec {
                name: name.to_owned(),
                trigger,
                trigger_binding: trigger_binding.to_owned(),
                outputs: outputs.iter().map(|s| (*s).to_owned()).collect(),
                handler,
            },
        );
        self
    }

    pub fn get(&self, name: &str) -> Option<&FunctionSpec> {
        self.functions.get(name)
    }

    pub fn functions(&self) -> impl Iterator<Item = &FunctionSpec> {
        self.functions.values()
    }
}

impl FunctionSpec {
    pub(crate) fn call(&self, invocation: Invocation) -> HandlerFuture {
        (self.handler)(invocation)
    }
}

/// The answer body the host expects: `{"Outputs", "Logs", "ReturnValue"}`.
pub fn answer(output: &Output, logs: Vec<String>) -> Value {
    let outputs: Map<String, Value> = output
        .bindings
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    serde_json::json!({
        "Outputs": outputs,
        "Logs": logs,
        "ReturnValue": output.return_value.clone().unwrap_or(Value::Null),
    })
}
