//! The Entra token endpoint stand-in: client credentials with a secret or a federated managed-identity
//! assertion, tokens of the tenant asked for, and Entra's error shape for what Entra refuses.

use devcloud_core::entra::{JWT_BEARER, TOKEN_EXCHANGE_AUDIENCE};
use devcloud_core::{Entra, EntraApp, EntraConfig, FederatedCredential, Identity, serve_http};
use serde_json::Value;

const OTHER_TENANT: &str = "0e6a1c55-9d2b-4c3e-8f71-2a9b4c6d8e00";
const APP: &str = "3c9a7e21-5b4d-4f6a-9e08-1d2c3b4a5f60";

fn setup() -> (Identity, Entra) {
    let identity = Identity::from_key([3u8; 32]);
    let config = EntraConfig {
        apps: vec![EntraApp {
            client_id: APP.into(),
            tenants: vec![identity.tenant_id.clone(), OTHER_TENANT.into()],
            secret: Some("app-secret".into()),
            federated: vec![FederatedCredential {
                issuer: format!(
                    "https://login.microsoftonline.com/{}/v2.0",
                    identity.tenant_id
                ),
                subject: identity.object_id.clone(),
            }],
        }],
        // A tenant that exists (it has a subscription) where nobody consented to the app.
        tenants: vec![uuid_of(8)],
    };
    let entra = Entra::new(identity.clone(), config);
    (identity, entra)
}

async fn post(url: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter())
        .finish();
    let r = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

fn aadsts(v: &Value) -> u64 {
    v["error_codes"][0].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn client_credentials_give_tokens_of_the_tenant_asked_for_and_refuse_like_entra() {
    devcloud_core::install_crypto_provider();
    let (identity, entra) = setup();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = serve_http(entra.filter(), l).unwrap();
    let base = format!("http://{}", server.addr());
    let url = format!("{base}/{OTHER_TENANT}/oauth2/v2.0/token");
    let scope = "https://management.azure.com/.default";

    // A secret.
    let (s, v) = post(
        &url,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", APP),
            ("client_secret", "app-secret"),
            ("scope", scope),
        ],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["token_type"], "Bearer");
    assert!(v["expires_in"].as_u64().unwrap() > 3000);
    let token = v["access_token"].as_str().unwrap();
    let claims = identity
        .verify_bare(token, "https://management.azure.com/")
        .unwrap();
    assert_eq!(claims.tid, OTHER_TENANT);
    assert_eq!(claims.appid, APP);
    assert_eq!(
        claims.iss,
        format!("https://sts.windows.net/{OTHER_TENANT}/")
    );

    // A federated credential: the managed identity's token for api://AzureADTokenExchange.
    let mi = identity.issue(TOKEN_EXCHANGE_AUDIENCE);
    let (s, v) = post(
        &url,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", APP),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &mi),
            ("scope", scope),
        ],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let claims = identity
        .verify_bare(
            v["access_token"].as_str().unwrap(),
            "https://management.azure.com",
        )
        .unwrap();
    assert_eq!(claims.tid, OTHER_TENANT);

    // Refusals, in Entra's shape.
    let wrong_secret = [
        ("grant_type", "client_credentials"),
        ("client_id", APP),
        ("client_secret", "nope"),
        ("scope", scope),
    ];
    let (s, v) = post(&url, &wrong_secret).await;
    assert_eq!(
        (s, v["error"].as_str(), aadsts(&v)),
        (401, Some("invalid_client"), 7000215)
    );
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS7000215: ")
    );
    assert!(v["trace_id"].is_string() && v["correlation_id"].is_string());

    let unknown_tenant = format!("{base}/{}/oauth2/v2.0/token", uuid_of(9));
    let good = [
        ("grant_type", "client_credentials"),
        ("client_id", APP),
        ("client_secret", "app-secret"),
        ("scope", scope),
    ];
    let (s, v) = post(&unknown_tenant, &good).await;
    assert_eq!((s, aadsts(&v)), (400, 90002), "{v}");
    let unconsented_tenant = format!("{base}/{}/oauth2/v2.0/token", uuid_of(8));
    let (s, v) = post(&unconsented_tenant, &good).await;
    assert_eq!(
        (s, v["error"].as_str(), aadsts(&v)),
        (400, Some("unauthorized_client"), 700016),
        "{v}"
    );

    let other_app = [
        ("grant_type", "client_credentials"),
        ("client_id", &uuid_of(5)[..]),
        ("client_secret", "app-secret"),
        ("scope", scope),
    ];
    let (s, v) = post(&url, &other_app).await;
    assert_eq!(
        (s, v["error"].as_str(), aadsts(&v)),
        (400, Some("unauthorized_client"), 700016)
    );

    let no_credential = [
        ("grant_type", "client_credentials"),
        ("client_id", APP),
        ("scope", scope),
    ];
    let (s, v) = post(&url, &no_credential).await;
    assert_eq!((s, aadsts(&v)), (401, 7000218));

    let bad_scope = [
        ("grant_type", "client_credentials"),
        ("client_id", APP),
        ("client_secret", "app-secret"),
        ("scope", "https://management.azure.com/user_impersonation"),
    ];
    let (s, v) = post(&url, &bad_scope).await;
    assert_eq!(
        (s, v["error"].as_str(), aadsts(&v)),
        (400, Some("invalid_scope"), 1002012)
    );

    let (s, v) = post(&url, &[("client_id", APP)]).await;
    assert_eq!((s, aadsts(&v)), (400, 900144));

    // An assertion for the wrong audience, of another subject, or expired.
    let wrong_aud = identity.issue("https://management.azure.com");
    let expired = identity.issue_with_lifetime(TOKEN_EXCHANGE_AUDIENCE, -60);
    let stranger = identity.issue_for(
        &devcloud_core::Principal {
            tenant_id: &identity.tenant_id,
            object_id: &uuid_of(7),
            client_id: &uuid_of(8),
        },
        TOKEN_EXCHANGE_AUDIENCE,
        600,
    );
    for (assertion, code) in [
        (&wrong_aud, 700212),
        (&expired, 700024),
        (&stranger, 700213),
    ] {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", APP),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion.as_str()),
            ("scope", scope),
        ];
        let (s, v) = post(&url, &form).await;
        assert_eq!((s, aadsts(&v)), (400, code), "{v}");
    }

    // MSAL reads the tenant's OpenID metadata first.
    let r = reqwest::get(format!(
        "{base}/{OTHER_TENANT}/v2.0/.well-known/openid-configuration"
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["token_endpoint"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{OTHER_TENANT}/oauth2/v2.0/token"))
    );
}

fn uuid_of(n: u8) -> String {
    format!("{n}{n}{n}{n}{n}{n}{n}{n}-0000-4000-8000-000000000000")
}
