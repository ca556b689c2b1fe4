//! Gallery sharing, decided: which galleries galleon shares with which subscriptions and tenants, or
//! publishes as a community gallery (`GALLEON_SHARING`), and what is still missing from what a gallery
//! shows, as the body of the gallery's `share` action.

use serde::Deserialize;
use serde_json::{Value, json};

use super::policy;

/// A community gallery's public details (Azure requires them to publish one).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Community {
    pub publisher_uri: String,
    pub publisher_contact: String,
    pub eula: String,
    pub public_name_prefix: String,
}

/// How one gallery is shared.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Share {
    /// `<subscription>/<resource group>/<gallery>`; the default gallery when left out.
    #[serde(default)]
    pub gallery: Option<String>,
    #[serde(default)]
    pub subscriptions: Vec<String>,
    #[serde(default)]
    pub tenants: Vec<String>,
    #[serde(default)]
    pub community: Option<Community>,
}

impl Share {
    /// The gallery's (subscription, resource group, name).
    pub fn gallery_parts(&self, p: &policy::Policy) -> (String, String, String) {
        match self
            .gallery
            .as_deref()
            .map(|g| g.split('/').collect::<Vec<_>>())
        {
            Some(parts) if parts.len() == 3 => (
                parts[0].to_owned(),
                parts[1].to_owned(),
                parts[2].to_owned(),
            ),
            _ => (
                p.subscription_id.clone(),
                p.resource_group.clone(),
                p.gallery.clone(),
            ),
        }
    }
}

/// Reads `GALLEON_SHARING` (a JSON list); `Err` names the entry and what is wrong.
pub fn parse(text: &str, p: &policy::Policy) -> Result<Vec<Share>, String> {
    let shares: Vec<Share> =
        serde_json::from_str(text).map_err(|e| format!("is not a list of gallery shares: {e}"))?;
    for (n, s) in shares.iter().enumerate() {
        let which = format!("share {}", n + 1);
        if s.gallery
            .as_deref()
            .is_some_and(|g| g.split('/').count() != 3)
        {
            return Err(format!(
                "{which}: gallery is <subscription>/<resource group>/<gallery>"
            ));
        }
        let (sub, rg, gallery) = s.gallery_parts(p);
        if !p.allows(&sub, &rg, &gallery) {
            return Err(format!(
                "{which}: gallery {sub}/{rg}/{gallery} is not on the allow-list (GALLEON_ALLOWED_GALLERIES)"
            ));
        }
        if let Some(bad) = s
            .subscriptions
            .iter()
            .chain(s.tenants.iter())
            .find(|id| uuid::Uuid::parse_str(id).is_err())
        {
            return Err(format!(
                "{which}: '{bad}' is not a subscription or tenant id (a GUID)"
            ));
        }
        if s.subscriptions.is_empty() && s.tenants.is_empty() && s.community.is_none() {
            return Err(format!(
                "{which} shares with nobody: give subscriptions, tenants or community"
            ));
        }
        if s.community.is_some() && !(s.subscriptions.is_empty() && s.tenants.is_empty()) {
            return Err(format!(
                "{which}: a community gallery is shared with everyone; leave subscriptions and tenants out"
            ));
        }
    }
    Ok(shares)
}

/// The ids a gallery's `sharingProfile.groups` lists, of one type (`Subscriptions`, `AADTenants`).
fn shared_ids(gallery: &Value, ty: &str) -> Vec<String> {
    gallery
        .pointer("/properties/sharingProfile/groups")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|g| {
            g.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.eq_ignore_ascii_case(ty))
        })
        .flat_map(|g| {
            g.get("ids")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|id| id.as_str().map(str::to_ascii_lowercase))
        .collect()
}

/// What the gallery still lacks: the `share` action's body, or `None` when it shows everything already.
pub fn missing(share: &Share, gallery: &Value) -> Option<Value> {
    if share.community.is_some() {
        let permissions = gallery
            .pointer("/properties/sharingProfile/permissions")
            .and_then(Value::as_str);
        let enabled = gallery
            .pointer("/properties/sharingProfile/communityGalleryInfo/communityGalleryEnabled")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        return (permissions != Some("Community") || !enabled)
            .then(|| json!({"operationType": "EnableCommunity"}));
    }
    let mut groups = Vec::new();
    for (ty, wanted) in [
        ("Subscriptions", &share.subscriptions),
        ("AADTenants", &share.tenants),
    ] {
        let have = shared_ids(gallery, ty);
        let add: Vec<&String> = wanted
            .iter()
            .filter(|id| !have.contains(&id.to_ascii_lowercase()))
            .collect();
        if !add.is_empty() {
            groups.push(json!({"type": ty, "ids": add}));
        }
    }
    (!groups.is_empty()).then(|| json!({"operationType": "Add", "groups": groups}))
}

/// The gallery's `sharingProfile` a share needs before the action (`Groups` for direct sharing,
/// `Community` with its details), or `None` when the gallery has it.
pub fn profile_needed(share: &Share, gallery: &Value) -> Option<Value> {
    let permissions = gallery
        .pointer("/properties/sharingProfile/permissions")
        .and_then(Value::as_str);
    match &share.community {
        Some(c) if permissions != Some("Community") => {
            Some(json!({"permissions": "Community", "communityGalleryInfo": {
            "publisherUri": c.publisher_uri, "publisherContact": c.publisher_contact, "eula": c.eula,
            "publicNamePrefix": c.public_name_prefix}}))
        }
        None if permissions != Some("Groups") => Some(json!({"permissions": "Groups"})),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = "11111111-2222-3333-4444-555555555555";
    const TENANT: &str = "99999999-2222-3333-4444-555555555555";

    fn share() -> Share {
        Share {
            gallery: None,
            subscriptions: vec![SUB.into()],
            tenants: vec![TENANT.into()],
            community: None,
        }
    }

    fn policy() -> policy::Policy {
        policy::for_tests()
    }

    #[test]
    fn shares_are_checked_at_start_up_each_refusal_naming_the_entry_and_the_fix() {
        let p = policy();
        let ok = format!(
            r#"[{{"subscriptions": ["{SUB}"], "tenants": ["{TENANT}"]}},
            {{"gallery": "{SUB}/rg-team/shared", "community": {{"publisherUri": "https://contoso.example",
              "publisherContact": "images@contoso.example", "eula": "https://contoso.example/eula", "publicNamePrefix": "contoso"}}}}]"#
        );
        let shares = parse(&ok, &p).expect("valid");
        assert_eq!(
            shares[0].gallery_parts(&p).2,
            "golden",
            "the default gallery"
        );
        assert_eq!(
            shares[1].gallery_parts(&p),
            (SUB.to_owned(), "rg-team".to_owned(), "shared".to_owned())
        );
        let community = r#""community": {"publisherUri": "https://c.example", "publisherContact": "a@c.example", "eula": "https://c.example/eula", "publicNamePrefix": "c"}"#;
        for (entry, want) in [
            // A malformed id, of a subscription or of a tenant.
            (
                r#"{"subscriptions": ["team-a"]}"#.to_owned(),
                "share 1: 'team-a' is not a subscription or tenant id (a GUID)",
            ),
            (
                format!(
                    r#"{{"subscriptions": ["{SUB}"], "tenants": ["contoso.onmicrosoft.com"]}}"#
                ),
                "'contoso.onmicrosoft.com' is not a subscription or tenant id",
            ),
            // A gallery that is not <subscription>/<resource group>/<gallery>, or off the allow-list.
            (
                format!(r#"{{"gallery": "golden", "subscriptions": ["{SUB}"]}}"#),
                "gallery is <subscription>/<resource group>/<gallery>",
            ),
            (
                format!(r#"{{"gallery": "{SUB}/rg-team/other", "subscriptions": ["{SUB}"]}}"#),
                "not on the allow-list (GALLEON_ALLOWED_GALLERIES)",
            ),
            // Nobody to share with.
            (
                "{}".to_owned(),
                "shares with nobody: give subscriptions, tenants or community",
            ),
            (
                r#"{"subscriptions": [], "tenants": []}"#.to_owned(),
                "shares with nobody",
            ),
            // A community gallery is everyone's: no groups besides.
            (
                format!(r#"{{"subscriptions": ["{SUB}"], {community}}}"#),
                "a community gallery is shared with everyone; leave subscriptions and tenants out",
            ),
            (
                format!(r#"{{"tenants": ["{TENANT}"], {community}}}"#),
                "leave subscriptions and tenants out",
            ),
            // A community gallery's details are all required; unknown fields are refused.
            (
                r#"{"community": {"publisherUri": "https://c.example"}}"#.to_owned(),
                "missing field",
            ),
            (format!(r#"{{"subscription": ["{SUB}"]}}"#), "unknown field"),
        ] {
            let text = format!("[{entry}]");
            let e = parse(&text, &p).expect_err(&text);
            assert!(e.contains(want), "{text}: {e}");
        }
        assert!(parse(r#"{"subscriptions": []}"#, &p).is_err_and(|e| e.contains("not a list")));
    }

    #[test]
    fn only_what_is_missing_is_shared() {
        let private = json!({"properties": {"sharingProfile": {"permissions": "Private"}}});
        assert_eq!(
            profile_needed(&share(), &private),
            Some(json!({"permissions": "Groups"}))
        );
        assert_eq!(
            missing(&share(), &private),
            Some(
                json!({"operationType": "Add", "groups": [{"type": "Subscriptions", "ids": [SUB]}, {"type": "AADTenants", "ids": [TENANT]}]})
            )
        );
        let half = json!({"properties": {"sharingProfile": {"permissions": "Groups", "groups": [{"type": "Subscriptions", "ids": [SUB.to_uppercase()]}]}}});
        assert_eq!(profile_needed(&share(), &half), None);
        assert_eq!(
            missing(&share(), &half),
            Some(
                json!({"operationType": "Add", "groups": [{"type": "AADTenants", "ids": [TENANT]}]})
            )
        );
        let all = json!({"properties": {"sharingProfile": {"permissions": "Groups", "groups": [
            {"type": "Subscriptions", "ids": [SUB]}, {"type": "AADTenants", "ids": [TENANT]}]}}});
        assert_eq!(missing(&share(), &all), None, "nothing to do twice");
    }
}
