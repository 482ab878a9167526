//! Claims → identity header values: the one place a claim becomes the text a backend reads.
//!
//! A list claim (`groups`, `roles`, `aud`, …) is sent as one header with its elements joined by
//! `,`, and backends split it there. An element must therefore never contain the separator, or a
//! group named `admins,evil` would read as membership of `admins`. Each element is written with
//! `%` as `%25`, `,` as `%2C`, and a space or tab at either end percent-encoded too (backends that
//! trim after splitting would otherwise see ` admins` as `admins`). Elements without those
//! characters (nearly all) are sent as they are; a backend that percent-decodes each element gets
//! the provider's value back exactly. A leaf: it imports nothing from the crate.

use http::HeaderValue;
use serde_json::Value;

/// The header value for a claim: strings as they are, numbers and booleans as text, lists joined
/// with `,` with each element escaped as the module says (object and null elements are left
/// out). `None` for absent, null or object claims, and for values a header cannot carry (CR, LF,
/// NUL and other control characters but tab).
pub fn claim_header_value(claim: &Value) -> Option<HeaderValue> {
    let text = match claim {
        Value::Array(items) => {
            let mut joined = String::new();
            for element in items.iter().filter_map(scalar) {
                if !joined.is_empty() {
                    joined.push(',');
                }
                push_list_element(&mut joined, &element);
            }
            joined
        }
        other => scalar(other)?,
    };
    HeaderValue::from_bytes(text.as_bytes()).ok()
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Appends one list element, escaped so that it stays one element after a split on `,` (and a
/// trim).
fn push_list_element(out: &mut String, element: &str) {
    let last = element.len().saturating_sub(1);
    for (i, c) in element.char_indices() {
        let at_an_end = i == 0 || i == last;
        match c {
            '%' => out.push_str("%25"),
            ',' => out.push_str("%2C"),
            ' ' if at_an_end => out.push_str("%20"),
            '\t' if at_an_end => out.push_str("%09"),
            other => out.push(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(json: &str) -> Option<HeaderValue> {
        claim_header_value(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn claims_become_header_values() {
        assert_eq!(value(r#""alice""#).unwrap(), "alice");
        assert_eq!(value(r#"["admins","staff"]"#).unwrap(), "admins,staff");
        assert_eq!(
            value(r#"["Domain Users", 7, true]"#).unwrap(),
            "Domain Users,7,true"
        );
        assert_eq!(value("1700000000").unwrap(), "1700000000");
        assert_eq!(value("true").unwrap(), "true");
        assert!(value("null").is_none());
        assert!(value(r#"{"a":1}"#).is_none());
        assert!(
            value(r#""line\nbreak""#).is_none(),
            "no header injection through a claim"
        );
        assert!(value(r#"["ok", "line\r\nX-Auth-Subject: root"]"#).is_none());
    }

    #[test]
    fn a_list_element_holding_the_separator_stays_one_element() {
        let groups = value(r#"["staff","admins,evil"," admins","100%"]"#).unwrap();
        let groups = groups.to_str().unwrap();
        assert_eq!(groups, "staff,admins%2Cevil,%20admins,100%25");
        let split: Vec<&str> = groups.split(',').map(str::trim).collect();
        assert_eq!(split, ["staff", "admins%2Cevil", "%20admins", "100%25"]);
        assert!(!split.contains(&"admins"), "no forged membership");
    }

    #[test]
    fn a_string_claim_is_sent_as_it_is() {
        assert_eq!(value(r#""Doe, John""#).unwrap(), "Doe, John");
    }
}
