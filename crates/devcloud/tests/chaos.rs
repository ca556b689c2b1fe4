//! The chaos suite (#16): a batch of VHDs, several regions each, through one kind of chaos per test; each
//! ends with the shared invariants (common/chaos.rs) and fails when its chaos did not happen.

mod common;

use std::{collections::BTreeMap, time::Duration};

use common::chaos::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_delivered_three_times_changes_nothing() {
    let sizes = Sizes::from_env();
    let s = start_chaos(&sizes, &[], |o| o.extra_deliveries = 2).await;
    let batch = publish_batch(&s, 0, sizes.images).await;
    wait_all_ended(&s, &batch, sizes.patience()).await;
    // Let the last deliveries of the last facts land before counting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let outcome = check_invariants(&s, &batch).await;
    let redelivered = s
        .cloud
        .host
        .logs()
        .iter()
        .filter(|l| format!("{l:?}").contains("fault injection:"))
        .count();
    let publishes = s
        .cloud
        .host
        .invocations()
        .iter()
        .filter(|i| i.function == "PublishVersion")
        .count();
    let writes = s
        .cloud
        .arm
        .requests_by_kind()
        .get("GalleryImageVersions_CreateOrUpdate")
        .copied()
        .unwrap_or(0);
    print_outcome(
        "deliveries",
        &batch,
        &outcome,
        &BTreeMap::from([
            ("deliveries per message", "3".to_owned()),
            ("deliveries made again", redelivered.to_string()),
            ("PublishVersion invocations", publishes.to_string()),
            ("version writes", writes.to_string()),
        ]),
    );
    assert!(
        publishes >= 3 * batch.len(),
        "every PublishVersion fact was delivered three times ({publishes} invocations for {} VHDs)",
        batch.len()
    );
    assert!(
        redelivered >= 2 * publishes / 3,
        "{redelivered} deliveries made again"
    );
    assert_eq!(outcome.ready, batch.len(), "{outcome:#?}");
    assert_eq!(
        writes as usize,
        batch.len(),
        "each version written once, however often its fact came"
    );
    s.stop().await;
}
