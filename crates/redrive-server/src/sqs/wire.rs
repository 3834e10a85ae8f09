//! The two SQS protocols. Both are parsed into one JSON value shaped as the JSON protocol has it,
//! which each action deserializes; each action's JSON answer is rendered back in the caller's
//! protocol.
//!
//! - AWS JSON 1.0: `X-Amz-Target: AmazonSQS.<Action>`, a JSON body, JSON answers and errors as
//!   `{"__type", "message"}` plus the `x-amzn-query-error` header SDKs read the code from.
//! - Query: form fields (`Action=…`, lists as `Foo.N`, maps as `Foo.N.Name`/`Foo.N.Value`), XML
//!   answers in SQS's namespace, errors as `ErrorResponse`.
//!
//! Either way a request is read strictly: a member named twice, text that is not UTF-8, or an
//! integer member that is not a plain integer is refused, never resolved by a guess.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::{self, SqsError};

const XMLNS: &str = "http://queue.amazonaws.com/doc/2012-11-05/";
const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.0";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Json,
    Query,
}

/// A parsed request: its protocol, action name and parameters in the JSON protocol's shape.
pub struct Request {
    pub protocol: Protocol,
    pub action: String,
    pub params: Value,
}

/// Reads either protocol from the headers, the URL query string and the body.
pub fn parse(headers: &HeaderMap, query: Option<&str>, body: &[u8]) -> Result<Request, SqsError> {
    if let Some(target) = headers.get("x-amz-target") {
        let target = target.to_str().unwrap_or_default();
        let action = target.strip_prefix("AmazonSQS.").unwrap_or(target).to_owned();
        let params = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Object(Map::new())
        } else {
            serde_json::from_slice::<Unique>(body)
                .map(|u| u.0)
                .map_err(|e| error::NOT_JSON.with(&[("detail", &e)]))?
        };
        if !params.is_object() {
            return Err(error::NOT_A_JSON_OBJECT.err());
        }
        return Ok(Request { protocol: Protocol::Json, action, params });
    }
    let mut fields = Vec::new();
    if let Some(q) = query {
        decode_form(q.as_bytes(), &mut fields)?;
    }
    decode_form(body, &mut fields)?;
    let mut seen = HashSet::with_capacity(fields.len());
    if let Some((k, _)) = fields.iter().find(|(k, _)| !seen.insert(k.as_str())) {
        return Err(repeated(k));
    }
    let mut action = None;
    let mut tree = Map::new();
    for (k, v) in fields {
        match k.as_str() {
            "Action" => action = Some(v),
            // Protocol envelope, not parameters.
            "Version" | "AWSAccessKeyId" | "Signature" | "SignatureMethod" | "SignatureVersion"
            | "Timestamp" | "Expires" | "SecurityToken" => {}
            _ if k.starts_with("X-Amz-") => {}
            _ => insert_path(&mut tree, &k, v)?,
        }
    }
    let action = action.ok_or_else(|| SqsError::missing("Action"))?;
    Ok(Request { protocol: Protocol::Query, action, params: reshape(Value::Object(tree))? })
}

/// A JSON value whose objects name each member once. `serde_json::Value` keeps the last of
/// `{"QueueUrl":"a","QueueUrl":"b"}`; a repeated member is refused instead, as a repeated Query
/// parameter is, so that no two readers of one request can disagree on what it asks.
struct Unique(Value);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Unique, D::Error> {
        d.deserialize_any(UniqueVisitor).map(Unique)
    }
}

struct UniqueVisitor;

impl<'de> de::Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Unique(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if out.contains_key(&k) {
                return Err(de::Error::custom(format!("the member {k:?} appears more than once")));
            }
            let Unique(v) = map.next_value()?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

/// A parameter sent twice (or both as a value and as a structure) is refused rather than one
/// of them winning: `Action=ListQueues&Action=DeleteQueue` must not delete. AWS documents
/// `InvalidQueryParameter` (400, "the AWS query string is malformed or does not adhere to AWS
/// standards") for this; redrive's closed set of SQS codes has no such code, so the answer is
/// `InvalidParameterValue`, the same status and the code every SDK reads as the caller's
/// fault. (`MalformedQueryString` is documented with status 404, for a string that does not
/// parse at all.)
fn repeated(key: &str) -> SqsError {
    error::REPEATED_PARAMETER.with(&[("parameter", &key)])
}

/// Appends the `key=value` pairs of a form (`application/x-www-form-urlencoded`, or a URL's
/// query string) to `out`. Unlike `form_urlencoded`, text that is not UTF-8 once decoded is
/// refused instead of being replaced with U+FFFD: a body sent as `%FF%FE` must not be stored
/// altered. A `%` not followed by two hex digits stays as it is, as browsers and
/// `form_urlencoded` read it.
fn decode_form(input: &[u8], out: &mut Vec<(String, String)>) -> Result<(), SqsError> {
    for pair in input.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[..0]),
        };
        let key = String::from_utf8(percent_decode(k)).map_err(|_| error::NAME_NOT_UTF8.err())?;
        let value = String::from_utf8(percent_decode(v)).map_err(|_| not_utf8(&key))?;
        out.push((key, value));
    }
    Ok(())
}

/// The error for a value that is not UTF-8: `InvalidMessageContents` for a message body, as
/// SQS answers for characters outside its set, `InvalidParameterValue` for anything else.
fn not_utf8(key: &str) -> SqsError {
    let member = key.rsplit('.').next().unwrap_or(key);
    if member == "MessageBody" {
        return error::BODY_NOT_UTF8.with(&[("parameter", &key)]);
    }
    error::VALUE_NOT_UTF8.with(&[("parameter", &key)])
}

fn percent_decode(input: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                input.get(i + 1).and_then(|&b| hex(b)),
                input.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push((hi * 16 + lo) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// The Query protocol sends every value as text; these members are integers in SQS's model
/// (and JSON numbers in the JSON protocol), so they are read here, once, as AWS reads them:
/// plain decimal digits with an optional leading minus, no sign `+`, no spaces.
const INTEGER_MEMBERS: [&str; 6] = [
    "DelaySeconds",
    "MaxNumberOfMessages",
    "MaxNumberOfMessagesPerSecond",
    "MaxResults",
    "VisibilityTimeout",
    "WaitTimeSeconds",
];

/// `s` as SQS reads an integer: `-?[0-9]+` that fits in 64 bits.
pub fn parse_integer(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The list members of SQS's Query protocol: as their elements are named (before [`reshape`]
/// renames them), and by the list's own name, which botocore uses for an empty list
/// (`AttributeNames=`).
const LIST_MEMBERS: [&str; 13] = [
    "AttributeName",
    "MessageAttributeName",
    "MessageSystemAttributeName",
    "TagKey",
    "AWSAccountId",
    "ActionName",
    "AttributeNames",
    "MessageAttributeNames",
    "MessageSystemAttributeNames",
    "TagKeys",
    "AWSAccountIds",
    "Actions",
    "Entries",
];

/// Files `value` under the dotted path `key` (`Attribute.1.Name`) in a tree of objects. A key
/// that is both a value and a structure (`Tag.1=x&Tag.1.Key=k`) is refused like a repeated one.
/// Lists may also come in the non-flattened form (`AttributeName.member.1`); an empty list is
/// a list name with no value (`AttributeNames=`, as botocore sends one, `AttributeName=` or
/// `AttributeName.member=`).
fn insert_path(tree: &mut Map<String, Value>, key: &str, value: String) -> Result<(), SqsError> {
    let mut node = tree;
    let mut parts = key.split('.').filter(|p| *p != "member").peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            if node.contains_key(part) {
                return Err(repeated(key));
            }
            let empty_list = value.is_empty()
                && (LIST_MEMBERS.contains(&part) || part.ends_with("BatchRequestEntry"));
            let value = if empty_list {
                Value::Array(Vec::new())
            } else if INTEGER_MEMBERS.contains(&part) {
                let n = parse_integer(&value).ok_or_else(|| {
                    error::NOT_AN_INTEGER.with(&[("value", &value), ("parameter", &key)])
                })?;
                Value::from(n)
            } else {
                Value::String(value)
            };
            node.insert(part.to_owned(), value);
            return Ok(());
        }
        let next = node.entry(part.to_owned()).or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(next) = next else { return Err(repeated(key)) };
        node = next;
    }
    Ok(())
}

/// Turns the Query protocol's flattened members into the JSON protocol's shapes: objects with
/// numbered keys become lists, and the singular list names become the JSON names (`Attribute`
/// → `Attributes` map, `SendMessageBatchRequestEntry` → `Entries`, `AttributeName` →
/// `AttributeNames`, …).
fn reshape(v: Value) -> Result<Value, SqsError> {
    let Value::Object(map) = v else { return Ok(v) };
    let numbered = !map.is_empty() && map.keys().all(|k| k.parse::<u32>().is_ok());
    if numbered {
        let mut items = Vec::with_capacity(map.len());
        for (k, v) in map {
            items.push((k.parse::<u32>().expect("checked"), reshape(v)?));
        }
        items.sort_by_key(|(n, _)| *n);
        return Ok(Value::Array(items.into_iter().map(|(_, v)| v).collect()));
    }
    let mut out = Map::new();
    for (k, v) in map {
        let v = reshape(v)?;
        let (name, v) = match k.as_str() {
            "Attribute" => ("Attributes".to_owned(), pairs_to_map(v, &k, "Name", "Value")?),
            "MessageAttribute" => {
                ("MessageAttributes".to_owned(), pairs_to_map(v, &k, "Name", "Value")?)
            }
            "MessageSystemAttribute" => {
                ("MessageSystemAttributes".to_owned(), pairs_to_map(v, &k, "Name", "Value")?)
            }
            "Tag" => ("Tags".to_owned(), pairs_to_map(v, &k, "Key", "Value")?),
            "AttributeName" => ("AttributeNames".to_owned(), v),
            "MessageAttributeName" => ("MessageAttributeNames".to_owned(), v),
            "MessageSystemAttributeName" => ("MessageSystemAttributeNames".to_owned(), v),
            "TagKey" => ("TagKeys".to_owned(), v),
            "AWSAccountId" => ("AWSAccountIds".to_owned(), v),
            "ActionName" => ("Actions".to_owned(), v),
            k if k.ends_with("BatchRequestEntry") => ("Entries".to_owned(), v),
            _ => (k.clone(), v),
        };
        // Two spellings of one member (`Attribute.1.Name` and `Attributes`) are a repeat too.
        if out.insert(name, v).is_some() {
            return Err(repeated(&k));
        }
    }
    Ok(Value::Object(out))
}

/// The entries of a flattened map (`Tag.N.Key`/`Tag.N.Value`) as a JSON map. An entry without
/// its key is `MissingParameter`; a key named twice is refused like a repeated parameter.
fn pairs_to_map(v: Value, member: &str, key: &str, value: &str) -> Result<Value, SqsError> {
    let Value::Array(items) = v else { return Ok(v) };
    let mut map = Map::new();
    for mut item in items {
        let k = item.get_mut(key).map(Value::take);
        let v = item.get_mut(value).map(Value::take).unwrap_or(Value::Null);
        let Some(Value::String(k)) = k else {
            return Err(SqsError::missing(&format!("{member}.N.{key}")));
        };
        if map.contains_key(&k) {
            return Err(error::REPEATED_MAP_KEY.with(&[("member", &member), ("key", &k)]));
        }
        map.insert(k, v);
    }
    Ok(Value::Object(map))
}

/// The success answer in the caller's protocol; `null` is an action that answers nothing.
pub fn ok(protocol: Protocol, action: &str, result: Value, request_id: &str) -> Response {
    match protocol {
        Protocol::Json => {
            let body = if result.is_null() {
                b"{}".to_vec()
            } else {
                serde_json::to_vec(&result).expect("JSON values serialize")
            };
            let mut resp = (StatusCode::OK, body).into_response();
            set(&mut resp, header::CONTENT_TYPE, JSON_CONTENT_TYPE);
            set(&mut resp, "x-amzn-requestid", request_id);
            resp
        }
        Protocol::Query => {
            let mut xml = String::with_capacity(512);
            let _ = write!(xml, "<?xml version=\"1.0\"?><{action}Response xmlns=\"{XMLNS}\">");
            // Even an empty result has its element: SDKs look for it.
            if !result.is_null() {
                let _ = write!(xml, "<{action}Result>");
                xml_fields(&mut xml, action, &result);
                let _ = write!(xml, "</{action}Result>");
            }
            let _ = write!(
                xml,
                "<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>"
            );
            let mut resp = (StatusCode::OK, xml).into_response();
            set(&mut resp, header::CONTENT_TYPE, "text/xml");
            set(&mut resp, "x-amzn-requestid", request_id);
            resp
        }
    }
}

/// The error answer in the caller's protocol.
pub fn error(protocol: Protocol, e: &SqsError, request_id: &str) -> Response {
    let code = e.code();
    let status = StatusCode::from_u16(code.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let fault = if code.sender_fault() { "Sender" } else { "Receiver" };
    let mut resp = match protocol {
        Protocol::Json => {
            let body = serde_json::json!({
                "__type": format!("com.amazonaws.sqs#{}", code.json_type()),
                "message": e.message_in(protocol),
            });
            let mut resp = (status, body.to_string()).into_response();
            set(&mut resp, header::CONTENT_TYPE, JSON_CONTENT_TYPE);
            let query_error = format!("{};{fault}", code.query_code());
            set(&mut resp, "x-amzn-query-error", &query_error);
            resp
        }
        Protocol::Query => {
            let mut xml =
                format!("<?xml version=\"1.0\"?><ErrorResponse xmlns=\"{XMLNS}\"><Error>");
            let _ = write!(xml, "<Type>{fault}</Type><Code>{}</Code>", code.query_code());
            xml.push_str("<Message>");
            escape_into(&mut xml, &e.message_in(protocol));
            let _ = write!(
                xml,
                "</Message><Detail/></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
            );
            let mut resp = (status, xml).into_response();
            set(&mut resp, header::CONTENT_TYPE, "text/xml");
            resp
        }
    };
    set(&mut resp, "x-amzn-requestid", request_id);
    if e.retry_after() {
        set(&mut resp, header::RETRY_AFTER, "1");
    }
    resp
}

fn set(resp: &mut Response, name: impl header::IntoHeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

/// Writes an action's JSON answer as the Query protocol's XML: maps of attributes, tags and
/// message attributes as repeated `Name`/`Value` (or `Key`/`Value`) members, lists as repeated
/// elements named after their members.
fn xml_fields(xml: &mut String, action: &str, v: &Value) {
    let Value::Object(map) = v else { return };
    for (k, v) in map {
        match (k.as_str(), v) {
            ("Attributes", Value::Object(m)) => xml_map(xml, "Attribute", "Name", m, action),
            ("MessageAttributes", Value::Object(m)) => {
                xml_map(xml, "MessageAttribute", "Name", m, action)
            }
            ("Tags", Value::Object(m)) => xml_map(xml, "Tag", "Key", m, action),
            (_, Value::Array(items)) => {
                let member = match k.as_str() {
                    "QueueUrls" | "queueUrls" => "QueueUrl".to_owned(),
                    "Messages" => "Message".to_owned(),
                    "Successful" => format!("{action}ResultEntry"),
                    "Failed" => "BatchResultErrorEntry".to_owned(),
                    "Results" => format!("{action}ResultEntry"),
                    other => other.to_owned(),
                };
                for item in items {
                    xml_element(xml, &member, item, action);
                }
            }
            _ => xml_element(xml, k, v, action),
        }
    }
}

fn xml_map(xml: &mut String, member: &str, key: &str, m: &Map<String, Value>, action: &str) {
    for (name, value) in m {
        let _ = write!(xml, "<{member}><{key}>");
        escape_into(xml, name);
        let _ = write!(xml, "</{key}>");
        xml_element(xml, "Value", value, action);
        let _ = write!(xml, "</{member}>");
    }
}

fn xml_element(xml: &mut String, name: &str, v: &Value, action: &str) {
    let _ = write!(xml, "<{name}>");
    match v {
        Value::String(s) => escape_into(xml, s),
        Value::Object(_) => xml_fields(xml, action, v),
        Value::Null => {}
        other => {
            let _ = write!(xml, "{other}");
        }
    }
    let _ = write!(xml, "</{name}>");
}

/// XML-escapes text. Characters outside XML's set never get here: bodies are checked on send.
pub fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

/// How AWS's JSON front end words a member of the wrong type for an integer; `actions::input`
/// answers errors ending so with `SerializationException`, as AWS does.
pub const NOT_AN_INTEGER: &str = "can not be converted to an Integer";

/// Deserializes an optional integer member: a JSON number without a fraction. The JSON protocol
/// requires numbers for integer members (`"DelaySeconds":"5"` is refused, as AWS refuses it);
/// the Query protocol's text was already read by [`parse_integer`] in `parse`.
pub fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let kind = match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(n) => return Ok(Some(n)),
            None if n.is_f64() => "DECIMAL_VALUE",
            None => "INTEGER_VALUE out of range",
        },
        Some(Value::String(_)) => "STRING_VALUE",
        Some(Value::Bool(_)) => "BOOLEAN_VALUE",
        Some(Value::Array(_)) => "START_ARRAY",
        Some(Value::Object(_)) => "START_OBJECT",
    };
    Err(de::Error::custom(format!("{kind} {NOT_AN_INTEGER}")))
}

/// Deserializes a map whose values may be absent (`null`) into strings.
pub fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let m = Option::<BTreeMap<String, Option<String>>>::deserialize(d)?.unwrap_or_default();
    Ok(m.into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_members_become_json_shapes() {
        let body = "Action=SendMessageBatch&QueueUrl=http%3A%2F%2Fh%2F0%2Fq\
            &SendMessageBatchRequestEntry.2.Id=b&SendMessageBatchRequestEntry.2.MessageBody=two\
            &SendMessageBatchRequestEntry.1.Id=a&SendMessageBatchRequestEntry.1.MessageBody=one\
            &SendMessageBatchRequestEntry.1.MessageAttribute.1.Name=color\
            &SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.DataType=String\
            &SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.StringValue=red\
            &Version=2012-11-05";
        let r = parse(&HeaderMap::new(), None, body.as_bytes()).unwrap();
        assert_eq!((r.protocol, r.action.as_str()), (Protocol::Query, "SendMessageBatch"));
        assert_eq!(
            r.params,
            serde_json::json!({
                "QueueUrl": "http://h/0/q",
                "Entries": [
                    {"Id": "a", "MessageBody": "one", "MessageAttributes": {
                        "color": {"DataType": "String", "StringValue": "red"}}},
                    {"Id": "b", "MessageBody": "two"},
                ]
            })
        );
        let r = parse(
            &HeaderMap::new(),
            Some("Action=X&Attribute.1.Name=A&Attribute.1.Value=1&AttributeName.1=All"),
            b"",
        )
        .unwrap();
        assert_eq!(
            r.params,
            serde_json::json!({"Attributes": {"A": "1"}, "AttributeNames": ["All"]})
        );
    }

    #[test]
    fn xml_answers_flatten_maps_and_lists() {
        let result = serde_json::json!({
            "Attributes": {"VisibilityTimeout": "30"},
            "QueueUrls": ["u1", "u<2>"],
            "Successful": [{"Id": "a"}],
        });
        let resp = ok(Protocol::Query, "DeleteMessageBatch", result, "rid");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/xml");
        let mut xml = String::new();
        xml_fields(
            &mut xml,
            "DeleteMessageBatch",
            &serde_json::json!({
                "Attributes": {"VisibilityTimeout": "30"},
                "QueueUrls": ["u1", "u<2>"],
                "Successful": [{"Id": "a"}],
            }),
        );
        assert_eq!(
            xml,
            "<Attribute><Name>VisibilityTimeout</Name><Value>30</Value></Attribute>\
             <QueueUrl>u1</QueueUrl><QueueUrl>u&lt;2&gt;</QueueUrl>\
             <DeleteMessageBatchResultEntry><Id>a</Id></DeleteMessageBatchResultEntry>"
        );
    }
}
