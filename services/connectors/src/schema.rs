//! Checks a configuration against an auth method's JSON Schema.
//!
//! The catalogue's schemas use a small subset of JSON Schema, and this checks exactly
//! that subset: an object with `properties` (each with a `type` of `string`, `integer`,
//! `number`, `boolean`, `array` (with `items.type`) or `object`, and optionally `enum`,
//! `minLength` and `maxItems`), `required`, and `additionalProperties: false`. A keyword outside
//! the subset in a catalogue schema is a bug of the type, caught by the catalogue's
//! tests ([`supported`]), not a reason to accept anything.

use serde_json::{Map, Value};

use crate::domain::Rejection;

/// The keywords this checker understands, per level.
const OBJECT_KEYWORDS: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "description",
    "title",
];
const PROPERTY_KEYWORDS: &[&str] = &[
    "type",
    "items",
    "enum",
    "minLength",
    "maxItems",
    "description",
    "title",
    "examples",
    "format",
];

/// Whether `schema` uses only what this checker understands (for the catalogue's tests).
pub fn supported(schema: &Value) -> Result<(), String> {
    let obj = schema.as_object().ok_or("the schema is not an object")?;
    if let Some(k) = obj.keys().find(|k| !OBJECT_KEYWORDS.contains(&k.as_str())) {
        return Err(format!("unsupported keyword {k:?}"));
    }
    for (name, prop) in properties(schema) {
        let p = prop
            .as_object()
            .ok_or_else(|| format!("property {name:?} is not an object"))?;
        if let Some(k) = p.keys().find(|k| !PROPERTY_KEYWORDS.contains(&k.as_str())) {
            return Err(format!("property {name:?}: unsupported keyword {k:?}"));
        }
        if p.get("type").and_then(Value::as_str).is_none() {
            return Err(format!("property {name:?} has no type"));
        }
    }
    Ok(())
}

fn properties(schema: &Value) -> impl Iterator<Item = (&String, &Value)> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
}

fn type_matches(expected: &str, value: &Value) -> bool {
    match expected {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => false,
    }
}

/// Checks `value` against the object `schema`; an error names the field as
/// `<prefix>.<name>`.
pub fn check_object(
    schema: &Value,
    value: &Map<String, Value>,
    prefix: &str,
) -> Result<(), Rejection> {
    let props = schema.get("properties").and_then(Value::as_object);
    let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
    for (name, v) in value {
        let field = format!("{prefix}.{name}");
        let Some(prop) = props.and_then(|p| p.get(name)) else {
            if closed {
                let known: Vec<&str> = props
                    .map(|p| p.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                return Err(Rejection::invalid(
                    field,
                    format!("unknown field; known: {}", known.join(", ")),
                ));
            }
            continue;
        };
        check_value(prop, v, &field)?;
    }
    for required in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !value.contains_key(required) {
            return Err(Rejection::invalid(
                format!("{prefix}.{required}"),
                "is required",
            ));
        }
    }
    Ok(())
}

fn check_value(prop: &Value, v: &Value, field: &str) -> Result<(), Rejection> {
    let expected = prop.get("type").and_then(Value::as_str).unwrap_or("string");
    if !type_matches(expected, v) {
        return Err(Rejection::invalid(field, format!("must be a {expected}")));
    }
    if let Some(items) = prop.get("items")
        && let Some(values) = v.as_array()
    {
        for (i, item) in values.iter().enumerate() {
            check_value(items, item, &format!("{field}[{i}]"))?;
        }
    }
    if let Some(allowed) = prop.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        let names: Vec<String> = allowed.iter().map(Value::to_string).collect();
        return Err(Rejection::invalid(
            field,
            format!("must be one of {}", names.join(", ")),
        ));
    }
    if let Some(max) = prop.get("maxItems").and_then(Value::as_u64)
        && let Some(values) = v.as_array()
        && values.len() as u64 > max
    {
        return Err(Rejection::invalid(field, format!("at most {max} items")));
    }
    if let Some(min) = prop.get("minLength").and_then(Value::as_u64)
        && let Some(s) = v.as_str()
        && (s.chars().count() as u64) < min
    {
        return Err(Rejection::invalid(
            field,
            format!("must be at least {min} characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "region": {"type": "string", "minLength": 1},
                "policy_arns": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
                "mode": {"type": "string", "enum": ["a", "b"]},
            },
            "required": ["region"],
            "additionalProperties": false,
        })
    }

    fn check(v: Value) -> Result<(), Rejection> {
        check_object(&schema(), v.as_object().unwrap(), "configuration")
    }

    fn field_of(r: Result<(), Rejection>) -> String {
        match r {
            Err(Rejection::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_configuration_passes() {
        check(json!({"region": "eu-west-1", "policy_arns": ["arn:x"], "mode": "a"})).unwrap();
    }

    #[test]
    fn each_violation_names_its_field() {
        assert_eq!(field_of(check(json!({}))), "configuration.region");
        assert_eq!(
            field_of(check(json!({"region": "x", "extra": 1}))),
            "configuration.extra"
        );
        assert_eq!(
            field_of(check(json!({"region": 5}))),
            "configuration.region"
        );
        assert_eq!(
            field_of(check(json!({"region": ""}))),
            "configuration.region"
        );
        assert_eq!(
            field_of(check(json!({"region": "x", "policy_arns": ["a", 3]}))),
            "configuration.policy_arns[1]"
        );
        assert_eq!(
            field_of(check(json!({"region": "x", "mode": "c"}))),
            "configuration.mode"
        );
        assert_eq!(
            field_of(check(
                json!({"region": "x", "policy_arns": ["a", "b", "c"]})
            )),
            "configuration.policy_arns"
        );
    }

    #[test]
    fn only_the_understood_subset_is_supported() {
        supported(&schema()).unwrap();
        assert!(supported(&json!({"type": "object", "oneOf": []})).is_err());
        assert!(
            supported(&json!({"properties": {"x": {"type": "string", "pattern": "a"}}})).is_err()
        );
    }
}
