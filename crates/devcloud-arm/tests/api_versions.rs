//! The api-versions of the published REST specs are accepted, per provider; others are refused with
//! ARM's errors (NoRegisteredProviderFound for a provider's types, InvalidApiVersionParameter for
//! ARM's own).

mod common;

use common::{Env, SUB};
use devcloud_arm::ArmConfig;
use reqwest::Method;

#[tokio::test]
async fn spec_versions_are_accepted_and_others_refused() {
    let env = Env::start(false, ArmConfig::fast()).await;
    let rg = env.rg_path("rg");
    for (path, api) in [
        ("Microsoft.Compute/images", "2026-03-01"),
        ("Microsoft.Compute/images", "2016-04-30-preview"),
        ("Microsoft.Compute/galleries", "2018-06-01"),
        ("Microsoft.Compute/galleries", "2025-12-03"),
        (
            "Microsoft.VirtualMachineImages/imageTemplates",
            "2025-10-01",
        ),
        (
            "Microsoft.VirtualMachineImages/imageTemplates",
            "2019-05-01-preview",
        ),
    ] {
        let r = env
            .call(
                Method::GET,
                &format!("{rg}/providers/{path}?api-version={api}"),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{path} at {api}: {}", r.body);
    }
    // An images api-version is not a galleries one.
    env.call(
        Method::GET,
        &format!("{rg}/providers/Microsoft.Compute/galleries?api-version=2026-03-01"),
        None,
    )
    .await
    .expect(400, "NoRegisteredProviderFound");
    env.call(
        Method::GET,
        &format!("{rg}/providers/Microsoft.Compute/images?api-version=2026-02-01"),
        None,
    )
    .await
    .expect(400, "NoRegisteredProviderFound");
    // ARM's own types: a subscriptions api-version is not a resource groups one.
    env.call(
        Method::GET,
        &format!("/subscriptions/{SUB}/resourcegroups?api-version=2022-12-01"),
        None,
    )
    .await
    .expect(400, "InvalidApiVersionParameter");
    let ok = env
        .call(
            Method::GET,
            &format!("/subscriptions/{SUB}/resourcegroups?api-version=2021-04-01"),
            None,
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
}
