//! Parsers for flag values (durations in whole seconds, `k=v` attributes,
//! RFC 3339 times, JSON filter policies). They run inside clap, so a bad value
//! is a usage error (exit code 2) before anything reaches the server. Ranges are
//! left to the server: it is the one authority on what a setting may be.

use serde_json::Value;

/// One `--attr KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub key: String,
    pub value: String,
}

/// Seconds in a day, for the `d` suffix.
const SECONDS_PER_DAY: u64 = 86_400;

/// A duration flag as whole seconds: `30s`, `5m`, `1h`, `4d` or plain seconds.
/// The wire counts seconds, so a sub-second value is refused rather than
/// rounded. Days are accepted here on top of [`crate::config::parse_duration`]
/// because retention (up to 14 days) is naturally said in days.
pub fn parse_seconds(s: &str) -> Result<u64, String> {
    if let Some(days) = s.trim().strip_suffix('d') {
        return days
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(SECONDS_PER_DAY))
            .ok_or_else(|| {
                format!("invalid duration {s:?}: use 30s, 5m, 1h, 4d or plain seconds")
            });
    }
    let d = crate::config::parse_duration(s).map_err(|e| e.to_string())?;
    if d.subsec_nanos() != 0 {
        return Err(format!("{s:?} is not a whole number of seconds"));
    }
    Ok(d.as_secs())
}

/// `KEY=VALUE`; the value may be empty and may itself contain `=`.
pub fn parse_attr(s: &str) -> Result<Attr, String> {
    match s.split_once('=') {
        Some(("", _)) => Err(format!("{s:?} has an empty key")),
        Some((key, value)) => Ok(Attr {
            key: key.to_string(),
            value: value.to_string(),
        }),
        None => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// An RFC 3339 time, passed on as written (the server parses it again).
pub fn parse_rfc3339(s: &str) -> Result<String, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|_| s.to_string())
        .map_err(|e| format!("{s:?} is not an RFC 3339 time ({e}); e.g. 2030-01-02T03:04:05Z"))
}

/// A filter policy: a JSON object given inline, or `@FILE` to read it from a
/// file (policies grow long, and shell quoting of JSON is error-prone).
pub fn parse_json_object(s: &str) -> Result<Value, String> {
    let text = match s.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {path:?}: {e}"))?
        }
        None => s.to_string(),
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err("the filter must be a JSON object".into()),
        Err(e) => Err(format!("not valid JSON: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_take_units_and_refuse_fractions() {
        assert_eq!(parse_seconds("30"), Ok(30));
        assert_eq!(parse_seconds("5m"), Ok(300));
        assert_eq!(parse_seconds("1h"), Ok(3600));
        assert_eq!(parse_seconds("4d"), Ok(345_600));
        assert!(parse_seconds("xd").is_err());
        assert_eq!(parse_seconds("2000ms"), Ok(2));
        assert!(parse_seconds("1500ms").is_err());
        assert!(parse_seconds("ten").is_err());
        assert!(parse_seconds("-5").is_err());
    }

    #[test]
    fn attrs_split_at_the_first_equals_sign() {
        assert_eq!(
            parse_attr("k=v=w"),
            Ok(Attr {
                key: "k".into(),
                value: "v=w".into()
            })
        );
        assert_eq!(parse_attr("k=").map(|a| a.value), Ok(String::new()));
        assert!(parse_attr("novalue").is_err());
        assert!(parse_attr("=v").is_err());
    }

    #[test]
    fn filters_must_be_json_objects() {
        assert!(parse_json_object(r#"{"type": ["a"]}"#).is_ok());
        assert!(parse_json_object("[1]").is_err());
        assert!(parse_json_object("{nope").is_err());
        assert!(parse_json_object("@/nonexistent/pubq-filter.json").is_err());
    }

    #[test]
    fn times_must_be_rfc3339() {
        assert!(parse_rfc3339("2030-01-02T03:04:05Z").is_ok());
        assert!(parse_rfc3339("2030-01-02T03:04:05+02:00").is_ok());
        assert!(parse_rfc3339("tomorrow").is_err());
    }
}
