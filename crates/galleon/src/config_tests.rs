//! Tests of reading the app settings: defaults, derived values, and each bad setting named.

use super::*;
use std::collections::HashMap;

const BASE: &[(&str, &str)] = &[
    (
        "GALLEON_SUBSCRIPTION_ID",
        "8c3e1f7a-2b4d-4e5f-9a6b-7c8d9e0f1a2b",
    ),
    ("GALLEON_RESOURCE_GROUP", "rg-images"),
    ("GALLEON_GALLERY", "golden"),
    ("GALLEON_LOCATION", "westeurope"),
    (
        "ServiceBusConnection__fullyQualifiedNamespace",
        "contoso.servicebus.windows.net",
    ),
    (
        "GALLEON_STATE_CONTAINER_URL",
        "https://contoso.blob.core.windows.net/galleon-state",
    ),
    ("GALLEON_STORAGE_ACCOUNTS", "ingest.blob.core.windows.net"),
];

/// The config from [`BASE`] with `pairs` set (an empty value removes the setting).
pub(super) fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut map: HashMap<String, String> = BASE
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    for (k, v) in pairs {
        if v.is_empty() {
            map.remove(*k);
        } else {
            map.insert((*k).to_owned(), (*v).to_owned());
        }
    }
    Config::from_lookup(|k| map.get(k).cloned())
}

#[test]
fn defaults_with_only_the_port() {
    let c = config(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "7072")]).expect("valid");
    assert_eq!(c.port, 7072);
    assert_eq!(c.instance, "local");
    assert_eq!(c.max_invocation_bytes, 4 * 1024 * 1024);
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.policy.target_regions.len(), 1);
    assert!(c.policy.allows(
        "8c3e1f7a-2b4d-4e5f-9a6b-7c8d9e0f1a2b",
        "rg-images",
        "golden"
    ));
    assert!(
        !c.policy
            .allows("8c3e1f7a-2b4d-4e5f-9a6b-7c8d9e0f1a2b", "rg-images", "other")
    );
    assert_eq!(c.follow_up, Duration::from_secs(30));
}

#[test]
fn instance_falls_back_to_the_site_name() {
    let c = config(&[
        ("FUNCTIONS_CUSTOMHANDLER_PORT", "1"),
        ("WEBSITE_SITE_NAME", "func-galleon-prod"),
    ])
    .expect("valid");
    assert_eq!(c.instance, "func-galleon-prod");
}

#[test]
fn each_bad_setting_is_named() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[], "FUNCTIONS_CUSTOMHANDLER_PORT"),
        (
            &[("FUNCTIONS_CUSTOMHANDLER_PORT", "http")],
            "FUNCTIONS_CUSTOMHANDLER_PORT",
        ),
        (
            &[("FUNCTIONS_CUSTOMHANDLER_PORT", "0")],
            "FUNCTIONS_CUSTOMHANDLER_PORT",
        ),
        (
            &[("FUNCTIONS_CUSTOMHANDLER_PORT", "70000")],
            "FUNCTIONS_CUSTOMHANDLER_PORT",
        ),
        (
            &[
                ("FUNCTIONS_CUSTOMHANDLER_PORT", "7072"),
                ("GALLEON_INSTANCE", "has space"),
            ],
            "GALLEON_INSTANCE",
        ),
        (
            &[
                ("FUNCTIONS_CUSTOMHANDLER_PORT", "7072"),
                ("GALLEON_MAX_INVOCATION_BYTES", "12"),
            ],
            "GALLEON_MAX_INVOCATION_BYTES",
        ),
        (
            &[
                ("FUNCTIONS_CUSTOMHANDLER_PORT", "7072"),
                ("GALLEON_LOG_FORMAT", "xml"),
            ],
            "GALLEON_LOG_FORMAT",
        ),
    ];
    for (pairs, setting) in cases {
        let e = config(pairs).expect_err("must be rejected");
        assert_eq!(e.setting, *setting, "{pairs:?}");
        assert!(e.to_string().contains(setting));
    }
}

#[test]
fn identity_audiences_and_storage_accounts() {
    let c = config(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "7072")]).expect("valid");
    assert_eq!(c.identity_client_id, None);
    assert_eq!(c.audiences, Audiences::default());
    assert_eq!(
        c.storage_accounts.len(),
        2,
        "the VHD account, and galleon's own state account: {:?}",
        c.storage_accounts
    );
    assert!(c.storage_accounts.iter().any(|a| {
        a.holds(
            &url::Url::parse("https://contoso.blob.core.windows.net/galleon-state/x")
                .unwrap_or_else(|e| panic!("{e}")),
        )
    }));

    let id = "0f9b2a4c-6d8e-4f10-a2b3-c4d5e6f7a8b9";
    let c = config(&[
        ("FUNCTIONS_CUSTOMHANDLER_PORT", "7072"),
        ("ServiceBusConnection__clientId", id),
    ])
    .expect("valid");
    assert_eq!(
        c.identity_client_id.as_deref(),
        Some(id),
        "the connection's identity by default"
    );
    let c = config(&[
        ("FUNCTIONS_CUSTOMHANDLER_PORT", "7072"),
        ("ServiceBusConnection__clientId", id),
        (
            "GalleonIdentity__clientId",
            "7c1d3e5f-0a2b-4c6d-8e0f-1a2b3c4d5e6f",
        ),
    ])
    .expect("valid");
    assert_eq!(
        c.identity_client_id.as_deref(),
        Some("7c1d3e5f-0a2b-4c6d-8e0f-1a2b3c4d5e6f")
    );

    let gov = config(&[
        ("FUNCTIONS_CUSTOMHANDLER_PORT", "7072"),
        (
            "GALLEON_ARM_ENDPOINT",
            "https://management.usgovcloudapi.net",
        ),
        (
            "ServiceBusConnection__fullyQualifiedNamespace",
            "contoso.servicebus.usgovcloudapi.net",
        ),
        (
            "GALLEON_STORAGE_ACCOUNTS",
            "https://ingest.blob.core.usgovcloudapi.net",
        ),
    ])
    .expect("valid");
    assert_eq!(gov.audiences.arm, "https://management.usgovcloudapi.net");
    assert_eq!(
        gov.audiences.service_bus,
        "https://servicebus.usgovcloudapi.net"
    );
    let set = config(&[
        ("FUNCTIONS_CUSTOMHANDLER_PORT", "7072"),
        (
            "GALLEON_ARM_AUDIENCE",
            "https://management.core.windows.net/",
        ),
        (
            "GALLEON_STORAGE_AUDIENCE",
            "https://ingest.blob.core.windows.net",
        ),
    ])
    .expect("valid");
    assert_eq!(set.audiences.arm, "https://management.core.windows.net");
    assert_eq!(
        set.audiences.storage,
        "https://ingest.blob.core.windows.net"
    );

    // Without the setting, the host's own storage account.
    for (setting, value, endpoint) in [
        (
            "AzureWebJobsStorage__accountName",
            "funcstore",
            "https://funcstore.blob.core.windows.net",
        ),
        (
            "AzureWebJobsStorage__blobServiceUri",
            "https://funcstore.blob.core.chinacloudapi.cn",
            "https://funcstore.blob.core.chinacloudapi.cn",
        ),
        (
            "AzureWebJobsStorage",
            "DefaultEndpointsProtocol=https;AccountName=funcstore;AccountKey=a2V5;EndpointSuffix=core.usgovcloudapi.net",
            "https://funcstore.blob.core.usgovcloudapi.net",
        ),
    ] {
        let c = config(&[
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "7072"),
            ("GALLEON_STORAGE_ACCOUNTS", ""),
            (setting, value),
        ])
        .expect("valid");
        assert_eq!(
            c.storage_accounts.first(),
            Some(&StorageAccount::parse(endpoint).expect("endpoint")),
            "{setting}"
        );
    }
}

#[test]
fn bad_identity_audience_and_storage_settings_are_named() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("GalleonIdentity__clientId", "my-identity")],
            "GalleonIdentity__clientId",
        ),
        (
            &[("ServiceBusConnection__clientId", "x")],
            "ServiceBusConnection__clientId",
        ),
        (
            &[("GALLEON_ARM_AUDIENCE", "management.azure.com")],
            "GALLEON_ARM_AUDIENCE",
        ),
        (
            &[(
                "GALLEON_STORAGE_ACCOUNTS",
                "https://a.blob.core.windows.net/?sig=x",
            )],
            "GALLEON_STORAGE_ACCOUNTS",
        ),
        (
            &[
                ("GALLEON_STORAGE_ACCOUNTS", ""),
                ("AzureWebJobsStorage", "UseDevelopmentStorage=true"),
            ],
            "GALLEON_STORAGE_ACCOUNTS",
        ),
    ];
    for (pairs, setting) in cases {
        let mut all = vec![("FUNCTIONS_CUSTOMHANDLER_PORT", "7072")];
        all.extend_from_slice(pairs);
        let e = config(&all).expect_err("must be rejected");
        assert_eq!(e.setting, *setting, "{pairs:?}");
    }
}

#[test]
fn ingest_containers_managed_images_run_deadline_and_state() {
    let c = config(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "7072")]).expect("valid");
    assert_eq!(c.ingest_containers, ["images"]);
    assert!(!c.keep_managed_images);
    assert_eq!(c.run_deadline, Duration::from_secs(86_400));
    let c = config(&[
        ("FUNCTIONS_CUSTOMHANDLER_PORT", "7072"),
        ("GALLEON_INGEST_CONTAINERS", "images, builds-2026"),
        ("GALLEON_KEEP_MANAGED_IMAGES", "true"),
        ("GALLEON_RUN_DEADLINE_SECONDS", "600"),
        ("GALLEON_STATE_CONTAINER_URL", ""),
        (
            "AzureWebJobsStorage__blobServiceUri",
            "https://funcstore.blob.core.windows.net/",
        ),
    ])
    .expect("valid");
    assert_eq!(c.ingest_containers, ["images", "builds-2026"]);
    assert!(c.keep_managed_images);
    assert_eq!(c.run_deadline, Duration::from_secs(600));
    assert_eq!(
        c.state_container_url, "https://funcstore.blob.core.windows.net/galleon-state",
        "defaults to the host's own storage account"
    );
    // Each bad value names its setting.
    for (setting, value) in [
        ("GALLEON_INGEST_CONTAINERS", "Images"),
        ("GALLEON_INGEST_CONTAINERS", "a--b"),
        ("GALLEON_INGEST_CONTAINERS", ","),
        ("GALLEON_KEEP_MANAGED_IMAGES", "yes"),
        ("GALLEON_RUN_DEADLINE_SECONDS", "1"),
        (
            "GALLEON_STATE_CONTAINER_URL",
            "http://contoso.blob.core.windows.net/galleon-state",
        ),
        (
            "GALLEON_STATE_CONTAINER_URL",
            "https://contoso.blob.core.windows.net/galleon-state?sig=secret",
        ),
    ] {
        let e =
            config(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "7072"), (setting, value)]).expect_err(value);
        assert_eq!(e.setting, setting, "{value}");
    }
    let e = config(&[
        ("FUNCTIONS_CUSTOMHANDLER_PORT", "7072"),
        ("GALLEON_STATE_CONTAINER_URL", ""),
    ])
    .expect_err("no state container");
    assert_eq!(e.setting, "GALLEON_STATE_CONTAINER_URL");
}

#[test]
fn a_sas_token_in_the_state_url_is_not_repeated_in_the_error() {
    let e = config(&[
        ("FUNCTIONS_CUSTOMHANDLER_PORT", "7072"),
        (
            "GALLEON_STATE_CONTAINER_URL",
            "https://contoso.blob.core.windows.net/galleon-state?sv=1&sig=secret",
        ),
    ])
    .expect_err("a SAS is refused");
    assert!(!e.to_string().contains("secret"), "{e}");
}

#[test]
fn the_builds_file_is_read_and_a_bad_one_stops_the_app_naming_the_entry() {
    let dir = tempfile::tempdir().expect("dir");
    let good = dir.path().join("builds.json");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../builds.example.json");
    std::fs::copy(example, &good).expect("copy the example");
    let c = config(&[
        ("FUNCTIONS_CUSTOMHANDLER_PORT", "7072"),
        ("GALLEON_BUILDS_FILE", good.to_str().unwrap_or_default()),
        (
            "GALLEON_BUILD_TEMPLATES",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.VirtualMachineImages/imageTemplates/extra",
        ),
    ])
    .expect("valid");
    assert_eq!(c.builds.len(), 3);
    assert!(c.builds[0].only_when_source_changed);
    assert_eq!(c.build_request_container, "build-requests");

    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"templates": [{"templateId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.VirtualMachineImages/imageTemplates/t",
            "publish": {"imageDefinition": "u", "osType": "Linux", "hyperVGeneration": "V9"}}]}"#,
    )
    .expect("write");
    let e = config(&[
        ("FUNCTIONS_CUSTOMHANDLER_PORT", "7072"),
        ("GALLEON_BUILDS_FILE", bad.to_str().unwrap_or_default()),
    ])
    .expect_err("V9");
    assert_eq!(e.setting, "GALLEON_BUILDS_FILE");
    assert!(
        e.problem.contains("imageTemplates/t") && e.problem.contains("V9"),
        "{}",
        e.problem
    );
    // A malformed template id in GALLEON_BUILD_TEMPLATES names that setting, not the file's.
    let e = config(&[
        ("FUNCTIONS_CUSTOMHANDLER_PORT", "7072"),
        ("GALLEON_BUILD_TEMPLATES", "not-a-template-id"),
    ])
    .expect_err("not an id");
    assert_eq!(e.setting, "GALLEON_BUILD_TEMPLATES", "{e}");
    let missing = config(&[
        ("FUNCTIONS_CUSTOMHANDLER_PORT", "7072"),
        ("GALLEON_BUILDS_FILE", "/nonexistent/builds.json"),
    ])
    .expect_err("missing");
    assert!(
        missing.problem.contains("cannot read the builds file"),
        "{}",
        missing.problem
    );
}

#[test]
fn retention_distribution_and_sharing_refusals_name_the_setting_and_the_fix() {
    const TEAM: &str = "11111111-2222-3333-4444-555555555555";
    let allowed = format!("8c3e1f7a-2b4d-4e5f-9a6b-7c8d9e0f1a2b/rg-images/golden,{TEAM}/*/shared");
    let target = |fields: &str| {
        format!(
            r#"[{{"subscriptionId": "{TEAM}", "resourceGroup": "rg-team", "gallery": "shared"{fields}}}]"#
        )
    };
    let cases: Vec<(&str, String, &str)> = vec![
        // A policy that would delete everything, or says nothing.
        (
            "GALLEON_RETENTION",
            r#"{"default": {"keep": 0}}"#.into(),
            "keep at least 1",
        ),
        (
            "GALLEON_RETENTION",
            r#"{"definitions": {"ubuntu": {"graceDays": 3}}}"#.into(),
            "give keep, maxAgeDays or deleteSources",
        ),
        (
            "GALLEON_RETENTION",
            "keep=3".into(),
            "not a retention setting",
        ),
        // A target off the allow-list, or with a malformed subscription or tenant id.
        (
            "GALLEON_DISTRIBUTION",
            format!(
                r#"[{{"subscriptionId": "{TEAM}", "resourceGroup": "rg-team", "gallery": "other"}}]"#
            ),
            "add it there, or take it out",
        ),
        (
            "GALLEON_DISTRIBUTION",
            r#"[{"subscriptionId": "team-a", "resourceGroup": "rg-team", "gallery": "shared"}]"#
                .into(),
            "subscriptionId is not a GUID",
        ),
        (
            "GALLEON_DISTRIBUTION",
            target(r#", "tenantId": "contoso.onmicrosoft.com""#),
            "tenantId is not a GUID",
        ),
        (
            "GALLEON_DISTRIBUTION",
            target(r#", "replicaCount": 0"#),
            "give 1 to 100 replicas",
        ),
        // Sharing with a malformed id, with nobody, or as a community gallery with groups too.
        (
            "GALLEON_SHARING",
            r#"[{"subscriptions": ["team-a"]}]"#.into(),
            "is not a subscription or tenant id",
        ),
        (
            "GALLEON_SHARING",
            "[{}]".into(),
            "give subscriptions, tenants or community",
        ),
        (
            "GALLEON_SHARING",
            format!(
                r#"[{{"subscriptions": ["{TEAM}"], "community": {{"publisherUri": "https://c.example",
                "publisherContact": "a@c.example", "eula": "https://c.example/eula", "publicNamePrefix": "c"}}}}]"#
            ),
            "leave subscriptions and tenants out",
        ),
    ];
    for (setting, value, fix) in &cases {
        let e = config(&[
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "7072"),
            ("GALLEON_ALLOWED_GALLERIES", &allowed),
            (setting, value),
        ])
        .expect_err(value);
        assert_eq!(e.setting, *setting, "{value}");
        let said = e.to_string();
        assert!(
            said.starts_with(&format!("app setting {setting}: ")) && said.contains(fix),
            "{value}: {said}"
        );
    }
    // Each is accepted when it is right.
    let c = config(&[
        ("FUNCTIONS_CUSTOMHANDLER_PORT", "7072"),
        ("GALLEON_ALLOWED_GALLERIES", &allowed),
        ("GALLEON_RETENTION", r#"{"default": {"keep": 3}}"#),
        ("GALLEON_DISTRIBUTION", &target(r#", "replicaCount": 2"#)),
        (
            "GALLEON_SHARING",
            &format!(r#"[{{"subscriptions": ["{TEAM}"]}}]"#),
        ),
    ])
    .expect("valid");
    assert_eq!(c.distribution[0].replica_count, Some(2));
    assert_eq!(c.sharing.len(), 1);
    assert_eq!(
        c.retention.for_definition("any").and_then(|p| p.keep),
        Some(3)
    );
}
