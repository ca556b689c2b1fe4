//! Compute resource types Azure has but devcloud does not simulate answer as Azure does for a
//! resource that does not exist (`az image create --source <blob uri>` first probes for a VM).

mod common;

use common::Env;
use devcloud_arm::ArmConfig;
use reqwest::Method;
use serde_json::json;

const C: &str = "api-version=2025-04-01";

#[tokio::test]
async fn a_virtual_machine_is_not_found_rather_than_an_invalid_type() {
    let env = Env::start(false, ArmConfig::fast()).await;
    let vm = format!(
        "{}/providers/Microsoft.Compute/virtualMachines/base.vhd?{C}",
        env.rg_path("rg")
    );
    let r = env.call(Method::GET, &vm, None).await;
    r.expect(404, "ResourceNotFound");
    r.expect_message("Microsoft.Compute/virtualMachines/base.vhd");
    env.call(
        Method::GET,
        &format!(
            "{}/providers/Microsoft.Compute/disks/d1?{C}",
            env.rg_path("rg")
        ),
        None,
    )
    .await
    .expect(404, "ResourceNotFound");
    let list = env
        .call(
            Method::GET,
            &format!(
                "{}/providers/Microsoft.Compute/virtualMachines?{C}",
                env.rg_path("rg")
            ),
            None,
        )
        .await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["value"], json!([]));
    assert_eq!(env.call(Method::DELETE, &vm, None).await.status, 204);
    // In a group that does not exist, the group is what is missing.
    env.call(
        Method::GET,
        &format!(
            "{}/providers/Microsoft.Compute/virtualMachines/vm?{C}",
            env.rg_path("nogroup")
        ),
        None,
    )
    .await
    .expect(404, "ResourceGroupNotFound");
    // A type Azure does not have at all is still an invalid type.
    env.call(
        Method::GET,
        &format!(
            "{}/providers/Microsoft.Compute/notAType/x?{C}",
            env.rg_path("rg")
        ),
        None,
    )
    .await
    .expect(400, "InvalidResourceType");
}
