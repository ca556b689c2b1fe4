//! Tests of the ARM client against a local HTTP server: what an operation's answer means for each kind
//! of URL, the final GET, where tokens may go, and the ids every call carries.

use std::sync::Arc;

use reqwest::{Method, Url};
use serde_json::json;

use super::*;
use crate::azure::{
    AzureError, Tokens, in_run,
    test_support::{Canned, FixedToken, serve},
};

const VERSION: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/d/versions/1.0.0";

fn arm(base: &str) -> Arm {
    crate::telemetry::install_crypto_provider();
    Arm::new(
        crate::azure::http_client().expect("client"),
        Url::parse(base).expect("url"),
        Tokens::new(Arc::new(FixedToken::default())),
    )
}

fn ids() -> Vec<(&'static str, String)> {
    vec![
        ("x-ms-request-id", "req-42".into()),
        ("x-ms-correlation-request-id", "corr-42".into()),
    ]
}

/// One look at `/op` answered `canned`, followed as `kind`.
async fn look(canned: Canned, kind: PollKind) -> Result<Operation, AzureError> {
    let (base, _) = serve(move |_| canned.clone()).await;
    arm(&base).operation(&format!("{base}/op"), kind).await
}

#[tokio::test]
async fn an_operation_answer_that_says_nothing_is_not_success() {
    use PollKind::*;
    let ok = |body: &str| (200, ids(), body.to_owned());
    // (answer, kind, expected): Some(op) or None for a transient "look again".
    let table: Vec<(Canned, PollKind, Option<Operation>)> = vec![
        (ok(""), AsyncOperation, None),
        (ok("<html>gateway</html>"), AsyncOperation, None),
        (ok("{}"), AsyncOperation, None),
        (
            ok(r#"{"status":"InProgress"}"#),
            AsyncOperation,
            Some(Operation::Running { retry_after: None }),
        ),
        (
            ok(r#"{"status":"Succeeded"}"#),
            AsyncOperation,
            Some(Operation::Succeeded),
        ),
        (
            ok(
                r#"{"status":"Failed","error":{"code":"ReplicationFailed","message":"westus: quota"}}"#,
            ),
            AsyncOperation,
            Some(Operation::Failed {
                code: "ReplicationFailed".into(),
                message: "westus: quota".into(),
            }),
        ),
        (
            ok(r#"{"status":"Canceled"}"#),
            AsyncOperation,
            Some(Operation::Canceled),
        ),
        // Location: 202 while running; 200/204 when done, the body (if any) being the resource.
        (
            (202, vec![("retry-after", "7".into())], String::new()),
            Location,
            Some(Operation::Running {
                retry_after: Some(std::time::Duration::from_secs(7)),
            }),
        ),
        (
            (204, ids(), String::new()),
            Location,
            Some(Operation::Succeeded),
        ),
        (ok(""), Location, Some(Operation::Succeeded)),
        (
            ok(r#"{"id":"x","properties":{"provisioningState":"Succeeded"}}"#),
            Location,
            Some(Operation::Succeeded),
        ),
        (
            ok(r#"{"id":"x","properties":{"provisioningState":"Creating"}}"#),
            Location,
            Some(Operation::Running { retry_after: None }),
        ),
        (ok("not json"), Location, None),
        // A failed Location operation answers with the failure's status and ARM error body.
        (
            (
                400,
                ids(),
                r#"{"error":{"code":"ReplicationFailed","message":"eastus2: no capacity"}}"#.into(),
            ),
            Location,
            Some(Operation::Failed {
                code: "ReplicationFailed".into(),
                message: "eastus2: no capacity".into(),
            }),
        ),
        // The resource itself.
        (
            ok(r#"{"properties":{"provisioningState":"Updating"}}"#),
            Resource,
            Some(Operation::Running { retry_after: None }),
        ),
        (
            ok(r#"{"properties":{"provisioningState":"Succeeded"}}"#),
            Resource,
            Some(Operation::Succeeded),
        ),
        (ok(""), Resource, None),
    ];
    for (canned, kind, expected) in table {
        let shown = format!("{kind:?} {} {:?}", canned.0, canned.2);
        match (look(canned, kind).await, expected) {
            (Ok(op), Some(want)) => assert_eq!(op, want, "{shown}"),
            (Err(e), None) => {
                assert!(e.is_transient(), "{shown}: {e:?}");
                assert_eq!(e.code(), "UnreadableResponse", "{shown}");
            }
            (got, want) => panic!("{shown}: got {got:?}, want {want:?}"),
        }
    }
}

#[tokio::test]
async fn a_write_records_which_header_names_its_operation() {
    // The headers name URLs on the ARM host itself, known once it listens.
    let own: Arc<std::sync::OnceLock<String>> = Arc::default();
    let base_for = own.clone();
    let (base, _) = serve(move |path| {
        let url = |p: &str| format!("{}{p}", base_for.get().map(String::as_str).unwrap_or(""));
        match path {
            p if p.ends_with("/async") => (
                201,
                vec![
                    ("azure-asyncoperation", url("/ops/1")),
                    ("location", url("/results/1")),
                ],
                "{}".into(),
            ),
            p if p.ends_with("/location") => {
                (202, vec![("location", url("/results/2"))], String::new())
            }
            _ => (
                200,
                ids(),
                r#"{"properties":{"provisioningState":"Succeeded"}}"#.into(),
            ),
        }
    })
    .await;
    let _ = own.set(base.clone());
    let arm = arm(&base);
    let a = arm
        .write(
            Method::PUT,
            &format!("{VERSION}/async"),
            GALLERY_API,
            Some(&json!({})),
        )
        .await
        .expect("accepted");
    assert_eq!(a.operation_kind, Some(PollKind::AsyncOperation));
    assert!(
        a.operation
            .as_deref()
            .is_some_and(|u| u.ends_with("/ops/1")),
        "{a:?}"
    );
    assert_eq!(a.poll().map(|(_, k)| k), Some(PollKind::AsyncOperation));
    let l = arm
        .write(
            Method::PUT,
            &format!("{VERSION}/location"),
            GALLERY_API,
            Some(&json!({})),
        )
        .await
        .expect("accepted");
    assert_eq!(l.operation_kind, Some(PollKind::Location));
    let done = arm
        .write(Method::PUT, VERSION, GALLERY_API, Some(&json!({})))
        .await
        .expect("accepted");
    assert!(done.is_done() && done.poll().is_none());
    assert_eq!(done.ids.request_id.as_deref(), Some("req-42"));
}

#[tokio::test]
async fn tokens_go_only_to_the_configured_arm_host() {
    let (elsewhere, seen_elsewhere) =
        serve(|_| (200, vec![], r#"{"status":"Succeeded"}"#.into())).await;
    let foreign = format!("{elsewhere}/op");
    let (base, _) = {
        let foreign = foreign.clone();
        serve(move |_| {
            (
                202,
                vec![("azure-asyncoperation", foreign.clone())],
                String::new(),
            )
        })
        .await
    };
    let arm = arm(&base);
    // An operation URL from a message, on another host.
    let e = arm
        .operation(&foreign, PollKind::AsyncOperation)
        .await
        .expect_err("refused");
    assert!(e.is_foreign_host() && !e.is_transient(), "{e:?}");
    // An operation URL in an answer, on another host.
    let e = arm
        .write(Method::PUT, VERSION, GALLERY_API, Some(&json!({})))
        .await
        .expect_err("refused");
    assert!(e.is_foreign_host(), "{e:?}");
    // An id that is really a URL.
    let e = arm
        .get(&foreign, GALLERY_API, &[])
        .await
        .expect_err("refused");
    assert!(e.is_foreign_host(), "{e:?}");
    assert!(
        seen_elsewhere.lock().map(|s| s.is_empty()).unwrap_or(false),
        "nothing was sent elsewhere"
    );
}

#[tokio::test]
async fn calls_carry_the_run_id_and_errors_the_answers_ids() {
    let (base, seen) = serve(|_| {
        (409, ids(), r#"{"error":{"code":"OperationNotAllowed","message":"Operation on resource 'g' is not allowed because another operation is in progress."}}"#.into())
    })
    .await;
    let arm = arm(&base);
    let run = "5f0c2b7e-8a1d-5e3f-9c4b-2d6e8f0a1b3c".to_owned();
    let e = in_run(run.clone(), arm.get(VERSION, GALLERY_API, &[]))
        .await
        .expect_err("409");
    assert!(e.is_conflict_in_progress() && e.is_transient(), "{e:?}");
    let shown = e.to_string();
    assert!(
        shown.contains("req-42") && shown.contains("corr-42"),
        "{shown}"
    );
    let _ = arm.get(VERSION, GALLERY_API, &[]).await;
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let client_ids: Vec<String> = seen
        .iter()
        .map(|s| {
            s.headers
                .get("x-ms-client-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(client_ids[0], run, "inside a run: the run's id");
    assert!(
        uuid::Uuid::parse_str(&client_ids[1]).is_ok() && client_ids[1] != run,
        "outside: a fresh GUID"
    );
    assert_eq!(
        seen[0]
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer test-token")
    );
}

#[tokio::test]
async fn the_final_get_checks_the_resource() {
    let table = [
        (
            r#"{"properties":{"provisioningState":"Succeeded"}}"#,
            Ok(()),
        ),
        (
            r#"{"properties":{"provisioningState":"Creating"}}"#,
            Err("waiting"),
        ),
        (
            r#"{"properties":{"provisioningState":"Failed"}}"#,
            Err("permanent"),
        ),
    ];
    for (body, expected) in table {
        let (base, seen) = serve(move |_| (200, ids(), body.to_owned())).await;
        let got = arm(&base).finished(VERSION, GALLERY_API).await;
        match (got, expected) {
            (Ok(v), Ok(())) => assert_eq!(v["properties"]["provisioningState"], "Succeeded"),
            (Err(e), Err("waiting")) => assert!(e.is_waiting(), "{e:?}"),
            (Err(e), Err("permanent")) => assert!(!e.is_transient(), "{e:?}"),
            (got, want) => panic!("{body}: got {got:?}, want {want:?}"),
        }
        let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
        assert_eq!(seen[0].method, "GET");
        assert_eq!(seen[0].path, VERSION);
    }
    let (base, _) = serve(|_| {
        (
            404,
            ids(),
            r#"{"error":{"code":"ResourceNotFound","message":"gone"}}"#.into(),
        )
    })
    .await;
    let e = arm(&base)
        .finished(VERSION, GALLERY_API)
        .await
        .expect_err("gone");
    assert!(e.is_not_found() && !e.is_transient(), "{e:?}");
}
