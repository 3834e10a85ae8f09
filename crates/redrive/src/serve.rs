//! `redrive serve`: configuration in two stages (flags, environment and TOML file → a validated
//! [`ServeConfig`]), then the store (the embedded log in `--data-dir`, or PostgreSQL with
//! `--store postgres://…`), the declared queues, the listener (TLS files reread on SIGHUP), and
//! shutdown on SIGINT/SIGTERM (stop accepting, answer in-flight requests, commit, exit 0).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use redrive_core::time::{Clock, SystemClock};
use redrive_core::{Broker, QueuePatch};
use redrive_engine::{Durability, Engine, FsStorage, Store};
use redrive_server::at_rest::{Keyring, Sealed, KEY_BYTES};
use redrive_server::auth::AuthSettings;
use redrive_server::sqs::SqsSettings;
use redrive_server::tls::{Tls, TlsFiles};
use redrive_server::{AppState, Listener, Transport};
use serde::Deserialize;

/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN_TIMEOUT_MS: u64 = 10_000;
const FSYNC_INTERVAL_DEFAULT_MS: u64 = 10;

#[derive(clap::Args, Debug, Default)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, env = "REDRIVE_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory of the write-ahead log (and of the triage audit log, whatever the store).
    #[arg(long, env = "REDRIVE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Where jobs live: `postgres://USER@HOST:PORT/DB` for PostgreSQL (several servers may share
    /// one database); without it, the embedded log in --data-dir.
    #[arg(long, env = "REDRIVE_STORE", hide_env_values = true)]
    store: Option<String>,
    /// Pooled connections to PostgreSQL per server (besides the LISTEN, wake-up and fleet-lock
    /// connections) [default: 16]
    #[arg(long, env = "REDRIVE_PG_POOL_SIZE")]
    pg_pool_size: Option<usize>,
    /// TOML configuration file (server settings and declared queues).
    #[arg(long, env = "REDRIVE_CONFIG")]
    config: Option<PathBuf>,
    /// `sync` (reply after fsync, the default) or `relaxed` (fsync every --fsync-interval-ms).
    #[arg(long, env = "REDRIVE_DURABILITY")]
    durability: Option<String>,
    #[arg(long, env = "REDRIVE_FSYNC_INTERVAL_MS")]
    fsync_interval_ms: Option<u64>,
    /// Threads serving HTTP (default: one per core). The engine has its own thread.
    #[arg(long, env = "REDRIVE_HTTP_THREADS")]
    http_threads: Option<usize>,
    /// Account id in SQS queue URLs and ARNs (default 000000000000).
    #[arg(long, env = "REDRIVE_SQS_ACCOUNT_ID")]
    sqs_account_id: Option<String>,
    /// Region in SQS ARNs (default us-east-1).
    #[arg(long, env = "REDRIVE_SQS_REGION")]
    sqs_region: Option<String>,
    /// The base of the queue URLs the SQS API hands out (e.g. https://sqs.example.com), instead
    /// of the Host header each request sends
    #[arg(long, env = "REDRIVE_PUBLIC_URL")]
    public_url: Option<String>,
    /// Serve TLS with this certificate chain (PEM, server certificate first); reloaded with
    /// --tls-key (and --tls-client-ca) on SIGHUP
    #[arg(long, env = "REDRIVE_TLS_CERT", value_name = "PEM")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM)
    #[arg(long, env = "REDRIVE_TLS_KEY", value_name = "PEM")]
    tls_key: Option<PathBuf>,
    /// Mutual TLS: refuse, at the handshake, clients without a certificate from this CA (PEM)
    #[arg(long, env = "REDRIVE_TLS_CLIENT_CA", value_name = "PEM")]
    tls_client_ca: Option<PathBuf>,
    /// Without TLS, serve HTTP/2 with prior knowledge (h2c) beside HTTP/1.1
    #[arg(long, env = "REDRIVE_HTTP2_CLEARTEXT")]
    http2_cleartext: bool,
    /// Require an API key on every route but /healthz and /readyz (docs/security.md); the first
    /// admin key comes from REDRIVE_ADMIN_KEY_ID and REDRIVE_ADMIN_SECRET (or _FILE)
    #[arg(long, env = "REDRIVE_AUTH")]
    auth: bool,
    /// Serve /metrics without a key when --auth is on
    #[arg(long, env = "REDRIVE_METRICS_PUBLIC")]
    metrics_public: bool,
    /// Serve on a non-loopback address without --auth: anyone who reaches the port may read,
    /// change and delete everything
    #[arg(long)]
    insecure_no_auth: bool,
    /// Run the dead-letter triage agent in this process (rules provider; escalations to
    /// REDRIVE_TRIAGE_WEBHOOK; audit log in the data directory)
    #[arg(long, env = "REDRIVE_TRIAGE")]
    triage: bool,
    /// The triage policy file (TOML) [default: propose everything]
    #[arg(long, env = "REDRIVE_TRIAGE_POLICY")]
    triage_policy: Option<PathBuf>,
    /// Seconds between the in-process triage agent's passes
    #[arg(long, env = "REDRIVE_TRIAGE_INTERVAL_S", default_value_t = 10)]
    triage_interval_s: u64,
    /// Encrypt job bodies, attributes and error texts at rest with this key (a file of 32
    /// random bytes). Repeat for rotation: the first encrypts, all decrypt (docs/security.md)
    #[arg(
        long = "encryption-key-file",
        env = "REDRIVE_ENCRYPTION_KEY_FILES",
        value_delimiter = ',',
        value_name = "FILE"
    )]
    encryption_key_files: Vec<PathBuf>,
    /// Export traces over OTLP/HTTP (protobuf) to this collector base URL (`/v1/traces` is
    /// appended); OTEL_EXPORTER_OTLP_ENDPOINT, _TRACES_ENDPOINT and _HEADERS work too
    #[arg(long, env = "REDRIVE_OTLP_ENDPOINT", value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// How an attempt's spans relate to the job's creation context: `links` (default) or
    /// `children` (one waterfall per job)
    #[arg(long, env = "REDRIVE_TRACE_ATTEMPTS", default_value = "links")]
    trace_attempts: redrive_server::traces::Mode,
    /// Log lines as text or as JSON objects (with trace and span ids)
    #[arg(long, env = "REDRIVE_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

/// The configuration file as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    store: Option<String>,
    pg_pool_size: Option<usize>,
    durability: Option<String>,
    fsync_interval_ms: Option<u64>,
    http_threads: Option<usize>,
    sqs_account_id: Option<String>,
    sqs_region: Option<String>,
    public_url: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    http2_cleartext: Option<bool>,
    auth: Option<bool>,
    metrics_public: Option<bool>,
    encryption_key_files: Option<Vec<PathBuf>>,
    #[serde(default)]
    queues: BTreeMap<String, QueuePatch>,
}

/// The validated configuration: flags beat the environment, which beats the file.
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// PostgreSQL's URL, or `None` for the embedded log in `data_dir`.
    pub postgres: Option<String>,
    /// Pooled connections per server to PostgreSQL.
    pub pg_pool_size: Option<usize>,
    pub durability: Durability,
    pub http_threads: Option<usize>,
    pub sqs: SqsSettings,
    /// TLS (certificate loaded, reloaded on SIGHUP) or cleartext, and which HTTP versions.
    pub transport: Transport,
    pub auth: AuthSettings,
    /// The first admin key, `(id, secret)`, from the environment.
    pub admin_key: Option<(String, String)>,
    pub queues: BTreeMap<String, QueuePatch>,
    /// `Some((policy file, interval))` when the triage agent runs in process.
    pub triage: Option<(Option<PathBuf>, Duration)>,
    /// The keys that seal job content at rest, when encryption is on.
    pub encryption: Option<Arc<Keyring>>,
    /// Where traces go, if anywhere, and how attempts relate to their creation context.
    pub otlp: Option<redrive_server::traces::OtlpConfig>,
    pub trace_attempts: redrive_server::traces::Mode,
}

impl ServeConfig {
    fn resolve(args: ServeArgs) -> anyhow::Result<ServeConfig> {
        let file: RawFile = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => RawFile::default(),
        };
        let interval =
            args.fsync_interval_ms.or(file.fsync_interval_ms).unwrap_or(FSYNC_INTERVAL_DEFAULT_MS);
        let durability = match args.durability.or(file.durability).as_deref().unwrap_or("sync") {
            "sync" => Durability::Sync,
            "relaxed" if interval > 0 => Durability::Relaxed { interval_ms: interval },
            "relaxed" => bail!("fsync_interval_ms must be at least 1"),
            other => bail!("durability must be \"sync\" or \"relaxed\", not {other:?}"),
        };
        let tls = tls_files(
            args.tls_cert.or(file.tls_cert),
            args.tls_key.or(file.tls_key),
            args.tls_client_ca.or(file.tls_client_ca),
        )?;
        let http2_cleartext = args.http2_cleartext || file.http2_cleartext.unwrap_or(false);
        let transport = match tls {
            None => Transport::Cleartext { http2: http2_cleartext },
            Some(_) if http2_cleartext => {
                bail!("http2_cleartext is for a server without TLS; with TLS, ALPN offers HTTP/2")
            }
            // The in-process agent calls this server at its listening address, which the
            // certificate need not name, and has no client certificate for mutual TLS.
            Some(_) if args.triage => bail!(
                "--triage runs its agent over plain HTTP; with TLS, run `redrive triage watch \
                 --url https://… --ca-file …` beside the server instead"
            ),
            Some(files) => Transport::Tls(Tls::load(files).context("loading the TLS files")?),
        };
        let listen =
            args.listen.or(file.listen).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9324)));
        let auth = AuthSettings {
            enabled: args.auth || file.auth.unwrap_or(false),
            metrics_public: args.metrics_public || file.metrics_public.unwrap_or(false),
        };
        if auth.enabled && args.triage && std::env::var_os("REDRIVE_TOKEN").is_none() {
            bail!(
                "with --auth, the in-process triage agent calls the server with the key in \
                 REDRIVE_TOKEN (scopes read, manage and triage on the queues it watches); set it"
            );
        }
        if !auth.enabled && !listen.ip().is_loopback() && !args.insecure_no_auth {
            bail!(
                "refusing to serve on {listen} without --auth: anyone who can reach it could read,                  change and delete every queue. Turn on --auth (see docs/security.md), listen on                  a loopback address, or pass --insecure-no-auth if a network you trust is all                  that can reach it"
            );
        }
        let key_files = match args.encryption_key_files {
            files if !files.is_empty() => files,
            _ => file.encryption_key_files.unwrap_or_default(),
        };
        Ok(ServeConfig {
            encryption: load_keys(&key_files)?,
            listen,
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./redrive-data")),
            postgres: postgres_url(args.store.or(file.store))?,
            pg_pool_size: match args.pg_pool_size.or(file.pg_pool_size) {
                Some(n) if !(1..=1000).contains(&n) => {
                    bail!("pg_pool_size must be 1 to 1000, not {n}")
                }
                n => n,
            },
            durability,
            http_threads: args.http_threads.or(file.http_threads).filter(|n| *n > 0),
            sqs: sqs_settings(
                args.sqs_account_id.or(file.sqs_account_id),
                args.sqs_region.or(file.sqs_region),
                args.public_url.or(file.public_url),
            )?,
            transport,
            auth,
            admin_key: admin_key()?,
            queues: file.queues,
            triage: args
                .triage
                .then(|| (args.triage_policy, Duration::from_secs(args.triage_interval_s.max(1)))),
            otlp: redrive_server::traces::OtlpConfig::from_env(args.otlp_endpoint.as_deref()),
            trace_attempts: args.trace_attempts,
        })
    }
}

/// The encryption keys in `files` (the first seals), or `None` when none are given. A file must
/// hold exactly 32 bytes; errors name the file, never its bytes.
pub fn load_keys(files: &[PathBuf]) -> anyhow::Result<Option<Arc<Keyring>>> {
    let mut keys = Vec::with_capacity(files.len());
    for f in files {
        let bytes = std::fs::read(f)
            .with_context(|| format!("reading encryption key file {}", f.display()))?;
        let key: [u8; KEY_BYTES] = bytes.as_slice().try_into().map_err(|_| {
            anyhow::anyhow!(
                "encryption key file {} holds {} bytes; a key is exactly {KEY_BYTES} random \
                 bytes (make one with `head -c {KEY_BYTES} /dev/urandom > FILE`)",
                f.display(),
                bytes.len()
            )
        })?;
        keys.push(key);
    }
    Ok(Keyring::new(&keys).map(Arc::new))
}

/// `REDRIVE_ADMIN_KEY_ID` with `REDRIVE_ADMIN_SECRET` or `REDRIVE_ADMIN_SECRET_FILE`.
fn admin_key() -> anyhow::Result<Option<(String, String)>> {
    let id = std::env::var("REDRIVE_ADMIN_KEY_ID").ok().filter(|v| !v.is_empty());
    let secret = match std::env::var("REDRIVE_ADMIN_SECRET_FILE").ok().filter(|v| !v.is_empty()) {
        Some(path) => Some(
            std::fs::read_to_string(&path)
                .with_context(|| format!("reading REDRIVE_ADMIN_SECRET_FILE {path}"))?
                .trim()
                .to_string(),
        ),
        None => std::env::var("REDRIVE_ADMIN_SECRET").ok().filter(|v| !v.is_empty()),
    };
    match (id, secret) {
        (None, None) => Ok(None),
        (Some(id), Some(secret)) => {
            let id_ok = (4..=64).contains(&id.len())
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !id_ok {
                bail!("REDRIVE_ADMIN_KEY_ID must be 4 to 64 characters of A-Z a-z 0-9 - _");
            }
            if secret.len() < 20 || secret.contains('.') {
                bail!("the admin secret must have at least 20 characters and no dot");
            }
            Ok(Some((id, secret)))
        }
        _ => bail!("REDRIVE_ADMIN_KEY_ID and REDRIVE_ADMIN_SECRET (or _FILE) go together"),
    }
}

/// `--store`: a PostgreSQL URL, or nothing for the embedded log.
fn postgres_url(store: Option<String>) -> anyhow::Result<Option<String>> {
    match store {
        None => Ok(None),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(Some(url))
        }
        Some(other) => bail!(
            "store must be a postgres://USER@HOST:PORT/DB URL (or left out for the embedded \
             log in --data-dir), not {other:?}"
        ),
    }
}

/// `--tls-cert`, `--tls-key`, `--tls-client-ca`: both of the first two or neither; the CA only
/// with them.
fn tls_files(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
) -> anyhow::Result<Option<TlsFiles>> {
    match (cert, key, client_ca) {
        (Some(cert), Some(key), client_ca) => Ok(Some(TlsFiles { cert, key, client_ca })),
        (None, None, None) => Ok(None),
        (None, None, Some(_)) => bail!("tls_client_ca needs tls_cert and tls_key"),
        _ => bail!("tls_cert and tls_key go together"),
    }
}

fn sqs_settings(
    account: Option<String>,
    region: Option<String>,
    public_url: Option<String>,
) -> anyhow::Result<SqsSettings> {
    let mut s = SqsSettings::default();
    if let Some(u) = public_url {
        let ok = (u.starts_with("http://") || u.starts_with("https://"))
            && !u.contains(['?', '#', ' '])
            && u.split("://").nth(1).is_some_and(|rest| !rest.is_empty());
        if !ok {
            bail!("public_url must be an http(s)://host[:port] URL, not {u:?}");
        }
        s.public_url = Some(u.trim_end_matches('/').to_string());
    }
    if let Some(a) = account {
        if a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()) {
            bail!("sqs_account_id must be 12 digits, not {a:?}");
        }
        s.account_id = a;
    }
    if let Some(r) = region {
        if !redrive_core::model::valid_region(&r) {
            bail!("sqs_region must look like us-east-1 (1 to 32 of a-z 0-9 -), not {r:?}");
        }
        s.region = r;
    }
    Ok(s)
}

/// Logs to stderr: text, or one JSON object a line (`--log-format json`) whose `spans` carry a
/// request's `trace_id` and `span_id` when it came with a trace context.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("REDRIVE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => fmt.try_init(),
        LogFormat::Json => fmt.json().with_current_span(false).with_span_list(true).try_init(),
    };
}

#[derive(Clone, Copy, Debug, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let config = ServeConfig::resolve(args)?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = config.http_threads {
        runtime.worker_threads(n);
    }
    let runtime = runtime.enable_all().build()?;
    runtime.block_on(serve(config))
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    if let Some(url) = &config.postgres {
        let mut options = redrive_postgres::PgOptions::default();
        if let Some(n) = config.pg_pool_size {
            options.pool_size = n;
        }
        let broker = redrive_postgres::PgBroker::connect(url, options)
            .await
            .with_context(|| format!("connecting to PostgreSQL at {}", redact_url(url)))?;
        tracing::info!(store = %redact_url(url), "PostgreSQL store opened");
        eprintln!("redrive: store PostgreSQL at {}", redact_url(url));
        if config.triage.is_some() {
            // The triage audit log lives in the data directory whatever the store; without
            // it the agent could not record its redrives, and the record is what stops a loop.
            std::fs::create_dir_all(&config.data_dir).with_context(|| {
                format!("creating data directory {}", config.data_dir.display())
            })?;
        }
        return serve_on(&config, broker).await;
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let started = std::time::Instant::now();
    let storage = FsStorage::new(&config.data_dir)
        .with_context(|| format!("opening data directory {}", config.data_dir.display()))?;
    let store = Store::open(Box::new(storage), config.durability, clock.now_ms())?;
    let jobs = store.job_count();
    let engine = Engine::start(store, clock);
    tracing::info!(
        data_dir = %config.data_dir.display(),
        durability = %config.durability,
        jobs,
        recovery_ms = started.elapsed().as_millis() as u64,
        "store opened"
    );
    eprintln!("redrive: durability {}; data in {}", config.durability, config.data_dir.display());
    let served = serve_on(&config, engine.handle.clone()).await;
    engine.shutdown().await;
    served
}

/// A URL without its password, for logs.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user = &url[scheme + 3..at];
            let user = user.split(':').next().unwrap_or_default();
            format!("{}{user}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Stores the admin key from the environment unless the store holds it already with this
/// secret (a revoked one stays revoked: revocation is not undone by a restart).
async fn ensure_admin_key<B: Broker>(broker: &B, id: &str, secret: &str) -> anyhow::Result<()> {
    use redrive_server::auth;
    let wanted = auth::record(
        id.to_string(),
        "admin (environment)",
        secret,
        &["admin:*".into()],
        None,
        None,
    );
    match auth::load(broker, id).await.context("reading the admin key")? {
        Some(k) if k.secret_sha256 == wanted.secret_sha256 => {}
        Some(k) if k.revoked_at.is_some() => {
            tracing::warn!(key = %id, "the admin key in the environment was revoked; not restored")
        }
        _ => {
            auth::store(broker, &wanted).await.context("storing the admin key")?;
            tracing::info!(key = %id, "admin key from the environment stored");
        }
    }
    Ok(())
}

/// The store as the server sees it: sealed at rest when keys are given.
async fn serve_on<B: Broker>(config: &ServeConfig, broker: B) -> anyhow::Result<()> {
    match &config.encryption {
        Some(keys) => {
            tracing::info!(key = keys.current_id(), "job content encrypted at rest");
            serve_broker(config, Sealed::new(broker, keys.clone())).await
        }
        None => serve_broker(config, broker).await,
    }
}

/// Everything above the store: declared queues, the listener, triage, serving until a signal.
async fn serve_broker<B: Broker>(config: &ServeConfig, broker: B) -> anyhow::Result<()> {
    // Dead-letter queues named by other declared queues first, so the references resolve.
    let targets: Vec<String> =
        config.queues.values().filter_map(|p| p.dead_letter_queue.clone().flatten()).collect();
    let mut queues: Vec<(String, QueuePatch)> = config.queues.clone().into_iter().collect();
    queues.sort_by_key(|(name, _)| !targets.contains(name));
    // A dead-letter queue gets no dead-letter queue of its own unless it names one (TOML has
    // no null to say so).
    for (name, patch) in &mut queues {
        if targets.contains(name) && patch.dead_letter_queue.is_none() {
            patch.dead_letter_queue = Some(None);
        }
    }
    for (name, patch) in queues {
        let (_, created) = broker
            .put_queue(name.clone(), patch)
            .await
            .with_context(|| format!("declaring queue {name:?}"))?;
        tracing::info!(queue = %name, created, "queue declared in the configuration file");
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    if let Transport::Tls(tls) = &config.transport {
        // Listening before the address is printed: a SIGHUP sent on seeing it is not fatal.
        let reload = redrive_server::tls::reload_on_hangup(tls.clone());
        tokio::spawn(reload.context("listening for SIGHUP")?);
    }
    println!("redrive listening on {}://{addr}", config.transport.scheme());
    let triage_metrics: Option<Arc<redrive_triage::metrics::TriageMetrics>> =
        config.triage.as_ref().map(|_| Arc::default());
    let mut state = AppState::new(broker, config.sqs.clone());
    state.auth = config.auth.clone();
    let exporting = config.otlp.clone().map(|otlp| {
        tracing::info!(url = %otlp.url, "exporting traces over OTLP");
        redrive_server::traces::install(otlp)
    });
    state.traces =
        redrive_server::traces::Traces { on: exporting.is_some(), mode: config.trace_attempts };
    if let Some((id, secret)) = &config.admin_key {
        ensure_admin_key(&state.broker, id, secret).await?;
    }
    let triage_active = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some(m) = &triage_metrics {
        m.register(state.metrics.registry_mut());
        state.metrics.register_flag(
            "redrive_triage_agent_active",
            "1 while this server runs the in-process triage agent (on PostgreSQL, one server of \
             the fleet at a time).",
            triage_active.clone(),
        );
    }
    redrive_server::triage::load(&state).await.context("reading the triage proposals")?;
    let (proposals, policies) = (
        config.data_dir.join("triage-proposals.json"),
        config.data_dir.join("triage-policies.json"),
    );
    let imported = redrive_server::triage::import_files(&state, &proposals, &policies)
        .await
        .context("moving the triage files into the store")?;
    if imported > 0 {
        tracing::info!(
            imported,
            "triage proposals and policies moved from JSON files into the store"
        );
    }
    let state = Arc::new(state);
    let agent = match &config.triage {
        Some((policy, interval)) => {
            let interval = *interval;
            let args = crate::triage::AgentArgs {
                policy: policy.clone(),
                audit: config.data_dir.join("triage-audit.jsonl"),
                webhook: std::env::var("REDRIVE_TRIAGE_WEBHOOK").ok(),
                provider: "rules".into(),
                ..crate::triage::AgentArgs::default()
            };
            let metrics = triage_metrics.clone().expect("made with the agent");
            let base = format!("http://{addr}");
            let make = move || {
                let mut agent = crate::triage::build_agent(&args, &base, &Default::default())?;
                agent.metrics = metrics.clone();
                Ok(agent)
            };
            // On PostgreSQL, one server of the fleet at a time runs it (fleet.rs).
            let pg = config.postgres.clone();
            Some(crate::fleet::TriageRunner::start(pg, make, interval, triage_active)?)
        }
        None => None,
    };
    // The agent stops first, while the server still answers its pass in flight: a pass cut
    // short could redrive jobs without recording it, and the record is what stops a loop.
    let shutdown = async move {
        shutdown_signal().await;
        if let Some(agent) = agent {
            let bound = Duration::from_millis(redrive_core::limits::TRIAGE_AGENT_STOP_MAX_MS);
            if agent.stop(bound).await {
                tracing::info!("triage agent stopped");
            } else {
                tracing::warn!("triage agent cut short: its pass outlived the bound");
            }
        }
    };
    let listener = Listener { tcp: listener, transport: config.transport.clone() };
    redrive_server::serve(listener, state, shutdown, Duration::from_millis(DRAIN_TIMEOUT_MS))
        .await?;
    if let Some(e) = exporting {
        e.shutdown().await;
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM");
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutdown signal received; draining");
}
