//! Feeds the local ARM's resource events (`Microsoft.Resources.ResourceWriteSuccess`, …) into the
//! local Event Grid's `resources` system topic, as Resource Manager feeds resource group system topics.

use std::sync::Arc;

use devcloud_arm::{ResourceEvent, RunningArm};
use devcloud_messaging::eventgrid::RunningEventGrid;

/// Sends every write, delete and action the ARM simulator completes from now on to the `resources`
/// topic's subscriptions. False when the simulator already had a sink.
pub fn connect(arm: &RunningArm, event_grid: &RunningEventGrid) -> bool {
    let publisher = event_grid.resource_publisher();
    arm.arm.set_event_sink(Arc::new(move |e: ResourceEvent| {
        if let Err(err) = publisher.publish(e.to_event_grid()) {
            tracing::warn!(error = %err, subject = %e.subject, "resource event not published");
        }
    }))
}
