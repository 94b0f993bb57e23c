//! Filter policies of subscriptions (SNS style): this module owns validating a
//! policy's JSON once per subscribe, compiling it into a form that is cheap to
//! evaluate, and matching that form against a message's attributes (the
//! default scope) or its JSON body (`"scope": "body"`) on the publish path.

use serde_json::{Map, Value};

use crate::model::Attributes;

/// Why a policy was refused (the API answers 400 `InvalidSetting`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(pub String);

/// A compiled filter policy.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterPolicy {
    scope: Scope,
    root: Node,
}

/// The largest policy accepted, measured as compact JSON (SNS allows 256 KiB).
const MAX_POLICY_BYTES: usize = 256 * 1024;

/// The deepest nesting accepted, counting the policy object itself as level 1.
const MAX_DEPTH: usize = 5;

/// The most value combinations accepted (the product of the list lengths of
/// every key, nested keys included), as SNS computes it.
const MAX_COMBINATIONS: u64 = 150;

/// The operators a condition object may name, for error messages.
const OPERATORS: &str =
    "\"prefix\", \"suffix\", \"equals-ignore-case\", \"anything-but\", \"numeric\", \"exists\"";

/// What a policy is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Attributes,
    Body,
}

/// One object of the policy: every rule must match (AND).
#[derive(Debug, Clone, PartialEq)]
struct Node {
    rules: Vec<Rule>,
}

/// One key of a policy object and what its value must satisfy.
#[derive(Debug, Clone, PartialEq)]
struct Rule {
    key: Box<str>,
    test: Test,
}

#[derive(Debug, Clone, PartialEq)]
enum Test {
    /// The field's value must satisfy at least one condition (OR).
    AnyOf(Vec<Condition>),
    /// The field is an object of the body, matched by a nested policy (body
    /// scope only).
    Nested(Node),
}

/// One entry of a key's list.
#[derive(Debug, Clone, PartialEq)]
enum Condition {
    /// A present value that the pattern matches.
    Is(Pattern),
    /// A present value that the pattern does not match (`anything-but`).
    Not(Pattern),
    /// Presence (`true`) or absence (`false`) of the key.
    Exists(bool),
}

/// A test of one scalar value.
#[derive(Debug, Clone, PartialEq)]
enum Pattern {
    Literal(Literal),
    /// Any of several literals; only `anything-but` lists produce it, since a
    /// key's own list is already an OR of single literals.
    OneOf(Vec<Literal>),
    Prefix(Box<str>),
    Suffix(Box<str>),
    /// Holds the operand already lowercased, so matching lowercases one side.
    EqualsIgnoreCase(Box<str>),
    Numeric(Range),
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Str(Box<str>),
    Num(f64),
    Bool(bool),
    Null,
}

/// A numeric interval. Unbounded sides hold infinities, so every range is
/// tested the same way; `=` is the closed interval of one point.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Range {
    low: f64,
    low_inclusive: bool,
    high: f64,
    high_inclusive: bool,
}

/// State carried through compiling one policy.
struct Compiler {
    scope: Scope,
    combinations: u64,
}

impl FilterPolicy {
    /// Compiles a policy from its JSON form.
    pub fn parse(v: &Value) -> Result<Self, FilterError> {
        let Value::Object(obj) = v else {
            return Err(FilterError(format!(
                "a filter policy must be a JSON object, got {}",
                describe(v)
            )));
        };
        let size = serde_json::to_string(v)
            .map_err(|e| FilterError(format!("the filter policy cannot be serialized: {e}")))?
            .len();
        if size > MAX_POLICY_BYTES {
            return Err(FilterError(format!(
                "the filter policy is {size} bytes, more than the limit of {MAX_POLICY_BYTES} bytes (256 KiB)"
            )));
        }
        let scope = match obj.get("scope") {
            None => Scope::Attributes,
            Some(Value::String(s)) if s == "attributes" => Scope::Attributes,
            Some(Value::String(s)) if s == "body" => Scope::Body,
            Some(other) => {
                return Err(FilterError(format!(
                    "the filter policy's \"scope\" must be \"attributes\" or \"body\", got {}",
                    describe_value(other)
                )))
            }
        };
        let mut compiler = Compiler {
            scope,
            combinations: 1,
        };
        let root = compiler.node(obj, "", 1)?;
        if compiler.combinations > MAX_COMBINATIONS {
            return Err(FilterError(format!(
                "the filter policy has {} value combinations, more than the limit of {MAX_COMBINATIONS} \
                 (the product of the lengths of every key's list)",
                compiler.combinations
            )));
        }
        Ok(Self { scope, root })
    }

    /// Whether the policy matches on the JSON body (`"scope": "body"`).
    pub fn needs_body(&self) -> bool {
        self.scope == Scope::Body
    }

    /// Whether a message matches. `body` is the body parsed as JSON, given
    /// when `needs_body()` and the body is JSON; `None` otherwise.
    pub fn matches(&self, attributes: &Attributes, body: Option<&Value>) -> bool {
        match self.scope {
            Scope::Attributes => self.root.matches_attributes(attributes),
            // A body policy describes fields of an object, so a body that is
            // not JSON, or JSON but not an object, has none of them; the
            // contract says such a body never matches, even `exists: false`.
            Scope::Body => match body {
                Some(Value::Object(fields)) => self.root.matches_fields(Some(fields)),
                _ => false,
            },
        }
    }
}

impl Node {
    fn matches_attributes(&self, attributes: &Attributes) -> bool {
        self.rules.iter().all(|rule| match &rule.test {
            Test::AnyOf(conditions) => {
                let value = attributes.get(&*rule.key).map(String::as_str);
                conditions.iter().any(|c| c.matches_attribute(value))
            }
            // Compiling refuses nested objects in attribute scope, and an
            // attribute map has no nesting for one to match.
            Test::Nested(_) => false,
        })
    }

    /// Matches the fields of one body object; `None` stands for an object
    /// that is absent (or not an object), where every field is missing, so
    /// that `exists: false` below it still matches.
    fn matches_fields(&self, fields: Option<&Map<String, Value>>) -> bool {
        self.rules.iter().all(|rule| {
            let value = fields.and_then(|f| f.get(&*rule.key));
            match &rule.test {
                Test::AnyOf(conditions) => conditions.iter().any(|c| c.matches_json(value)),
                Test::Nested(node) => match value {
                    Some(Value::Object(inner)) => node.matches_fields(Some(inner)),
                    // An array of objects matches when one of its objects
                    // does, as SNS matches arrays element by element.
                    Some(Value::Array(items)) => {
                        let mut objects = items.iter().filter_map(Value::as_object).peekable();
                        if objects.peek().is_none() {
                            node.matches_fields(None)
                        } else {
                            objects.any(|inner| node.matches_fields(Some(inner)))
                        }
                    }
                    _ => node.matches_fields(None),
                },
            }
        })
    }
}

impl Condition {
    fn matches_attribute(&self, value: Option<&str>) -> bool {
        match self {
            Condition::Exists(wanted) => value.is_some() == *wanted,
            Condition::Is(p) => value.is_some_and(|v| p.matches_str(v)),
            Condition::Not(p) => value.is_some_and(|v| !p.matches_str(v)),
        }
    }

    /// Matches a body field. Array fields match when any element does; an
    /// object (or an array inside an array) is not a value a condition can
    /// test, so it matches neither a pattern nor its negation.
    fn matches_json(&self, value: Option<&Value>) -> bool {
        let (pattern, wanted) = match self {
            Condition::Exists(wanted) => return value.is_some() == *wanted,
            Condition::Is(p) => (p, true),
            Condition::Not(p) => (p, false),
        };
        match value {
            None => false,
            Some(Value::Array(items)) => items
                .iter()
                .any(|i| pattern.matches_scalar(i) == Some(wanted)),
            Some(v) => pattern.matches_scalar(v) == Some(wanted),
        }
    }
}

impl Pattern {
    fn matches_str(&self, value: &str) -> bool {
        match self {
            Pattern::Literal(l) => l.matches_str(value),
            Pattern::OneOf(ls) => ls.iter().any(|l| l.matches_str(value)),
            Pattern::Prefix(p) => value.starts_with(&**p),
            Pattern::Suffix(s) => value.ends_with(&**s),
            Pattern::EqualsIgnoreCase(lowered) => eq_ignore_case(value, lowered),
            Pattern::Numeric(r) => parse_number(value).is_some_and(|n| r.contains(n)),
        }
    }

    /// `None` when the value is an array or object, which no pattern tests.
    fn matches_scalar(&self, value: &Value) -> Option<bool> {
        if value.is_array() || value.is_object() {
            return None;
        }
        Some(match self {
            Pattern::Literal(l) => l.matches_json(value),
            Pattern::OneOf(ls) => ls.iter().any(|l| l.matches_json(value)),
            Pattern::Prefix(p) => value.as_str().is_some_and(|v| v.starts_with(&**p)),
            Pattern::Suffix(s) => value.as_str().is_some_and(|v| v.ends_with(&**s)),
            Pattern::EqualsIgnoreCase(lowered) => {
                value.as_str().is_some_and(|v| eq_ignore_case(v, lowered))
            }
            // Body values carry their own type, so only JSON numbers are
            // numbers there; a string that looks like one is a string.
            Pattern::Numeric(r) => value.as_f64().is_some_and(|n| r.contains(n)),
        })
    }
}

impl Literal {
    fn matches_str(&self, value: &str) -> bool {
        match self {
            Literal::Str(s) => **s == *value,
            // Attribute values are strings, so a number in an attribute
            // policy compares with the value read as a number, like `numeric`.
            Literal::Num(n) => parse_number(value) == Some(*n),
            // Compiling refuses these in attribute scope.
            Literal::Bool(_) | Literal::Null => false,
        }
    }

    fn matches_json(&self, value: &Value) -> bool {
        match (self, value) {
            (Literal::Str(s), Value::String(v)) => **s == **v,
            (Literal::Num(n), Value::Number(v)) => v.as_f64() == Some(*n),
            (Literal::Bool(b), Value::Bool(v)) => b == v,
            (Literal::Null, Value::Null) => true,
            _ => false,
        }
    }
}

impl Range {
    const ALL: Range = Range {
        low: f64::NEG_INFINITY,
        low_inclusive: false,
        high: f64::INFINITY,
        high_inclusive: false,
    };

    fn contains(&self, n: f64) -> bool {
        let above = n > self.low || (self.low_inclusive && n == self.low);
        let below = n < self.high || (self.high_inclusive && n == self.high);
        above && below
    }
}

impl Compiler {
    /// Compiles one policy object at `depth` (the policy itself is 1); `path`
    /// is the dotted path of the object's key, empty for the policy itself.
    fn node(
        &mut self,
        obj: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) -> Result<Node, FilterError> {
        if depth > MAX_DEPTH {
            return Err(FilterError(format!(
                "filter policy key \"{path}\" nests objects more than {MAX_DEPTH} levels deep"
            )));
        }
        let mut rules = Vec::with_capacity(obj.len());
        for (key, value) in obj {
            // Only the policy's own "scope" is the setting; deeper down it is
            // an ordinary field name of the body.
            if depth == 1 && key == "scope" {
                continue;
            }
            let key_path = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            let test = match value {
                Value::Array(items) if !items.is_empty() => {
                    self.combinations = self.combinations.saturating_mul(items.len() as u64);
                    let conditions = items
                        .iter()
                        .map(|item| self.condition(&key_path, item))
                        .collect::<Result<_, _>>()?;
                    Test::AnyOf(conditions)
                }
                Value::Object(inner) if self.scope == Scope::Body => {
                    Test::Nested(self.node(inner, &key_path, depth + 1)?)
                }
                Value::Object(_) => {
                    return Err(FilterError(format!(
                        "filter policy key \"{key_path}\" is a nested object, which is only allowed with \"scope\": \"body\""
                    )))
                }
                other => {
                    return Err(FilterError(format!(
                        "filter policy key \"{key_path}\" must be a non-empty array of values, got {}",
                        describe(other)
                    )))
                }
            };
            rules.push(Rule {
                key: key.as_str().into(),
                test,
            });
        }
        if rules.is_empty() {
            return Err(FilterError(if path.is_empty() {
                "a filter policy must have at least one key to match (besides \"scope\")".to_owned()
            } else {
                format!("filter policy key \"{path}\" is an empty object")
            }));
        }
        Ok(Node { rules })
    }

    fn condition(&self, path: &str, item: &Value) -> Result<Condition, FilterError> {
        match item {
            Value::Object(op) => self.operator(path, op),
            Value::Array(_) => Err(FilterError(format!(
                "filter policy key \"{path}\" has an array inside its list; values must be strings, numbers or operator objects"
            ))),
            scalar => Ok(Condition::Is(Pattern::Literal(self.literal(path, scalar)?))),
        }
    }

    fn literal(&self, path: &str, v: &Value) -> Result<Literal, FilterError> {
        match v {
            Value::String(s) => Ok(Literal::Str(s.as_str().into())),
            Value::Number(n) => number(path, n).map(Literal::Num),
            Value::Bool(_) | Value::Null if self.scope == Scope::Attributes => Err(FilterError(format!(
                "filter policy key \"{path}\" lists {v}, but attribute values are strings; true, false and null only match with \"scope\": \"body\""
            ))),
            Value::Bool(b) => Ok(Literal::Bool(*b)),
            Value::Null => Ok(Literal::Null),
            other => Err(FilterError(format!(
                "filter policy key \"{path}\" lists {}, which is not a value",
                describe(other)
            ))),
        }
    }

    fn operator(&self, path: &str, op: &Map<String, Value>) -> Result<Condition, FilterError> {
        let Some((name, operand)) = single_entry(op) else {
            return Err(FilterError(format!(
                "filter policy key \"{path}\" has an operator object with {} keys; it must have exactly one of {OPERATORS}",
                op.len()
            )));
        };
        match name.as_str() {
            "exists" => match operand {
                Value::Bool(b) => Ok(Condition::Exists(*b)),
                other => Err(wrong_operand(path, name, "true or false", other)),
            },
            "anything-but" => self.anything_but(path, operand).map(Condition::Not),
            "numeric" => numeric(path, operand).map(|r| Condition::Is(Pattern::Numeric(r))),
            _ => match string_pattern(path, name, operand) {
                Some(p) => p.map(Condition::Is),
                None => Err(FilterError(format!(
                    "filter policy key \"{path}\" uses unknown operator \"{name}\"; known operators are {OPERATORS}"
                ))),
            },
        }
    }

    fn anything_but(&self, path: &str, operand: &Value) -> Result<Pattern, FilterError> {
        const EXPECTED: &str = "a string, a number, a non-empty array of strings and numbers, \
                                or an object with \"prefix\", \"suffix\" or \"equals-ignore-case\"";
        match operand {
            Value::String(_) | Value::Number(_) => {
                Ok(Pattern::Literal(self.literal(path, operand)?))
            }
            Value::Array(items) if !items.is_empty() => items
                .iter()
                .map(|item| match item {
                    Value::String(_) | Value::Number(_) => self.literal(path, item),
                    other => Err(wrong_operand(
                        path,
                        "anything-but",
                        "strings and numbers in its array",
                        other,
                    )),
                })
                .collect::<Result<_, _>>()
                .map(Pattern::OneOf),
            Value::Object(op) => match single_entry(op) {
                Some((name, inner)) => string_pattern(path, name, inner).unwrap_or_else(|| {
                    Err(FilterError(format!(
                        "filter policy key \"{path}\" uses \"anything-but\" with operator \"{name}\"; only \"prefix\", \"suffix\" and \"equals-ignore-case\" are allowed there"
                    )))
                }),
                None => Err(wrong_operand(path, "anything-but", EXPECTED, operand)),
            },
            other => Err(wrong_operand(path, "anything-but", EXPECTED, other)),
        }
    }
}

/// The one entry of an operator object, or `None` when it has none or several.
fn single_entry(op: &Map<String, Value>) -> Option<(&String, &Value)> {
    let mut entries = op.iter();
    match (entries.next(), entries.next()) {
        (Some(entry), None) => Some(entry),
        _ => None,
    }
}

/// Compiles the operators whose operand is one string; `None` when `name` is
/// not one of them.
fn string_pattern(path: &str, name: &str, operand: &Value) -> Option<Result<Pattern, FilterError>> {
    let make: fn(&str) -> Pattern = match name {
        "prefix" => |s| Pattern::Prefix(s.into()),
        "suffix" => |s| Pattern::Suffix(s.into()),
        "equals-ignore-case" => |s| Pattern::EqualsIgnoreCase(lowercase(s).into()),
        _ => return None,
    };
    Some(match operand {
        Value::String(s) => Ok(make(s)),
        other => Err(wrong_operand(path, name, "a string", other)),
    })
}

/// Compiles a `numeric` operand: `[op, n]` or `[lower-op, n, upper-op, n]` (the
/// two bounds in either order).
fn numeric(path: &str, operand: &Value) -> Result<Range, FilterError> {
    let malformed = |why: &str| {
        FilterError(format!(
            "filter policy key \"{path}\" has a malformed \"numeric\" condition: {why}"
        ))
    };
    let items = match operand {
        Value::Array(items) if items.len() == 2 || items.len() == 4 => items,
        _ => {
            return Err(malformed(
                "it must be an array [op, number] or [lower-op, number, upper-op, number]",
            ))
        }
    };
    let mut range = Range::ALL;
    let (mut has_low, mut has_high) = (false, false);
    for pair in items.chunks_exact(2) {
        let Value::String(op) = &pair[0] else {
            return Err(malformed(&format!(
                "expected an operator, got {}",
                describe(&pair[0])
            )));
        };
        let Value::Number(n) = &pair[1] else {
            return Err(malformed(&format!(
                "operator \"{op}\" must be followed by a number, got {}",
                describe(&pair[1])
            )));
        };
        let n = number(path, n)?;
        match op.as_str() {
            "=" if items.len() == 2 => {
                range = Range {
                    low: n,
                    low_inclusive: true,
                    high: n,
                    high_inclusive: true,
                }
            }
            "=" => return Err(malformed("\"=\" cannot be combined with another bound")),
            ">" | ">=" if has_low => return Err(malformed("it has two lower bounds")),
            "<" | "<=" if has_high => return Err(malformed("it has two upper bounds")),
            ">" | ">=" => (has_low, range.low, range.low_inclusive) = (true, n, op == ">="),
            "<" | "<=" => (has_high, range.high, range.high_inclusive) = (true, n, op == "<="),
            _ => {
                return Err(malformed(&format!(
                    "unknown operator \"{op}\"; use \"=\", \"<\", \"<=\", \">\" or \">=\""
                )))
            }
        }
    }
    if items.len() == 4 && range.low >= range.high {
        return Err(malformed(&format!(
            "the lower bound {} must be less than the upper bound {}",
            range.low, range.high
        )));
    }
    Ok(range)
}

fn number(path: &str, n: &serde_json::Number) -> Result<f64, FilterError> {
    n.as_f64().filter(|f| f.is_finite()).ok_or_else(|| {
        FilterError(format!(
            "filter policy key \"{path}\" has number {n}, which is out of range"
        ))
    })
}

fn wrong_operand(path: &str, operator: &str, expected: &str, got: &Value) -> FilterError {
    FilterError(format!(
        "filter policy key \"{path}\": operator \"{operator}\" takes {expected}, got {}",
        describe(got)
    ))
}

/// Reads an attribute value as a number. Non-finite values ("inf", "NaN")
/// are refused because SNS numbers are finite and they would otherwise
/// satisfy open-ended ranges.
fn parse_number(value: &str) -> Option<f64> {
    value.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// Lowercases char by char, the same way `eq_ignore_case` does, so the two
/// agree even where `str::to_lowercase` would treat a final sigma specially.
fn lowercase(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

fn eq_ignore_case(value: &str, lowered: &str) -> bool {
    if value.is_ascii() && lowered.is_ascii() {
        return value.eq_ignore_ascii_case(lowered);
    }
    value
        .chars()
        .flat_map(char::to_lowercase)
        .eq(lowered.chars())
}

/// Names the type of a JSON value for error messages.
fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(a) if a.is_empty() => "an empty array",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Shows a small JSON value itself, or its type when it is a container.
fn describe_value(v: &Value) -> String {
    match v {
        Value::Array(_) | Value::Object(_) => describe(v).to_owned(),
        scalar => scalar.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn policy(v: Value) -> FilterPolicy {
        match FilterPolicy::parse(&v) {
            Ok(p) => p,
            Err(e) => panic!("policy {v} should parse: {e}"),
        }
    }

    fn error(v: Value) -> String {
        match FilterPolicy::parse(&v) {
            Ok(p) => panic!("policy {v} should be refused, got {p:?}"),
            Err(e) => e.0,
        }
    }

    fn attrs(pairs: &[(&str, &str)]) -> Attributes {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Whether an attribute policy matches a message with these attributes.
    fn on_attrs(p: &FilterPolicy, pairs: &[(&str, &str)]) -> bool {
        p.matches(&attrs(pairs), None)
    }

    /// Whether a body policy matches a message with this JSON body.
    fn on_body(p: &FilterPolicy, body: Value) -> bool {
        p.matches(&Attributes::new(), Some(&body))
    }

    // Matching in attribute scope.

    #[test]
    fn exact_string_matches_any_listed_value() {
        let p = policy(json!({"type": ["order_placed", "order_paid"]}));
        assert!(on_attrs(&p, &[("type", "order_placed")]));
        assert!(on_attrs(&p, &[("type", "order_paid")]));
        assert!(!on_attrs(&p, &[("type", "order_shipped")]));
        assert!(!on_attrs(&p, &[("type", "ORDER_PAID")]));
        assert!(!on_attrs(&p, &[]));
    }

    #[test]
    fn every_key_must_match() {
        let p = policy(json!({"type": ["a"], "region": [{"prefix": "eu-"}]}));
        assert!(on_attrs(&p, &[("type", "a"), ("region", "eu-west-1")]));
        assert!(!on_attrs(&p, &[("type", "a"), ("region", "us-east-1")]));
        assert!(!on_attrs(&p, &[("type", "b"), ("region", "eu-west-1")]));
        assert!(!on_attrs(&p, &[("type", "a")]));
    }

    #[test]
    fn conditions_of_one_key_are_alternatives() {
        let p = policy(
            json!({"v": ["x", {"prefix": "ab"}, {"numeric": [">", 10]}, {"exists": false}]}),
        );
        assert!(on_attrs(&p, &[("v", "x")]));
        assert!(on_attrs(&p, &[("v", "abc")]));
        assert!(on_attrs(&p, &[("v", "11")]));
        assert!(on_attrs(&p, &[]));
        assert!(!on_attrs(&p, &[("v", "y")]));
    }

    #[test]
    fn the_contract_example_policy_matches_as_documented() {
        let p = policy(json!({
            "type": ["order_placed", "order_paid"],
            "amount": [{"numeric": [">=", 100]}],
            "region": [{"prefix": "eu-"}],
            "tag": [{"exists": true}],
            "channel": [{"anything-but": ["test"]}]
        }));
        let good = [
            ("type", "order_paid"),
            ("amount", "150"),
            ("region", "eu-north-1"),
            ("tag", ""),
            ("channel", "web"),
        ];
        assert!(on_attrs(&p, &good));
        for i in 0..good.len() {
            let mut missing = good.to_vec();
            missing.remove(i);
            assert!(!on_attrs(&p, &missing), "matched without {}", good[i].0);
        }
        let mut test_channel = good.to_vec();
        test_channel[4] = ("channel", "test");
        assert!(!on_attrs(&p, &test_channel));
    }

    #[test]
    fn prefix_matches_values_that_start_with_it() {
        let p = policy(json!({"region": [{"prefix": "eu-"}]}));
        assert!(on_attrs(&p, &[("region", "eu-west-1")]));
        assert!(on_attrs(&p, &[("region", "eu-")]));
        assert!(!on_attrs(&p, &[("region", "us-eu-1")]));
        assert!(!on_attrs(&p, &[]));
    }

    #[test]
    fn suffix_matches_values_that_end_with_it() {
        let p = policy(json!({"file": [{"suffix": ".png"}]}));
        assert!(on_attrs(&p, &[("file", "cat.png")]));
        assert!(!on_attrs(&p, &[("file", "cat.png.gz")]));
        assert!(!on_attrs(&p, &[]));
    }

    #[test]
    fn equals_ignore_case_matches_regardless_of_case() {
        let p = policy(json!({"name": [{"equals-ignore-case": "Straße"}]}));
        assert!(on_attrs(&p, &[("name", "STRAßE")]));
        assert!(on_attrs(&p, &[("name", "straße")]));
        assert!(!on_attrs(&p, &[("name", "strasse")]));
        let ascii = policy(json!({"name": [{"equals-ignore-case": "Bob"}]}));
        assert!(on_attrs(&ascii, &[("name", "bOB")]));
        assert!(!on_attrs(&ascii, &[("name", "Bobby")]));
    }

    #[test]
    fn anything_but_excludes_the_listed_values() {
        let p = policy(json!({"channel": [{"anything-but": ["test", "dev"]}]}));
        assert!(on_attrs(&p, &[("channel", "web")]));
        assert!(!on_attrs(&p, &[("channel", "test")]));
        assert!(!on_attrs(&p, &[("channel", "dev")]));
    }

    #[test]
    fn anything_but_accepts_a_single_string_or_number() {
        let s = policy(json!({"c": [{"anything-but": "test"}]}));
        assert!(on_attrs(&s, &[("c", "web")]));
        assert!(!on_attrs(&s, &[("c", "test")]));
        let n = policy(json!({"c": [{"anything-but": 5}]}));
        assert!(on_attrs(&n, &[("c", "6")]));
        assert!(on_attrs(&n, &[("c", "five")]));
        assert!(!on_attrs(&n, &[("c", "5.0")]));
    }

    #[test]
    fn anything_but_with_string_operators_excludes_what_they_match() {
        let p = policy(json!({"c": [{"anything-but": {"prefix": "x"}}]}));
        assert!(on_attrs(&p, &[("c", "yx")]));
        assert!(!on_attrs(&p, &[("c", "xy")]));
        let s = policy(json!({"c": [{"anything-but": {"suffix": ".tmp"}}]}));
        assert!(!on_attrs(&s, &[("c", "a.tmp")]));
        let i = policy(json!({"c": [{"anything-but": {"equals-ignore-case": "test"}}]}));
        assert!(!on_attrs(&i, &[("c", "TeSt")]));
        assert!(on_attrs(&i, &[("c", "prod")]));
    }

    #[test]
    fn anything_but_does_not_match_missing_attribute() {
        let p = policy(json!({"channel": [{"anything-but": ["test"]}]}));
        assert!(!on_attrs(&p, &[]));
        assert!(!on_attrs(&p, &[("other", "web")]));
    }

    #[test]
    fn numeric_single_bounds_compare_the_value_as_a_number() {
        let ge = policy(json!({"n": [{"numeric": [">=", 100]}]}));
        assert!(on_attrs(&ge, &[("n", "100")]));
        assert!(on_attrs(&ge, &[("n", "1e3")]));
        assert!(!on_attrs(&ge, &[("n", "99.999")]));
        let gt = policy(json!({"n": [{"numeric": [">", 100]}]}));
        assert!(!on_attrs(&gt, &[("n", "100")]));
        let lt = policy(json!({"n": [{"numeric": ["<", -1.5]}]}));
        assert!(on_attrs(&lt, &[("n", "-2")]));
        assert!(!on_attrs(&lt, &[("n", "-1.5")]));
        let le = policy(json!({"n": [{"numeric": ["<=", -1.5]}]}));
        assert!(on_attrs(&le, &[("n", "-1.5")]));
    }

    #[test]
    fn numeric_equals_matches_the_same_number_in_any_spelling() {
        let p = policy(json!({"n": [{"numeric": ["=", 5]}]}));
        assert!(on_attrs(&p, &[("n", "5")]));
        assert!(on_attrs(&p, &[("n", "5.00")]));
        assert!(!on_attrs(&p, &[("n", "5.00001")]));
    }

    /// A policy arrives as JSON text: its numbers must be read as exactly
    /// as an attribute's value is (`str::parse`), and as the same number
    /// again from the text the policy is stored as, or `=` misses its own
    /// literal and a restart changes what a subscription gets. Found by the
    /// `filter_policy` fuzz target; serde_json's `float_roundtrip` fixes it.
    #[test]
    fn numeric_equals_matches_its_own_literal_at_full_precision() {
        for n in [
            "1.5555555555555555e109",
            "0.30000000000000004",
            "8.98846567431158e307",
        ] {
            let text = format!(r#"{{"n": [{{"numeric": ["=", {n}]}}]}}"#);
            let v: Value = serde_json::from_str(&text).expect("JSON");
            let p = policy(v.clone());
            assert!(on_attrs(&p, &[("n", n)]), "{n}");
            let stored: Value = serde_json::from_str(&v.to_string()).expect("JSON");
            assert_eq!(policy(stored), p, "{n}");
        }
    }

    #[test]
    fn numeric_range_respects_inclusive_and_exclusive_bounds() {
        let p = policy(json!({"n": [{"numeric": [">", 0, "<=", 100]}]}));
        assert!(!on_attrs(&p, &[("n", "0")]));
        assert!(on_attrs(&p, &[("n", "0.00001")]));
        assert!(on_attrs(&p, &[("n", "100")]));
        assert!(!on_attrs(&p, &[("n", "100.1")]));
        let reversed = policy(json!({"n": [{"numeric": ["<", 10, ">=", 1]}]}));
        assert!(on_attrs(&reversed, &[("n", "1")]));
        assert!(!on_attrs(&reversed, &[("n", "10")]));
    }

    #[test]
    fn numeric_does_not_match_unparsable_or_non_finite_values() {
        let p = policy(json!({"n": [{"numeric": [">=", 0]}]}));
        for v in ["abc", "", " 5", "inf", "NaN", "infinity", "1e999"] {
            assert!(!on_attrs(&p, &[("n", v)]), "{v:?} matched");
        }
        assert!(!on_attrs(&p, &[]));
    }

    #[test]
    fn exact_number_in_attribute_scope_compares_numerically() {
        let p = policy(json!({"n": [5]}));
        assert!(on_attrs(&p, &[("n", "5")]));
        assert!(on_attrs(&p, &[("n", "5.0")]));
        assert!(!on_attrs(&p, &[("n", "five")]));
    }

    #[test]
    fn exists_true_matches_any_present_attribute() {
        let p = policy(json!({"tag": [{"exists": true}]}));
        assert!(on_attrs(&p, &[("tag", "")]));
        assert!(on_attrs(&p, &[("tag", "x")]));
        assert!(!on_attrs(&p, &[("other", "x")]));
    }

    #[test]
    fn exists_false_matches_only_a_missing_attribute() {
        let p = policy(json!({"tag": [{"exists": false}]}));
        assert!(on_attrs(&p, &[]));
        assert!(on_attrs(&p, &[("other", "x")]));
        assert!(!on_attrs(&p, &[("tag", "")]));
    }

    #[test]
    fn attribute_policy_does_not_need_the_body_and_ignores_it() {
        let p = policy(json!({"scope": "attributes", "type": ["a"]}));
        assert!(!p.needs_body());
        assert!(p.matches(&attrs(&[("type", "a")]), Some(&json!({"type": "b"}))));
        assert!(!p.matches(&attrs(&[]), Some(&json!({"type": "a"}))));
    }

    // Matching in body scope.

    #[test]
    fn body_policy_needs_the_body_and_ignores_attributes() {
        let p = policy(json!({"scope": "body", "type": ["a"]}));
        assert!(p.needs_body());
        assert!(!p.matches(&attrs(&[("type", "a")]), Some(&json!({"type": "b"}))));
        assert!(p.matches(&attrs(&[]), Some(&json!({"type": "a"}))));
    }

    #[test]
    fn body_scope_never_matches_a_non_json_body() {
        let p = policy(json!({"scope": "body", "tag": [{"exists": false}]}));
        assert!(!p.matches(&attrs(&[]), None));
    }

    #[test]
    fn body_scope_never_matches_json_that_is_not_an_object() {
        let p = policy(json!({"scope": "body", "tag": [{"exists": false}]}));
        for body in [
            json!([{"tag": 1}]),
            json!("x"),
            json!(5),
            json!(null),
            json!(true),
        ] {
            assert!(!on_body(&p, body.clone()), "{body} matched");
        }
        assert!(on_body(&p, json!({})));
    }

    #[test]
    fn body_scope_matches_nested_fields() {
        let p = policy(
            json!({"scope": "body", "type": ["order"], "order": {"region": [{"prefix": "eu-"}]}}),
        );
        assert!(on_body(
            &p,
            json!({"type": "order", "order": {"region": "eu-west-1", "id": 7}})
        ));
        assert!(!on_body(
            &p,
            json!({"type": "order", "order": {"region": "us-east-1"}})
        ));
        assert!(!on_body(
            &p,
            json!({"type": "order", "region": "eu-west-1"})
        ));
        assert!(!on_body(&p, json!({"type": "order", "order": "eu-west-1"})));
        let deep = policy(json!({"scope": "body", "a": {"b": {"c": {"d": {"e": [1]}}}}}));
        assert!(on_body(&deep, json!({"a": {"b": {"c": {"d": {"e": 1}}}}})));
        assert!(!on_body(&deep, json!({"a": {"b": {"c": {"d": {"e": 2}}}}})));
    }

    #[test]
    fn body_exists_false_matches_a_field_under_a_missing_object() {
        let p = policy(json!({"scope": "body", "order": {"coupon": [{"exists": false}]}}));
        assert!(on_body(&p, json!({})));
        assert!(on_body(&p, json!({"order": "not an object"})));
        assert!(on_body(&p, json!({"order": {"id": 1}})));
        assert!(!on_body(&p, json!({"order": {"coupon": null}})));
    }

    #[test]
    fn body_nested_policy_matches_when_any_object_of_an_array_matches() {
        let p = policy(
            json!({"scope": "body", "items": {"sku": ["a"], "qty": [{"numeric": [">", 1]}]}}),
        );
        assert!(on_body(
            &p,
            json!({"items": [{"sku": "b", "qty": 5}, {"sku": "a", "qty": 2}]})
        ));
        assert!(!on_body(
            &p,
            json!({"items": [{"sku": "b", "qty": 5}, {"sku": "a", "qty": 1}]})
        ));
        assert!(!on_body(&p, json!({"items": []})));
    }

    #[test]
    fn body_exact_string_and_number_match_only_their_own_type() {
        let s = policy(json!({"scope": "body", "v": ["5"]}));
        assert!(on_body(&s, json!({"v": "5"})));
        assert!(!on_body(&s, json!({"v": 5})));
        let n = policy(json!({"scope": "body", "v": [5]}));
        assert!(on_body(&n, json!({"v": 5})));
        assert!(on_body(&n, json!({"v": 5.0})));
        assert!(!on_body(&n, json!({"v": "5"})));
        assert!(!on_body(&n, json!({"v": 6})));
    }

    #[test]
    fn body_booleans_and_null_match_exactly() {
        let p = policy(json!({"scope": "body", "paid": [true], "note": [null]}));
        assert!(on_body(&p, json!({"paid": true, "note": null})));
        assert!(!on_body(&p, json!({"paid": false, "note": null})));
        assert!(!on_body(&p, json!({"paid": "true", "note": null})));
        assert!(!on_body(&p, json!({"paid": true})));
        assert!(!on_body(&p, json!({"paid": true, "note": "null"})));
    }

    #[test]
    fn body_array_field_matches_when_any_element_matches() {
        let p =
            policy(json!({"scope": "body", "tags": ["red"], "sizes": [{"numeric": [">", 10]}]}));
        assert!(on_body(
            &p,
            json!({"tags": ["blue", "red"], "sizes": [1, 20]})
        ));
        assert!(!on_body(&p, json!({"tags": ["blue"], "sizes": [20]})));
        assert!(!on_body(&p, json!({"tags": [], "sizes": [20]})));
        assert!(!on_body(&p, json!({"tags": [["red"]], "sizes": [20]})));
    }

    #[test]
    fn body_anything_but_on_an_array_matches_when_any_element_is_not_excluded() {
        let p = policy(json!({"scope": "body", "tags": [{"anything-but": ["test"]}]}));
        assert!(on_body(&p, json!({"tags": ["test", "prod"]})));
        assert!(!on_body(&p, json!({"tags": ["test"]})));
        assert!(!on_body(&p, json!({"tags": []})));
        assert!(!on_body(&p, json!({})));
        assert!(!on_body(&p, json!({"tags": {"test": 1}})));
        assert!(on_body(&p, json!({"tags": 3})));
    }

    #[test]
    fn body_numeric_matches_only_json_numbers() {
        let p = policy(json!({"scope": "body", "amount": [{"numeric": [">=", 100, "<", 200]}]}));
        assert!(on_body(&p, json!({"amount": 100})));
        assert!(on_body(&p, json!({"amount": 199.5})));
        assert!(!on_body(&p, json!({"amount": 200})));
        assert!(!on_body(&p, json!({"amount": "150"})));
    }

    #[test]
    fn body_string_operators_match_only_json_strings() {
        let p = policy(
            json!({"scope": "body", "v": [{"prefix": "1"}, {"suffix": "z"}, {"equals-ignore-case": "TRUE"}]}),
        );
        assert!(on_body(&p, json!({"v": "12"})));
        assert!(on_body(&p, json!({"v": "az"})));
        assert!(on_body(&p, json!({"v": "true"})));
        assert!(!on_body(&p, json!({"v": 12})));
        assert!(!on_body(&p, json!({"v": true})));
    }

    #[test]
    fn body_exists_concerns_the_key_whatever_its_value() {
        let p = policy(json!({"scope": "body", "v": [{"exists": true}]}));
        for v in [json!(null), json!([]), json!({}), json!(0)] {
            assert!(on_body(&p, json!({ "v": v })));
        }
        assert!(!on_body(&p, json!({"w": 1})));
    }

    #[test]
    fn scope_is_an_ordinary_field_name_below_the_top_level() {
        let p = policy(json!({"scope": "body", "meta": {"scope": ["global"]}}));
        assert!(on_body(&p, json!({"meta": {"scope": "global"}})));
    }

    // Validation.

    #[test]
    fn rejects_a_policy_that_is_not_an_object() {
        for v in [json!([]), json!("x"), json!(1), json!(null)] {
            assert!(error(v).contains("must be a JSON object"));
        }
    }

    #[test]
    fn rejects_an_empty_policy_even_with_a_scope() {
        assert!(error(json!({})).contains("at least one key"));
        assert!(error(json!({"scope": "body"})).contains("at least one key"));
        assert!(
            error(json!({"scope": "body", "order": {}})).contains("\"order\" is an empty object")
        );
    }

    #[test]
    fn rejects_a_key_whose_value_is_not_a_non_empty_array() {
        assert!(error(json!({"type": "a"})).contains("\"type\" must be a non-empty array"));
        assert!(error(json!({"type": []})).contains("got an empty array"));
        assert!(error(json!({"type": 5})).contains("got a number"));
        assert!(error(json!({"scope": "body", "type": null})).contains("got null"));
    }

    #[test]
    fn rejects_arrays_inside_a_keys_list() {
        assert!(error(json!({"type": [["a"]]})).contains("\"type\" has an array inside its list"));
    }

    #[test]
    fn rejects_booleans_and_null_in_attribute_scope() {
        assert!(error(json!({"paid": [true]})).contains("\"scope\": \"body\""));
        assert!(error(json!({"note": [null]})).contains("\"note\""));
    }

    #[test]
    fn rejects_an_unknown_operator() {
        let e = error(json!({"type": [{"regex": ".*"}]}));
        assert!(
            e.contains("\"type\"") && e.contains("unknown operator \"regex\""),
            "{e}"
        );
    }

    #[test]
    fn rejects_an_operator_object_without_exactly_one_operator() {
        assert!(error(json!({"t": [{}]})).contains("exactly one"));
        assert!(error(json!({"t": [{"prefix": "a", "suffix": "b"}]})).contains("exactly one"));
    }

    #[test]
    fn rejects_string_operators_with_non_string_operands() {
        for op in ["prefix", "suffix", "equals-ignore-case"] {
            let e = error(json!({"t": [{ op: 5 }]}));
            assert!(
                e.contains(&format!("operator \"{op}\" takes a string")),
                "{e}"
            );
        }
    }

    #[test]
    fn rejects_exists_with_a_non_boolean_operand() {
        assert!(error(json!({"t": [{"exists": "yes"}]})).contains("\"exists\" takes true or false"));
    }

    #[test]
    fn rejects_anything_but_with_bad_operands() {
        for operand in [
            json!([]),
            json!(true),
            json!(null),
            json!([true]),
            json!(["a", ["b"]]),
            json!({}),
        ] {
            let e = error(json!({"t": [{"anything-but": operand}]}));
            assert!(e.contains("\"t\"") && e.contains("anything-but"), "{e}");
        }
        let e = error(json!({"t": [{"anything-but": {"numeric": [">", 1]}}]}));
        assert!(
            e.contains("only \"prefix\", \"suffix\" and \"equals-ignore-case\""),
            "{e}"
        );
        assert!(error(json!({"t": [{"anything-but": {"prefix": 1}}]})).contains("takes a string"));
    }

    #[test]
    fn rejects_a_bad_numeric_operator() {
        let e = error(json!({"n": [{"numeric": ["!=", 1]}]}));
        assert!(
            e.contains("\"n\"") && e.contains("unknown operator \"!=\""),
            "{e}"
        );
    }

    #[test]
    fn rejects_malformed_numeric_ranges() {
        let cases = [
            (json!(5), "must be an array"),
            (json!([]), "must be an array"),
            (json!([">", 1, "<"]), "must be an array"),
            (json!([">", 1, "<", 2, "<", 3]), "must be an array"),
            (json!([1, ">"]), "expected an operator"),
            (json!([">", "1"]), "followed by a number"),
            (json!([">", 1, ">=", 2]), "two lower bounds"),
            (json!(["<", 1, "<=", 2]), "two upper bounds"),
            (json!(["=", 1, "<", 2]), "cannot be combined"),
            (json!([">", 5, "<", 5]), "must be less than"),
            (json!([">=", 6, "<=", 5]), "must be less than"),
        ];
        for (operand, want) in cases {
            let e = error(json!({"n": [{"numeric": operand}]}));
            assert!(
                e.contains("\"n\" has a malformed \"numeric\"") && e.contains(want),
                "{e}"
            );
        }
    }

    #[test]
    fn rejects_a_scope_other_than_attributes_or_body() {
        assert!(error(json!({"scope": "headers", "t": ["a"]})).contains("got \"headers\""));
        assert!(error(json!({"scope": ["body"], "t": ["a"]})).contains("\"scope\" must be"));
    }

    #[test]
    fn rejects_nested_objects_in_attribute_scope() {
        let e = error(json!({"order": {"region": ["eu"]}}));
        assert!(e.contains("\"order\" is a nested object"), "{e}");
    }

    #[test]
    fn error_messages_name_nested_keys_by_their_path() {
        let e = error(json!({"scope": "body", "order": {"region": [{"prefix": 1}]}}));
        assert!(e.contains("\"order.region\""), "{e}");
    }

    #[test]
    fn accepts_five_levels_of_nesting_and_refuses_six() {
        policy(json!({"scope": "body", "a": {"b": {"c": {"d": {"e": [1]}}}}}));
        let e = error(json!({"scope": "body", "a": {"b": {"c": {"d": {"e": {"f": [1]}}}}}}));
        assert!(
            e.contains("\"a.b.c.d.e\" nests objects more than 5 levels"),
            "{e}"
        );
    }

    #[test]
    fn limits_value_combinations_to_150_across_all_keys() {
        let list = |n: usize| Value::Array((0..n).map(|i| json!(i.to_string())).collect());
        policy(json!({"a": list(5), "b": list(5), "c": list(6)}));
        let e = error(json!({"a": list(5), "b": list(5), "c": list(7)}));
        assert!(e.contains("175 value combinations"), "{e}");
        let nested = error(json!({"scope": "body", "a": list(10), "o": {"b": list(16)}}));
        assert!(nested.contains("160 value combinations"), "{nested}");
        policy(json!({"t": list(150)}));
    }

    #[test]
    fn refuses_a_policy_larger_than_256_kib() {
        let big = "x".repeat(MAX_POLICY_BYTES);
        let e = error(json!({ "t": [big] }));
        assert!(e.contains("more than the limit of 262144 bytes"), "{e}");
        let fits = "x".repeat(MAX_POLICY_BYTES - r#"{"t":[""]}"#.len());
        policy(json!({ "t": [fits] }));
    }

    // Robustness: nothing reachable from input panics.

    fn json_value() -> impl Strategy<Value = Value> {
        let words = prop::sample::select(vec![
            "scope",
            "body",
            "attributes",
            "prefix",
            "suffix",
            "anything-but",
            "numeric",
            "exists",
            "equals-ignore-case",
            "=",
            "<",
            "<=",
            ">",
            ">=",
            "a",
            "eu-",
            "",
        ]);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            (-3i64..300).prop_map(Value::from),
            words.clone().prop_map(Value::from),
            ".{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(
                    (
                        prop_oneof![words.clone().prop_map(String::from), ".{0,4}"],
                        inner
                    ),
                    0..6
                )
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    fn attribute_map() -> impl Strategy<Value = Attributes> {
        let key = prop_oneof![
            prop::sample::select(vec!["type", "amount", "region", "tag", "channel", "name"])
                .prop_map(String::from),
            ".{0,6}",
        ];
        let value = prop_oneof![
            ".{0,10}",
            any::<f64>().prop_map(|f| f.to_string()),
            prop::sample::select(vec![
                "eu-west-1",
                "100",
                "1e400",
                "NaN",
                "-inf",
                "test",
                "STRAßE"
            ])
            .prop_map(String::from),
        ];
        prop::collection::btree_map(key, value, 0..8)
    }

    fn fixed_policies() -> Vec<FilterPolicy> {
        vec![
            policy(json!({
                "type": ["order_placed", 5],
                "amount": [{"numeric": [">=", 100]}, {"numeric": [">", 0, "<=", 10]}, {"numeric": ["=", 3]}],
                "region": [{"prefix": "eu-"}, {"suffix": "-1"}, {"equals-ignore-case": "straße"}],
                "tag": [{"exists": true}],
                "channel": [{"anything-but": ["test", 1]}, {"anything-but": {"prefix": "x"}}, {"exists": false}]
            })),
            policy(json!({
                "scope": "body",
                "type": ["a", 1, true, null, {"anything-but": 5}],
                "order": {"region": [{"prefix": "eu-"}], "items": {"qty": [{"numeric": ["<", 3]}], "x": {"y": [{"exists": false}]}}},
                "name": [{"equals-ignore-case": "BOB"}, {"suffix": "z"}]
            })),
        ]
    }

    proptest! {
        #[test]
        fn matches_never_panics_on_arbitrary_attributes(attributes in attribute_map(), body in json_value()) {
            for p in fixed_policies() {
                let _ = p.matches(&attributes, Some(&body));
                let _ = p.matches(&attributes, None);
            }
        }

        #[test]
        fn matches_never_panics_on_arbitrary_bodies(body in json_value(), order in json_value()) {
            let wrapped = json!({"type": body.clone(), "order": order, "name": body.clone()});
            for p in fixed_policies() {
                let _ = p.matches(&Attributes::new(), Some(&body));
                let _ = p.matches(&Attributes::new(), Some(&wrapped));
            }
        }

        #[test]
        fn parse_never_panics_and_parsed_policies_match_without_panicking(
            v in json_value(),
            body in json_value(),
            attributes in attribute_map(),
        ) {
            if let Ok(p) = FilterPolicy::parse(&v) {
                let _ = p.matches(&attributes, Some(&body));
                let _ = p.matches(&attributes, None);
            }
            let scoped = match v {
                Value::Object(mut m) => {
                    m.insert("scope".into(), json!("body"));
                    Value::Object(m)
                }
                other => other,
            };
            if let Ok(p) = FilterPolicy::parse(&scoped) {
                let _ = p.matches(&attributes, Some(&body));
            }
        }
    }
}
