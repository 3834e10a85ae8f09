//! AWS Signature Version 4 on SQS requests: [`parse`] finds the signature a request carries (an
//! `Authorization` header, or a presigned URL's `X-Amz-*` query parameters), [`verify`] checks it
//! with the secret of the access key it names, and every refusal is a [`Failure`] with the code,
//! status and words SQS answers with. Which key ids exist, and their secrets, is the caller's
//! concern ([`authenticate`] takes a lookup and does the whole check).
//!
//! The canonical request and the signature come from `aws-sigv4`, the signer of AWS's own Rust
//! SDK, not from a canonicaliser of our own: this module hands it the parts of the request the
//! client says it signed (method, path, query, the headers named in `SignedHeaders`, the body's
//! SHA-256), has it sign them again at the request's own `X-Amz-Date` with the key's secret, and
//! compares the two signatures in constant time. It checks what a signer does not: the credential
//! scope, the clock, and a presigned URL's expiry.
//!
//! # Forms verified
//! Settings as SDKs sign SQS: the path normalised and URI-encoded twice, the payload signed.
//! Pinned by fixed vectors in the tests: AWS's SigV4 test suite (`get-vanilla` as a header and as
//! a presigned URL, a form POST that signs `x-amz-content-sha256`, a session token), requests
//! captured from the aws CLI 1.45 and botocore 1.43 (JSON protocol, a Query-protocol form POST, a
//! presigned GET, boto3's `generate_presigned_url`), and requests `aws-sigv4` signs as the Rust
//! SDK does.
//!
//! # Forms refused
//! - A header signature dated only by `Date`, not `X-Amz-Date` (SigV4 allows it; no SDK sends
//!   it), or that does not sign `x-amz-date` or `host`: IncompleteSignature. The signer always
//!   signs both, and an unsigned date or host would let a captured signature be replayed later or
//!   elsewhere.
//! - `x-amz-content-sha256` other than the body's SHA-256 (`UNSIGNED-PAYLOAD`, streaming forms),
//!   and presigned URLs signed over `UNSIGNED-PAYLOAD` as S3 presigners do: SignatureDoesNotMatch.
//!   SQS clients sign their payloads; taking an unsigned one would leave the body unauthenticated.
//! - SigV4a (`AWS4-ECDSA-P256-SHA256`) and any other `AWS4-` algorithm: IncompleteSignature.
//!   SigV2 (`SignatureVersion=2` query parameters) is not recognised as a signature: [`parse`]
//!   answers `None`, as for an `Authorization` header of any non-`AWS4-` scheme.
//! - A raw `+` in the query string is read as a space (form encoding), as the signer reads it;
//!   SDKs send `%2B` and `%20`, so only a hand-made client signing a raw `+` fails.
//! - In a presigned URL, the signer never signs `x-amz-user-agent` or `x-amz-checksum-mode`, so a
//!   URL that lists them in `X-Amz-SignedHeaders` does not verify (no presigner signs them).

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningParams, SigningSettings,
};
use aws_sigv4::sign::v4;
use axum::http::{header, HeaderMap, HeaderValue, Method, Uri};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The one signing algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The service an SQS credential scope names.
pub const SERVICE: &str = "sqs";
/// The last element of every credential scope.
const TERMINATOR: &str = "aws4_request";
/// How far a signature's `X-Amz-Date` may be from the server's clock (AWS: 15 minutes).
pub const CLOCK_SKEW_MAX_S: u64 = 15 * 60;
/// The longest life a presigned URL may ask for in `X-Amz-Expires` (AWS: 7 days).
pub const PRESIGNED_EXPIRES_MAX_S: u64 = 7 * 24 * 60 * 60;

const X_AMZ_DATE: &str = "x-amz-date";
const X_AMZ_CONTENT_SHA256: &str = "x-amz-content-sha256";

/// A presigned URL's parameters, in the order [`parse`] reports missing ones. The signer adds all
/// but `X-Amz-Signature` to the canonical query itself, so they are taken out of the query it gets.
const PRESIGN_PARAMS: [&str; 6] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
];

/// Why a request is not authenticated, as SQS answers: [`Failure::code`], [`Failure::status`] and
/// [`Failure::message`] are its error.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// No signature at all (for the caller to answer when [`parse`] finds none).
    MissingAuthenticationToken,
    /// The signature is malformed or incomplete; the message says how, in AWS's words.
    IncompleteSignature(String),
    /// The access key id is not known (for the caller, which maps key ids to secrets).
    InvalidClientTokenId,
    /// Well formed, but not the signature the key's secret makes for this request.
    SignatureDoesNotMatch,
    /// The credential scope names another date, service or region than the request's: SQS
    /// answers SignatureDoesNotMatch, with a message saying which.
    WrongScope(String),
    /// Signed too long before or after the server's clock, or a presigned URL past its expiry.
    RequestExpired(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::MissingAuthenticationToken => f.write_str("no signature"),
            Failure::InvalidClientTokenId => f.write_str("unknown access key id"),
            Failure::SignatureDoesNotMatch => f.write_str("the signature does not match"),
            Failure::IncompleteSignature(m)
            | Failure::WrongScope(m)
            | Failure::RequestExpired(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Failure {}

/// A signature found in a request, not yet checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed {
    pub access_key_id: String,
    /// The credential scope after the key id: `date/region/service/terminator`.
    pub scope_date: String,
    pub region: String,
    pub service: String,
    pub terminator: String,
    /// Header names as the client listed them in `SignedHeaders`.
    pub signed_headers: Vec<String>,
    /// Lower-case hex, as sent.
    pub signature: String,
    /// `X-Amz-Date` as sent (ISO 8601 basic format, UTC), and as a time.
    pub amz_date: String,
    pub signed_at: SystemTime,
    /// `X-Amz-Expires` of a presigned URL; `None` for an `Authorization` header.
    pub presigned_expires_s: Option<u64>,
}

/// Finds the signature of a request: an `Authorization: AWS4-HMAC-SHA256 Credential=…,
/// SignedHeaders=…, Signature=…` header with its `X-Amz-Date`, or a presigned URL's `X-Amz-*`
/// query parameters. `Ok(None)` when the request carries no SigV4 at all (no such parameters,
/// no `Authorization` header or one of a scheme other than `AWS4-…`).
pub fn parse(uri: &Uri, headers: &HeaderMap) -> Result<Option<Signed>, Failure> {
    match (authorization(headers)?, presigned_params(uri)?) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(incomplete(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature \
             query string parameter or the Authorization header should be specified",
        )),
        (Some(value), None) => parse_header(value, headers).map(Some),
        (None, Some(params)) => parse_presigned(params).map(Some),
    }
}

/// Checks `s`, found in this request by [`parse`], with the secret of its access key: the
/// credential scope (date of `X-Amz-Date`, service `sqs`, terminator `aws4_request`, and the
/// region when one is configured, else any), the clock (±[`CLOCK_SKEW_MAX_S`]) or a presigned
/// URL's expiry, then the signature over method, path, query, the signed headers and the body.
// The parts of a request as axum hands them over, then what they are checked with.
#[allow(clippy::too_many_arguments)]
pub fn verify(
    s: &Signed,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    secret: &str,
    region: Option<&str>,
    now: SystemTime,
) -> Result<(), Failure> {
    let request = Request { method, uri, headers, body };
    verify_for(SERVICE, s, &request, secret, region, now)
}

/// The whole check: the request's signature found ([`parse`]; none is
/// MissingAuthenticationToken), its key id's secret looked up (`None` is InvalidClientTokenId),
/// and [`verify`]ed. Returns the signature, which names the key.
pub fn authenticate<S: AsRef<str>>(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    secret_for: impl FnOnce(&str) -> Option<S>,
    region: Option<&str>,
    now: SystemTime,
) -> Result<Signed, Failure> {
    let s = parse(uri, headers)?.ok_or(Failure::MissingAuthenticationToken)?;
    let secret = secret_for(&s.access_key_id).ok_or(Failure::InvalidClientTokenId)?;
    verify(&s, method, uri, headers, body, secret.as_ref(), region, now)?;
    Ok(s)
}

struct Request<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    body: &'a [u8],
}

fn incomplete(message: impl Into<String>) -> Failure {
    Failure::IncompleteSignature(message.into())
}

/// The `Authorization` header if it is an AWS4 one. Any other scheme is not ours to judge.
fn authorization(headers: &HeaderMap) -> Result<Option<&str>, Failure> {
    let mut found = None;
    for value in headers.get_all(header::AUTHORIZATION) {
        if !value.as_bytes().starts_with(b"AWS4-") {
            continue;
        }
        if found.is_some() {
            return Err(incomplete("Only one Authorization header may be specified."));
        }
        let text = value.to_str().map_err(|_| incomplete("Authorization header is not ASCII."))?;
        found = Some(text);
    }
    Ok(found)
}

fn parse_header(value: &str, headers: &HeaderMap) -> Result<Signed, Failure> {
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme != ALGORITHM {
        return Err(incomplete(format!("Unsupported AWS 'algorithm': '{scheme}'.")));
    }
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, v)) = part.split_once('=') else {
            return Err(incomplete(format!(
                "'{part}' not a valid key=value pair (missing equal-sign) in Authorization \
                 header: '{value}'."
            )));
        };
        let slot = match key {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => continue,
        };
        if slot.replace(v).is_some() {
            return Err(incomplete(format!(
                "'{key}' appears more than once in Authorization header: '{value}'."
            )));
        }
    }
    let amz_date = headers.get(X_AMZ_DATE).map(|d| d.to_str().unwrap_or("(not ASCII)"));
    let mut missing = String::new();
    for (name, absent) in [
        ("Credential", credential.is_none()),
        ("Signature", signature.is_none()),
        ("SignedHeaders", signed_headers.is_none()),
    ] {
        if absent {
            missing += &format!("Authorization header requires '{name}' parameter. ");
        }
    }
    if amz_date.is_none() {
        missing += if headers.contains_key(header::DATE) {
            "Authorization header requires an 'X-Amz-Date' header: a signature dated only by \
             'Date' is not supported. "
        } else {
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. "
        };
    }
    let (Some(credential), Some(signed_headers), Some(signature), Some(amz_date)) =
        (credential, signed_headers, signature, amz_date)
    else {
        return Err(incomplete(format!("{missing}Authorization={value}")));
    };
    let s = signed(credential, signed_headers, signature, amz_date, None)?;
    if !s.signed_headers.iter().any(|h| h.eq_ignore_ascii_case(X_AMZ_DATE)) {
        return Err(incomplete("'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization."));
    }
    Ok(s)
}

/// The presigned parameters of the query, in [`PRESIGN_PARAMS`] order, if it has any.
fn presigned_params(uri: &Uri) -> Result<Option<[Option<String>; 6]>, Failure> {
    let Some(query) = uri.query() else { return Ok(None) };
    let mut found: [Option<String>; 6] = Default::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let Some(i) = PRESIGN_PARAMS.iter().position(|p| *p == key) else { continue };
        if found[i].replace(value.into_owned()).is_some() {
            return Err(incomplete(format!("'{key}' appears more than once in the query string.")));
        }
    }
    Ok(found.iter().any(Option::is_some).then_some(found))
}

fn parse_presigned(params: [Option<String>; 6]) -> Result<Signed, Failure> {
    let [Some(alg), Some(credential), Some(signature), Some(date), Some(expires), Some(names)] =
        &params
    else {
        let mut message = String::new();
        for (name, value) in PRESIGN_PARAMS.iter().zip(&params) {
            if value.is_none() {
                message += &format!("AWS query-string parameters must include '{name}'. ");
            }
        }
        return Err(incomplete(message + "Re-examine the query-string parameters."));
    };
    if alg != ALGORITHM {
        return Err(incomplete(format!("X-Amz-Algorithm only supports \"{ALGORITHM}\"")));
    }
    let expires_s = match expires.parse::<u64>() {
        Ok(e) if expires.bytes().all(|b| b.is_ascii_digit()) => e,
        _ => return Err(incomplete("X-Amz-Expires should be a number")),
    };
    if expires_s > PRESIGNED_EXPIRES_MAX_S {
        return Err(incomplete(format!(
            "X-Amz-Expires must be less than a week (in seconds) that is {PRESIGNED_EXPIRES_MAX_S}"
        )));
    }
    signed(credential, names, signature, date, Some(expires_s))
}

/// What both forms share: the credential split into its scope, the date read, `host` signed.
fn signed(
    credential: &str,
    signed_headers: &str,
    signature: &str,
    amz_date: &str,
    presigned_expires_s: Option<u64>,
) -> Result<Signed, Failure> {
    let [key, date, region, service, terminator] = credential.split('/').collect::<Vec<_>>()[..]
    else {
        return Err(incomplete(format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. \
             keyid/date/region/service/term, got '{credential}'"
        )));
    };
    let signed_at = parse_amz_date(amz_date).ok_or_else(|| {
        incomplete(format!(
            "Date must be in ISO-8601 'basic format'. Got '{amz_date}'. See \
             http://en.wikipedia.org/wiki/ISO_8601"
        ))
    })?;
    let signed_headers: Vec<String> = signed_headers.split(';').map(str::to_owned).collect();
    if !signed_headers.iter().any(|h| h.eq_ignore_ascii_case("host")) {
        return Err(incomplete(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    Ok(Signed {
        access_key_id: key.to_owned(),
        scope_date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
        terminator: terminator.to_owned(),
        signed_headers,
        signature: signature.to_owned(),
        amz_date: amz_date.to_owned(),
        signed_at,
        presigned_expires_s,
    })
}

/// `20261206T101500Z` → the time, or `None` unless it is exactly that form and a valid time.
fn parse_amz_date(d: &str) -> Option<SystemTime> {
    let b = d.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' || !digits(0..8) || !digits(9..15) {
        return None;
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &d[0..4],
        &d[4..6],
        &d[6..8],
        &d[9..11],
        &d[11..13],
        &d[13..15]
    );
    humantime::parse_rfc3339(&rfc3339).ok()
}

/// The time as `X-Amz-Date` writes it, to the second.
fn format_amz_date(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string().replace(['-', ':'], "")
}

fn verify_for(
    service: &str,
    s: &Signed,
    request: &Request<'_>,
    secret: &str,
    region: Option<&str>,
    now: SystemTime,
) -> Result<(), Failure> {
    check_scope(s, service, region)?;
    check_time(s, now)?;
    let expected = expected_signature(service, s, request, secret)?;
    debug_assert_eq!(expected.len(), 64, "a SHA-256 HMAC in hex");
    if bool::from(expected.as_bytes().ct_eq(s.signature.as_bytes())) {
        Ok(())
    } else {
        Err(Failure::SignatureDoesNotMatch)
    }
}

fn check_scope(s: &Signed, service: &str, region: Option<&str>) -> Result<(), Failure> {
    if s.terminator != TERMINATOR {
        return Err(incomplete(format!(
            "Credential should be scoped with a valid terminator: '{TERMINATOR}', not '{}'.",
            s.terminator
        )));
    }
    let day = s.amz_date.get(..8).unwrap_or_default();
    if s.scope_date != day {
        return Err(Failure::WrongScope(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from \
             HTTP: '{}' != '{day}', from '{}'.",
            s.scope_date, s.amz_date
        )));
    }
    if s.service != service {
        return Err(Failure::WrongScope(format!(
            "Credential should be scoped to correct service: '{service}'."
        )));
    }
    if s.region.is_empty() || region.is_some_and(|r| r != s.region) {
        return Err(Failure::WrongScope(format!(
            "Credential should be scoped to a valid region, not '{}'.",
            s.region
        )));
    }
    Ok(())
}

fn check_time(s: &Signed, now: SystemTime) -> Result<(), Failure> {
    let skew = Duration::from_secs(CLOCK_SKEW_MAX_S);
    let minutes = CLOCK_SKEW_MAX_S / 60;
    if let Some(latest) = now.checked_add(skew).filter(|latest| s.signed_at > *latest) {
        return Err(Failure::RequestExpired(format!(
            "Signature not yet current: {} is still later than {} ({} + {minutes} min.)",
            s.amz_date,
            format_amz_date(latest),
            format_amz_date(now)
        )));
    }
    match s.presigned_expires_s {
        None => match now.checked_sub(skew).filter(|earliest| s.signed_at < *earliest) {
            Some(earliest) => Err(Failure::RequestExpired(format!(
                "Signature expired: {} is now earlier than {} ({} - {minutes} min.)",
                s.amz_date,
                format_amz_date(earliest),
                format_amz_date(now)
            ))),
            None => Ok(()),
        },
        Some(expires_s) => match s.signed_at.checked_add(Duration::from_secs(expires_s)) {
            Some(expiry) if expiry >= now => Ok(()),
            _ => Err(Failure::RequestExpired("Request has expired.".into())),
        },
    }
}

/// The signature the secret makes for the signed parts of the request, from `aws-sigv4`.
fn expected_signature(
    service: &str,
    s: &Signed,
    request: &Request<'_>,
    secret: &str,
) -> Result<String, Failure> {
    let presigned = s.presigned_expires_s.is_some();
    let mut headers: Vec<(&str, &str)> = Vec::with_capacity(s.signed_headers.len());
    for name in &s.signed_headers {
        // A header signature's date: the signer signs the one it signs at, which is this one.
        if !presigned && name.eq_ignore_ascii_case(X_AMZ_DATE) {
            continue;
        }
        let before = headers.len();
        for value in request.headers.get_all(name.as_str()) {
            headers.push((name, header_text(value)?));
        }
        // HTTP/2 carries the host as `:authority`, which hyper puts in the URI.
        if headers.len() == before && name.eq_ignore_ascii_case("host") {
            if let Some(authority) = request.uri.authority() {
                headers.push((name, authority.as_str()));
            }
        }
        // A signed header that is not there (a proxy dropped it): the signer would otherwise be
        // missing `host`, which it must have.
        if headers.len() == before {
            return Err(Failure::SignatureDoesNotMatch);
        }
    }

    let path = request.uri.path();
    let path_and_query = match request.uri.query() {
        None => Cow::Borrowed(path),
        Some(query) if presigned => Cow::Owned(format!("{path}?{}", without_presign(query))),
        Some(query) => Cow::Owned(format!("{path}?{query}")),
    };

    let mut settings = SigningSettings::default();
    // Sign exactly what the client listed, `user-agent` too if it signed it.
    settings.excluded_headers = None;
    if let Some(expires_s) = s.presigned_expires_s {
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(Duration::from_secs(expires_s));
    }
    let identity = Credentials::new(&s.access_key_id, secret, None, None, "redrive api key").into();
    let params: SigningParams<'_> = v4::SigningParams::builder()
        .identity(&identity)
        .region(&s.region)
        .name(service)
        .time(s.signed_at)
        .settings(settings)
        .build()
        .map_err(|_| Failure::SignatureDoesNotMatch)?
        .into();
    let body = SignableBody::Precomputed(payload_hash(request)?);
    let signable =
        SignableRequest::new(request.method.as_str(), path_and_query, headers.into_iter(), body)
            .map_err(|_| Failure::SignatureDoesNotMatch)?;
    let output = sign(signable, &params).map_err(|_| Failure::SignatureDoesNotMatch)?;
    Ok(output.into_parts().1)
}

/// The body's SHA-256 in hex; an `x-amz-content-sha256` that says anything else is refused (see
/// the module docs), one that says the same is used as written.
fn payload_hash(request: &Request<'_>) -> Result<String, Failure> {
    let computed = format!("{:x}", Sha256::digest(request.body));
    match request.headers.get(X_AMZ_CONTENT_SHA256).map(HeaderValue::to_str) {
        None => Ok(computed),
        Some(Ok(declared)) if declared.eq_ignore_ascii_case(&computed) => Ok(declared.to_owned()),
        Some(_) => Err(Failure::SignatureDoesNotMatch),
    }
}

/// Header values are bytes; signers sign them as UTF-8 text.
fn header_text(value: &HeaderValue) -> Result<&str, Failure> {
    std::str::from_utf8(value.as_bytes()).map_err(|_| Failure::SignatureDoesNotMatch)
}

/// The query without the presigned parameters, each other pair as sent.
fn without_presign(query: &str) -> String {
    let signed = |pair: &&str| match form_urlencoded::parse(pair.as_bytes()).next() {
        Some((key, _)) => !PRESIGN_PARAMS.contains(&key.as_ref()),
        None => true,
    };
    query.split('&').filter(signed).collect::<Vec<_>>().join("&")
}

// Most of this file's length is these tests: the fixed vectors are long lines by nature, and they
// sit beside the code whose canonical form they pin.
#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use axum::http::HeaderName;

    use super::*;

    const KEY_ID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const HOST: &str = "sqs.us-east-1.amazonaws.com";
    const SIGNED_AT: &str = "20261206T101500Z";

    /// A request as the server receives it: origin-form URI, `Host` header.
    struct Req {
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Vec<u8>,
    }

    fn req(method: &str, uri: &str, headers: &[(&str, &str)], body: &[u8]) -> Req {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::try_from(*name).unwrap(),
                HeaderValue::try_from(*value).unwrap(),
            );
        }
        Req {
            method: method.parse().unwrap(),
            uri: uri.parse().unwrap(),
            headers: map,
            body: body.to_vec(),
        }
    }

    fn at(amz_date: &str) -> SystemTime {
        parse_amz_date(amz_date).unwrap()
    }

    /// The whole check as the server would run it, knowing one key.
    fn check(
        r: &Req,
        secret: &str,
        region: Option<&str>,
        now: SystemTime,
    ) -> Result<Signed, Failure> {
        let secret_for = |id: &str| (id == KEY_ID).then_some(secret);
        authenticate(&r.method, &r.uri, &r.headers, &r.body, secret_for, region, now)
    }

    /// [`check`] for AWS's test suite, whose scopes name the service `service`.
    fn check_suite(r: &Req) -> Result<(), Failure> {
        let s = parse(&r.uri, &r.headers)?.expect("signed");
        let request =
            Request { method: &r.method, uri: &r.uri, headers: &r.headers, body: &r.body };
        verify_for("service", &s, &request, SECRET, Some("us-east-1"), at("20150830T123600Z"))
    }

    fn settings(presign_s: Option<u64>) -> SigningSettings {
        // What the Rust SDK uses for SQS: the defaults (double encoding, normalised path).
        let mut settings = SigningSettings::default();
        if let Some(expires_s) = presign_s {
            settings.signature_location = SignatureLocation::QueryParams;
            settings.expires_in = Some(Duration::from_secs(expires_s));
        }
        settings
    }

    /// Signs `r` as the SDK does, before its HTTP client adds `Host`: the signer takes the host
    /// from the URI, and the signature goes into headers or (presigned) into the query.
    fn sdk_sign(r: &mut Req, presign_s: Option<u64>, time: SystemTime) {
        let full_uri = format!("https://{HOST}{}", r.uri.path_and_query().unwrap());
        let identity = Credentials::new(KEY_ID, SECRET, None, None, "test").into();
        let params: SigningParams<'_> = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("sqs")
            .time(time)
            .settings(settings(presign_s))
            .build()
            .unwrap()
            .into();
        let headers = r.headers.iter().map(|(n, v)| (n.as_str(), v.to_str().unwrap()));
        let signable = SignableRequest::new(
            r.method.as_str(),
            full_uri,
            headers,
            SignableBody::Bytes(&r.body),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let mut pq = r.uri.path_and_query().unwrap().to_string();
        for (name, value) in instructions.params() {
            let value: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
            pq += &format!("{}{name}={value}", if pq.contains('?') { '&' } else { '?' });
        }
        r.uri = pq.parse().unwrap();
        for (name, value) in instructions.headers() {
            r.headers.insert(HeaderName::try_from(name).unwrap(), value.try_into().unwrap());
        }
        r.headers.insert(header::HOST, HeaderValue::from_static(HOST));
    }

    fn json_send_message() -> Req {
        let mut r = req(
            "POST",
            "/",
            &[
                ("content-type", "application/x-amz-json-1.0"),
                ("x-amz-target", "AmazonSQS.SendMessage"),
                ("user-agent", "aws-sdk-rust/1.3 os/linux"),
            ],
            br#"{"QueueUrl":"https://sqs.us-east-1.amazonaws.com/123456789012/jobs","MessageBody":"hi"}"#,
        );
        sdk_sign(&mut r, None, at(SIGNED_AT));
        r
    }

    fn query_send_message() -> Req {
        let mut r = req(
            "POST",
            "/123456789012/jobs",
            &[("content-type", "application/x-www-form-urlencoded")],
            b"Action=SendMessage&Version=2012-11-05&MessageBody=hello+world+%26+more",
        );
        sdk_sign(&mut r, None, at(SIGNED_AT));
        r
    }

    fn presigned_receive() -> Req {
        let mut r =
            req("GET", "/123456789012/jobs?Action=ReceiveMessage&WaitTimeSeconds=5", &[], b"");
        sdk_sign(&mut r, Some(300), at(SIGNED_AT));
        r
    }

    fn assert_mismatch(r: &Req) {
        assert_eq!(check(r, SECRET, None, at(SIGNED_AT)), Err(Failure::SignatureDoesNotMatch));
    }

    #[test]
    fn header_signed_json_post_verifies_and_names_its_scope() {
        let s = check(&json_send_message(), SECRET, Some("us-east-1"), at(SIGNED_AT)).unwrap();
        assert_eq!(s.access_key_id, KEY_ID);
        assert_eq!(
            (s.scope_date.as_str(), s.region.as_str(), s.service.as_str()),
            ("20261206", "us-east-1", "sqs")
        );
        assert_eq!(s.signed_headers, ["content-type", "host", "x-amz-date", "x-amz-target"]);
        assert_eq!(s.presigned_expires_s, None);
    }

    #[test]
    fn query_protocol_form_post_verifies() {
        check(&query_send_message(), SECRET, None, at(SIGNED_AT)).unwrap();
    }

    #[test]
    fn presigned_get_verifies_until_it_expires() {
        let r = presigned_receive();
        let s = check(&r, SECRET, None, at(SIGNED_AT)).unwrap();
        assert_eq!(s.presigned_expires_s, Some(300));
        check(&r, SECRET, None, at(SIGNED_AT) + Duration::from_secs(300)).unwrap();
        let expired = check(&r, SECRET, None, at(SIGNED_AT) + Duration::from_secs(301));
        assert_eq!(expired, Err(Failure::RequestExpired("Request has expired.".into())));
    }

    #[test]
    fn wrong_secret_does_not_match() {
        for r in [json_send_message(), query_send_message(), presigned_receive()] {
            let wrong = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEZ";
            assert_eq!(check(&r, wrong, None, at(SIGNED_AT)), Err(Failure::SignatureDoesNotMatch));
        }
    }

    #[test]
    fn tampered_body_does_not_match() {
        let mut r = json_send_message();
        r.body = r.body.iter().map(|&b| if b == b'h' { b'H' } else { b }).collect();
        assert_mismatch(&r);
        let mut r = query_send_message();
        r.body.extend_from_slice(b"&DelaySeconds=900");
        assert_mismatch(&r);
    }

    #[test]
    fn tampered_signed_header_path_or_query_does_not_match() {
        let mut r = json_send_message();
        r.headers.insert("x-amz-target", HeaderValue::from_static("AmazonSQS.DeleteQueue"));
        assert_mismatch(&r);
        let mut r = json_send_message();
        r.headers.insert(header::HOST, HeaderValue::from_static("sqs.eu-west-1.amazonaws.com"));
        assert_mismatch(&r);
        let mut r = json_send_message();
        r.method = Method::PUT;
        assert_mismatch(&r);
        let mut r = query_send_message();
        r.uri = Uri::from_static("/123456789012/other");
        assert_mismatch(&r);
        let mut r = presigned_receive();
        r.uri =
            r.uri.to_string().replace("WaitTimeSeconds=5", "WaitTimeSeconds=20").parse().unwrap();
        assert_mismatch(&r);
        let mut r = presigned_receive();
        r.uri = format!("{}&Action=DeleteQueue", r.uri).parse().unwrap();
        assert_mismatch(&r);
    }

    #[test]
    fn signed_header_removed_does_not_match() {
        let mut r = json_send_message();
        r.headers.remove("x-amz-target");
        assert_mismatch(&r);
    }

    #[test]
    fn unsigned_extra_headers_are_ignored() {
        let mut r = json_send_message();
        r.headers.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        r.headers.insert(header::USER_AGENT, HeaderValue::from_static("changed by a proxy"));
        r.headers.append("x-amz-meta-extra", HeaderValue::from_static("1"));
        check(&r, SECRET, None, at(SIGNED_AT)).unwrap();
    }

    /// SDKs leave `user-agent` unsigned, but a client that signs it is verified over it.
    #[test]
    fn a_signed_user_agent_is_verified_too() {
        let mut r = req(
            "POST",
            "/",
            &[("user-agent", "hand-made/1.0"), ("x-amz-target", "AmazonSQS.ListQueues")],
            b"{}",
        );
        let identity = Credentials::new(KEY_ID, SECRET, None, None, "test").into();
        let mut signing = settings(None);
        signing.excluded_headers = None;
        let params: SigningParams<'_> = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("sqs")
            .time(at(SIGNED_AT))
            .settings(signing)
            .build()
            .unwrap()
            .into();
        let headers = r.headers.iter().map(|(n, v)| (n.as_str(), v.to_str().unwrap()));
        let full_uri = format!("https://{HOST}/");
        let signable =
            SignableRequest::new("POST", full_uri, headers, SignableBody::Bytes(b"{}")).unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        for (name, value) in instructions.headers() {
            r.headers.insert(HeaderName::try_from(name).unwrap(), value.try_into().unwrap());
        }
        r.headers.insert(header::HOST, HeaderValue::from_static(HOST));
        let s = check(&r, SECRET, None, at(SIGNED_AT)).unwrap();
        assert!(s.signed_headers.iter().any(|h| h == "user-agent"));
        r.headers.insert(header::USER_AGENT, HeaderValue::from_static("changed/2.0"));
        assert_mismatch(&r);
    }

    #[test]
    fn http2_host_from_the_authority() {
        let mut r = json_send_message();
        r.headers.remove(header::HOST);
        assert_mismatch(&r);
        r.uri = format!("https://{HOST}/").parse().unwrap();
        check(&r, SECRET, None, at(SIGNED_AT)).unwrap();
    }

    #[test]
    fn clock_skew_over_15_minutes_is_expired_either_way() {
        let r = json_send_message();
        let late = at(SIGNED_AT) + Duration::from_secs(25 * 60);
        assert_eq!(
            check(&r, SECRET, None, late),
            Err(Failure::RequestExpired(
                "Signature expired: 20261206T101500Z is now earlier than 20261206T102500Z \
                 (20261206T104000Z - 15 min.)"
                    .into()
            ))
        );
        let early = at(SIGNED_AT) - Duration::from_secs(20 * 60);
        assert_eq!(
            check(&r, SECRET, None, early),
            Err(Failure::RequestExpired(
                "Signature not yet current: 20261206T101500Z is still later than \
                 20261206T101000Z (20261206T095500Z + 15 min.)"
                    .into()
            ))
        );
        check(&r, SECRET, None, at(SIGNED_AT) + Duration::from_secs(15 * 60)).unwrap();
        check(&r, SECRET, None, at(SIGNED_AT) - Duration::from_secs(15 * 60)).unwrap();
    }

    #[test]
    fn presigned_dated_in_the_future_is_not_yet_current() {
        let r = presigned_receive();
        let early = at(SIGNED_AT) - Duration::from_secs(16 * 60);
        assert!(
            matches!(check(&r, SECRET, None, early), Err(Failure::RequestExpired(m)) if m.starts_with("Signature not yet current"))
        );
    }

    #[test]
    fn no_signature_at_all_is_none() {
        let r = req("POST", "/?Action=ListQueues", &[("host", HOST)], b"");
        assert_eq!(parse(&r.uri, &r.headers), Ok(None));
        assert_eq!(
            check(&r, SECRET, None, at(SIGNED_AT)),
            Err(Failure::MissingAuthenticationToken)
        );
        // Other schemes and SigV2 are not SigV4: the caller decides.
        let r = req(
            "GET",
            "/?AWSAccessKeyId=AKID&SignatureVersion=2&Signature=abc",
            &[("authorization", "Bearer rdv_123")],
            b"",
        );
        assert_eq!(parse(&r.uri, &r.headers), Ok(None));
    }

    #[test]
    fn unknown_key_id_is_invalid_client_token_id() {
        let r = json_send_message();
        let found = authenticate(
            &r.method,
            &r.uri,
            &r.headers,
            &r.body,
            |_| None::<&str>,
            None,
            at(SIGNED_AT),
        );
        assert_eq!(found, Err(Failure::InvalidClientTokenId));
    }

    /// `r` with its Authorization header rewritten by `edit`.
    fn with_authorization(edit: impl Fn(&str) -> String) -> Req {
        let mut r = json_send_message();
        let value = edit(r.headers[header::AUTHORIZATION].to_str().unwrap());
        r.headers.insert(header::AUTHORIZATION, value.try_into().unwrap());
        r
    }

    fn incomplete_message(r: &Req) -> String {
        match parse(&r.uri, &r.headers).and_then(|s| {
            let s = s.expect("signed");
            verify(&s, &r.method, &r.uri, &r.headers, &r.body, SECRET, None, at(SIGNED_AT))
        }) {
            Err(Failure::IncompleteSignature(m)) => m,
            other => panic!("not IncompleteSignature: {other:?}"),
        }
    }

    #[test]
    fn malformed_authorization_is_incomplete() {
        let r = with_authorization(|a| a.split(", Signature=").next().unwrap().to_owned());
        let m = incomplete_message(&r);
        assert!(m.starts_with("Authorization header requires 'Signature' parameter. Authorization=AWS4-HMAC-SHA256 Credential="), "{m}");
        let r = with_authorization(|a| a.replace("/us-east-1/sqs/", "/us-east-1/"));
        let m = incomplete_message(&r);
        assert!(m.starts_with("Credential must have exactly 5 slash-delimited elements"), "{m}");
        let r = with_authorization(|a| a.replace("aws4_request", "aws5_request"));
        assert_eq!(incomplete_message(&r), "Credential should be scoped with a valid terminator: 'aws4_request', not 'aws5_request'.");
        let r = with_authorization(|a| a.replace("Credential=", "Credential "));
        assert!(incomplete_message(&r).contains("not a valid key=value pair (missing equal-sign)"));
        let r = with_authorization(|a| a.replace("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256"));
        assert_eq!(
            incomplete_message(&r),
            "Unsupported AWS 'algorithm': 'AWS4-ECDSA-P256-SHA256'."
        );
        let r = with_authorization(|a| {
            a.replace("SignedHeaders=content-type;host;", "SignedHeaders=content-type;")
        });
        assert_eq!(
            incomplete_message(&r),
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
        );
        let r = with_authorization(|a| a.replace(";x-amz-date", ""));
        assert!(incomplete_message(&r).starts_with("'X-Amz-Date' must be a 'SignedHeader'"));
        let mut r = json_send_message();
        r.headers.remove(X_AMZ_DATE);
        assert!(incomplete_message(&r)
            .contains("requires existence of either a 'X-Amz-Date' or a 'Date' header"));
        let mut r = json_send_message();
        r.headers.insert(X_AMZ_DATE, HeaderValue::from_static("2026-12-06T10:15:00Z"));
        assert!(incomplete_message(&r).starts_with("Date must be in ISO-8601 'basic format'"));
    }

    #[test]
    fn malformed_presigned_query_is_incomplete() {
        let r = presigned_receive();
        let uri = r.uri.to_string();
        let edit = |from: &str, to: &str| -> Result<Option<Signed>, Failure> {
            let uri: Uri = uri.replace(from, to).parse().unwrap();
            parse(&uri, &r.headers)
        };
        assert_eq!(edit("X-Amz-Date=", "X-Amz-Datum="), Err(incomplete("AWS query-string parameters must include 'X-Amz-Date'. Re-examine the query-string parameters.")));
        assert_eq!(
            edit("X-Amz-Expires=300", "X-Amz-Expires=604801"),
            Err(incomplete("X-Amz-Expires must be less than a week (in seconds) that is 604800"))
        );
        assert_eq!(
            edit("X-Amz-Expires=300", "X-Amz-Expires=-1"),
            Err(incomplete("X-Amz-Expires should be a number"))
        );
        assert_eq!(
            edit("X-Amz-Algorithm=AWS4-HMAC-SHA256", "X-Amz-Algorithm=AWS4-HMAC-SHA1"),
            Err(incomplete("X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\""))
        );
        assert!(matches!(
            edit("&X-Amz-Expires=300", "&X-Amz-Expires=300&X-Amz-Expires=300"),
            Err(Failure::IncompleteSignature(_))
        ));
        // A header signature too: one mechanism only.
        let mut both = json_send_message();
        both.uri = r.uri.clone();
        assert!(
            matches!(parse(&both.uri, &both.headers), Err(Failure::IncompleteSignature(m)) if m.starts_with("Only one auth mechanism"))
        );
    }

    #[test]
    fn scope_must_name_the_day_sqs_and_the_configured_region() {
        let r = json_send_message();
        check(&r, SECRET, Some("us-east-1"), at(SIGNED_AT)).unwrap();
        assert_eq!(
            check(&r, SECRET, Some("eu-west-1"), at(SIGNED_AT)),
            Err(Failure::WrongScope(
                "Credential should be scoped to a valid region, not 'us-east-1'.".into()
            ))
        );
        let r = with_authorization(|a| a.replace("/sqs/", "/sns/"));
        assert_eq!(
            check(&r, SECRET, None, at(SIGNED_AT)),
            Err(Failure::WrongScope(
                "Credential should be scoped to correct service: 'sqs'.".into()
            ))
        );
        let r = with_authorization(|a| a.replace("/20261206/", "/20261205/"));
        assert_eq!(
            check(&r, SECRET, None, at(SIGNED_AT)),
            Err(Failure::WrongScope("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '20261205' != '20261206', from '20261206T101500Z'.".into()))
        );
    }

    #[test]
    fn declared_payload_hash_must_be_the_bodys() {
        let mut r = json_send_message();
        r.headers.insert(X_AMZ_CONTENT_SHA256, HeaderValue::from_static("UNSIGNED-PAYLOAD"));
        assert_mismatch(&r);
        let mut r = json_send_message();
        let hash = format!("{:x}", Sha256::digest(&r.body));
        r.headers.insert(X_AMZ_CONTENT_SHA256, hash.try_into().unwrap());
        check(&r, SECRET, None, at(SIGNED_AT)).unwrap();
    }

    #[test]
    fn amz_dates_read_and_write_exactly() {
        assert_eq!(at("19700101T000100Z"), UNIX_EPOCH + Duration::from_secs(60));
        assert_eq!(format_amz_date(at(SIGNED_AT) + Duration::from_millis(999)), SIGNED_AT);
        for bad in [
            "20261206T101500",
            "20261306T101500Z",
            "2026120AT101500Z",
            "20261206 101500Z",
            "+0261206T101500Z",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }

    // Fixed vectors: signatures made by AWS's test suite and by real clients, so a canonical form
    // that agrees only with itself fails here.

    const SUITE_HOST: (&str, &str) = ("host", "example.amazonaws.com");
    const SUITE_DATE: (&str, &str) = ("x-amz-date", "20150830T123600Z");
    const SUITE_SCOPE: &str =
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request";

    #[test]
    fn aws_suite_get_vanilla() {
        let auth = format!("{SUITE_SCOPE}, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
        let r = req("GET", "/", &[SUITE_HOST, SUITE_DATE, ("authorization", &auth)], b"");
        check_suite(&r).unwrap();
        let r = req(
            "GET",
            "/",
            &[SUITE_HOST, SUITE_DATE, ("authorization", &auth.replace("5fa0", "5fa1"))],
            b"",
        );
        assert_eq!(check_suite(&r), Err(Failure::SignatureDoesNotMatch));
    }

    #[test]
    fn aws_suite_get_vanilla_presigned() {
        let uri = "/?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fservice%2Faws4_request&X-Amz-Date=20150830T123600Z&X-Amz-SignedHeaders=host&X-Amz-Expires=3600&X-Amz-Signature=e93c787ed7f371d5c6b165c1b38ede9550f4dce4144713e844b25b7192d3865d";
        check_suite(&req("GET", uri, &[SUITE_HOST], b"")).unwrap();
    }

    #[test]
    fn aws_suite_post_form_signing_the_content_hash() {
        let auth = format!("{SUITE_SCOPE}, SignedHeaders=content-length;content-type;host;x-amz-content-sha256;x-amz-date, Signature=328d1b9eaadca9f5818ef05e8392801e091653bafec24fcab71e7344e7f51422");
        let headers = [
            ("content-type", "application/x-www-form-urlencoded; charset=utf-8"),
            SUITE_HOST,
            ("content-length", "13"),
            (
                "x-amz-content-sha256",
                "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
            ),
            SUITE_DATE,
            ("authorization", &auth),
        ];
        check_suite(&req("POST", "/", &headers, b"Param1=value1")).unwrap();
        assert_eq!(
            check_suite(&req("POST", "/", &headers, b"Param1=value2")),
            Err(Failure::SignatureDoesNotMatch)
        );
    }

    #[test]
    fn aws_suite_get_vanilla_with_session_token() {
        let auth = format!("{SUITE_SCOPE}, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8");
        let token = (
            "x-amz-security-token",
            "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267",
        );
        check_suite(&req(
            "GET",
            "/",
            &[SUITE_HOST, SUITE_DATE, token, ("authorization", &auth)],
            b"",
        ))
        .unwrap();
    }

    #[test]
    fn aws_cli_send_message_as_captured_on_the_wire() {
        let r = req(
            "POST",
            "/",
            &[
                ("host", "127.0.0.1:19324"),
                ("accept-encoding", "identity"),
                ("x-amz-target", "AmazonSQS.SendMessage"),
                ("content-type", "application/x-amz-json-1.0"),
                ("x-amzn-query-mode", "true"),
                ("user-agent", "aws-cli/1.45.11 md/Botocore#1.43.11 ua/2.1 os/linux#6.18.44-fc-v1272 md/arch#x86_64 lang/python#3.11.7 md/pyimpl#CPython m/D,b,g,N,Z cfg/retry-mode#legacy botocore/1.43.11"),
                ("x-amz-date", "20261206T094058Z"),
                ("authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261206/eu-west-1/sqs/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target;x-amzn-query-mode, Signature=bb57295c24bea49dc6daf67a15e7b2153359edf5d48bb0773b2389439a1ca965"),
                ("amz-sdk-invocation-id", "25bad27e-1cb8-4bf0-94a2-2e7590ecfd33"),
                ("amz-sdk-request", "attempt=1"),
                ("content-length", "93"),
            ],
            br#"{"QueueUrl": "http://127.0.0.1:19324/000000000000/jobs", "MessageBody": "hello from the cli"}"#,
        );
        check(&r, SECRET, Some("eu-west-1"), at("20261206T094058Z")).unwrap();
    }

    #[test]
    fn botocore_query_protocol_form_post() {
        let r = req(
            "POST",
            "/",
            &[
                ("host", HOST),
                ("content-type", "application/x-www-form-urlencoded; charset=utf-8"),
                ("x-amz-date", SIGNED_AT),
                ("authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261206/us-east-1/sqs/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=fd64820639254a378fc6acaa85448e206a9c72ffdff387e2c693c69f9d9880a7"),
                ("content-length", "143"),
            ],
            b"Action=SendMessage&Version=2012-11-05&QueueUrl=https%3A%2F%2Fsqs.us-east-1.amazonaws.com%2F123456789012%2Fjobs&MessageBody=hello+world+%26+more",
        );
        check(&r, SECRET, Some("us-east-1"), at(SIGNED_AT)).unwrap();
    }

    /// The path normalised (`a%3Ab/..` gone) and encoded twice (`%20` signed as `%2520`), as
    /// SDKs sign every service but S3.
    #[test]
    fn botocore_path_normalised_and_encoded_twice() {
        let r = req(
            "POST",
            "/123456789012/a%3Ab/../jobs%20x",
            &[
                ("host", HOST),
                ("content-type", "application/x-www-form-urlencoded; charset=utf-8"),
                ("x-amz-date", SIGNED_AT),
                ("authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261206/us-east-1/sqs/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=34b0b0771e7447ad1e84530eccdb60aa0a0de2671e67a8bfd63a307404c8548c"),
            ],
            b"Action=GetQueueAttributes&AttributeName.1=All",
        );
        check(&r, SECRET, None, at(SIGNED_AT)).unwrap();
    }

    #[test]
    fn botocore_presigned_get() {
        let uri = "/123456789012/jobs?Action=ReceiveMessage&MaxNumberOfMessages=1&Version=2012-11-05&AttributeName.1=All%20names&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20261206%2Fus-east-1%2Fsqs%2Faws4_request&X-Amz-Date=20261206T101500Z&X-Amz-Expires=300&X-Amz-SignedHeaders=host&X-Amz-Signature=0e5efc14b400078303cf9df32ff5c45ba64a0e38aba34185c356fa11398b7642";
        check(&req("GET", uri, &[("host", HOST)], b""), SECRET, None, at(SIGNED_AT)).unwrap();
    }

    /// boto3's `generate_presigned_url` for the JSON protocol signs the operation's method (POST)
    /// and headers, with the body moved into the query: usable as a POST with those headers.
    #[test]
    fn boto3_generate_presigned_url() {
        let uri = "/?QueueNamePrefix=jo&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20261206%2Fus-east-1%2Fsqs%2Faws4_request&X-Amz-Date=20261206T101500Z&X-Amz-Expires=300&X-Amz-SignedHeaders=content-type%3Bhost%3Bx-amz-target%3Bx-amzn-query-mode&X-Amz-Signature=998ea6766017789cc27cd0199c6252c584aece3db86a240e18430d915cbd7c92";
        let headers = [
            ("host", "localhost:9324"),
            ("content-type", "application/x-amz-json-1.0"),
            ("x-amz-target", "AmazonSQS.ListQueues"),
            ("x-amzn-query-mode", "true"),
        ];
        check(&req("POST", uri, &headers, b""), SECRET, None, at(SIGNED_AT)).unwrap();
    }
}
