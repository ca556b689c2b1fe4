//! Tests of the error sorting: the classification and 409 tables, request ids, waits.

use super::*;

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        if let Ok(v) = v.parse() {
            h.insert(*k, v);
        }
    }
    h
}

fn arm(status: u16, code: &str, message: &str) -> AzureError {
    classify(
        "ARM",
        StatusCode::from_u16(status).expect("status"),
        &headers(&[
            ("x-ms-request-id", "req-1"),
            ("x-ms-correlation-request-id", "corr-1"),
        ]),
        serde_json::json!({"error": {"code": code, "message": message}})
            .to_string()
            .as_bytes(),
    )
}

#[test]
fn classification_table() {
    let throttled = classify(
        "ARM",
        StatusCode::TOO_MANY_REQUESTS,
        &headers(&[("retry-after", "17")]),
        br#"{"code":"OperationNotAllowed","message":"too many requests","details":[]}"#,
    );
    assert!(throttled.is_transient() && throttled.is_throttled());
    assert_eq!(throttled.retry_after(), Some(Duration::from_secs(17)));
    assert_eq!(throttled.code(), "OperationNotAllowed");

    let immutable = classify(
        "ARM",
        StatusCode::CONFLICT,
        &HeaderMap::new(),
        br#"{"error":{"code":"PropertyChangeNotAllowed","message":"Changing property 'osType' is not allowed.","target":"osType"}}"#,
    );
    assert!(!immutable.is_transient());
    assert_eq!(immutable.code(), "PropertyChangeNotAllowed");
    assert_eq!(immutable.target().as_deref(), Some("osType"));

    let storage = classify(
        "Blob Storage",
        StatusCode::NOT_FOUND,
        &HeaderMap::new(),
        b"<?xml version=\"1.0\"?><Error><Code>BlobNotFound</Code><Message>The specified blob does not exist.</Message></Error>",
    );
    assert_eq!(storage.code(), "BlobNotFound");
    assert!(!storage.is_transient() && storage.is_not_found());

    let changed = classify(
        "Blob Storage",
        StatusCode::PRECONDITION_FAILED,
        &HeaderMap::new(),
        b"<Error><Code>ConditionNotMet</Code></Error>",
    );
    assert!(changed.is_transient() && changed.is_condition_not_met());

    let unavailable = classify(
        "ARM",
        StatusCode::SERVICE_UNAVAILABLE,
        &headers(&[("x-ms-retry-after-ms", "1500")]),
        b"",
    );
    assert!(unavailable.is_transient());
    assert_eq!(unavailable.retry_after(), Some(Duration::from_millis(1500)));
    assert_eq!(unavailable.code(), "Service Unavailable");
    assert_eq!(unavailable.kind(), Kind::ServerError);
}

/// 409 by code and wording: busy is transient, clashes are permanent with advice.
#[test]
fn conflicts_by_code() {
    let table: &[(&str, &str, Kind, bool)] = &[
        (
            "AnotherOperationInProgress",
            "The resource is currently being updated.",
            Kind::ConflictInProgress,
            true,
        ),
        (
            "RetryableError",
            "A retryable error occurred.",
            Kind::ConflictInProgress,
            true,
        ),
        (
            "ReferencedResourceNotProvisioned",
            "Cannot proceed: the referenced resource is not in Succeeded state.",
            Kind::ConflictInProgress,
            true,
        ),
        (
            "Conflict",
            "Another operation on this or dependent resource is in progress.",
            Kind::ConflictInProgress,
            true,
        ),
        (
            "OperationNotAllowed",
            "Operation on resource 'g' is not allowed because another operation is in progress. Please retry after the current operation completes.",
            Kind::ConflictInProgress,
            true,
        ),
        // Compute answers OperationNotAllowed for an identifier clash too: that one is for good.
        (
            "OperationNotAllowed",
            "Gallery image: 'ubuntu' identified by (publisher: 'p', offer: 'o', sku: 's') already exists. Choose a different publisher, offer, sku combination.",
            Kind::IdentifierClash,
            false,
        ),
        (
            "GalleryImageIdentifierAlreadyExists",
            "Gallery image: ubuntu identified by (publisher:p, offer:o, sku:s) already exists.",
            Kind::IdentifierClash,
            false,
        ),
        (
            "OperationNotAllowed",
            "The gallery image version cannot be deleted before its end of life date.",
            Kind::Conflict,
            false,
        ),
        (
            "InvalidResourceLocation",
            "The resource 'golden' already exists in location 'westeurope' in resource group 'rg'. A resource with the same name cannot be created in location 'eastus'. Please select a new resource name.",
            Kind::LocationClash,
            false,
        ),
        (
            "ScopeLocked",
            "The scope '/subscriptions/x/resourceGroups/rg' cannot perform write operation because following scope(s) are locked.",
            Kind::Locked,
            false,
        ),
        (
            "PropertyChangeNotAllowed",
            "Changing property 'osType' is not allowed.",
            Kind::Conflict,
            false,
        ),
        (
            "Conflict",
            "Can not delete resource before nested resources are deleted.",
            Kind::Conflict,
            false,
        ),
    ];
    for (code, message, kind, transient) in table {
        let e = arm(409, code, message);
        assert_eq!(e.kind(), *kind, "{code}: {message}");
        assert_eq!(e.is_transient(), *transient, "{code}: {message}");
        assert_eq!(e.is_conflict_in_progress(), *transient, "{code}");
        assert_eq!(e.code(), *code, "the code stays verbatim");
        if matches!(
            kind,
            Kind::IdentifierClash | Kind::LocationClash | Kind::Locked
        ) {
            assert!(e.advice().is_some(), "{code} has advice");
        }
    }
}

#[test]
fn request_ids_are_carried_and_shown() {
    let e = arm(400, "InvalidParameter", "bad");
    assert_eq!(
        e.request_ids(),
        RequestIds {
            request_id: Some("req-1".into()),
            correlation_request_id: Some("corr-1".into())
        }
    );
    let shown = e.to_string();
    assert!(
        shown.contains("x-ms-request-id: req-1")
            && shown.contains("x-ms-correlation-request-id: corr-1"),
        "{shown}"
    );
    let bare = AzureError::transient("ARM", "Timeout", "no answer");
    assert!(bare.request_ids().is_empty());
    assert!(!bare.to_string().contains("x-ms-"), "{bare}");
}

#[test]
fn galleons_own_waits_are_typed() {
    assert!(AzureError::waiting("ARM", "still creating").is_waiting());
    assert!(AzureError::copy_pending("x is being copied").is_copy_pending());
    assert!(AzureError::waiting("ARM", "x").is_transient());
    assert!(!AzureError::permanent("Blob Storage", "BlobTooLarge", "big").is_transient());
}

#[test]
fn wait_is_the_longer_of_retry_after_and_backoff() {
    let s = Duration::from_secs;
    let table = [
        (None, s(30), s(30)),
        (Some(s(5)), s(30), s(30)),
        (Some(s(1200)), s(30), s(1200)),
        (Some(s(60)), s(60), s(60)),
        (Some(Duration::ZERO), s(1), s(1)),
    ];
    for (retry_after, backoff, expected) in table {
        assert_eq!(
            wait_before_retry(retry_after, backoff),
            expected,
            "{retry_after:?} / {backoff:?}"
        );
    }
}

#[test]
fn retry_after_as_http_date() {
    let later = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
    let wait = retry_after(&headers(&[("retry-after", later.as_str())])).unwrap_or_default();
    assert!(
        wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
        "{wait:?}"
    );
}
