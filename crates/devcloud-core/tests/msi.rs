//! The managed-identity endpoint, called by the real `azure_identity::ManagedIdentityCredential` (App Service
//! source, selected by `IDENTITY_ENDPOINT` and `IDENTITY_HEADER`).

use azure_core::credentials::TokenCredential;
use devcloud_core::{Identity, serve_http};

#[tokio::test]
async fn azure_identity_managed_identity_credential_gets_a_verifiable_token() {
    devcloud_core::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let identity = Identity::load_or_create(dir.path()).unwrap();
    let secret = "s3cret-header-value".to_string();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = serve_http(identity.msi_filter(secret.clone()), l).unwrap();
    let endpoint = format!("http://127.0.0.1:{}/msi/token", server.addr().port());
    // SAFETY: this test binary has a single test; nothing else reads the environment concurrently.
    unsafe {
        std::env::set_var("IDENTITY_ENDPOINT", &endpoint);
        std::env::set_var("IDENTITY_HEADER", &secret);
    }
    let cred = azure_identity::ManagedIdentityCredential::new(None).unwrap();
    let token = cred
        .get_token(&["https://management.azure.com/.default"], None)
        .await
        .unwrap();
    let claims = identity
        .verify(
            Some(&format!("Bearer {}", token.token.secret())),
            "https://management.azure.com/",
        )
        .unwrap();
    assert_eq!(claims.aud, "https://management.azure.com");
    assert_eq!(claims.tid, identity.tenant_id);
    let left = token.expires_on - time_now();
    assert!(
        left.whole_minutes() > 50 && left.whole_minutes() <= 60,
        "{left}"
    );

    // Wrong secret, wrong api-version and missing resource are refused like App Service does.
    let c = reqwest::Client::new();
    let r = c
        .get(format!(
            "{endpoint}?api-version=2019-08-01&resource=https://storage.azure.com"
        ))
        .header("X-IDENTITY-HEADER", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .get(format!(
            "{endpoint}?api-version=2017-09-01&resource=https://storage.azure.com"
        ))
        .header("X-IDENTITY-HEADER", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .get(format!(
            "{endpoint}?api-version=2019-08-01&resource=https://storage.azure.com"
        ))
        .header("X-IDENTITY-HEADER", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["resource"], "https://storage.azure.com");
    assert!(v["expires_on"].as_str().unwrap().parse::<u64>().is_ok());
    assert_eq!(v["client_id"], identity.client_id);
}

fn time_now() -> azure_core::time::OffsetDateTime {
    azure_core::time::OffsetDateTime::now_utc()
}
