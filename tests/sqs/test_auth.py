"""SigV4 on the SQS door of a server run with --auth (REDRIVE_SQS_AUTH=1; the rest of the suite
then runs signed with the server's admin key, so every request it makes is verified too): the
errors boto3 and hand-signed requests get for a wrong secret, an unknown key id, a tampered
body, a presigned URL past its expiry and a 20-minute clock skew, as SQS answers them."""

import datetime
import json
import urllib.error
import urllib.request

import boto3
import botocore.auth
import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from sqs_helpers import ACCESS_KEY_ID, AUTH, REGION, SECRET_ACCESS_KEY, sqs_error

pytestmark = pytest.mark.skipif(
    not AUTH, reason="needs a server run with --auth: scripts/test runs this suite with REDRIVE_SQS_AUTH=1"
)


def client(endpoint, key_id, secret):
    return boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


def send(request):
    """Sends a prepared AWSRequest; returns (status, body text)."""
    prepared = request.prepare()
    raw = urllib.request.Request(
        prepared.url, data=prepared.body, method=prepared.method, headers=dict(prepared.headers)
    )
    try:
        with urllib.request.urlopen(raw, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def json_request(endpoint, action, params):
    return AWSRequest(
        method="POST",
        url=endpoint + "/",
        data=json.dumps(params).encode(),
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": f"AmazonSQS.{action}",
        },
    )


CREDENTIALS = Credentials(ACCESS_KEY_ID, SECRET_ACCESS_KEY)


def test_the_admin_key_signs_and_other_credentials_are_refused(endpoint):
    reply = client(endpoint, ACCESS_KEY_ID, SECRET_ACCESS_KEY).list_queues()
    assert reply["ResponseMetadata"]["HTTPStatusCode"] == 200
    with sqs_error("SignatureDoesNotMatch"):
        client(endpoint, ACCESS_KEY_ID, "not-the-secret-at-all-0000").list_queues()
    with sqs_error("InvalidClientTokenId"):
        client(endpoint, "NOSUCHKEY0000000000", SECRET_ACCESS_KEY).list_queues()


def test_a_body_changed_after_signing_is_refused(endpoint, queue):
    url = queue().url
    request = json_request(endpoint, "SendMessage", {"QueueUrl": url, "MessageBody": "paid"})
    SigV4Auth(CREDENTIALS, "sqs", REGION).add_auth(request)
    request.data = json.dumps({"QueueUrl": url, "MessageBody": "refund"}).encode()
    status, body = send(request)
    assert status == 403 and "SignatureDoesNotMatch" in body, body
    # The same request unchanged is taken.
    request = json_request(endpoint, "SendMessage", {"QueueUrl": url, "MessageBody": "paid"})
    SigV4Auth(CREDENTIALS, "sqs", REGION).add_auth(request)
    status, body = send(request)
    assert status == 200, body


def test_a_presigned_url_works_until_it_expires(endpoint):
    def presigned(expires):
        request = AWSRequest(method="GET", url=endpoint + "/?Action=ListQueues&Version=2012-11-05")
        SigV4QueryAuth(CREDENTIALS, "sqs", REGION, expires=expires).add_auth(request)
        return request

    status, body = send(presigned(300))
    assert status == 200, body
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=120)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: past)
        request = presigned(60)
    status, body = send(request)
    assert status == 400 and "RequestExpired" in body, body


def test_a_signature_from_twenty_minutes_ago_is_refused(endpoint):
    skewed = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=20)
    request = json_request(endpoint, "ListQueues", {})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: skewed)
        SigV4Auth(CREDENTIALS, "sqs", REGION).add_auth(request)
    status, body = send(request)
    assert status == 400 and "RequestExpired" in body, body


def test_an_unsigned_request_is_refused(endpoint):
    status, body = send(json_request(endpoint, "ListQueues", {}))
    assert status == 403 and "MissingAuthenticationToken" in body, body
