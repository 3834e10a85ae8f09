//! URL building: route paths under the base URL, with every caller-supplied segment
//! percent-encoded, and the query string of the dead-job listing.

use redrive_core::time::to_rfc3339;
use reqwest::Url;

use crate::dead::DeadQuery;

/// `base` + `/` + the segments, each encoded as one path segment (a `/` or `?` in a queue name
/// cannot change the route). A path prefix in `base` is kept.
pub(crate) fn endpoint(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    {
        // Invariant: `Client::new` accepts only http(s) URLs, which always take path segments.
        let mut path = url.path_segments_mut().expect("an http(s) URL has path segments");
        path.pop_if_empty();
        path.extend(segments);
    }
    url
}

/// `GET /v1/queues/{q}/dead` with the filter as query parameters; absent fields are left out.
pub(crate) fn dead_list(base: &Url, queue: &str, query: &DeadQuery) -> Url {
    let mut url = endpoint(base, &["v1", "queues", queue, "dead"]);
    let f = &query.filter;
    let pairs = [
        ("error_type", f.error_type.clone()),
        ("signature", f.signature.clone()),
        ("source_queue", f.source_queue.clone()),
        ("since", f.since.map(to_rfc3339)),
        ("until", f.until.map(to_rfc3339)),
        ("after", query.after.map(|id| id.to_string())),
        ("limit", query.limit.map(|n| n.to_string())),
    ];
    if pairs.iter().any(|(_, v)| v.is_some()) {
        let mut q = url.query_pairs_mut();
        for (k, v) in &pairs {
            if let Some(v) = v {
                q.append_pair(k, v);
            }
        }
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use redrive_core::broker::DeadFilter;
    use redrive_core::JobId;

    fn base(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn joins_segments_under_the_base() {
        let u = endpoint(&base("http://h:1"), &["v1", "queues", "orders"]);
        assert_eq!(u.as_str(), "http://h:1/v1/queues/orders");
        let u = endpoint(&base("http://h:1/"), &["v1", "ack"]);
        assert_eq!(u.as_str(), "http://h:1/v1/ack");
    }

    #[test]
    fn keeps_a_path_prefix_and_drops_a_query() {
        let u = endpoint(&base("http://h/proxy/redrive/?x=1"), &["v1", "queues"]);
        assert_eq!(u.as_str(), "http://h/proxy/redrive/v1/queues");
    }

    #[test]
    fn encodes_segments_so_they_cannot_change_the_route() {
        let u = endpoint(&base("http://h"), &["v1", "queues", "a/b?c#d e"]);
        assert_eq!(u.as_str(), "http://h/v1/queues/a%2Fb%3Fc%23d%20e");
    }

    #[test]
    fn dead_query_carries_only_given_fields() {
        let q = DeadQuery::default();
        assert_eq!(dead_list(&base("http://h"), "d", &q).as_str(), "http://h/v1/queues/d/dead");
        let id: JobId = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".parse().unwrap();
        let q = DeadQuery {
            filter: DeadFilter {
                error_type: Some("Time out".into()),
                since: Some(1_763_800_000_123),
                ..DeadFilter::default()
            },
            after: Some(id),
            limit: Some(50),
        };
        assert_eq!(
            dead_list(&base("http://h"), "d", &q).as_str(),
            "http://h/v1/queues/d/dead?error_type=Time+out&since=2025-11-22T08%3A26%3A40.123Z\
             &after=0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b&limit=50"
        );
    }
}
