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
const DOWN_AFTER_ATTEMPTS: usize = 4;

/// Patterns, lower-case, matched as substrings of an attempt's type and message (and, when they
/// find nothing, its detail). Tables are tried in the order of [`TIERS`]: a strong signal of one
/// category beats a weak signal of another.
const BUG_STRONG: &[&str] = &[
    "nil pointer dereference",
    "nullpointerexception",
    "'nonetype' object",
    "assignment to entry in nil map",
    "called `option::unwrap()`",
    "called `result::unwrap()`",
    "wrong number of arguments",
    "nullreferenceexception",
    "object reference not set to an instance",
];
const POISON: &[&str] = &[
    "outofmemory",
    "out of memory",
    "memoryerror",
    "heap space",
    "oomkilled",
    "oom-kill",
    "sigkill",
    "signal 9",
    "signal: killed",
    "killed by signal",
    "exit code 137",
    "exited with code 137",
    "status 137",
    "stack overflow",
    "stackoverflow",
    "stack level too deep",
    "systemstackerror",
    "recursionerror",
    "maximum recursion depth",
    "segmentation fault",
    "sigsegv",
    "sigabrt",
    "memory allocation of",
    "cannot allocate memory",
    "lease expired",
    "leaseexpired",
    "worker lost",
    "workerlost",
    "worker exited prematurely",
    "hard time limit",
    "timelimitexceeded",
    "task timed out after",
    "runtime exited",
    "allowed memory size",
    "exhausted (tried to allocate",
    "accessviolationexception",
    "protected memory",
    "timeoutexceededexception",
    "oban.timeouterror",
    "jobtimeout",
    "job timed out",
    "soft time limit",
    "messagelocklost",
    "lock supplied is invalid",
    "lock expired",
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
    "request_limit_exceeded",
    "request limit exceeded",
    "limit exceeded",
    "quota exceeded",
    "retry after",
    "retry-after",
    "provisionedthroughputexceeded",
    "throughput exceeds",
    "secondary rate limit",
    "too many concurrent",
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
    "brokers are down",
    "all_brokers_down",
    "service not available",
    "no healthy upstream",
];
const CONFIG_HOLD: &[&str] = &[
    "api_key_expired",
    "expired api key",
    "token_revoked",
    "token has been revoked",
    "invalid_grant",
    "access has been revoked",
    "expired_access_token",
    "secret keys for app",
    "client secret has expired",
    "credentials have expired",
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
    "os.environ",
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
    "undefinedcolumn",
    "42p01",
    "42703",
    "no such table",
    "no such column",
    "password authentication",
    "getaddrinfo enotfound",
    "enotfound",
    "name or service not known",
    "no such host",
    "nodename nor servname",
    "ssl connection could not be established",
    "42s02",
    "base table or view not found",
];
const BAD_DATA_STRONG: &[&str] = &[
    "validationerror",
    "validation error",
    "validation failed",
    "recordinvalid",
    "cannot unmarshal",
    "unmarshaltypeerror",
    "cannot deserialize",
    "invalidformatexception",
    "mismatchedinputexception",
    "cannot coerce",
    "jsondecodeerror",
    "json decode",
    "json parse",
    "unexpected token",
    "unexpected end of json",
    "xmlsyntaxerror",
    "is not of type",
    "must have required property",
    "field required",
    "missing required",
    "required field",
    "is not a valid",
    "not a valid",
    "invalid input syntax",
    "value too long",
    "datarighttruncation",
    "datetimefieldoverflow",
    "out of range for type",
    "does not match format",
    "unidentifiedimageerror",
    "cannot identify image",
    "decompressionbomb",
    "recordnotfound",
    "couldn't find",
    "zero_results",
    "messagerejected",
    "address blacklisted",
    "mailbox unavailable",
    "user unknown",
    "recipient address rejected",
    "carderror",
    "card_declined",
    "card declined",
    "expired_card",
    "incorrect_number",
    "document_parsing_exception",
    "failed to parse field",
    "unknown field",
    "unrecognized field",
    "22p02",
    "23502",
    "23505",
    "duplicate key",
    "violates",
    "unprocessable",
    "data too long",
    "right truncated",
    "22001",
    "could not be converted",
    "jsonexception",
    "jsondecodingexception",
    "unknown key",
    "declined",
    "marked as inactive",
    "format could not be determined",
    "invalid image",
];
const BUG: &[&str] = &[
    "null pointer",
    "nil pointer",
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
    "lazyinitializationexception",
    "runtime error:",
    "idempotencyerror",
    "same parameters they were first used with",
    "nil map",
    "undefined local variable",
    "on null",
    "undefined array key",
    "undefined index",
    "undefined offset",
    "not implemented for",
    "undefinedfunctionerror",
    "is undefined or private",
    "collection was modified",
];
const TRANSIENT_STRONG: &[&str] = &[
    "connection reset",
    "econnreset",
    "connection aborted",
    "remote end closed",
    "remotedisconnected",
    "broken pipe",
    "epipe",
    "socket hang up",
    "deadlock",
    "40p01",
    "could not serialize",
    "serialization failure",
    "40001",
    "lock wait timeout",
    "read timed out",
    "readtimeout",
    "read timeout",
    "etimedout",
    "deadline exceeded",
    "deadlineexceeded",
    "apiconnectionerror",
    "notleaderforpartition",
    "leader not available",
    "idempotency_key_in_use",
    "eai_again",
    "temporary failure in name resolution",
];
const BAD_DATA: &[&str] = &[
    "validation",
    "invalid",
    "schema",
    "malformed",
    "is required",
    "must be",
    "expected ",
    "400 bad request",
    "bad request",
    "does not exist",
    "not found",
    "404",
    "550",
    "invalid_request_error",
    "parse error",
    "parseerror",
    "decodeerror",
    "valueerror",
    "numberformatexception",
    "illegalargumentexception",
    "argumenterror",
];
const TRANSIENT: &[&str] = &[
    "timeout",
    "timed out",
    "time out",
    "connection refused",
    "econnrefused",
    "connection closed",
    "couldn't connect",
    "could not connect",
    "unable to connect",
    "failed to connect",
    "502",
    "503",
    "504",
    "bad gateway",
    "service unavailable",
    "gateway timeout",
    "temporarily unavailable",
    "temporary failure",
    "try again",
    "too many connections",
    "too many clients",
    "53300",
    "remaining connection slots",
    "connection pool",
    "network",
    "unavailable",
    "eof",
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
    "no route to host",
    "502",
    "bad gateway",
    "couldn't connect",
    "could not connect",
    "unable to connect",
    "failed to connect",
    "connect timed out",
];

/// Tables in the order they are tried, with the category and confidence of a match.
const TIERS: &[(&[&str], Category, f64)] = &[
    (BUG_STRONG, Category::Bug, 0.85),
    (POISON, Category::Poison, 0.9),
    (RATE_LIMITED, Category::RateLimited, 0.9),
    (DEPENDENCY_DOWN, Category::DependencyDown, 0.85),
    (CONFIG_HOLD, Category::Config, 0.85),
    (CONFIG, Category::Config, 0.85),
    (BAD_DATA_STRONG, Category::BadData, 0.85),
    (BUG, Category::Bug, 0.8),
    (TRANSIENT_STRONG, Category::Transient, 0.85),
    (BAD_DATA, Category::BadData, 0.7),
    (TRANSIENT, Category::Transient, 0.8),
];

fn text_of(case: &DeadCase, i: usize, with_detail: bool) -> String {
    let e = &case.errors[i];
    let detail = if with_detail { e.detail.as_deref().unwrap_or("") } else { "" };
    format!("{} {} {}", e.kind, e.message, detail).to_lowercase()
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
    let (category, confidence) = classify(case);
    let text = text_of(case, last, true);
    let mut d = Decision {
        category,
        action: default_action(category),
        confidence,
        delay_ms: None,
        patch: None,
        analysis: analysis(category, case),
    };
    match category {
        Category::Config if matches(&text, CONFIG_HOLD) => d.action = Action::Hold,
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

fn classify(case: &DeadCase) -> (Category, f64) {
    let last = case.errors.len() - 1;
    // The detail (stack traces, notes) only speaks when type and message say nothing.
    for with_detail in [false, true] {
        let text = text_of(case, last, with_detail);
        let Some(&(_, category, confidence)) = TIERS.iter().find(|(p, _, _)| matches(&text, p))
        else {
            continue;
        };
        if category == Category::Transient {
            let all_down = case.errors.len() >= DOWN_AFTER_ATTEMPTS
                && (0..case.errors.len())
                    .all(|i| matches(&text_of(case, i, with_detail), DOWN_IF_REPEATED));
            if all_down {
                return (Category::DependencyDown, 0.75);
            }
        }
        return (category, confidence);
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

/// Names the error message points at: quoted words, words after `field`/`property`/`key`, and
/// the segments of dotted paths (`OrderLine.lines.quantity` → `quantity`).
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
        let lead = w[0].to_lowercase();
        if ["field", "property", "key", "parameter", "attribute"].contains(&lead.as_str()) {
            out.push(
                w[1].trim_matches(|c: char| !c.is_alphanumeric() && c != '_' && c != '.')
                    .to_owned(),
            );
        }
    }
    // A line of its own that is a bare identifier (pydantic puts the field name there).
    for line in message.lines().map(str::trim) {
        if !line.is_empty()
            && line.len() <= 64
            && line.chars().all(|c| c.is_alphanumeric() || c == '_')
        {
            out.push(line.to_owned());
        }
    }
    let segments: Vec<String> = out
        .iter()
        .filter(|f| f.contains('.'))
        .filter_map(|f| f.rsplit('.').next().map(str::to_owned))
        .collect();
    out.extend(segments);
    out.retain(|f| !f.is_empty());
    out
}

/// Every leaf of the body: (JSON pointer, key, value).
fn leaves<'a>(
    v: &'a Value,
    pointer: String,
    key: &str,
    out: &mut Vec<(String, String, &'a Value)>,
) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let esc = k.replace('~', "~0").replace('/', "~1");
                leaves(x, format!("{pointer}/{esc}"), k, out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                leaves(x, format!("{pointer}/{i}"), key, out);
            }
        }
        _ => out.push((pointer, key.to_owned(), v)),
    }
}

fn normalized(name: &str) -> String {
    name.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn has_word(text: &str, words: &[&str]) -> bool {
    text.split(|c: char| !c.is_alphanumeric()).any(|w| words.contains(&w))
}

/// A mechanical repair the error points at, as an RFC 6902 patch, tried in order: a key the error
/// says is missing or unknown next to a near-identical one in the body (rename), a value of the
/// wrong type (a number or boolean sent as a string, an integral float where an integer is
/// expected), whitespace around a value, a date or timestamp in a format the error rejects.
/// Nothing is guessed: an ambiguous date (day and month both ≤ 12) gets no patch.
fn mechanical_fix(case: &DeadCase) -> Option<(Value, String)> {
    let body: Value = serde_json::from_str(&case.body).ok()?;
    let e = case.last_error()?;
    let message = format!("{} {}", e.message, e.detail.as_deref().unwrap_or(""));
    let lower = message.to_lowercase();
    let names = named_fields(&message);
    let top: Vec<String> = body.as_object()?.keys().cloned().collect();

    // Rename: a named field absent from the body, and a body key that is nearly the same.
    let missing_words = [
        "required",
        "missing",
        "unknown field",
        "unrecognized field",
        "did you mean",
        "expected one of",
    ];
    if missing_words.iter().any(|w| lower.contains(w)) {
        let mut best: Option<(usize, &String, &String)> = None;
        for want in names.iter().filter(|n| !top.contains(n) && !n.contains('.')) {
            for have in top.iter().filter(|k| !names.contains(k) || lower.contains("unknown field"))
            {
                let d = if normalized(have) == normalized(want) {
                    0
                } else {
                    edit_distance(have, want)
                };
                if d <= 2 && best.is_none_or(|(bd, _, _)| d < bd) {
                    best = Some((d, have, want));
                }
            }
        }
        if let Some((_, from, to)) = best {
            let patch =
                json!([{"op": "move", "from": format!("/{from}"), "path": format!("/{to}")}]);
            return Some((patch, format!("Fix: rename /{from} to /{to}.")));
        }
    }

    let mut all = Vec::new();
    leaves(&body, String::new(), "", &mut all);
    // The leaves the error points at: by key name, or by a value quoted in the message.
    let pointed: Vec<&(String, String, &Value)> = all
        .iter()
        .filter(|(_, k, v)| {
            names.iter().any(|n| n == k || normalized(n) == normalized(k))
                || v.as_str().is_some_and(|s| {
                    !s.trim().is_empty() && names.iter().any(|n| n == s || n == s.trim())
                })
                || v.as_str().is_some_and(|s| {
                    s.len() >= 2
                        && (message.contains(&format!("\"{s}\""))
                            || message.contains(&format!("'{s}'")))
                })
        })
        .collect();
    let replace = |ptr: &str, value: Value, why: String| {
        Some((json!([{"op": "replace", "path": ptr, "value": value}]), why))
    };

    let wants_int =
        has_word(&lower, &["int", "integer", "long", "i32", "i64", "u32", "u64", "int64", "int32"]);
    let wants_bool = has_word(&lower, &["bool", "boolean"]);
    let wants_number = has_word(&lower, &["number", "float", "double", "numeric", "decimal"]);
    for (ptr, _, v) in &pointed {
        match v {
            Value::String(s) if wants_int => {
                if let Ok(n) = s.trim().parse::<i64>() {
                    return replace(ptr, json!(n), format!("Fix: {ptr} as the integer {n}."));
                }
            }
            Value::String(s) if wants_bool => {
                if let Ok(b) = s.trim().to_lowercase().parse::<bool>() {
                    return replace(ptr, json!(b), format!("Fix: {ptr} as the boolean {b}."));
                }
            }
            Value::String(s) if wants_number => {
                if let Ok(n) = s.trim().parse::<f64>() {
                    return replace(ptr, json!(n), format!("Fix: {ptr} as the number {n}."));
                }
            }
            Value::Number(n)
                if wants_int
                    && n.as_f64().is_some_and(|f| f.fract() == 0.0 && n.as_i64().is_none()) =>
            {
                let i = n.as_f64().unwrap_or_default() as i64;
                return replace(ptr, json!(i), format!("Fix: {ptr} as the integer {i}."));
            }
            _ => {}
        }
    }

    // Whitespace: the value the error points at, or else the only padded value in the body.
    let padded = |v: &Value| v.as_str().is_some_and(|s| s.trim() != s && !s.trim().is_empty());
    let mut candidates: Vec<&(String, String, &Value)> =
        pointed.iter().copied().filter(|(_, _, v)| padded(v)).collect();
    if candidates.is_empty() {
        candidates = all.iter().filter(|(_, _, v)| padded(v)).collect();
    }
    if let [(ptr, _, v)] = candidates.as_slice() {
        let t = v.as_str().unwrap_or_default().trim();
        return replace(ptr, json!(t), format!("Fix: trim the whitespace around {ptr}."));
    }

    if has_word(
        &lower,
        &["date", "datetime", "time", "format", "localdatetime", "localdate", "iso"],
    ) {
        for (ptr, _, v) in &pointed {
            let Some(s) = v.as_str() else { continue };
            if let Some(iso) = iso_date(s, &lower) {
                return replace(ptr, json!(iso), format!("Fix: {ptr} as {iso} (ISO 8601)."));
            }
        }
    }
    None
}

/// `2024/05/03` → `2024-05-03`; `14/03/2024` → `2024-03-14` (only when the day is > 12, so the
/// order is certain); `2024-05-07 14:30:00` → `2024-05-07T14:30:00` when a date-time is wanted.
fn iso_date(s: &str, lower: &str) -> Option<String> {
    let s = s.trim();
    if let Some((date, time)) = s.split_once(' ') {
        let ymd = date.len() == 10 && date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-';
        let hms = time.len() >= 5 && time.as_bytes()[2] == b':';
        return (ymd && hms && (lower.contains("datetime") || lower.contains("iso")))
            .then(|| format!("{date}T{time}"));
    }
    let parts: Vec<&str> = s.split(['/', '.']).collect();
    let [a, b, c] = parts.as_slice() else { return None };
    let nums: Vec<u32> = [a, b, c].iter().map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let (y, m, d) = if a.len() == 4 {
        (nums[0], nums[1], nums[2])
    } else if c.len() == 4 && nums[0] > 12 {
        (nums[2], nums[1], nums[0])
    } else {
        return None;
    };
    ((1..=12).contains(&m) && (1..=31).contains(&d)).then(|| format!("{y:04}-{m:02}-{d:02}"))
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
            cat(&[refused, refused, refused, refused]),
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
