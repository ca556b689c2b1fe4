//! Azure Resource Manager's rules for resource tags, checked on every PUT and PATCH before the resource
//! provider sees the body: at most 50 tags, names of 1-512 characters without `<>%&\?/` or control
//! characters, values of at most 256 characters.
//!
//! The limits are Azure's documented ones ("Use tags to organize your Azure resources"); the codes and
//! texts are the ones Azure PowerShell reproduces from ARM's answers (Az.Migrate's tag checks) [obs].

use serde_json::Value;

use crate::error::ArmError;

/// Tags one resource may carry.
pub const MAX_TAGS: usize = 50;
/// Characters in a tag name.
pub const MAX_NAME: usize = 512;
/// Characters in a tag value.
pub const MAX_VALUE: usize = 256;

fn reserved(c: char) -> bool {
    matches!(c, '<' | '>' | '%' | '&' | '\\' | '?' | '/') || c.is_control()
}

/// Checks the `tags` of a request body; a body without tags passes.
pub fn check(body: &Value) -> Result<(), ArmError> {
    let Some(tags) = body.get("tags") else {
        return Ok(());
    };
    let tags = match tags {
        Value::Null => return Ok(()),
        Value::Object(t) => t,
        _ => {
            return Err(ArmError::new(
                400,
                "InvalidRequestContent",
                "The request content was invalid and could not be deserialized: 'tags' must be an object of strings.",
            ));
        }
    };
    if tags.len() > MAX_TAGS {
        return Err(ArmError::new(
            400,
            "InvalidTags",
            format!(
                "Too many tags specified. Requested tag count - '{}'. Maximum number of tags allowed - '{MAX_TAGS}'.",
                tags.len()
            ),
        ));
    }
    if tags.keys().any(|name| name.trim().is_empty()) {
        return Err(ArmError::new(
            400,
            "InvalidTagName",
            "The tag name must be non-null, non-empty and non-whitespace only. Please provide an actual value.",
        ));
    }
    let bad: Vec<&str> = tags
        .keys()
        .filter(|name| name.chars().any(reserved))
        .map(String::as_str)
        .collect();
    if !bad.is_empty() {
        return Err(ArmError::new(
            400,
            "InvalidTagNameCharacters",
            format!(
                "The tag names '{}' have reserved characters '<,>,%,&,\\,?,/' or control characters.",
                bad.join(", ")
            ),
        ));
    }
    let long: Vec<&str> = tags
        .keys()
        .filter(|name| name.chars().count() > MAX_NAME)
        .map(String::as_str)
        .collect();
    if !long.is_empty() {
        return Err(ArmError::new(
            400,
            "InvalidTagName",
            format!(
                "Tag key too large. Following tag name '{}' exceeded the maximum length. Maximum allowed length for tag name - '{MAX_NAME}' characters.",
                long.join(", ")
            ),
        ));
    }
    let mut long_values = Vec::new();
    for value in tags.values() {
        match value {
            Value::String(v) if v.chars().count() > MAX_VALUE => long_values.push(v.as_str()),
            Value::String(_) => {}
            _ => {
                return Err(ArmError::new(
                    400,
                    "InvalidRequestContent",
                    "The request content was invalid and could not be deserialized: tag values must be strings.",
                ));
            }
        }
    }
    if !long_values.is_empty() {
        return Err(ArmError::new(
            400,
            "InvalidTagValueLength",
            format!(
                "Tag value too large. Following tag value '{}' exceeded the maximum length. Maximum allowed length for tag value - '{MAX_VALUE}' characters.",
                long_values.join(", ")
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tags_are_checked_as_azure_does() {
        let many: serde_json::Map<String, Value> =
            (0..51).map(|i| (format!("t{i}"), json!("v"))).collect();
        let fifty: serde_json::Map<String, Value> =
            (0..50).map(|i| (format!("t{i}"), json!("v"))).collect();
        // (tags, expected code or None)
        let table = [
            (json!(null), None),
            (json!({}), None),
            (
                json!({"team": "platform", "cost-center": "4711", "a b.c_d=e": ""}),
                None,
            ),
            (Value::Object(fifty), None),
            (Value::Object(many), Some("InvalidTags")),
            (json!({"": "x"}), Some("InvalidTagName")),
            (json!({"  ": "x"}), Some("InvalidTagName")),
            (
                json!({"k8s.io/role": "x"}),
                Some("InvalidTagNameCharacters"),
            ),
            (json!({"50%": "x"}), Some("InvalidTagNameCharacters")),
            (json!({"a\u{7}b": "x"}), Some("InvalidTagNameCharacters")),
            (json!({"x".repeat(512): "v"}), None),
            (json!({"x".repeat(513): "v"}), Some("InvalidTagName")),
            (json!({"k": "v".repeat(256)}), None),
            (json!({"k": "v".repeat(257)}), Some("InvalidTagValueLength")),
            (json!({"k": "/a/b?c=<d>&e"}), None),
            (json!({"k": 1}), Some("InvalidRequestContent")),
            (json!(["k"]), Some("InvalidRequestContent")),
        ];
        for (tags, want) in table {
            let got = check(&json!({"location": "westeurope", "tags": tags}))
                .err()
                .map(|e| {
                    assert_eq!(e.status, 400);
                    e.code
                });
            assert_eq!(got.as_deref(), want, "{tags}");
        }
        assert!(check(&json!({"location": "westeurope"})).is_ok());
    }
}
