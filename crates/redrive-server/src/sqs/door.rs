//! Who is calling the SQS door, and whether they may: SigV4 with a key's id and secret as the
//! AWS credentials (or a bearer token), then the key's scopes for the action and its queue.
//! Without `--auth`, requests that change anything must be signed or sent as the JSON protocol
//! (headers a web page cannot set without the server's consent), so that a page in a browser
//! cannot act on a server it can reach (`<img src="http://localhost:8080/?Action=DeleteQueue…">`).

use std::time::SystemTime;

use axum::http::{HeaderMap, Method, Uri};
use redrive_core::Broker;
use serde_json::Value;

use crate::auth::{self, Action, Caller};
use crate::sigv4::{self, Failure};
use crate::sqs::error::{self, SqsError};
use crate::sqs::{queue_of_arn, Cx, SqsAction};
use crate::Shared;

/// The caller: anonymous without `--auth`; else the key a bearer token (already checked) or a
/// SigV4 signature names.
pub async fn caller<B: Broker>(
    state: &Shared<B>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    bearer: Option<axum::Extension<Caller>>,
) -> Result<Caller, SqsError> {
    if !state.auth.enabled {
        return Ok(Caller::Anonymous);
    }
    if let Some(axum::Extension(c)) = bearer {
        return Ok(c);
    }
    let refused = |f: Failure| {
        tracing::debug!(reason = %f, "SQS request not authenticated");
        refusal(f)
    };
    let signed = sigv4::parse(uri, headers)
        .map_err(refused)?
        .ok_or_else(|| refused(Failure::MissingAuthenticationToken))?;
    let key = auth::load(&state.broker, &signed.access_key_id)
        .await?
        .ok_or_else(|| refused(Failure::InvalidClientTokenId))?;
    sigv4::verify(
        &signed,
        method,
        uri,
        headers,
        body,
        &key.sigv4_secret,
        None, // any region: each is its own namespace of queues (see `Cx`)
        SystemTime::now(),
    )
    .map_err(refused)?;
    // A revoked or expired key is as good as unknown.
    auth::admit(state, key).map_err(|e| match e {
        redrive_core::Error::Unauthorized(_) => refused(Failure::InvalidClientTokenId),
        e => e.into(),
    })
}

/// The answer to a request whose signature does not admit it, as SQS words it.
fn refusal(f: Failure) -> SqsError {
    match f {
        Failure::MissingAuthenticationToken => error::MISSING_TOKEN.err(),
        Failure::InvalidClientTokenId => error::INVALID_TOKEN.err(),
        Failure::SignatureDoesNotMatch => error::SIGNATURE_MISMATCH.err(),
        Failure::WrongScope(m) => error::SCOPE_MISMATCH.with(&[("detail", &m)]),
        Failure::IncompleteSignature(m) => error::INCOMPLETE_SIGNATURE.with(&[("detail", &m)]),
        Failure::RequestExpired(m) => error::REQUEST_EXPIRED.with(&[("detail", &m)]),
    }
}

/// The scope an action needs.
fn action_of(a: SqsAction) -> Action {
    use SqsAction::*;
    match a {
        SendMessage | SendMessageBatch => Action::Send,
        ReceiveMessage
        | DeleteMessage
        | DeleteMessageBatch
        | ChangeMessageVisibility
        | ChangeMessageVisibilityBatch => Action::Receive,
        GetQueueUrl
        | ListQueues
        | GetQueueAttributes
        | ListQueueTags
        | ListDeadLetterSourceQueues
        | ListMessageMoveTasks => Action::Read,
        CreateQueue
        | DeleteQueue
        | SetQueueAttributes
        | PurgeQueue
        | TagQueue
        | UntagQueue
        | AddPermission
        | RemovePermission
        | StartMessageMoveTask
        | CancelMessageMoveTask => Action::Manage,
    }
}

/// Whether `caller` may run `action` with these parameters; and, without `--auth`, whether a
/// request that changes something was made by a client rather than a web page.
pub fn allow<B: Broker>(
    cx: &Cx<'_, B>,
    caller: &Caller,
    action: SqsAction,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    params: &Value,
) -> Result<(), SqsError> {
    let needs = action_of(action);
    if matches!(caller, Caller::Anonymous) && needs != Action::Read {
        let signed = headers.contains_key(axum::http::header::AUTHORIZATION)
            || uri.query().is_some_and(|q| q.contains("X-Amz-Signature="));
        let json = headers.contains_key("x-amz-target");
        if !signed && (!json || *method == Method::GET) {
            return Err(error::UNSIGNED_CHANGE.with(&[("action", &action.name())]));
        }
    }
    let text = |k: &str| params.get(k).and_then(Value::as_str);
    let queue = if let Some(url) = text("QueueUrl") {
        cx.queue_name(Some(url)).ok()
    } else if let Some(name) = text("QueueName") {
        Some(cx.internal(name))
    } else if let Some(arn) = text("SourceArn") {
        queue_of_arn(&cx.settings().region, arn)
    } else {
        cx.queue_name(None).ok()
    };
    match queue {
        Some(q) => caller.allow(needs, &q)?,
        None => caller.allow_any(needs)?,
    }
    Ok(())
}
