//! HTTPS and HTTP serving of a warp filter with the local CA, checked with a real reqwest client.

use devcloud_core::serve::ResetConnection;
use devcloud_core::{Tls, serve_http, serve_https};
use warp::Filter;

fn filter() -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection>
+ Clone
+ Send
+ Sync
+ 'static {
    use warp::Reply;
    let hello = warp::path!("hello")
        .map(|| warp::reply::json(&serde_json::json!({"ok": true})).into_response());
    let reset = warp::path!("reset").map(|| {
        let mut r = warp::reply().into_response();
        r.extensions_mut().insert(ResetConnection);
        r
    });
    hello.or(reset).unify()
}

fn client(tls: &Tls) -> reqwest::Client {
    devcloud_core::install_crypto_provider();
    let ca = reqwest::Certificate::from_pem(&tls.ca_pem_bytes().unwrap()).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap()
}

#[tokio::test]
async fn https_with_local_ca_and_http_both_serve() {
    let dir = tempfile::tempdir().unwrap();
    let tls = Tls::load_or_create(dir.path()).unwrap();
    let ca_before = std::fs::read(&tls.ca_pem).unwrap();
    // Reused on the second load, not regenerated.
    let tls = Tls::load_or_create(dir.path()).unwrap();
    assert_eq!(std::fs::read(&tls.ca_pem).unwrap(), ca_before);

    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let https = serve_https(filter(), l, tls.server_config.clone()).unwrap();
    let c = client(&tls);
    for host in ["127.0.0.1", "localhost"] {
        let url = format!("https://{host}:{}/hello", https.addr().port());
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["ok"], true);
    }
    // A client that does not trust the local CA is refused.
    let untrusting = reqwest::Client::builder().build().unwrap();
    let err = untrusting
        .get(format!("https://127.0.0.1:{}/hello", https.addr().port()))
        .send()
        .await;
    assert!(err.is_err());
    // Fault injection: the connection is dropped without an HTTP answer.
    let reset = c
        .get(format!("https://127.0.0.1:{}/reset", https.addr().port()))
        .send()
        .await;
    assert!(reset.is_err(), "expected a connection error, got {reset:?}");

    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = serve_http(filter(), l).unwrap();
    let r = c
        .get(format!("http://127.0.0.1:{}/hello", http.addr().port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let addr = https.addr();
    https.shutdown().await;
    assert!(c.get(format!("https://{addr}/hello")).send().await.is_err());
}
