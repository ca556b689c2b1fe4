//! Galleon's functions, one file each, and the table that binds them to their triggers. Each reads top to
//! bottom: decode the fact, decide, one effect, the facts to announce.

pub mod announce;

use crate::{
    config::Config,
    host::{App, TriggerKind},
};

/// The functions this build serves, as bound in `functions/<Name>/function.json`.
pub fn app(config: &Config) -> App {
    let instance = config.instance.clone();
    App::new().function(
        announce::NAME,
        TriggerKind::ServiceBus,
        announce::TRIGGER,
        &[announce::OUTPUT],
        move |invocation| announce::run(invocation, instance.clone()),
    )
}
