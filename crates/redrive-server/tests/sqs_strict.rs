//! Malformed SQS requests are refused as AWS SQS refuses them, and change nothing: repeated
//! Query parameters, text that is not UTF-8, queue names and URLs with path tricks, integers
//! sent as JSON strings, message attribute numbers out of SQS's range and data types without
//! their custom label. In process (`oneshot`), over the embedded engine on memory storage.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use redrive_core::time::{Clock, SystemClock};
use redrive_engine::{Durability, Engine, MemStorage, Store};
use redrive_server::sqs::SqsSettings;
use redrive_server::AppState;
use serde_json::{json, Value};
use tower::ServiceExt;

const URL: &str = "http://localhost/000000000000/sqsq";
/// `URL`, form-encoded.
const URL_FORM: &str = "http%3A%2F%2Flocalhost%2F000000000000%2Fsqsq";

struct Rig {
    router: Router,
    _engine: Engine,
}

/// A server with the queue `sqsq` (and `dlq`, for redrive policies).
async fn rig() -> Rig {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = Store::open(Box::new(MemStorage::new()), Durability::Sync, clock.now_ms()).unwrap();
    let engine = Engine::start(store, clock);
    let state = Arc::new(AppState::new(engine.handle.clone(), SqsSettings::default()));
    let rig = Rig { router: redrive_server::router(state), _engine: engine };
    for name in ["sqsq", "dlq"] {
        let (status, body) = rig.json("CreateQueue", json!({ "QueueName": name })).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    rig
}

impl Rig {
    async fn send(&self, req: Request<Body>) -> (StatusCode, String) {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// A Query request: `uri` (with any query string) and a form body, with the signature
    /// header an SDK sends (a server without `--auth` does not check it, but refuses unsigned
    /// form requests that change queues: a web page could send those).
    async fn query(&self, uri: &str, body: &str) -> (StatusCode, String) {
        let req = Request::post(uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", "AWS4-HMAC-SHA256 Credential=test/20261206/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0")
            .body(Body::from(body.to_owned()))
            .unwrap();
        self.send(req).await
    }

    /// A JSON 1.0 request; the body is sent as given.
    async fn json_raw(&self, action: &str, body: &str) -> (StatusCode, String) {
        let req = Request::post("/")
            .header("x-amz-target", format!("AmazonSQS.{action}"))
            .header("content-type", "application/x-amz-json-1.0")
            .body(Body::from(body.to_owned()))
            .unwrap();
        self.send(req).await
    }

    async fn json(&self, action: &str, body: Value) -> (StatusCode, String) {
        self.json_raw(action, &body.to_string()).await
    }

    /// Bodies of the messages waiting in `sqsq` (received, then made visible again).
    async fn bodies(&self) -> Vec<String> {
        let (status, answer) = self
            .json(
                "ReceiveMessage",
                json!({"QueueUrl": URL, "MaxNumberOfMessages": 10, "VisibilityTimeout": 0}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let v: Value = serde_json::from_str(&answer).unwrap();
        let messages = v["Messages"].as_array().cloned().unwrap_or_default();
        messages.iter().map(|m| m["Body"].as_str().unwrap().to_owned()).collect()
    }

    /// Messages in `sqsq`, visible or not.
    async fn count(&self) -> usize {
        let names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"];
        let (status, answer) = self
            .json("GetQueueAttributes", json!({"QueueUrl": URL, "AttributeNames": names}))
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let v: Value = serde_json::from_str(&answer).unwrap();
        names.iter().map(|n| v["Attributes"][n].as_str().unwrap().parse::<usize>().unwrap()).sum()
    }

    async fn queue_exists(&self, name: &str) -> bool {
        let (status, _) = self.json("GetQueueUrl", json!({ "QueueName": name })).await;
        status == StatusCode::OK
    }
}

/// The Query error code of an XML error answer.
fn xml_code(xml: &str) -> &str {
    let start = xml.find("<Code>").unwrap_or_else(|| panic!("no code in {xml}")) + 6;
    &xml[start..start + xml[start..].find("</Code>").unwrap()]
}

/// The JSON error type of a JSON error answer, without its namespace.
fn json_type(answer: &str) -> String {
    let v: Value = serde_json::from_str(answer).unwrap_or_else(|e| panic!("{e}: {answer}"));
    let ty = v["__type"].as_str().unwrap_or_else(|| panic!("no __type in {answer}"));
    ty.rsplit('#').next().unwrap().to_owned()
}

fn assert_refused_xml(what: &str, (status, xml): (StatusCode, String), code: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {xml}");
    assert_eq!(xml_code(&xml), code, "{what}: {xml}");
}

fn assert_refused_json(what: &str, (status, answer): (StatusCode, String), ty: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {answer}");
    assert_eq!(json_type(&answer), ty, "{what}: {answer}");
}

#[tokio::test]
async fn a_repeated_query_parameter_is_refused_and_changes_nothing() {
    let r = rig().await;
    let cases = [
        ("Action", format!("Action=ListQueues&Action=DeleteQueue&QueueUrl={URL_FORM}")),
        ("QueueUrl", format!("Action=DeleteQueue&QueueUrl={URL_FORM}&QueueUrl=x")),
        (
            "MessageBody",
            format!("Action=SendMessage&QueueUrl={URL_FORM}&MessageBody=a&MessageBody=b"),
        ),
        ("QueueName", "Action=GetQueueUrl&QueueName=sqsq&QueueName=dlq".to_owned()),
        (
            "ReceiptHandle",
            format!("Action=DeleteMessage&QueueUrl={URL_FORM}&ReceiptHandle=a&ReceiptHandle=b"),
        ),
        (
            "a list member",
            format!("Action=GetQueueAttributes&QueueUrl={URL_FORM}&AttributeName.1=All&AttributeName.1=Policy"),
        ),
        (
            "a member that is also a structure",
            format!("Action=SendMessage&QueueUrl={URL_FORM}&MessageBody=a&MessageAttribute.1=x&MessageAttribute.1.Name=n"),
        ),
        ("Version", "Action=ListQueues&Version=2012-11-05&Version=2012-11-05".to_owned()),
    ];
    for (what, body) in &cases {
        assert_refused_xml(what, r.query("/", body).await, "InvalidParameterValue");
    }
    // Once in the query string and once in the body is repeated too.
    let uri = format!("/?Action=ListQueues&QueueUrl={URL_FORM}");
    assert_refused_xml(
        "Action in the URL and the body",
        r.query(&uri, "Action=DeleteQueue").await,
        "InvalidParameterValue",
    );
    // A JSON member named twice is the same: serde_json alone would keep the last.
    let twice = [
        ("DeleteQueue", r#"{"QueueUrl":"http://localhost/000000000000/x","QueueUrl":"URL"}"#),
        ("SendMessage", r#"{"QueueUrl":"URL","MessageBody":"a","MessageBody":"b"}"#),
        (
            "SendMessage",
            r#"{"QueueUrl":"URL","MessageBody":"a","MessageAttributes":{"n":{"DataType":"String","StringValue":"a"},"n":{"DataType":"String","StringValue":"b"}}}"#,
        ),
    ];
    for (action, body) in twice {
        let body = body.replace("URL", URL);
        assert_refused_json(&body, r.json_raw(action, &body).await, "SerializationException");
    }
    assert!(r.queue_exists("sqsq").await, "nothing was deleted");
    assert!(r.bodies().await.is_empty(), "nothing was sent");
    // Each once is fine.
    let (status, xml) = r.query("/?Action=ListQueues", "QueueNamePrefix=sq").await;
    assert_eq!(status, StatusCode::OK, "{xml}");
    assert!(xml.contains(URL), "{xml}");
}

#[tokio::test]
async fn query_text_that_is_not_utf8_is_refused() {
    let r = rig().await;
    let send = format!("Action=SendMessage&QueueUrl={URL_FORM}&MessageBody=");
    assert_refused_xml(
        "body in the form",
        r.query("/", &format!("{send}%FF%FE")).await,
        "InvalidMessageContents",
    );
    assert_refused_xml(
        "body in the URL",
        r.query(&format!("/?{send}ok%C3"), "").await,
        "InvalidMessageContents",
    );
    let batch = format!("Action=SendMessageBatch&QueueUrl={URL_FORM}&SendMessageBatchRequestEntry.1.Id=a&SendMessageBatchRequestEntry.1.MessageBody=%80");
    assert_refused_xml("batch entry body", r.query("/", &batch).await, "InvalidMessageContents");
    let attribute = format!("{send}x&MessageAttribute.1.Name=a&MessageAttribute.1.Value.DataType=String&MessageAttribute.1.Value.StringValue=%ED%A0%80");
    assert_refused_xml("attribute value", r.query("/", &attribute).await, "InvalidParameterValue");
    assert_refused_xml(
        "queue name",
        r.query("/", "Action=CreateQueue&QueueName=%FF").await,
        "InvalidParameterValue",
    );
    assert_refused_xml(
        "parameter name",
        r.query("/", &format!("{send}x&%FF=1")).await,
        "InvalidParameterValue",
    );
    // Raw bytes that are not UTF-8, not percent-encoded, are no better.
    let mut raw = format!("{send}ab").into_bytes();
    raw.push(0xFF);
    let req = Request::post("/")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(raw))
        .unwrap();
    let (status, xml) = r.send(req).await;
    assert_refused_xml("raw byte", (status, xml), "InvalidMessageContents");
    assert!(r.bodies().await.is_empty(), "nothing was stored");
    // Real multi-byte text, percent-encoded, arrives whole.
    let (status, xml) = r.query("/", &format!("{send}h%C3%A9llo+%E2%9C%93")).await;
    assert_eq!(status, StatusCode::OK, "{xml}");
    assert_eq!(r.bodies().await, ["héllo ✓"]);
}

#[tokio::test]
async fn queue_names_and_urls_with_path_tricks_name_no_queue() {
    let r = rig().await;
    for name in
        ["../sqsq", "x/../sqsq", "./sqsq", "sqsq/", "/sqsq", "sqsq%2F", "", "a".repeat(81).as_str()]
    {
        let (status, answer) = r.json("GetQueueUrl", json!({ "QueueName": name })).await;
        assert_refused_json(
            &format!("GetQueueUrl {name:?}"),
            (status, answer),
            "QueueDoesNotExist",
        );
        let (status, answer) = r.json("CreateQueue", json!({ "QueueName": name })).await;
        assert_refused_json(
            &format!("CreateQueue {name:?}"),
            (status, answer),
            "InvalidParameterValueException",
        );
    }
    let (status, xml) = r.query("/", "Action=GetQueueUrl&QueueName=..%2Fsqsq").await;
    assert_refused_xml(
        "GetQueueUrl in Query",
        (status, xml),
        "AWS.SimpleQueueService.NonExistentQueue",
    );

    let urls = [
        "http://localhost/000000000000/x/../sqsq",
        "http://localhost/000000000000/../sqsq",
        "http://localhost/000000000000/./sqsq",
        "http://localhost/a/b/000000000000/sqsq",
        "http://localhost/sqsq",
        "http://localhost/00000000000/sqsq",
        "http://localhost/000000000000/sqsq/",
        "http://localhost/000000000000/sqsq/..",
        "http://localhost/000000000000/sqsq?x=1",
        "http://localhost/000000000000/sqsq#x",
        "http://localhost/000000000000/%73qsq",
        "http://localhost/000000000000//sqsq",
        "http:///000000000000/sqsq",
        "ftp://localhost/000000000000/sqsq",
        "/000000000000/sqsq",
        "000000000000/sqsq",
        "sqsq",
        "localhost/000000000000/sqsq",
        "http://a/b@localhost/000000000000/sqsq",
    ];
    for url in urls {
        let what = format!("QueueUrl {url:?}");
        let (status, answer) = r.json("GetQueueAttributes", json!({ "QueueUrl": url })).await;
        assert_refused_json(&what, (status, answer), "QueueDoesNotExist");
        let (status, answer) = r.json("DeleteQueue", json!({ "QueueUrl": url })).await;
        assert_refused_json(&what, (status, answer), "QueueDoesNotExist");
        let form = format!(
            "Action=PurgeQueue&QueueUrl={}",
            url.replace('%', "%25").replace('&', "%26").replace('#', "%23").replace('?', "%3F")
        );
        let (status, xml) = r.query("/", &form).await;
        assert_refused_xml(&what, (status, xml), "AWS.SimpleQueueService.NonExistentQueue");
    }
    // The queue's path on the URL, percent-encoded tricks included.
    for path in ["/000000000000/..%2Fsqsq", "/000000000000/x%2F..%2Fsqsq", "/000000000000/%2E%2E"] {
        let (status, xml) = r.query(path, "Action=GetQueueAttributes").await;
        assert_refused_xml(path, (status, xml), "AWS.SimpleQueueService.NonExistentQueue");
    }
    // An ARN names its queue in its last field and nowhere else.
    for arn in
        ["x:y:dlq", "arn:aws:sqs:us-east-1:000000000000:../dlq", "arn:aws:sqs:us-east-1:0:dlq"]
    {
        let policy = json!({"deadLetterTargetArn": arn, "maxReceiveCount": 3}).to_string();
        let attrs = json!({"QueueUrl": URL, "Attributes": {"RedrivePolicy": policy}});
        let (status, answer) = r.json("SetQueueAttributes", attrs).await;
        // A bad redrive policy is InvalidParameterValue on SQS, naming the policy.
        assert_refused_json(arn, (status, answer), "InvalidParameterValueException");
        let (status, answer) = r.json("ListMessageMoveTasks", json!({ "SourceArn": arn })).await;
        assert_refused_json(arn, (status, answer), "InvalidParameterValueException");
    }
    assert!(r.queue_exists("sqsq").await && r.queue_exists("dlq").await, "nothing was deleted");

    // What SQS hands out still works, from any host and port.
    for url in [URL, "https://sqs.us-east-1.amazonaws.com:443/000000000000/sqsq"] {
        let (status, answer) = r.json("GetQueueAttributes", json!({ "QueueUrl": url })).await;
        assert_eq!(status, StatusCode::OK, "{url}: {answer}");
    }
    let (status, xml) = r.query("/000000000000/sqsq", "Action=GetQueueAttributes").await;
    assert_eq!(status, StatusCode::OK, "{xml}");
}

#[tokio::test]
async fn integer_members_take_only_integers() {
    let r = rig().await;
    for bad in [r#""5""#, r#"" 5""#, r#""+5""#, r#""5 ""#, "5.0", "5.5", "true", "[5]", "{}"] {
        let body = format!(r#"{{"QueueUrl":"{URL}","MessageBody":"x","DelaySeconds":{bad}}}"#);
        assert_refused_json(bad, r.json_raw("SendMessage", &body).await, "SerializationException");
        let body = format!(r#"{{"QueueUrl":"{URL}","MaxNumberOfMessages":{bad}}}"#);
        assert_refused_json(
            bad,
            r.json_raw("ReceiveMessage", &body).await,
            "SerializationException",
        );
        let body = format!(r#"{{"MaxResults":{bad}}}"#);
        assert_refused_json(bad, r.json_raw("ListQueues", &body).await, "SerializationException");
        let body = format!(
            r#"{{"QueueUrl":"{URL}","Entries":[{{"Id":"a","MessageBody":"x","DelaySeconds":{bad}}}]}}"#
        );
        assert_refused_json(
            bad,
            r.json_raw("SendMessageBatch", &body).await,
            "SerializationException",
        );
    }
    // The Query protocol sends every value as text: plain decimal digits, with an optional minus.
    let send = format!("Action=SendMessage&QueueUrl={URL_FORM}&MessageBody=x&DelaySeconds=");
    for bad in ["+5", "%205", "5%20", "5.0", "0x5", "", "5e0", "%EF%BC%95", "99999999999999999999"]
    {
        assert_refused_xml(
            bad,
            r.query("/", &format!("{send}{bad}")).await,
            "InvalidParameterValue",
        );
        let receive = format!("Action=ReceiveMessage&QueueUrl={URL_FORM}&WaitTimeSeconds={bad}");
        assert_refused_xml(bad, r.query("/", &receive).await, "InvalidParameterValue");
    }
    assert!(r.bodies().await.is_empty(), "nothing was sent");
    for good in ["0", "5", "-0", "007"] {
        let (status, xml) = r.query("/", &format!("{send}{good}")).await;
        assert_eq!(status, StatusCode::OK, "{good}: {xml}");
    }
    let (status, xml) = r.query("/", &format!("{send}-1")).await;
    assert_refused_xml("-1 is an integer out of range", (status, xml), "InvalidParameterValue");
    let (status, answer) = r
        .json("SendMessage", json!({"QueueUrl": URL, "MessageBody": "y", "DelaySeconds": 0}))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // Queue attributes are text in both protocols, read as the same plain integers.
    for bad in [" 30", "30 ", "+30", "3e1", "30.0", ""] {
        let attrs = json!({"QueueUrl": URL, "Attributes": {"VisibilityTimeout": bad}});
        let what = format!("VisibilityTimeout {bad:?}");
        assert_refused_json(
            &what,
            r.json("SetQueueAttributes", attrs).await,
            "InvalidAttributeValue",
        );
        let policy = json!({"deadLetterTargetArn": "arn:aws:sqs:us-east-1:000000000000:dlq", "maxReceiveCount": bad});
        let attrs = json!({"QueueUrl": URL, "Attributes": {"RedrivePolicy": policy.to_string()}});
        let what = format!("maxReceiveCount {bad:?}");
        assert_refused_json(
            &what,
            r.json("SetQueueAttributes", attrs).await,
            "InvalidParameterValueException",
        );
    }
    let attrs = json!({"QueueUrl": URL, "Attributes": {"VisibilityTimeout": "30"}});
    assert_eq!(r.json("SetQueueAttributes", attrs).await.0, StatusCode::OK);
}

fn attribute(data_type: &str, value: &str) -> Value {
    json!({"QueueUrl": URL, "MessageBody": "x", "MessageAttributes": {
        "a": {"DataType": data_type, "StringValue": value}}})
}

#[tokio::test]
async fn number_attributes_hold_what_sqs_numbers_hold() {
    let r = rig().await;
    let max_precision = "9".repeat(38);
    let over_precision = "9".repeat(39);
    let ten_to_126 = format!("1{}", "0".repeat(126));
    // 38 digits, just over 10^126: a float rounds it to 10^126.
    let over_126 = format!("1.{}1e126", "0".repeat(36));
    let below_minus_128 = format!("0.{}1", "0".repeat(128));
    let at_minus_128 = format!("0.{}1", "0".repeat(127));
    let ok = [
        "0",
        "-0",
        "0.0",
        "0e-999999",
        "42",
        "-1.5",
        "+7",
        ".5",
        "5.",
        "1e126",
        "-1E+126",
        "1e-128",
        "-1e-128",
        "9.9e125",
        "1000e123",
        "0.001e-125",
        "12.5e-3",
        "00012",
        "1.50000",
        &max_precision,
        &ten_to_126,
        &at_minus_128,
        // 38 significant digits: leading and trailing zeros do not count.
        &format!("000{max_precision}000"),
    ];
    for n in ok {
        let (status, answer) = r.json("SendMessage", attribute("Number", n)).await;
        assert_eq!(status, StatusCode::OK, "{n}: {answer}");
    }
    let bad = [
        "1e-400",
        "1e-129",
        "9e-129",
        "0.99e-128",
        "1e127",
        "1.1e126",
        "10e126",
        "1e400",
        "1e99999999999999999999",
        "-1e-400",
        &over_precision,
        &over_126,
        &below_minus_128,
        "",
        " 5",
        "5 ",
        "1_0",
        "NaN",
        "Infinity",
        "inf",
        "0x10",
        "1e",
        "e5",
        ".",
        "-",
        "1.2.3",
        "1e5.5",
        "١٢",
        "5e+",
        "--5",
    ];
    for n in bad {
        let what = format!("Number {n:?}");
        assert_refused_json(
            &what,
            r.json("SendMessage", attribute("Number", n)).await,
            "InvalidParameterValueException",
        );
    }
    assert_eq!(r.count().await, ok.len(), "only the numbers SQS takes were sent");
}

#[tokio::test]
async fn data_types_are_a_known_type_and_an_optional_nonempty_label() {
    let r = rig().await;
    let long_label = format!("String.{}", "x".repeat(256 - 7));
    let ok =
        ["String", "Number", "String.custom", "Number.int", "String.a.b", "String.é", &long_label];
    for t in ok {
        let value = if t.starts_with("Number") { "1" } else { "v" };
        let (status, answer) = r.json("SendMessage", attribute(t, value)).await;
        assert_eq!(status, StatusCode::OK, "{t}: {answer}");
    }
    let (status, answer) = r
        .json(
            "SendMessage",
            json!({"QueueUrl": URL, "MessageBody": "x", "MessageAttributes": {
                "b": {"DataType": "Binary.png", "BinaryValue": "AQID"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let too_long = format!("{long_label}x");
    let bad = [
        "String.",
        "Number.",
        "Binary.",
        "string",
        "STRING",
        "Str",
        "Stringx",
        ".String",
        "",
        " String",
        "String ",
        "String.\u{1}",
        "Text",
        &too_long,
    ];
    for t in bad {
        let what = format!("DataType {t:?}");
        assert_refused_json(
            &what,
            r.json("SendMessage", attribute(t, "v")).await,
            "InvalidParameterValueException",
        );
    }
    let (status, xml) = r
        .query(
            "/",
            &format!("Action=SendMessage&QueueUrl={URL_FORM}&MessageBody=x&MessageAttribute.1.Name=a&MessageAttribute.1.Value.DataType=String.&MessageAttribute.1.Value.StringValue=v"),
        )
        .await;
    assert_refused_xml("String. in Query", (status, xml), "InvalidParameterValue");
    assert_eq!(r.count().await, ok.len() + 1, "only the types SQS takes were sent");
}

/// Queue URLs come from the configured public URL, not from whatever `Host` a request sent.
#[tokio::test]
async fn queue_urls_use_the_configured_public_url_not_the_host_header() {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = Store::open(Box::new(MemStorage::new()), Durability::Sync, clock.now_ms()).unwrap();
    let engine = Engine::start(store, clock);
    let settings = SqsSettings {
        public_url: Some("https://sqs.example.com".into()),
        ..SqsSettings::default()
    };
    let rig = Rig {
        router: redrive_server::router(Arc::new(AppState::new(engine.handle.clone(), settings))),
        _engine: engine,
    };
    let req = Request::post("/")
        .header("host", "attacker.example")
        .header("x-amz-target", "AmazonSQS.CreateQueue")
        .header("content-type", "application/x-amz-json-1.0")
        .body(Body::from(r#"{"QueueName":"urls"}"#))
        .unwrap();
    let (status, body) = rig.send(req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["QueueUrl"], "https://sqs.example.com/000000000000/urls");
}
