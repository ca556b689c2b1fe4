//! Event Grid shared access signatures (`aeg-sas-token: r=…&e=…&s=…` or
//! `Authorization: SharedAccessSignature r=…&e=…&s=…`): the signature is
//! base64(HMAC-SHA256(base64-decoded topic key, "r=<encoded resource>&e=<encoded expiry>")).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, NaiveDateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What a valid token says.
#[derive(Debug, Clone, PartialEq)]
pub struct SasToken {
    pub resource: String,
    pub expiry: DateTime<Utc>,
}

fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Parses an expiry as the SDKs write it: ISO 8601 / Python `str(datetime)` (naive = UTC) or the C#
/// sample's en-US `M/d/yyyy h:mm:ss tt`.
pub fn parse_expiry(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%:z"] {
        if let Ok(d) = DateTime::parse_from_str(s, f) {
            return Some(d.with_timezone(&Utc));
        }
    }
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%m/%d/%Y %I:%M:%S %p",
    ] {
        if let Ok(d) = NaiveDateTime::parse_from_str(s, f) {
            return Some(d.and_utc());
        }
    }
    None
}

/// Verifies a token against a topic key; `now` for the expiry check.
pub fn verify(token: &str, key: &str, now: DateTime<Utc>) -> Result<SasToken, String> {
    let token = token.trim();
    let Some((unsigned, sig)) = token.rsplit_once("&s=") else {
        return Err("the shared access signature has no s= part".into());
    };
    let mut r = None;
    let mut e = None;
    for part in unsigned.split('&') {
        match part.split_once('=') {
            Some(("r", v)) => r = Some(decode(v)),
            Some(("e", v)) => e = Some(decode(v)),
            _ => {}
        }
    }
    let (Some(resource), Some(expiry_text)) = (r, e) else {
        return Err("the shared access signature needs r= and e=".into());
    };
    let key_bytes = STANDARD
        .decode(key.trim())
        .unwrap_or_else(|_| key.as_bytes().to_vec());
    let mut mac = Hmac::<Sha256>::new_from_slice(&key_bytes).map_err(|e| e.to_string())?;
    mac.update(unsigned.as_bytes());
    let given = STANDARD
        .decode(decode(sig))
        .map_err(|_| "the signature is not base64".to_string())?;
    mac.verify_slice(&given)
        .map_err(|_| "the signature does not match the topic key".to_string())?;
    let expiry = parse_expiry(&expiry_text)
        .ok_or_else(|| format!("the expiry '{expiry_text}' is not a date"))?;
    if expiry <= now {
        return Err(format!("the shared access signature expired at {expiry}"));
    }
    Ok(SasToken { resource, expiry })
}

/// The path of a signed resource URL (`https://host/topics/t/api/events?apiVersion=…` → `/topics/t/api/events`).
pub fn resource_path(resource: &str) -> String {
    match url::Url::parse(resource) {
        Ok(u) => u.path().to_string(),
        Err(_) => resource.split('?').next().unwrap_or("").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const KEY: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHMtMDEyMzQ1Njc4OQ==";
    // made with azure-eventgrid's generate_sas (see the module docs for the formula)
    const PY_TZ: &str = "r=https%3A%2F%2F127.0.0.1%3A7446%2Ftopics%2Fgalleon-events%2Fapi%2Fevents%3FapiVersion%3D2018-01-01&e=2030-01-02%2003%3A04%3A05%2B00%3A00&s=RHmznJhu4pTOFuSEjlOr1ks6YfLGHlw167DrkZzh9j4%3D";
    const PY_NAIVE: &str = "r=https%3A%2F%2F127.0.0.1%3A7446%2Ftopics%2Fgalleon-events%2Fapi%2Fevents%3FapiVersion%3D2018-01-01&e=2030-01-02%2003%3A04%3A05.123456&s=C%2F4iwxoq4iDWmkukr9ymLzv0Wuz7Ss%2Bx5usjNQxkkDY%3D";

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2029, 1, 1, 0, 0, 0)
            .single()
            .expect("date")
    }

    #[test]
    fn python_sdk_tokens_verify() {
        let t = verify(PY_TZ, KEY, now()).expect("valid");
        assert_eq!(
            resource_path(&t.resource),
            "/topics/galleon-events/api/events"
        );
        assert_eq!(
            t.expiry,
            Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5)
                .single()
                .expect("date")
        );
        verify(PY_NAIVE, KEY, now()).expect("valid");
    }

    #[test]
    fn rejections() {
        assert!(verify(PY_TZ, "b3RoZXIta2V5", now()).is_err(), "wrong key");
        let late = Utc
            .with_ymd_and_hms(2031, 1, 1, 0, 0, 0)
            .single()
            .expect("date");
        assert!(verify(PY_TZ, KEY, late).unwrap_err().contains("expired"));
        assert!(
            verify(&PY_TZ.replace("7446", "7447"), KEY, now()).is_err(),
            "tampered resource"
        );
        assert!(verify("r=x&e=y", KEY, now()).is_err());
        assert!(verify("garbage", KEY, now()).is_err());
    }

    #[test]
    fn expiry_formats() {
        let want = Utc
            .with_ymd_and_hms(2017, 6, 15, 18, 20, 15)
            .single()
            .expect("date");
        assert_eq!(parse_expiry("6/15/2017 6:20:15 PM"), Some(want));
        assert_eq!(parse_expiry("2017-06-15T18:20:15Z"), Some(want));
        assert_eq!(parse_expiry("2017-06-15 18:20:15"), Some(want));
        assert_eq!(parse_expiry("2017-06-15 20:20:15+02:00"), Some(want));
        assert_eq!(parse_expiry("soon"), None);
    }
}
