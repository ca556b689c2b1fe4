//! Galleon's functions, one file each, and the table that binds them to their triggers. Each reads top to
//! bottom: decode the fact, decide, one effect on Azure, the facts to announce.

pub mod announce;
pub mod build_image;
pub mod control;
pub mod create_image;
pub mod ctx;
pub mod dead_letter_list;
pub mod dead_letters;
pub mod distribute;
pub mod follow_up;
pub mod foreign_image;
pub mod handled_at;
pub mod ingest;
pub mod ingest_build;
pub mod ingest_image;
pub mod lifecycle;
pub mod on_event;
pub mod operation;
pub mod owned;
pub mod pinned;
pub mod publish_request;
pub mod publish_version;
pub mod reannounce;
pub mod rebuild;
pub mod replicate_again;
pub mod replicate_version;
pub mod request_build;
pub mod requests;
pub mod resubmit;
pub mod runs;
pub mod schedule_builds;
pub mod schedule_lifecycle;
pub mod share_gallery;
pub mod status_page;
pub mod step;
pub mod step_error;
pub mod versions;

use std::sync::Arc;

use on_event::EventTry;
use step::{Ctx, StepFn};

use crate::{
    azure::{self, AzureError, Tokens, arm::Arm, blob::Blobs, bus::Bus},
    config::Config,
    events::Plan,
    host::{App, TriggerKind},
};

/// Why the functions could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{0}")]
    Identity(#[from] AzureError),
    #[error("app setting {setting}: {message}")]
    Setting {
        setting: &'static str,
        message: String,
    },
}

/// The clients every step uses, built once at start-up.
pub fn context(config: Config, tokens: Tokens) -> Result<Arc<Ctx>, SetupError> {
    let http = azure::http_client()?;
    let arm_endpoint = url::Url::parse(&config.arm_endpoint).map_err(|e| SetupError::Setting {
        setting: "GALLEON_ARM_ENDPOINT",
        message: format!("'{}' is not a URL: {e}", config.arm_endpoint),
    })?;
    let bus = Bus::new(
        http.clone(),
        &config.service_bus_namespace,
        &config.facts_topic,
        tokens.clone(),
    )
    .map_err(|e| SetupError::Setting {
        setting: "ServiceBusConnection__fullyQualifiedNamespace",
        message: format!(
            "'{}' does not make a URL: {e}",
            config.service_bus_namespace
        ),
    })?;
    let blobs = Blobs::new(tokens.clone());
    Ok(Arc::new(Ctx {
        arm: Arm::new(http.clone(), arm_endpoint, tokens),
        ledger: crate::ledger::Ledger::new(blobs.clone(), &config.state_container_url),
        journal: crate::journal::Journal::new(blobs.clone(), &config.state_container_url),
        known: crate::known::Known::new(config.known_for),
        pace: crate::pace::Pace::new(
            config.arm_reads,
            config.arm_writes,
            crate::ledger::Ledger::new(blobs.clone(), &config.state_container_url),
        ),
        blobs,
        bus,
        config: Arc::new(config),
    }))
}

/// The chain steps that can be retried by name (from a follow-up).
pub fn step_named(name: &str) -> Option<StepFn> {
    match name {
        create_image::NAME => Some(create_image::step),
        publish_version::NAME => Some(publish_version::step),
        replicate_version::NAME => Some(replicate_version::step),
        build_image::NAME => Some(build_image::step),
        ingest_build::NAME => Some(ingest_build::step),
        lifecycle::NAME => Some(lifecycle::step),
        distribute::NAME => Some(distribute::step),
        share_gallery::NAME => Some(share_gallery::step),
        _ => None,
    }
}

/// The functions Event Grid triggers, run again on an event by name (from a `retryEvent` follow-up).
pub fn event_function(
    name: &str,
    invocation: crate::host::Invocation,
    ctx: Arc<Ctx>,
    tried: on_event::EventTry,
) -> Option<on_event::EventFuture> {
    match name {
        ingest::NAME => Some(Box::pin(ingest::run(invocation, ctx, tried))),
        ingest_image::NAME => Some(Box::pin(ingest_image::run(invocation, ctx, tried))),
        request_build::NAME => Some(Box::pin(request_build::run(invocation, ctx, tried))),
        _ => None,
    }
}

/// The functions this build serves, as bound in `functions/<Name>/function.json`.
pub fn app(ctx: Arc<Ctx>) -> App {
    let instance = ctx.config.instance.clone();
    let c1 = ctx.clone();
    let c2 = ctx.clone();
    let c3 = ctx.clone();
    let c4 = ctx.clone();
    let c5 = ctx.clone();
    let c6 = ctx.clone();
    let c_requests = ctx.clone();
    let c7 = ctx.clone();
    let c8 = ctx.clone();
    let c9 = ctx.clone();
    let c10 = ctx.clone();
    let c11 = ctx.clone();
    let c12 = ctx.clone();
    let c13 = ctx.clone();
    let c14 = ctx.clone();
    let c15 = ctx.clone();
    let c16 = ctx.clone();
    let c17 = ctx.clone();
    let c18 = ctx.clone();
    let c19 = ctx.clone();
    let c20 = ctx.clone();
    let c21 = ctx.clone();
    let c22 = ctx;
    App::new()
        .function(
            runs::NAME,
            TriggerKind::Http,
            runs::TRIGGER,
            &[runs::OUTPUT],
            move |inv| runs::run(inv, c16.clone()),
        )
        .function(
            versions::NAME,
            TriggerKind::Http,
            versions::TRIGGER,
            &[versions::OUTPUT],
            move |inv| versions::run(inv, c17.clone()),
        )
        .function(
            status_page::NAME,
            TriggerKind::Http,
            status_page::TRIGGER,
            &[status_page::OUTPUT],
            move |inv| status_page::run(inv, c18.clone()),
        )
        .function(
            reannounce::NAME,
            TriggerKind::Http,
            reannounce::TRIGGER,
            reannounce::OUTPUTS,
            move |inv| reannounce::run(inv, c19.clone()),
        )
        .function(
            dead_letter_list::NAME,
            TriggerKind::Http,
            dead_letter_list::TRIGGER,
            &[runs::OUTPUT],
            move |inv| dead_letter_list::run(inv, c20.clone()),
        )
        .function(
            resubmit::NAME,
            TriggerKind::Http,
            resubmit::TRIGGER,
            &[runs::OUTPUT],
            move |inv| resubmit::run(inv, c21.clone()),
        )
        .function(
            rebuild::NAME,
            TriggerKind::Http,
            rebuild::TRIGGER,
            &[runs::OUTPUT],
            move |inv| rebuild::run(inv, c22.clone()),
        )
        .function(
            announce::NAME,
            TriggerKind::ServiceBus,
            announce::TRIGGER,
            &[announce::OUTPUT],
            move |inv| announce::run(inv, instance.clone()),
        )
        .function(
            ingest::NAME,
            TriggerKind::EventGrid,
            ingest::TRIGGER,
            &[],
            move |inv| ingest::run(inv, c1.clone(), EventTry::delivered(&c1)),
        )
        .function(
            create_image::NAME,
            TriggerKind::ServiceBus,
            create_image::TRIGGER,
            &[],
            move |inv| {
                step::on_message(
                    create_image::NAME,
                    create_image::step,
                    create_image::HANDLES,
                    inv,
                    c2.clone(),
                )
            },
        )
        .function(
            publish_version::NAME,
            TriggerKind::ServiceBus,
            publish_version::TRIGGER,
            &[],
            move |inv| {
                step::on_message(
                    publish_version::NAME,
                    publish_version::step,
                    publish_version::HANDLES,
                    inv,
                    c3.clone(),
                )
            },
        )
        .function(
            replicate_version::NAME,
            TriggerKind::ServiceBus,
            replicate_version::TRIGGER,
            &[],
            move |inv| {
                step::on_message(
                    replicate_version::NAME,
                    replicate_version::step,
                    replicate_version::HANDLES,
                    inv,
                    c4.clone(),
                )
            },
        )
        .function(
            follow_up::NAME,
            TriggerKind::ServiceBus,
            follow_up::TRIGGER,
            &[],
            move |inv| follow_up::run(inv, c5.clone()),
        )
        .function(
            dead_letters::NAME,
            TriggerKind::ServiceBus,
            dead_letters::TRIGGER,
            &[],
            move |inv| dead_letters::run(inv, c6.clone()),
        )
        .function(
            requests::NAME,
            TriggerKind::ServiceBus,
            requests::TRIGGER,
            &[],
            move |inv| requests::run(inv, c_requests.clone()),
        )
        .function(
            schedule_builds::NAME,
            TriggerKind::Timer,
            schedule_builds::TRIGGER,
            &[],
            move |inv| schedule_builds::run(inv, c7.clone()),
        )
        .function(
            request_build::NAME,
            TriggerKind::EventGrid,
            request_build::TRIGGER,
            &[],
            move |inv| request_build::run(inv, c8.clone(), EventTry::delivered(&c8)),
        )
        .function(
            build_image::NAME,
            TriggerKind::ServiceBus,
            build_image::TRIGGER,
            &[],
            move |inv| {
                step::on_message(
                    build_image::NAME,
                    build_image::step,
                    build_image::HANDLES,
                    inv,
                    c9.clone(),
                )
            },
        )
        .function(
            ingest_build::NAME,
            TriggerKind::ServiceBus,
            ingest_build::TRIGGER,
            &[],
            move |inv| {
                step::on_message(
                    ingest_build::NAME,
                    ingest_build::step,
                    ingest_build::HANDLES,
                    inv,
                    c10.clone(),
                )
            },
        )
        .function(
            ingest_image::NAME,
            TriggerKind::EventGrid,
            ingest_image::TRIGGER,
            &[],
            move |inv| ingest_image::run(inv, c11.clone(), EventTry::delivered(&c11)),
        )
        .function(
            lifecycle::NAME,
            TriggerKind::ServiceBus,
            lifecycle::TRIGGER,
            &[],
            move |inv| {
                step::on_message(
                    lifecycle::NAME,
                    lifecycle::step,
                    lifecycle::HANDLES,
                    inv,
                    c12.clone(),
                )
            },
        )
        .function(
            schedule_lifecycle::NAME,
            TriggerKind::Timer,
            schedule_lifecycle::TRIGGER,
            &[],
            move |inv| schedule_lifecycle::run(inv, c13.clone()),
        )
        .function(
            distribute::NAME,
            TriggerKind::ServiceBus,
            distribute::TRIGGER,
            &[],
            move |inv| {
                step::on_message(
                    distribute::NAME,
                    distribute::step,
                    distribute::HANDLES,
                    inv,
                    c14.clone(),
                )
            },
        )
        .function(
            share_gallery::NAME,
            TriggerKind::ServiceBus,
            share_gallery::TRIGGER,
            &[],
            move |inv| {
                step::on_message(
                    share_gallery::NAME,
                    share_gallery::step,
                    share_gallery::HANDLES,
                    inv,
                    c15.clone(),
                )
            },
        )
}

/// The subject of every fact about one version: `galleries/<g>/images/<d>/versions/<v>`.
pub fn version_subject(plan: &Plan) -> String {
    format!(
        "galleries/{}/images/{}/versions/{}",
        plan.gallery, plan.image_definition, plan.version
    )
}

/// The ARM URL of a resource, for polling its provisioning state.
pub fn resource_url(ctx: &Ctx, id: &str, api_version: &str) -> String {
    format!(
        "{}/{}?api-version={api_version}",
        ctx.config.arm_endpoint.trim_end_matches('/'),
        id.trim_start_matches('/')
    )
}
