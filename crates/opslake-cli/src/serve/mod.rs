//! `opslake serve`: the lake over the Postgres wire protocol, for psql and BI tools.
//!
//! Built on datafusion-postgres and pgwire, with the parts a server facing a network needs
//! done here rather than taken from `datafusion_postgres::serve`, which authenticates no one,
//! lets SQL write and falls back to plaintext when TLS fails:
//! - every connection authenticates with SCRAM-SHA-256 against the users of opslake.yml (or
//!   the environment); an unknown user fails exactly like a wrong password, down to the salt
//!   it is offered (`limits::MockSalts`);
//! - every statement is classified and its plan checked before anything runs it, over both
//!   protocols, cursors included: default deny (`guard`); the catalog and tables are read-only
//!   below that (`catalog`);
//! - each connection has its own session (a SET changes that connection only), its own pool of
//!   working memory inside the server's, a statement time limit, and a place among at most
//!   `serve.max_connections`; a query that panics fails alone (`limits`);
//! - a configured certificate that does not load stops the server from starting, and
//!   `serve.tls.required` refuses plaintext clients;
//! - pg_catalog is set up so `\dt`, `\d table` and BI table browsers work.
//!
//! A connection reads the lake as it was when the connection opened; new runs are picked up
//! for new connections within `--refresh` seconds.

mod catalog;
mod guard;
mod limits;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use clap::Args;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::SessionContext;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire::api::PgWireServerHandlers;
use datafusion_postgres::pgwire::api::auth::sasl::SASLAuthStartupHandler;
use datafusion_postgres::pgwire::api::auth::sasl::scram::{ScramAuth, gen_salted_password};
use datafusion_postgres::pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::error::PgWireResult;
use datafusion_postgres::{DfSessionService, QueryHook};
use opslake_config::Project;
use opslake_config::scram::{ITERATIONS, ScramSecret};
use opslake_schema::ErrorClass;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use crate::open::{OpenLake, open_lake};
use crate::query::Session;
use crate::{CliError, LakeArgs, ProjectArgs};

/// The environment variables that add one user to those of opslake.yml.
pub const USER_ENV: &str = "OPSLAKE_SERVE_USER";
/// The secret of [`USER_ENV`]'s user, as `--hash-password` prints it.
pub const HASH_ENV: &str = "OPSLAKE_SERVE_PASSWORD_HASH";

/// Arguments of `opslake serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    project: ProjectArgs,
    #[command(flatten)]
    lake: LakeArgs,
    /// Address and port to listen on, over `serve.listen` (default 127.0.0.1:5433). Port 0
    /// picks a free one; the first line printed says which.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<String>,
    /// Seconds between checks for new runs; new connections see the lake as the last one left it.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    refresh: u64,
    /// Read a password from stdin, print the secret to put in `serve.users[].password_hash`
    /// (or OPSLAKE_SERVE_PASSWORD_HASH), and exit.
    #[arg(long)]
    hash_password: bool,
}

pub(crate) async fn serve(args: &ServeArgs) -> Result<(), CliError> {
    if args.hash_password {
        return hash_password();
    }
    let open = open_lake(&args.project, &args.lake)?;
    let users = Arc::new(users(&open.project)?);
    let tls = tls(&open.project)?;
    let listen = args.listen.as_deref().unwrap_or(&open.project.config.serve.listen.value);
    let addr: SocketAddr =
        listen.parse().map_err(|_| CliError::user(format!("--listen '{listen}' is not an address and port")))?;
    let config = &open.project.config.serve;
    let tls_required = config.tls.as_ref().is_some_and(|t| t.required);
    let server_memory: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(mib(config.total_memory_mib.value)));
    let limits = Limits {
        query_memory: mib(config.query_memory_mib.value),
        server_memory,
        statement_timeout: Duration::from_secs(config.statement_timeout_seconds.value),
        max_connections: config.max_connections.value,
        queries: query_runtime()?,
    };
    let seats = Arc::new(Semaphore::new(limits.max_connections as usize));
    let session = Arc::new(RwLock::new(Arc::new(pg_session(&open).await?)));
    let shared = Arc::new(Shared {
        session: session.clone(),
        salts: Arc::new(limits::MockSalts::new(&users)),
        users: users.clone(),
        cert_pem: tls.as_ref().map(|t| t.1.clone()),
        limits,
        tls_required,
    });
    // A query that panics fails alone: the hook that makes other commands exit on a panic
    // lets this one go on (the panic is caught where the query runs).
    crate::PANICS_ARE_CAUGHT.store(true, std::sync::atomic::Ordering::SeqCst);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| CliError::new(ErrorClass::External, anyhow::anyhow!("cannot listen on {addr}: {e}")))?;
    let bound = listener.local_addr().map_err(|e| CliError::new(ErrorClass::External, e))?;
    println!(
        "listening on {bound} ({}), serving {} to {} user(s): psql \"host={} port={} user={} dbname=opslake\"",
        if tls.is_some() { "TLS" } else { "no TLS" },
        open.location,
        users.len(),
        bound.ip(),
        bound.port(),
        users.keys().next().map_or("…", String::as_str),
    );
    if !bound.ip().is_loopback() && tls.is_none() {
        tracing::warn!("listening on {bound} without TLS: passwords are safe (SCRAM) but query results are not");
    }
    tokio::spawn(refresh_when_runs_land(open, session, Duration::from_secs(args.refresh.max(1))));
    let acceptor = tls.map(|t| t.0);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        continue;
                    }
                };
                // Taken before the handshake and held for the connection's life; without one
                // the connection is refused with 53300 once it says who it is.
                let seat = seats.clone().try_acquire_owned().ok();
                let handlers = match shared.connection(seat.is_some()) {
                    Ok(h) => Arc::new(h),
                    Err(e) => {
                        tracing::warn!(%peer, "cannot open a session for a connection: {e}");
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    tracing::debug!(%peer, "connection");
                    if let Err(e) = datafusion_postgres::pgwire::tokio::process_socket(socket, acceptor, handlers).await {
                        tracing::debug!(%peer, "connection ended: {e}");
                    }
                    drop(seat);
                });
            }
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("interrupted; stopping");
                return Ok(());
            }
        }
    }
}

/// Reads a password from stdin (without echo on a terminal) and prints its secret.
fn hash_password() -> Result<(), CliError> {
    use std::io::IsTerminal;
    let password = if std::io::stdin().is_terminal() {
        eprint!("password: ");
        console::Term::stderr().read_secure_line().map_err(|e| CliError::io(std::path::Path::new("stdin"), e))?
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| CliError::io(std::path::Path::new("stdin"), e))?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.is_empty() {
        return Err(CliError::user("empty password"));
    }
    let mut salt = vec![0u8; 16];
    getrandom::fill(&mut salt)
        .map_err(|e| CliError::new(ErrorClass::External, anyhow::anyhow!("no randomness for a salt: {e}")))?;
    let salted_password = gen_salted_password(&password, &salt, ITERATIONS);
    println!("{}", ScramSecret { salt, salted_password }.to_text());
    Ok(())
}

/// The users of opslake.yml, and the one of OPSLAKE_SERVE_USER / OPSLAKE_SERVE_PASSWORD_HASH.
fn users(project: &Project) -> Result<BTreeMap<String, ScramSecret>, CliError> {
    let mut users = BTreeMap::new();
    for u in &project.config.serve.users {
        let name = &u.name.value;
        let source = u.secret_source().map_err(|e| CliError::user(format!("serve user '{name}' {e}")))?;
        let (text, from) = project
            .read_secret("password_hash", source)
            .map_err(|e| CliError::user(format!("serve user '{name}': {e}")))?;
        let secret =
            ScramSecret::parse(text.trim()).map_err(|e| CliError::user(format!("serve user '{name}': {from} {e}")))?;
        users.insert(name.clone(), secret);
    }
    match (std::env::var(USER_ENV), std::env::var(HASH_ENV)) {
        (Ok(name), Ok(hash)) => {
            let secret = ScramSecret::parse(&hash).map_err(|e| CliError::user(format!("{HASH_ENV} {e}")))?;
            users.insert(name, secret);
        }
        (Ok(_), Err(_)) | (Err(_), Ok(_)) => {
            return Err(CliError::user(format!("set both {USER_ENV} and {HASH_ENV}, or neither")));
        }
        _ => {}
    }
    if users.is_empty() {
        return Err(CliError::user(format!(
            "opslake serve lets no one in without a password: add serve.users to opslake.yml or set {USER_ENV} and \
             {HASH_ENV} (make a hash with `opslake serve --hash-password`)"
        )));
    }
    Ok(users)
}

/// The TLS acceptor of `serve.tls`, and the certificate chain's PEM (for channel binding).
/// Any failure to load them stops the server: it never falls back to plaintext.
fn tls(project: &Project) -> Result<Option<(TlsAcceptor, Vec<u8>)>, CliError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let Some(tls) = &project.config.serve.tls else {
        return Ok(None);
    };
    let (cert_path, key_path) = (project.path(&tls.cert.value), project.path(&tls.key.value));
    let refuse = |what: String| CliError::user(format!("serve.tls: {what}; not starting without TLS"));
    let pem = std::fs::read(&cert_path).map_err(|e| refuse(format!("cannot read {}: {e}", cert_path.display())))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| refuse(format!("{} is not a PEM certificate chain: {e}", cert_path.display())))?;
    if certs.is_empty() {
        return Err(refuse(format!("{} holds no certificate", cert_path.display())));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| refuse(format!("{} holds no usable private key: {e}", key_path.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| {
            refuse(format!("{} and {} do not make a TLS identity: {e}", cert_path.display(), key_path.display()))
        })?;
    Ok(Some((TlsAcceptor::from(Arc::new(config)), pem)))
}

/// A session over the lake with pg_catalog, as psql and BI tools expect it.
async fn pg_session(open: &OpenLake) -> Result<SessionContext, CliError> {
    let session = Session::open(open, None).await?;
    let ctx = session.into_context();
    datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog(
        &ctx,
        "datafusion",
        datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider,
    )
    .map_err(|e| CliError::new(ErrorClass::Internal, anyhow::anyhow!("cannot set up pg_catalog: {e}")))?;
    if std::env::var_os(TEST_PANIC_ENV).is_some() {
        ctx.register_udf(test_panic_function());
    }
    let state = ctx.state();
    let catalogs = catalog::read_only(state.catalog_list().clone());
    Ok(SessionContext::new_with_state(
        SessionStateBuilder::new_from_existing(state).with_catalog_list(catalogs).build(),
    ))
}

/// Set in the tests of serve alone: registers `opslake_test_panic()`, a function that panics,
/// so a test can show that one query's panic leaves the server serving.
const TEST_PANIC_ENV: &str = "OPSLAKE_SERVE_TEST_PANIC";

fn test_panic_function() -> datafusion::logical_expr::ScalarUDF {
    use datafusion::arrow::datatypes::DataType;
    use datafusion::logical_expr::{Volatility, create_udf};
    create_udf(
        "opslake_test_panic",
        vec![],
        DataType::Int64,
        Volatility::Volatile,
        Arc::new(|_| panic!("opslake_test_panic() was called")),
    )
}

fn mib(n: u64) -> usize {
    usize::try_from(n.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
}

/// Rebuilds the session when `_runs` has a new version, so new connections see new runs.
async fn refresh_when_runs_land(open: OpenLake, session: Arc<RwLock<Arc<SessionContext>>>, every: Duration) {
    let mut seen = runs_version(&open).await;
    loop {
        tokio::time::sleep(every).await;
        let now = runs_version(&open).await;
        if now == seen {
            continue;
        }
        match pg_session(&open).await {
            Ok(ctx) => {
                *session.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(ctx);
                tracing::info!(version = now, "the lake has new runs; new connections read them");
                seen = now;
            }
            Err(e) => tracing::warn!("cannot reload the lake: {e}; connections keep the previous state"),
        }
    }
}

async fn runs_version(open: &OpenLake) -> Option<u64> {
    let table = open.contract.system_table(opslake_lake::runs::RUNS)?;
    opslake_lake::read::open(&open.lake, table, None).await.ok().flatten().and_then(|t| t.version())
}

/// The users and their secrets, for pgwire's SCRAM exchange.
struct Users {
    users: Arc<BTreeMap<String, ScramSecret>>,
    salts: Arc<limits::MockSalts>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: never a secret in a log line.
        f.debug_struct("Users").field("names", &self.users.keys().collect::<Vec<_>>()).finish()
    }
}

#[async_trait]
impl AuthSource for Users {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let name = login.user().unwrap_or_default();
        if let Some(secret) = self.users.get(name) {
            return Ok(Password::new(Some(secret.salt.clone()), secret.salted_password.clone()));
        }
        // An unknown user gets a secret no password matches and the salt it would get on every
        // attempt, so the exchange fails like a wrong password and does not tell which users exist.
        Ok(Password::new(Some(self.salts.salt(name)), self.salts.stored_key(name)))
    }
}

/// What every connection shares: the lake's current session, the users, the limits.
struct Shared {
    session: Arc<RwLock<Arc<SessionContext>>>,
    users: Arc<BTreeMap<String, ScramSecret>>,
    salts: Arc<limits::MockSalts>,
    cert_pem: Option<Vec<u8>>,
    limits: Limits,
    tls_required: bool,
}

struct Limits {
    query_memory: usize,
    server_memory: Arc<dyn MemoryPool>,
    statement_timeout: Duration,
    max_connections: u32,
    queries: tokio::runtime::Handle,
}

/// The runtime queries run on, apart from the one that accepts connections and speaks the
/// protocol: heavy queries then compete with each other for the CPU, never with a new
/// client's handshake (DataFusion's advice for servers: a dedicated executor for plans).
fn query_runtime() -> Result<tokio::runtime::Handle, CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("opslake-query")
        .enable_all()
        .build()
        .map_err(|e| CliError::new(ErrorClass::External, anyhow::anyhow!("cannot start the query runtime: {e}")))?;
    // Kept for the process's life: a runtime dropped inside another one panics, and serve
    // ends only when the process does.
    Ok(Box::leak(Box::new(runtime)).handle().clone())
}

impl Shared {
    /// The handlers of one connection: its own session over the lake as it stands now (so a
    /// SET stays in it), its own memory pool inside the server's, a fresh SCRAM exchange.
    fn connection(&self, admitted: bool) -> datafusion::error::Result<Connection> {
        let current = self.session.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let state = current.state();
        let pool = Arc::new(limits::QueryPool::new(self.limits.query_memory, self.limits.server_memory.clone()));
        let runtime = RuntimeEnvBuilder::from_runtime_env(state.runtime_env()).with_memory_pool(pool).build_arc()?;
        let ctx = Arc::new(SessionContext::new_with_state(
            SessionStateBuilder::new_from_existing(state).with_runtime_env(runtime).build(),
        ));
        let hooks: Vec<Arc<dyn QueryHook>> =
            vec![Arc::new(CursorStatementHook), Arc::new(SetShowHook), Arc::new(TransactionStatementHook)];
        let service = DfSessionService::new_with_hooks(ctx.clone(), hooks);
        let service =
            Arc::new(guard::Guarded::new(service, ctx, self.limits.statement_timeout, self.limits.queries.clone()));

        let startup = Arc::new(limits::Gate {
            plain: Arc::new(self.authentication(None)),
            tls: self.cert_pem.as_deref().map(|pem| Arc::new(self.authentication(Some(pem)))),
            admitted,
            tls_required: self.tls_required,
            max_connections: self.limits.max_connections,
        });
        Ok(Connection { service, startup })
    }

    /// A fresh SCRAM exchange; with the certificate, one that offers channel binding.
    fn authentication(&self, cert_pem: Option<&[u8]>) -> SASLAuthStartupHandler<DefaultServerParameterProvider> {
        let mut scram = ScramAuth::new(Arc::new(Users { users: self.users.clone(), salts: self.salts.clone() }));
        scram.set_iterations(ITERATIONS);
        if let Some(pem) = cert_pem
            && let Err(e) = scram.configure_certificate(pem)
        {
            tracing::warn!("SCRAM channel binding is off: {e}");
        }
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.default_transaction_read_only = true;
        parameters.is_superuser = false;
        SASLAuthStartupHandler::new(Arc::new(parameters)).with_scram(scram)
    }
}

/// One connection's handlers.
struct Connection {
    service: Arc<guard::Guarded>,
    startup: Arc<limits::Gate<SASLAuthStartupHandler<DefaultServerParameterProvider>>>,
}

impl PgWireServerHandlers for Connection {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.service.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.service.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }
}
