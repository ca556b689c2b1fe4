//! Lists page as ARM's do: a small page and a `nextLink` that carries the query on.

mod common;

use common::{Env, SUB};
use devcloud_arm::ArmConfig;
use reqwest::Method;
use serde_json::{Value, json};

/// Follows `nextLink`s; returns the names seen and the number of pages.
async fn all_pages(env: &Env, first: &str) -> (Vec<String>, usize) {
    let mut names = Vec::new();
    let mut pages = 0;
    let mut url = first.to_string();
    loop {
        let r = env.call(Method::GET, &url, None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        pages += 1;
        let value = r.body["value"].as_array().unwrap();
        assert!(
            value.len() <= 2,
            "page larger than the page size: {}",
            r.body
        );
        names.extend(value.iter().map(|v| {
            v["name"]
                .as_str()
                .or(v["subscriptionId"].as_str())
                .unwrap()
                .to_string()
        }));
        match r.body.get("nextLink").and_then(Value::as_str) {
            Some(next) => {
                assert!(next.starts_with("https://"), "{next}");
                assert!(next.contains("api-version="), "{next}");
                url = next.to_string();
            }
            None => return (names, pages),
        }
    }
}

#[tokio::test]
async fn every_list_pages_with_next_link() {
    let mut c = ArmConfig::fast();
    c.page_size = 2;
    let env = Env::start(false, c).await;
    for i in 0..4 {
        env.create_group(&format!("page-{i}")).await;
    }
    let (groups, pages) = all_pages(
        &env,
        &format!("/subscriptions/{SUB}/resourcegroups?api-version=2025-04-01"),
    )
    .await;
    assert_eq!(groups.len(), 5, "{groups:?}");
    assert_eq!(pages, 3);
    let galleries = format!(
        "{}/providers/Microsoft.Compute/galleries",
        env.rg_path("rg")
    );
    for g in ["g1", "g2", "g3"] {
        env.ok(
            Method::PUT,
            &format!("{galleries}/{g}?api-version=2025-03-03"),
            Some(json!({"location": "westeurope"})),
        )
        .await;
    }
    let (names, pages) = all_pages(&env, &format!("{galleries}?api-version=2025-03-03")).await;
    assert_eq!(names, ["g1", "g2", "g3"]);
    assert_eq!(pages, 2);
    let (subs, _) = all_pages(&env, "/subscriptions?api-version=2022-12-01").await;
    assert!(subs.len() <= 2);
    env.call(
        Method::GET,
        &format!("{galleries}?api-version=2025-03-03&$skiptoken=x"),
        None,
    )
    .await
    .expect(400, "InvalidParameter");
}
