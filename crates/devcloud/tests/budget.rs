//! Resource Manager's budget, end to end: what galleon reads per published image. A gallery and an image
//! definition that one publish saw exist are not read again by the next (for `GALLEON_KNOWN_SECONDS`).

mod common;

use std::collections::HashMap;

use common::*;
use serde_json::json;

fn reads_of(kinds: &HashMap<String, u64>, kind: &str) -> u64 {
    kinds.get(kind).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_publish_does_not_read_the_gallery_and_definition_again() {
    let s = start(&[("GALLEON_TARGET_REGIONS", "westeurope")]).await;
    s.publish("one", "fixed", "8M", json!({"version": "1.0.0"}))
        .await;
    s.wait_for("io.galleon.image.ready.v1", 120).await;
    let first = s.cloud.arm.requests_by_kind();
    s.publish("two", "fixed", "8M", json!({"version": "1.0.1"}))
        .await;
    // Both image.ready facts in (distinct ids).
    let ready = s.wait_for_n("io.galleon.image.ready.v1", 2, 120).await;
    assert_eq!(
        ready.len(),
        2,
        "the second image did not get ready: {:#?}",
        s.receiver.received.all()
    );
    let second = s.cloud.arm.requests_by_kind();
    for kind in ["Galleries_Get", "GalleryImages_Get"] {
        assert_eq!(
            reads_of(&second, kind),
            reads_of(&first, kind),
            "{kind}: the second publish read it again (first {first:?}, then {second:?})"
        );
    }
    assert!(
        reads_of(&first, "Galleries_Get") > 0,
        "the first publish read the gallery: {first:?}"
    );
    s.stop().await;
}
