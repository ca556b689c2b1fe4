//! Tests of the managed identity's tokens and where they may go.

use super::*;

#[test]
fn audiences_follow_the_cloud() {
    let cases = [
        ("https://management.azure.com", ARM_RESOURCE),
        ("https://management.azure.com/", ARM_RESOURCE),
        (
            "https://management.usgovcloudapi.net/",
            "https://management.usgovcloudapi.net",
        ),
        (
            "https://management.chinacloudapi.cn",
            "https://management.chinacloudapi.cn",
        ),
        ("https://127.0.0.1:7443", ARM_RESOURCE),
    ];
    for (endpoint, audience) in cases {
        assert_eq!(arm_audience_for(endpoint), audience, "{endpoint}");
    }
    let cases = [
        ("contoso.servicebus.windows.net", SERVICE_BUS_RESOURCE),
        (
            "contoso.servicebus.usgovcloudapi.net",
            "https://servicebus.usgovcloudapi.net",
        ),
        (
            "sb://contoso.servicebus.chinacloudapi.cn/",
            "https://servicebus.chinacloudapi.cn",
        ),
        ("127.0.0.1:7445", SERVICE_BUS_RESOURCE),
    ];
    for (namespace, audience) in cases {
        assert_eq!(service_bus_audience_for(namespace), audience, "{namespace}");
    }
}

#[test]
fn storage_allow_list_matches_account_endpoints_only() {
    let hosted = StorageAccount::parse("ingest.blob.core.windows.net").expect("host");
    let emulator = StorageAccount::parse("https://127.0.0.1:10000/devstoreaccount1").expect("url");
    let url = |s: &str| Url::parse(s).expect("url");
    let table = [
        (
            &hosted,
            "https://ingest.blob.core.windows.net/vhds/a.vhd",
            true,
        ),
        (
            &hosted,
            "https://INGEST.blob.core.windows.net/vhds/a.vhd?sv=1",
            true,
        ),
        (
            &hosted,
            "http://ingest.blob.core.windows.net/vhds/a.vhd",
            false,
        ),
        (
            &hosted,
            "https://ingest.blob.core.windows.net:8443/vhds/a.vhd",
            false,
        ),
        (
            &hosted,
            "https://other.blob.core.windows.net/vhds/a.vhd",
            false,
        ),
        (
            &hosted,
            "https://ingest.blob.core.windows.net.evil.example/v/a.vhd",
            false,
        ),
        (
            &emulator,
            "https://127.0.0.1:10000/devstoreaccount1/vhds/a.vhd",
            true,
        ),
        (
            &emulator,
            "https://127.0.0.1:10000/devstoreaccount2/vhds/a.vhd",
            false,
        ),
        (
            &emulator,
            "https://127.0.0.1:10000/devstoreaccount1x/vhds/a.vhd",
            false,
        ),
        (
            &emulator,
            "https://127.0.0.1:10001/devstoreaccount1/vhds/a.vhd",
            false,
        ),
    ];
    for (account, blob, allowed) in table {
        assert_eq!(account.holds(&url(blob)), allowed, "{account} / {blob}");
    }
    assert!(StorageAccount::parse("https://a.blob.core.windows.net/?sv=1&sig=x").is_err());
    assert_eq!(
        emulator.to_string(),
        "https://127.0.0.1:10000/devstoreaccount1"
    );
}

/// A credential that must never be asked (the refusal comes before any token).
#[derive(Debug)]
struct Unused;

#[async_trait::async_trait]
impl TokenCredential for Unused {
    async fn get_token(
        &self,
        _: &[&str],
        _: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        panic!("no token may be asked for")
    }
}

#[test]
fn a_foreign_blob_url_is_refused_with_a_typed_error() {
    let tokens = Tokens::new(Arc::new(Unused)).with(
        Audiences::default(),
        vec![StorageAccount::parse("ingest.blob.core.windows.net").expect("host")],
    );
    let ok = Url::parse("https://ingest.blob.core.windows.net/c/x.vhd").expect("url");
    assert!(tokens.check_storage_url(&ok).is_ok());
    let foreign = Url::parse("https://evil.example/c/x.vhd?sig=secret").expect("url");
    let e = tokens.check_storage_url(&foreign).expect_err("refused");
    assert!(e.is_foreign_host() && !e.is_transient(), "{e:?}");
    assert!(!e.to_string().contains("secret"), "{e}");
    assert!(e.advice().is_some());
}

fn identity_endpoint_answer(status: u16) -> azure_core::Error {
    let status = azure_core::http::StatusCode::from(status);
    let inner = azure_core::Error::new(
        azure_core::error::ErrorKind::HttpResponse {
            status,
            error_code: None,
            raw_response: None,
        },
        "The requested identity has not been assigned to this resource",
    );
    // As azure_identity wraps it: a Credential error whose source is the HTTP answer.
    azure_core::Error::with_error(
        azure_core::error::ErrorKind::Credential,
        inner,
        "ManagedIdentityCredential authentication failed.",
    )
}

#[tokio::test]
async fn an_app_service_without_identity_fails_for_good_at_once() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    };
    assert!(app_service_without_identity(env(&[(
        "WEBSITE_INSTANCE_ID",
        "abc"
    )])));
    assert!(!app_service_without_identity(env(&[
        ("WEBSITE_INSTANCE_ID", "abc"),
        ("IDENTITY_ENDPOINT", "http://127.0.0.1:41741/msi/token"),
    ])));
    assert!(
        !app_service_without_identity(env(&[])),
        "not App Service: IMDS"
    );
    let tokens = Tokens::new(Arc::new(NoIdentity));
    let e = tokens.bearer(ARM_RESOURCE).await.expect_err("no identity");
    assert!(e.is_identity_missing() && !e.is_transient(), "{e:?}");
}

#[test]
fn a_missing_identity_is_permanent_and_a_flaky_endpoint_transient() {
    let missing = token_error(
        ARM_RESOURCE,
        "client id 0000",
        &identity_endpoint_answer(400),
    );
    assert!(
        missing.is_identity_missing() && !missing.is_transient(),
        "{missing:?}"
    );
    assert!(missing.to_string().contains("client id 0000"), "{missing}");
    assert!(
        missing
            .advice()
            .is_some_and(|a| a.contains("GalleonIdentity__clientId"))
    );

    for status in [500, 503, 429] {
        let flaky = token_error(
            ARM_RESOURCE,
            "system-assigned",
            &identity_endpoint_answer(status),
        );
        assert!(flaky.is_transient(), "{status}: {flaky:?}");
    }
    let unreachable =
        azure_core::Error::with_message(azure_core::error::ErrorKind::Io, "connection refused");
    assert!(token_error(ARM_RESOURCE, "system-assigned", &unreachable).is_transient());
}
