//! Reads the host's invocation body `{"Data": …, "Metadata": …}` in one pass. `Metadata.data` (the Event
//! Grid extension's copy of the event's `data`, already in `Data`; for other triggers at most a message
//! body property leaked into the binding data) is skipped unread: nothing in galleon reads it, and it is
//! the largest part of an Event Grid invocation's metadata.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

/// The two parts of an invocation body, as sent.
#[derive(Debug, Default)]
pub(crate) struct Envelope {
    /// `Data`, `Null` when absent.
    pub data: Value,
    /// `Metadata` without its `data` member, `Null` when absent.
    pub metadata: Value,
}

/// Why a body is not an envelope.
pub(crate) enum EnvelopeError {
    /// Not JSON at all (serde_json's reason).
    InvalidJson(serde_json::Error),
    /// JSON, but not an object.
    NotObject,
}

impl Envelope {
    pub fn parse(body: &[u8]) -> Result<Envelope, EnvelopeError> {
        serde_json::from_slice::<Envelope>(body).map_err(|e| {
            // Tell "not JSON" from "JSON but not an object" (error path only).
            match serde_json::from_slice::<IgnoredAny>(body) {
                Ok(_) if !e.is_syntax() && !e.is_eof() => EnvelopeError::NotObject,
                _ => EnvelopeError::InvalidJson(e),
            }
        })
    }
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EnvelopeVisitor)
    }
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object with 'Data' and 'Metadata'")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope, A::Error> {
        let mut envelope = Envelope::default();
        while let Some(key) = map.next_key::<KeyName>()? {
            match key {
                KeyName::Data => envelope.data = map.next_value()?,
                KeyName::Metadata => envelope.metadata = map.next_value::<Metadata>()?.0,
                KeyName::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(envelope)
    }
}

/// A top-level member name, without keeping it.
enum KeyName {
    Data,
    Metadata,
    Other,
}

impl<'de> Deserialize<'de> for KeyName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = KeyName;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<KeyName, E> {
                Ok(match key {
                    "Data" => KeyName::Data,
                    "Metadata" => KeyName::Metadata,
                    _ => KeyName::Other,
                })
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// `Metadata`: an object read without its `data` member; anything else kept as it is (the server says
/// what is wrong with it).
struct Metadata(Value);

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MetadataVisitor;
        impl<'de> Visitor<'de> for MetadataVisitor {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("the invocation metadata")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
                let mut out = Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "data" {
                        map.next_value::<IgnoredAny>()?;
                    } else {
                        let value = map.next_value::<Value>()?;
                        out.insert(key, value);
                    }
                }
                Ok(Value::Object(out))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
                Ok(Value::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
                Ok(Value::from(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
                Ok(Value::from(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
                Ok(Value::from(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
                Ok(Value::from(v))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Value>()? {
                    items.push(item);
                }
                Ok(Value::Array(items))
            }
        }
        deserializer.deserialize_any(MetadataVisitor).map(Metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_data_and_metadata_without_metadata_data() {
        let body = json!({
            "Data": {"event": {"id": "1", "data": {"url": "u"}}},
            "Metadata": {"data": {"url": "u"}, "sys": {"MethodName": "IngestBlob"}, "DeliveryCount": "1"},
            "Extra": [1, 2]
        });
        let Ok(envelope) = Envelope::parse(body.to_string().as_bytes()) else {
            panic!("an envelope");
        };
        assert_eq!(envelope.data, body["Data"]);
        assert_eq!(
            envelope.metadata,
            json!({"sys": {"MethodName": "IngestBlob"}, "DeliveryCount": "1"})
        );
    }

    #[test]
    fn absent_parts_are_null_and_other_shapes_are_kept() {
        let Ok(e) = Envelope::parse(br#"{"Metadata": 3}"#) else {
            panic!("an envelope");
        };
        assert_eq!((e.data, e.metadata), (Value::Null, json!(3)));
        let Ok(e) = Envelope::parse(br#"{"Data": "x", "Metadata": [1, {"a": null}]}"#) else {
            panic!("an envelope");
        };
        assert_eq!((e.data, e.metadata), (json!("x"), json!([1, {"a": null}])));
    }

    #[test]
    fn not_json_and_not_an_object_are_told_apart() {
        for body in [&b"[1,2]"[..], b"\"text\"", b"3", b"null"] {
            assert!(
                matches!(Envelope::parse(body), Err(EnvelopeError::NotObject)),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        for body in [&b"{"[..], b"not json", b"{\"Data\": }", b""] {
            assert!(
                matches!(Envelope::parse(body), Err(EnvelopeError::InvalidJson(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
