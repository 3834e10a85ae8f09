//! The two SQS protocols. Both are parsed into one JSON value shaped as the JSON protocol has it,
//! which each action deserializes; each action's JSON answer is rendered back in the caller's
//! protocol.
//!
//! - AWS JSON 1.0: `X-Amz-Target: AmazonSQS.<Action>`, a JSON body, JSON answers and errors as
//!   `{"__type", "message"}` plus the `x-amzn-query-error` header SDKs read the code from.
//! - Query: form fields (`Action=…`, lists as `Foo.N`, maps as `Foo.N.Name`/`Foo.N.Value`), XML
//!   answers in SQS's namespace, errors as `ErrorResponse`.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::{Code, SqsError};

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
            serde_json::from_slice(body).map_err(|e| {
                SqsError::new(Code::MalformedInput, format!("the body is not valid JSON: {e}"))
            })?
        };
        if !params.is_object() {
            return Err(SqsError::new(Code::MalformedInput, "the body must be a JSON object"));
        }
        return Ok(Request { protocol: Protocol::Json, action, params });
    }
    let mut fields: Vec<(String, String)> = Vec::new();
    if let Some(q) = query {
        fields.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
    }
    fields.extend(form_urlencoded::parse(body).into_owned());
    let mut action = None;
    let mut tree = Map::new();
    for (k, v) in fields {
        match k.as_str() {
            "Action" => action = Some(v),
            // Protocol envelope, not parameters.
            "Version" | "AWSAccessKeyId" | "Signature" | "SignatureMethod" | "SignatureVersion"
            | "Timestamp" | "Expires" | "SecurityToken" => {}
            _ if k.starts_with("X-Amz-") => {}
            _ => insert_path(&mut tree, &k, v),
        }
    }
    let action = action.ok_or_else(|| SqsError::missing("Action"))?;
    Ok(Request { protocol: Protocol::Query, action, params: reshape(Value::Object(tree)) })
}

/// Files `value` under the dotted path `key` (`Attribute.1.Name`) in a tree of objects.
fn insert_path(tree: &mut Map<String, Value>, key: &str, value: String) {
    let mut node = tree;
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            node.insert(part.to_owned(), Value::String(value));
            return;
        }
        let next = node.entry(part.to_owned()).or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        node = next.as_object_mut().expect("just made an object");
    }
}

/// Turns the Query protocol's flattened members into the JSON protocol's shapes: objects with
/// numbered keys become lists, and the singular list names become the JSON names (`Attribute`
/// → `Attributes` map, `SendMessageBatchRequestEntry` → `Entries`, `AttributeName` →
/// `AttributeNames`, …).
fn reshape(v: Value) -> Value {
    let Value::Object(map) = v else { return v };
    let numbered = !map.is_empty() && map.keys().all(|k| k.parse::<u32>().is_ok());
    if numbered {
        let mut items: Vec<(u32, Value)> =
            map.into_iter().map(|(k, v)| (k.parse().expect("checked"), reshape(v))).collect();
        items.sort_by_key(|(n, _)| *n);
        return Value::Array(items.into_iter().map(|(_, v)| v).collect());
    }
    let mut out = Map::new();
    for (k, v) in map {
        let v = reshape(v);
        let (name, v) = match k.as_str() {
            "Attribute" => ("Attributes".to_owned(), pairs_to_map(v, "Name", "Value")),
            "MessageAttribute" => {
                ("MessageAttributes".to_owned(), pairs_to_map(v, "Name", "Value"))
            }
            "MessageSystemAttribute" => {
                ("MessageSystemAttributes".to_owned(), pairs_to_map(v, "Name", "Value"))
            }
            "Tag" => ("Tags".to_owned(), pairs_to_map(v, "Key", "Value")),
            "AttributeName" => ("AttributeNames".to_owned(), v),
            "MessageAttributeName" => ("MessageAttributeNames".to_owned(), v),
            "MessageSystemAttributeName" => ("MessageSystemAttributeNames".to_owned(), v),
            "TagKey" => ("TagKeys".to_owned(), v),
            "AWSAccountId" => ("AWSAccountIds".to_owned(), v),
            "ActionName" => ("Actions".to_owned(), v),
            k if k.ends_with("BatchRequestEntry") => ("Entries".to_owned(), v),
            _ => (k, v),
        };
        out.insert(name, v);
    }
    Value::Object(out)
}

fn pairs_to_map(v: Value, key: &str, value: &str) -> Value {
    let Value::Array(items) = v else { return v };
    let mut map = Map::new();
    for mut item in items {
        let k = item.get_mut(key).map(Value::take);
        let v = item.get_mut(value).map(Value::take).unwrap_or(Value::Null);
        if let Some(Value::String(k)) = k {
            map.insert(k, v);
        }
    }
    Value::Object(map)
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
    let status = StatusCode::from_u16(e.code.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let fault = if e.code.sender_fault() { "Sender" } else { "Receiver" };
    let mut resp = match protocol {
        Protocol::Json => {
            let body = serde_json::json!({
                "__type": format!("com.amazonaws.sqs#{}", e.code.json_type()),
                "message": e.message,
            });
            let mut resp = (status, body.to_string()).into_response();
            set(&mut resp, header::CONTENT_TYPE, JSON_CONTENT_TYPE);
            let query_error = format!("{};{fault}", e.code.query_code());
            set(&mut resp, "x-amzn-query-error", &query_error);
            resp
        }
        Protocol::Query => {
            let mut xml =
                format!("<?xml version=\"1.0\"?><ErrorResponse xmlns=\"{XMLNS}\"><Error>");
            let _ = write!(xml, "<Type>{fault}</Type><Code>{}</Code>", e.code.query_code());
            xml.push_str("<Message>");
            escape_into(&mut xml, &e.message);
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
    if e.retry_after {
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

/// Deserializes an optional integer given as a JSON number or (Query protocol) a string.
pub fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        N(i64),
        S(String),
    }
    match Option::<Int>::deserialize(d)? {
        None => Ok(None),
        Some(Int::N(n)) => Ok(Some(n)),
        Some(Int::S(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| de::Error::custom(format!("{s:?} is not an integer"))),
    }
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
