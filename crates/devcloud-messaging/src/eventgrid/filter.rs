//! Event subscription filters as Azure applies them: the ARM `EventSubscriptionFilter`
//! (`includedEventTypes`, `subjectBeginsWith`/`subjectEndsWith`, `isSubjectCaseSensitive`,
//! `enableAdvancedFilteringOnArrays`, `advancedFilters: [{operatorType, key, value|values}]`), parsed
//! with Azure's limits and evaluated with its semantics: every part must match (AND), the values of
//! one advanced filter are alternatives (OR, and for the `Not` operators none may match), string
//! comparisons of advanced filters are case-insensitive, keys are paths like `data.blobType`.

use serde_json::{Map, Value, json};

use super::model::Event;

/// Most advanced filters per subscription, and most values across all of them.
pub const MAX_ADVANCED_FILTERS: usize = 25;
pub const MAX_ADVANCED_FILTER_VALUES: usize = 25;
/// Longest string value of an advanced filter.
pub const MAX_STRING_VALUE: usize = 512;

/// An advanced filter operator (ARM `operatorType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    NumberIn,
    NumberNotIn,
    NumberLessThan,
    NumberGreaterThan,
    NumberLessThanOrEquals,
    NumberGreaterThanOrEquals,
    NumberInRange,
    NumberNotInRange,
    BoolEquals,
    StringContains,
    StringNotContains,
    StringBeginsWith,
    StringNotBeginsWith,
    StringEndsWith,
    StringNotEndsWith,
    StringIn,
    StringNotIn,
    IsNullOrUndefined,
    IsNotNull,
}

const OPERATORS: [(&str, Operator); 19] = [
    ("NumberIn", Operator::NumberIn),
    ("NumberNotIn", Operator::NumberNotIn),
    ("NumberLessThan", Operator::NumberLessThan),
    ("NumberGreaterThan", Operator::NumberGreaterThan),
    ("NumberLessThanOrEquals", Operator::NumberLessThanOrEquals),
    (
        "NumberGreaterThanOrEquals",
        Operator::NumberGreaterThanOrEquals,
    ),
    ("NumberInRange", Operator::NumberInRange),
    ("NumberNotInRange", Operator::NumberNotInRange),
    ("BoolEquals", Operator::BoolEquals),
    ("StringContains", Operator::StringContains),
    ("StringNotContains", Operator::StringNotContains),
    ("StringBeginsWith", Operator::StringBeginsWith),
    ("StringNotBeginsWith", Operator::StringNotBeginsWith),
    ("StringEndsWith", Operator::StringEndsWith),
    ("StringNotEndsWith", Operator::StringNotEndsWith),
    ("StringIn", Operator::StringIn),
    ("StringNotIn", Operator::StringNotIn),
    ("IsNullOrUndefined", Operator::IsNullOrUndefined),
    ("IsNotNull", Operator::IsNotNull),
];

/// How an operator takes its operand in ARM.
enum Operand {
    None,
    /// `value`: one number or bool
    Single,
    /// `values`: a list
    Many,
}

impl Operator {
    pub fn parse(s: &str) -> Option<Operator> {
        OPERATORS.iter().find(|(n, _)| *n == s).map(|(_, o)| *o)
    }

    pub fn arm_name(self) -> &'static str {
        OPERATORS
            .iter()
            .find(|(_, o)| *o == self)
            .map(|(n, _)| *n)
            .unwrap_or("")
    }

    fn operand(self) -> Operand {
        use Operator::*;
        match self {
            IsNullOrUndefined | IsNotNull => Operand::None,
            NumberLessThan
            | NumberGreaterThan
            | NumberLessThanOrEquals
            | NumberGreaterThanOrEquals
            | BoolEquals => Operand::Single,
            _ => Operand::Many,
        }
    }

    /// The `Not` operators: true when no value matches.
    fn negated(self) -> bool {
        use Operator::*;
        matches!(
            self,
            NumberNotIn
                | NumberNotInRange
                | StringNotContains
                | StringNotBeginsWith
                | StringNotEndsWith
                | StringNotIn
        )
    }
}

/// One advanced filter.
#[derive(Debug, Clone, PartialEq)]
pub struct AdvancedFilter {
    pub operator: Operator,
    pub key: String,
    /// The operand(s): one element for `value` operators, none for the null checks.
    pub values: Vec<Value>,
}

/// A subscription's event filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    /// Empty = all types.
    pub included_event_types: Vec<String>,
    pub subject_begins_with: String,
    pub subject_ends_with: String,
    pub case_sensitive: bool,
    pub advanced_filters: Vec<AdvancedFilter>,
    pub advanced_filtering_on_arrays: bool,
}

/// A filter ARM would refuse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid event subscription filter: {0}")]
pub struct FilterError(pub String);

fn bad(m: impl Into<String>) -> FilterError {
    FilterError(m.into())
}

impl EventFilter {
    /// Parses an ARM `EventSubscriptionFilter` object; unknown properties and operators, wrong
    /// operands and Azure's limits (25 filters, 25 values, 512-character strings) are refused.
    pub fn from_arm(v: &Value) -> Result<EventFilter, FilterError> {
        let o = v
            .as_object()
            .ok_or_else(|| bad("the filter must be a JSON object"))?;
        let mut f = EventFilter::default();
        for (k, val) in o {
            match k.as_str() {
                "includedEventTypes" => {
                    f.included_event_types = val
                        .as_array()
                        .ok_or_else(|| bad("includedEventTypes must be an array of strings"))?
                        .iter()
                        .map(|t| t.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| bad("includedEventTypes must be an array of strings"))?;
                }
                "subjectBeginsWith" | "subjectEndsWith" => {
                    let s = match val {
                        Value::Null => String::new(),
                        Value::String(s) => s.clone(),
                        _ => return Err(bad(format!("{k} must be a string"))),
                    };
                    if k == "subjectBeginsWith" {
                        f.subject_begins_with = s;
                    } else {
                        f.subject_ends_with = s;
                    }
                }
                "isSubjectCaseSensitive" => {
                    f.case_sensitive = val
                        .as_bool()
                        .ok_or_else(|| bad("isSubjectCaseSensitive must be a boolean"))?;
                }
                "enableAdvancedFilteringOnArrays" => {
                    f.advanced_filtering_on_arrays = val
                        .as_bool()
                        .ok_or_else(|| bad("enableAdvancedFilteringOnArrays must be a boolean"))?;
                }
                "advancedFilters" => {
                    let list = val
                        .as_array()
                        .ok_or_else(|| bad("advancedFilters must be an array"))?;
                    for a in list {
                        f.advanced_filters.push(parse_advanced(a)?);
                    }
                }
                other => return Err(bad(format!("unknown filter property '{other}'"))),
            }
        }
        if f.advanced_filters.len() > MAX_ADVANCED_FILTERS {
            return Err(bad(format!(
                "{} advanced filters; at most {MAX_ADVANCED_FILTERS} are allowed",
                f.advanced_filters.len()
            )));
        }
        let values: usize = f
            .advanced_filters
            .iter()
            .map(|a| a.values.len().max(1))
            .sum();
        if values > MAX_ADVANCED_FILTER_VALUES {
            return Err(bad(format!(
                "{values} advanced filter values; at most {MAX_ADVANCED_FILTER_VALUES} across all filters"
            )));
        }
        Ok(f)
    }

    /// The filter as ARM shows it.
    pub fn to_arm(&self) -> Value {
        let adv: Vec<Value> = self
            .advanced_filters
            .iter()
            .map(|a| {
                let mut m = Map::new();
                m.insert("operatorType".into(), json!(a.operator.arm_name()));
                m.insert("key".into(), json!(a.key));
                match a.operator.operand() {
                    Operand::None => {}
                    Operand::Single => {
                        m.insert(
                            "value".into(),
                            a.values.first().cloned().unwrap_or(Value::Null),
                        );
                    }
                    Operand::Many => {
                        m.insert("values".into(), Value::Array(a.values.clone()));
                    }
                }
                Value::Object(m)
            })
            .collect();
        json!({
            "includedEventTypes": self.included_event_types,
            "subjectBeginsWith": self.subject_begins_with,
            "subjectEndsWith": self.subject_ends_with,
            "isSubjectCaseSensitive": self.case_sensitive,
            "enableAdvancedFilteringOnArrays": self.advanced_filtering_on_arrays,
            "advancedFilters": adv,
        })
    }

    pub fn matches(&self, e: &Event) -> bool {
        let ty = e.event_type();
        if !self.included_event_types.is_empty()
            && !self
                .included_event_types
                .iter()
                .any(|t| t.eq_ignore_ascii_case(ty))
        {
            return false;
        }
        let (subject, begins, ends) = if self.case_sensitive {
            (
                e.subject().to_string(),
                self.subject_begins_with.clone(),
                self.subject_ends_with.clone(),
            )
        } else {
            (
                e.subject().to_lowercase(),
                self.subject_begins_with.to_lowercase(),
                self.subject_ends_with.to_lowercase(),
            )
        };
        subject.starts_with(&begins)
            && subject.ends_with(&ends)
            && self
                .advanced_filters
                .iter()
                .all(|a| a.matches(&e.value, self.advanced_filtering_on_arrays))
    }
}

fn parse_advanced(v: &Value) -> Result<AdvancedFilter, FilterError> {
    let o = v
        .as_object()
        .ok_or_else(|| bad("each advanced filter must be an object"))?;
    let op_name = o
        .get("operatorType")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("an advanced filter needs operatorType"))?;
    let operator =
        Operator::parse(op_name).ok_or_else(|| bad(format!("unknown operatorType '{op_name}'")))?;
    let key = o
        .get("key")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| bad(format!("the {op_name} filter needs a key")))?
        .to_string();
    for k in o.keys() {
        if !matches!(k.as_str(), "operatorType" | "key" | "value" | "values") {
            return Err(bad(format!(
                "unknown advanced filter property '{k}' ({op_name} on {key})"
            )));
        }
    }
    let ctx = || format!("{op_name} on {key}");
    let values = match operator.operand() {
        Operand::None => Vec::new(),
        Operand::Single => {
            let v = o
                .get("value")
                .ok_or_else(|| bad(format!("{} needs a value", ctx())))?;
            let ok = if operator == Operator::BoolEquals {
                v.is_boolean()
            } else {
                v.is_number()
            };
            if !ok {
                return Err(bad(format!("{}: wrong type of value {v}", ctx())));
            }
            vec![v.clone()]
        }
        Operand::Many => {
            let vs = o
                .get("values")
                .and_then(Value::as_array)
                .filter(|a| !a.is_empty())
                .ok_or_else(|| bad(format!("{} needs a non-empty values array", ctx())))?;
            for v in vs {
                let ok = match operator {
                    Operator::NumberIn | Operator::NumberNotIn => v.is_number(),
                    Operator::NumberInRange | Operator::NumberNotInRange => v
                        .as_array()
                        .is_some_and(|r| r.len() == 2 && r.iter().all(Value::is_number)),
                    _ => v
                        .as_str()
                        .is_some_and(|s| s.chars().count() <= MAX_STRING_VALUE),
                };
                if !ok {
                    return Err(bad(format!(
                        "{}: value {v} is not a {}",
                        ctx(),
                        match operator {
                            Operator::NumberInRange | Operator::NumberNotInRange =>
                                "[low, high] pair of numbers",
                            Operator::NumberIn | Operator::NumberNotIn => "number",
                            _ => "string of at most 512 characters",
                        }
                    )));
                }
            }
            vs.clone()
        }
    };
    Ok(AdvancedFilter {
        operator,
        key,
        values,
    })
}

/// The value at a key path (`subject`, `data.blobType`, `Data.Key1.Key2`), names compared
/// case-insensitively when there is no exact match. `None` when undefined.
fn lookup<'a>(event: &'a Value, key: &str) -> Option<&'a Value> {
    let mut cur = event;
    for seg in key.split('.') {
        let o = cur.as_object()?;
        cur = o.get(seg).or_else(|| {
            o.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(seg))
                .map(|(_, v)| v)
        })?;
    }
    Some(cur)
}

impl AdvancedFilter {
    fn matches(&self, event: &Value, on_arrays: bool) -> bool {
        let found = lookup(event, &self.key).filter(|v| !v.is_null());
        match self.operator {
            Operator::IsNullOrUndefined => return found.is_none(),
            Operator::IsNotNull => return found.is_some(),
            _ => {}
        }
        let negated = self.operator.negated();
        let Some(v) = found else {
            // an undefined key matches only the Not operators
            return negated;
        };
        match v {
            Value::Array(items) if on_arrays => {
                if negated {
                    items.iter().all(|i| self.scalar_matches(i))
                } else {
                    items.iter().any(|i| self.scalar_matches(i))
                }
            }
            // arrays are not filtered on unless asked: the event does not match
            Value::Array(_) => false,
            v => self.scalar_matches(v),
        }
    }

    /// Whether one scalar satisfies the filter (for Not operators: matches none of the values).
    fn scalar_matches(&self, v: &Value) -> bool {
        use Operator::*;
        let num = v.as_f64();
        let text = match v {
            Value::String(s) => Some(s.to_lowercase()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        };
        let strs = || {
            self.values
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_lowercase)
        };
        let nums = || self.values.iter().filter_map(Value::as_f64);
        let first = self.values.first().and_then(Value::as_f64);
        let in_range = |x: f64| {
            self.values.iter().any(|r| {
                let lo = r.get(0).and_then(Value::as_f64);
                let hi = r.get(1).and_then(Value::as_f64);
                matches!((lo, hi), (Some(lo), Some(hi)) if lo <= x && x <= hi)
            })
        };
        match self.operator {
            NumberIn => num.is_some_and(|x| nums().any(|n| n == x)),
            NumberNotIn => !num.is_some_and(|x| nums().any(|n| n == x)),
            NumberLessThan => matches!((num, first), (Some(x), Some(n)) if x < n),
            NumberGreaterThan => matches!((num, first), (Some(x), Some(n)) if x > n),
            NumberLessThanOrEquals => matches!((num, first), (Some(x), Some(n)) if x <= n),
            NumberGreaterThanOrEquals => matches!((num, first), (Some(x), Some(n)) if x >= n),
            NumberInRange => num.is_some_and(in_range),
            NumberNotInRange => !num.is_some_and(in_range),
            BoolEquals => v
                .as_bool()
                .is_some_and(|b| self.values.first() == Some(&json!(b))),
            StringContains => text.is_some_and(|t| strs().any(|s| t.contains(&s))),
            StringNotContains => !text.is_some_and(|t| strs().any(|s| t.contains(&s))),
            StringBeginsWith => text.is_some_and(|t| strs().any(|s| t.starts_with(&s))),
            StringNotBeginsWith => !text.is_some_and(|t| strs().any(|s| t.starts_with(&s))),
            StringEndsWith => text.is_some_and(|t| strs().any(|s| t.ends_with(&s))),
            StringNotEndsWith => !text.is_some_and(|t| strs().any(|s| t.ends_with(&s))),
            StringIn => text.is_some_and(|t| strs().any(|s| t == s)),
            StringNotIn => !text.is_some_and(|t| strs().any(|s| t == s)),
            IsNullOrUndefined => false,
            IsNotNull => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::Schema;
    use super::*;

    fn blob(subject: &str) -> Event {
        Event {
            schema: Schema::EventGrid,
            value: json!({"eventType": "Microsoft.Storage.BlobCreated", "subject": subject,
                          "data": {"api": "PutBlob", "blobType": "PageBlob", "contentLength": 1024,
                                   "tags": ["a", "b"], "nothing": null}}),
        }
    }

    fn filter(v: Value) -> EventFilter {
        EventFilter::from_arm(&v).expect("valid filter")
    }

    #[test]
    fn subject_and_types() {
        let e = Event {
            schema: Schema::CloudEvents,
            value: json!({"type": "Microsoft.Storage.BlobCreated", "subject": "/blobServices/default/containers/Vhds/blobs/a.vhd"}),
        };
        let mut f = EventFilter::default();
        assert!(f.matches(&e));
        f.included_event_types = vec!["Microsoft.Storage.BlobCreated".into()];
        f.subject_begins_with = "/blobServices/default/containers/vhds/".into();
        f.subject_ends_with = ".VHD".into();
        assert!(f.matches(&e));
        f.case_sensitive = true;
        assert!(!f.matches(&e));
        f.case_sensitive = false;
        f.included_event_types = vec!["Microsoft.Storage.BlobDeleted".into()];
        assert!(!f.matches(&e));
        f.included_event_types.clear();
        f.subject_ends_with = ".txt".into();
        assert!(!f.matches(&e));
    }

    #[test]
    fn values_are_alternatives_and_filters_must_all_match() {
        let f = filter(json!({
        "includedEventTypes": ["Microsoft.Storage.BlobCreated"],
        "advancedFilters": [
            {"operatorType": "StringBeginsWith", "key": "subject",
             "values": ["/blobServices/default/containers/images/", "/blobServices/default/containers/more/"]},
            {"operatorType": "StringEndsWith", "key": "subject", "values": [".vhd", ".manifest.json"]}
        ]}));
        let c = "/blobServices/default/containers";
        assert!(f.matches(&blob(&format!("{c}/images/blobs/u/a.vhd"))));
        assert!(f.matches(&blob(&format!("{c}/more/blobs/a.manifest.json"))));
        // advanced string comparisons ignore case, whatever isSubjectCaseSensitive says
        assert!(f.matches(&blob(&format!("{c}/IMAGES/blobs/A.VHD"))));
        assert!(
            !f.matches(&blob(&format!("{c}/other/blobs/a.vhd"))),
            "container"
        );
        assert!(
            !f.matches(&blob(&format!("{c}/images/blobs/a.txt"))),
            "suffix"
        );
        assert!(!f.matches(&blob(&format!("{c}/images-old/blobs/a.vhd"))));
    }

    #[test]
    fn operators() {
        let e = blob("/s");
        let m = |op: &str, key: &str, operand: Value| {
            let mut a = json!({"operatorType": op, "key": key});
            if let Value::Object(o) = operand {
                a.as_object_mut().expect("object").extend(o);
            }
            filter(json!({"advancedFilters": [a]})).matches(&e)
        };
        assert!(m(
            "StringIn",
            "data.blobType",
            json!({"values": ["pageblob", "x"]})
        ));
        assert!(!m(
            "StringNotIn",
            "data.blobType",
            json!({"values": ["x", "PAGEBLOB"]})
        ));
        assert!(m(
            "StringNotIn",
            "data.blobType",
            json!({"values": ["BlockBlob"]})
        ));
        assert!(m("StringContains", "Data.Api", json!({"values": ["tBl"]})));
        assert!(!m(
            "StringNotContains",
            "data.api",
            json!({"values": ["put"]})
        ));
        assert!(m(
            "NumberGreaterThan",
            "data.contentLength",
            json!({"value": 1000})
        ));
        assert!(!m(
            "NumberLessThan",
            "data.contentLength",
            json!({"value": 1000})
        ));
        assert!(m(
            "NumberLessThanOrEquals",
            "data.contentLength",
            json!({"value": 1024})
        ));
        assert!(m(
            "NumberIn",
            "data.contentLength",
            json!({"values": [1, 1024]})
        ));
        assert!(m(
            "NumberInRange",
            "data.contentLength",
            json!({"values": [[0, 10], [1000, 2000]]})
        ));
        assert!(!m(
            "NumberNotInRange",
            "data.contentLength",
            json!({"values": [[1000, 2000]]})
        ));
        assert!(!m("BoolEquals", "data.api", json!({"value": true})));
        // undefined or null keys: only the Not operators and IsNullOrUndefined match
        assert!(!m("StringIn", "data.missing", json!({"values": ["x"]})));
        assert!(m("StringNotIn", "data.missing", json!({"values": ["x"]})));
        assert!(m("IsNullOrUndefined", "data.missing", json!({})));
        assert!(m("IsNullOrUndefined", "data.nothing", json!({})));
        assert!(!m("IsNotNull", "data.nothing", json!({})));
        assert!(m("IsNotNull", "data.api", json!({})));
        // arrays match nothing unless enableAdvancedFilteringOnArrays
        assert!(!m("StringIn", "data.tags", json!({"values": ["a"]})));
        let on = filter(json!({"enableAdvancedFilteringOnArrays": true,
            "advancedFilters": [{"operatorType": "StringIn", "key": "data.tags", "values": ["b"]}]}));
        assert!(on.matches(&e));
        let not = filter(json!({"enableAdvancedFilteringOnArrays": true,
            "advancedFilters": [{"operatorType": "StringNotIn", "key": "data.tags", "values": ["b"]}]}));
        assert!(!not.matches(&e));
    }

    #[test]
    fn arm_limits_and_shape() {
        let ok = json!({"includedEventTypes": ["t"], "subjectBeginsWith": "/a", "subjectEndsWith": "",
            "isSubjectCaseSensitive": false,
            "advancedFilters": [{"operatorType": "NumberGreaterThan", "key": "data.n", "value": 5},
                                {"operatorType": "StringIn", "key": "subject", "values": ["x"]},
                                {"operatorType": "IsNotNull", "key": "data.n"}]});
        let f = filter(ok.clone());
        let back = f.to_arm();
        assert_eq!(back["advancedFilters"], ok["advancedFilters"]);
        for bad in [
            json!({"advancedFilters": [{"operatorType": "StringLike", "key": "subject", "values": ["x"]}]}),
            json!({"advancedFilters": [{"operatorType": "StringIn", "key": "subject", "values": []}]}),
            json!({"advancedFilters": [{"operatorType": "StringIn", "key": "subject", "values": [1]}]}),
            json!({"advancedFilters": [{"operatorType": "NumberGreaterThan", "key": "n", "values": [1]}]}),
            json!({"advancedFilters": [{"operatorType": "NumberInRange", "key": "n", "values": [[1]]}]}),
            json!({"advancedFilters": [{"operatorType": "StringIn", "values": ["x"]}]}),
            json!({"advancedFilters": [{"operatorType": "StringIn", "key": "subject", "values": ["x".repeat(513)]}]}),
            json!({"subjectEndsWith": [".vhd", ".json"]}),
            json!({"subjectEndswith": ".vhd"}),
            json!({"advancedFilters": [{"operatorType": "StringIn", "key": "subject",
                    "values": (0..26).map(|i| i.to_string()).collect::<Vec<_>>()}]}),
            json!({"advancedFilters": (0..26).map(|_| json!({"operatorType": "IsNotNull", "key": "id"})).collect::<Vec<_>>()}),
        ] {
            assert!(EventFilter::from_arm(&bad).is_err(), "{bad}");
        }
    }
}
