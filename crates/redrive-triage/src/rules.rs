//! The built-in rules provider: offline and deterministic. It reads a group's error history
//! through an ordered table of patterns (first category that matches wins), then picks the
//! category's action; for bad data it looks for a mechanical fix of the body and proposes it as
//! a JSON Patch.

use serde_json::{json, Value};

use crate::model::{Action, Category, DeadCase, Decision};

/// Delay before redriving rate-limited jobs when the error names no retry time.
const RATE_LIMIT_DELAY_MS: u64 = 60_000;
/// Attempts that must all fail the same way before "refused/unavailable" means the dependency is
/// down rather than a blip.
const DOWN_AFTER_ATTEMPTS: usize = 3;

/// Patterns, lower-case, matched as substrings of the type, message and detail of an attempt.
/// Order matters: earlier categories win.
const POISON: &[&str] = &[
    "outofmemory",
    "out of memory",
    "memoryerror",
    "heap space",
    "oomkilled",
    "oom-kill",
    "sigkill",
    "signal 9",
    "killed by signal",
    "exit code 137",
    "exited with code 137",
    "status 137",
    "stack overflow",
    "stackoverflow",
    "segmentation fault",
    "sigsegv",
    "lease expired",
    "leaseexpired",
    "worker lost",
    "workerlost",
    "worker exited prematurely",
    "hard time limit",
    "timelimitexceeded",
    "cannot allocate memory",
];
const RATE_LIMITED: &[&str] = &[
    "429",
    "too many requests",
    "toomanyrequests",
    "rate limit",
    "ratelimit",
    "rate_limit",
    "rate exceeded",
    "throttl",
    "slowdown",
    "slow down",
    "requestlimitexceeded",
    "request limit exceeded",
    "quota exceeded",
    "retry after",
    "retry-after",
];
const CONFIG: &[&str] = &[
    "401",
    "403",
    "unauthorized",
    "unauthorised",
    "forbidden",
    "permission denied",
    "access denied",
    "accessdenied",
    "not authorized",
    "authentication failed",
    "authenticationerror",
    "invalid api key",
    "invalid_api_key",
    "api key",
    "api_key",
    "invalid credentials",
    "bad credentials",
    "invalidclienttokenid",
    "signaturedoesnotmatch",
    "expiredtoken",
    "token expired",
    "token has expired",
    "expired token",
    "missing env",
    "environment variable",
    "not configured",
    "is not set",
    "improperlyconfigured",
    "certificate verify failed",
    "certificate has expired",
    "sslerror",
    "ssl handshake",
    "x509",
    "nosuchbucket",
    "bucket does not exist",
    "undefinedtable",
    "42p01",
    "no such table",
    "password authentication",
];
const DEPENDENCY_DOWN: &[&str] = &[
    "circuit breaker",
    "circuitbreaker",
    "circuit open",
    "breaker is open",
    "recovery mode",
    "57p03",
    "maintenance",
    "cannot connect now",
    "the database system is starting up",
    "the database system is shutting down",
    "service is down",
];
const BAD_DATA: &[&str] = &[
    "validation",
    "invalid",
    "schema",
    "jsondecodeerror",
    "json decode",
    "json parse",
    "unexpected token",
    "unexpected end of json",
    "malformed",
    "missing required",
    "required field",
    "is required",
    "must be",
    "expected",
    "cannot deserialize",
    "mismatchedinputexception",
    "unrecognized field",
    "unknown field",
    "unprocessable",
    "422",
    "400 bad request",
    "bad request",
    "not a valid",
    "no such user",
    "mailbox unavailable",
    "user unknown",
    "recipient address rejected",
    "550",
    "does not exist",
    "not found",
    "404",
    "out of range for type",
    "22p02",
    "23502",
    "23505",
    "duplicate key",
    "violates",
    "card_declined",
    "card declined",
    "incorrect_number",
    "invalid_request_error",
    "parse error",
    "parseerror",
    "decodeerror",
    "valueerror",
    "numberformatexception",
    "illegalargumentexception",
    "argumenterror",
];
const BUG: &[&str] = &[
    "nullpointerexception",
    "null pointer",
    "nil pointer",
    "'nonetype'",
    "nonetype",
    "attributeerror",
    "typeerror",
    "is not a function",
    "cannot read propert",
    "undefined is not",
    "referenceerror",
    "indexerror",
    "index out of range",
    "indexoutofbounds",
    "keyerror",
    "nomethoderror",
    "undefined method",
    "classcastexception",
    "zerodivisionerror",
    "division by zero",
    "divide by zero",
    "arithmeticexception",
    "panicked at",
    "unwrap()",
    "assertionerror",
    "assertion failed",
    "unboundlocalerror",
    "nameerror",
    "illegalstateexception",
    "unsupportedoperationexception",
    "notimplemented",
    "concurrentmodificationexception",
    "recursionerror",
    "runtime error:",
];
const TRANSIENT: &[&str] = &[
    "timeout",
    "timed out",
    "time out",
    "etimedout",
    "deadline exceeded",
    "deadlineexceeded",
    "connection reset",
    "econnreset",
    "connection refused",
    "econnrefused",
    "connection aborted",
    "connection closed",
    "broken pipe",
    "epipe",
    "deadlock",
    "40p01",
    "could not serialize",
    "serialization failure",
    "40001",
    "lock wait timeout",
    "lock timeout",
    "502",
    "503",
    "504",
    "bad gateway",
    "service unavailable",
    "gateway timeout",
    "temporarily unavailable",
    "temporary failure",
    "try again",
    "eai_again",
    "too many connections",
    "53300",
    "remaining connection slots",
    "connection pool",
    "socket hang up",
    "network",
    "unavailable",
    "internal server error",
    "500",
    "server error",
    "enotfound",
    "getaddrinfo",
    "read timeout",
    "readtimeout",
    "sockettimeout",
    "operationalerror",
    "interfaceerror",
];
/// Among transient patterns, the ones that mean "nobody answers" when they repeat on every
/// attempt.
const DOWN_IF_REPEATED: &[&str] = &[
    "connection refused",
    "econnrefused",
    "503",
    "service unavailable",
    "unavailable",
    "enotfound",
    "no route to host",
    "502",
    "bad gateway",
];

fn text_of(case: &DeadCase, i: usize) -> String {
    let e = &case.errors[i];
    format!("{} {} {}", e.kind, e.message, e.detail.as_deref().unwrap_or("")).to_lowercase()
}

fn matches(text: &str, patterns: &[&str]) -> bool {
    patterns.iter().any(|p| text.contains(p))
}

/// Classifies one dead job (the representative of its group) and decides.
pub fn decide(case: &DeadCase) -> Decision {
    let Some(last) = case.errors.len().checked_sub(1) else {
        return Decision {
            category: Category::Poison,
            action: Action::Escalate,
            confidence: 0.8,
            delay_ms: None,
            patch: None,
            analysis: format!(
                "Received {} times and no attempt ever reported an error: the worker most likely \
                 died on this job (out of memory, killed, or hung past its lease).",
                case.receive_count
            ),
        };
    };
    let text = text_of(case, last);
    let all: Vec<String> = (0..case.errors.len()).map(|i| text_of(case, i)).collect();
    let (category, confidence) = classify(&text, &all);
    let mut d = Decision {
        category,
        action: default_action(category),
        confidence,
        delay_ms: None,
        patch: None,
        analysis: analysis(category, case),
    };
    match category {
        Category::RateLimited => {
            d.delay_ms = Some(retry_after_ms(&text).unwrap_or(RATE_LIMIT_DELAY_MS))
        }
        Category::BadData => {
            if let Some((patch, why)) = mechanical_fix(case) {
                d.action = Action::RedrivePatched;
                d.patch = Some(patch);
                d.analysis = format!("{} {why}", d.analysis);
            }
        }
        _ => {}
    }
    d
}

fn classify(last: &str, all: &[String]) -> (Category, f64) {
    if matches(last, POISON) {
        return (Category::Poison, 0.9);
    }
    if matches(last, RATE_LIMITED) {
        return (Category::RateLimited, 0.9);
    }
    if matches(last, DEPENDENCY_DOWN) {
        return (Category::DependencyDown, 0.85);
    }
    // A missing table is a missing migration, not bad data.
    if matches(last, CONFIG) || (last.contains("relation \"") && last.contains("does not exist")) {
        return (Category::Config, 0.85);
    }
    if matches(last, BUG) {
        return (Category::Bug, 0.8);
    }
    if matches(last, BAD_DATA) {
        return (Category::BadData, 0.8);
    }
    if matches(last, TRANSIENT) {
        let down =
            all.len() >= DOWN_AFTER_ATTEMPTS && all.iter().all(|t| matches(t, DOWN_IF_REPEATED));
        return if down { (Category::DependencyDown, 0.75) } else { (Category::Transient, 0.85) };
    }
    (Category::Unknown, 0.3)
}

fn default_action(c: Category) -> Action {
    match c {
        Category::Transient | Category::RateLimited => Action::Redrive,
        Category::DependencyDown => Action::Hold,
        Category::BadData
        | Category::Poison
        | Category::Bug
        | Category::Config
        | Category::Unknown => Action::Escalate,
    }
}

fn analysis(c: Category, case: &DeadCase) -> String {
    let last = case.last_error().map(|e| format!("{}: {}", e.kind, e.message)).unwrap_or_default();
    let n = case.errors.len();
    let why = match c {
        Category::Transient => "a transient failure that is likely to pass on a retry",
        Category::RateLimited => "throttled by a downstream service; retry later",
        Category::DependencyDown => "a dependency failed on every attempt; wait until it is back",
        Category::BadData => "the payload is invalid; retrying the same body fails the same way",
        Category::Poison => "the job kills or hangs the worker",
        Category::Bug => "a defect in the worker's code; a person needs to fix it",
        Category::Config => {
            "credentials, permissions or settings are wrong; an operator must fix them"
        }
        Category::Unknown => "no rule recognizes this failure",
    };
    format!("Rules: {why} ({n} failed attempts, last \"{last}\").")
}

/// `Retry-After: 30`, `retry after 30s`, `retry in 30 seconds`.
fn retry_after_ms(text: &str) -> Option<u64> {
    for key in ["retry-after:", "retry after", "retry in", "retry_after"] {
        if let Some(rest) = text.split(key).nth(1) {
            let digits: String = rest
                .trim_start_matches([' ', ':', '='])
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(s) = digits.parse::<u64>() {
                return Some(s.clamp(1, 3600) * 1000);
            }
        }
    }
    None
}

/// Names the error message points at: quoted words, and the word after `field`/`property`/`key`.
fn named_fields(message: &str) -> Vec<String> {
    let mut out = Vec::new();
    for q in ['\'', '"', '`'] {
        let parts: Vec<&str> = message.split(q).collect();
        for (i, p) in parts.iter().enumerate() {
            if i % 2 == 1 && !p.is_empty() && p.len() <= 64 && !p.contains(' ') {
                out.push((*p).to_owned());
            }
        }
    }
    let words: Vec<&str> = message.split_whitespace().collect();
    for w in words.windows(2) {
        if ["field", "property", "key", "parameter", "attribute"]
            .contains(&w[0].to_lowercase().as_str())
        {
            out.push(
                w[1].trim_matches(|c: char| !c.is_alphanumeric() && c != '_' && c != '.')
                    .to_owned(),
            );
        }
    }
    out.retain(|f| !f.is_empty());
    out
}

/// Finds `name` in the body: a top-level key, a dotted path or a JSON pointer. Returns the JSON
/// pointer and the value.
fn locate<'a>(body: &'a Value, name: &str) -> Option<(String, &'a Value)> {
    let pointer = if name.starts_with('/') {
        name.to_owned()
    } else {
        format!("/{}", name.replace('.', "/"))
    };
    body.pointer(&pointer).map(|v| (pointer, v))
}

/// A mechanical repair the error message points at, as an RFC 6902 patch: a number sent as a
/// string, an email with surrounding whitespace, a key the error says is misspelled, a date in
/// day/month/year order where ISO 8601 is expected.
fn mechanical_fix(case: &DeadCase) -> Option<(Value, String)> {
    let body: Value = serde_json::from_str(&case.body).ok()?;
    let e = case.last_error()?;
    let message = format!("{} {}", e.message, e.detail.as_deref().unwrap_or(""));
    let lower = message.to_lowercase();
    let fields = named_fields(&message);

    // "unknown field `emial`, expected one of `email`, ..." / "did you mean 'email'"
    if lower.contains("unknown field")
        || lower.contains("unrecognized field")
        || lower.contains("did you mean")
    {
        let present: Vec<&String> = fields.iter().filter(|f| locate(&body, f).is_some()).collect();
        let absent: Vec<&String> = fields.iter().filter(|f| locate(&body, f).is_none()).collect();
        if let (Some(from), Some(to)) = (present.first(), absent.first()) {
            let (from_ptr, _) = locate(&body, from)?;
            let to_ptr = format!("/{}", to.replace('.', "/"));
            let patch = json!([{"op": "move", "from": from_ptr, "path": to_ptr}]);
            return Some((patch, format!("Fix: rename {from_ptr} to {to_ptr}.")));
        }
    }
    for f in &fields {
        let Some((ptr, v)) = locate(&body, f) else { continue };
        let Some(s) = v.as_str() else { continue };
        let wants_number = ["integer", "int", "number", "numeric", "float", "i64", "u32", "long"]
            .iter()
            .any(|w| lower.split(|c: char| !c.is_alphanumeric()).any(|x| x == *w));
        if wants_number {
            if let Ok(n) = s.trim().parse::<i64>() {
                return Some((
                    json!([{"op": "replace", "path": ptr, "value": n}]),
                    format!("Fix: {ptr} as the number {n}."),
                ));
            }
            if let Ok(n) = s.trim().parse::<f64>() {
                return Some((
                    json!([{"op": "replace", "path": ptr, "value": n}]),
                    format!("Fix: {ptr} as the number {n}."),
                ));
            }
        }
        if s.trim() != s && !s.trim().is_empty() {
            let t = s.trim();
            return Some((
                json!([{"op": "replace", "path": ptr, "value": t}]),
                format!("Fix: trim the whitespace around {ptr}."),
            ));
        }
        if lower.contains("date") || lower.contains("iso") || lower.contains("format") {
            if let Some(iso) = dmy_to_iso(s) {
                return Some((
                    json!([{"op": "replace", "path": ptr, "value": iso}]),
                    format!("Fix: {ptr} as the ISO 8601 date {iso}."),
                ));
            }
        }
    }
    None
}

/// `31/12/2025` or `31.12.2025` → `2025-12-31` (day first, as most of the world writes it).
fn dmy_to_iso(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.trim().split(['/', '.', '-']).collect();
    let [d, m, y] = parts.as_slice() else { return None };
    let (d, m, y): (u32, u32, u32) = (d.parse().ok()?, m.parse().ok()?, y.parse().ok()?);
    if y < 1000 || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(format!("{y:04}-{m:02}-{d:02}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FailedAttempt;

    fn case(body: &str, errors: &[(&str, &str)]) -> DeadCase {
        DeadCase {
            queue: "q".into(),
            body: body.into(),
            receive_count: errors.len() as u32,
            errors: errors
                .iter()
                .map(|(k, m)| FailedAttempt {
                    kind: (*k).into(),
                    message: (*m).into(),
                    detail: None,
                })
                .collect(),
            ..DeadCase::default()
        }
    }

    fn cat(errors: &[(&str, &str)]) -> (Category, Action) {
        let d = decide(&case("{}", errors));
        (d.category, d.action)
    }

    #[test]
    fn common_failures_get_their_category_and_action() {
        use Action::*;
        use Category::*;
        let t = (
            "requests.exceptions.ReadTimeout",
            "HTTPSConnectionPool(host='api.x.io', port=443): Read timed out. (read timeout=30)",
        );
        assert_eq!(cat(&[t]), (Transient, Redrive));
        assert_eq!(
            cat(&[("psycopg2.errors.DeadlockDetected", "deadlock detected")]),
            (Transient, Redrive)
        );
        assert_eq!(
            cat(&[(
                "HTTPError",
                "429 Client Error: Too Many Requests for url: https://api.x.io/v1"
            )]),
            (RateLimited, Redrive)
        );
        let refused = ("ConnectionError", "connect ECONNREFUSED 10.0.3.4:5432");
        assert_eq!(cat(&[refused]), (Transient, Redrive), "once is a blip");
        assert_eq!(
            cat(&[refused, refused, refused]),
            (DependencyDown, Hold),
            "every time: it is down"
        );
        assert_eq!(
            cat(&[("OperationalError", "FATAL: the database system is in recovery mode")]),
            (DependencyDown, Hold)
        );
        assert_eq!(
            cat(&[(
                "java.lang.NullPointerException",
                "Cannot invoke \"String.length()\" because \"name\" is null"
            )]),
            (Bug, Escalate)
        );
        assert_eq!(
            cat(&[("AttributeError", "'NoneType' object has no attribute 'id'")]),
            (Bug, Escalate)
        );
        assert_eq!(
            cat(&[(
                "stripe.error.AuthenticationError",
                "Invalid API Key provided: sk_live_****1234"
            )]),
            (Config, Escalate)
        );
        assert_eq!(cat(&[("MemoryError", "")]), (Poison, Escalate));
        assert_eq!(
            cat(&[("ValidationError", "1 validation error for Order: email field required")]),
            (BadData, Escalate)
        );
        assert_eq!(cat(&[("Exception", "something went wrong")]), (Unknown, Escalate));
        let none = decide(&case("{}", &[]));
        assert_eq!((none.category, none.action), (Poison, Escalate), "died without a word");
    }

    #[test]
    fn rate_limits_wait_as_long_as_the_error_says() {
        let d = decide(&case(
            "{}",
            &[("SlowDown", "Please reduce your request rate. Retry after 12 seconds")],
        ));
        assert_eq!(d.delay_ms, Some(12_000));
        let d = decide(&case("{}", &[("Throttling", "Rate exceeded")]));
        assert_eq!(d.delay_ms, Some(RATE_LIMIT_DELAY_MS));
    }

    #[test]
    fn bad_data_with_a_mechanical_fix_gets_a_patch() {
        let d = decide(&case(
            r#"{"sku":"A1","quantity":"3"}"#,
            &[("ValidationError", "field 'quantity': expected integer, got string")],
        ));
        assert_eq!(d.action, Action::RedrivePatched);
        assert_eq!(d.patch, Some(json!([{"op": "replace", "path": "/quantity", "value": 3}])));
        let d = decide(&case(
            r#"{"emial":"a@b.io"}"#,
            &[("SerdeError", "unknown field `emial`, expected `email` or `name`")],
        ));
        assert_eq!(d.patch, Some(json!([{"op": "move", "from": "/emial", "path": "/email"}])));
        let d = decide(&case(
            r#"{"to":" a@b.io "}"#,
            &[("InvalidEmail", "invalid email address in field 'to'")],
        ));
        assert_eq!(d.patch, Some(json!([{"op": "replace", "path": "/to", "value": "a@b.io"}])));
        let d = decide(&case(
            r#"{"due":"31/12/2025"}"#,
            &[(
                "ValueError",
                "time data '31/12/2025' does not match format '%Y-%m-%d' for field 'due'",
            )],
        ));
        assert_eq!(
            d.patch,
            Some(json!([{"op": "replace", "path": "/due", "value": "2025-12-31"}]))
        );
        let d = decide(&case(
            r#"{"to":"nobody"}"#,
            &[("InvalidEmail", "invalid email address in field 'to'")],
        ));
        assert_eq!(
            (d.action, d.patch),
            (Action::Escalate, None),
            "no mechanical fix: a person decides"
        );
    }
}
