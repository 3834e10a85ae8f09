//! `JsonBody<T>`: a JSON object body whose size-limit and parse failures are API errors (413
//! naming the limit; 400 with the parser's reason), unlike axum's plain-text rejections. An empty
//! body reads as `{}` so that all-optional requests may omit it. Parsing goes through
//! [`Strict`]: objects only where the API wants objects, integers also as `313.0`.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use redrive_core::Error;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::strict::Strict;

pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError(crate::overload::body_error(&e)))?;
        parse(&bytes).map(JsonBody)
    }
}

/// Every body of the API is one JSON object (or nothing, read as `{}`).
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().position(|b| !b.is_ascii_whitespace());
    let bytes: &[u8] = match first {
        None => b"{}",
        Some(i) if bytes[i] == b'{' => bytes,
        Some(_) => {
            return Err(ApiError(Error::MalformedRequest("the body must be a JSON object".into())))
        }
    };
    // A body valid as a whole (nearly every one) is read as text, whose strings then need no
    // UTF-8 check of their own; one that is not keeps the parser's error naming where.
    let parsed = match std::str::from_utf8(bytes) {
        Ok(text) => whole(serde_json::Deserializer::from_str(text)),
        Err(_) => whole(serde_json::Deserializer::from_slice(bytes)),
    };
    parsed.map_err(|e| {
        // Parsed again to name the field at fault (`jobs[2].priority: unknown variant …`):
        // tracking the path allocates for every key, so only a refused body pays for it.
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let why = match serde_path_to_error::deserialize::<_, T>(Strict(&mut de)) {
            Err(e) => e.to_string(),
            Ok(_) => e.to_string(),
        };
        ApiError(Error::MalformedRequest(why))
    })
}

/// One JSON value of type `T`, and nothing after it.
fn whole<'de, R: serde_json::de::Read<'de>, T: DeserializeOwned>(
    mut de: serde_json::Deserializer<R>,
) -> serde_json::Result<T> {
    T::deserialize(Strict(&mut de)).and_then(|v| de.end().map(|()| v))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use redrive_core::QueuePatch;
    use serde::Deserialize;

    use super::parse;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        ms: u64,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[serde(default)]
        n: Option<u32>,
        #[serde(default)]
        inner: Option<Inner>,
        #[serde(default)]
        list: Vec<Inner>,
        #[serde(default)]
        map: BTreeMap<String, u8>,
    }

    fn message(body: &str) -> String {
        match parse::<Body>(body.as_bytes()) {
            Ok(b) => panic!("{body} was accepted as {b:?}"),
            Err(e) => e.0.to_string(),
        }
    }

    #[test]
    fn arrays_are_refused_where_objects_are_expected_at_any_depth() {
        assert!(message("[5000]").contains("must be a JSON object"));
        let nested = message(r#"{"inner": [5]}"#);
        assert!(nested.starts_with("malformed request: inner: invalid type: sequence"), "{nested}");
        assert!(nested.contains("expected a JSON object"), "{nested}");
        assert!(message(r#"{"list": [[5]]}"#).contains("expected a JSON object"));
        assert!(parse::<QueuePatch>(b"[5000]").is_err());
        assert!(parse::<QueuePatch>(br#"{"backoff": [1000]}"#).is_err());
    }

    #[test]
    fn integral_floats_are_integers_and_others_are_refused_in_api_words() {
        let b: Body = parse(br#"{"n": 313.0, "inner": {"ms": 5e3}, "map": {"k": 2.0}}"#).unwrap();
        assert_eq!((b.n, b.inner.map(|i| i.ms), b.map["k"]), (Some(313), Some(5000), 2));
        let half = message(r#"{"n": 1.5}"#);
        assert!(half.contains("expected an integer from 0 to 4294967295"), "{half}");
        let big = message(r#"{"map": {"k": 256}}"#);
        assert!(big.contains("map.k: "), "{big}");
        assert!(big.contains("expected an integer from 0 to 255"), "{big}");
        let negative = message(r#"{"n": -1.0}"#);
        assert!(negative.contains("from 0 to"), "{negative}");
        let text = message(r#"{"inner": "x"}"#);
        assert!(!text.contains("struct") && !text.contains("u64"), "{text}");
    }

    #[test]
    fn text_in_any_script_is_read_and_bytes_that_are_not_utf8_are_refused_where_they_are() {
        let b: BTreeMap<String, String> = parse("{\"é\": \"日本 🚀\"}".as_bytes()).unwrap();
        assert_eq!(b["é"], "日本 🚀");
        let e = parse::<BTreeMap<String, String>>(b"{\"k\": \"a\xff\"}").unwrap_err();
        let why = e.0.to_string();
        assert!(why.contains("invalid unicode code point at line 1 column"), "{why}");
    }

    #[test]
    fn empty_bodies_are_empty_objects_and_trailing_text_is_refused() {
        assert_eq!(parse::<Body>(b"  ").unwrap().n, None);
        assert!(message(r#"{} {}"#).contains("trailing"));
    }
}
