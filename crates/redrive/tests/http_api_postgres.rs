//! The native API's cases (`crates/redrive-server/tests/http_api/cases.rs`, run there over the
//! embedded engine) against `redrive serve --store postgres://…`, a database per test.

mod common;

#[macro_use]
#[path = "../../redrive-server/tests/http_api/cases.rs"]
mod cases;

async fn start() -> cases::Server {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = common::start_on_postgres(dir.path(), &[]);
    let url = server.url.clone();
    cases::Server::new(url, "redrive_pg_pool_connections", Box::new((server, dir)))
}

http_api_cases!(start);
