//! What `opslake serve` lets run: default deny. Every statement of a query string (simple
//! protocol) or a Parse (extended protocol) is classified before anything runs any of them:
//! read-only queries, SHOW, transaction control, cursors over read-only queries and SET/RESET
//! of a short list of client settings pass; everything else, and anything that does not parse
//! or plan, is refused with a SQLSTATE and never handed to datafusion-postgres.
//!
//! Two checks, because datafusion-postgres runs a statement the hooks do not take by printing
//! it and planning the text again with DataFusion's own parser (which knows COPY and CREATE
//! EXTERNAL TABLE): the statement's kind from the AST, then the plan of exactly the text or AST
//! that will run, verified to hold no DDL, DML or session statement. Below both, the catalog
//! and tables are read-only (`catalog`).

use std::future::Future;
use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    DeclareType, Expr, ObjectName, Query, Reset, Select, Set, Statement, TableFactor, Value, Visit, Visitor,
};
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_postgres::pgwire::api::portal::{Format, Portal};
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use datafusion_postgres::pgwire::api::stmt::QueryParser;
use datafusion_postgres::pgwire::api::store::PortalStore;
use datafusion_postgres::pgwire::api::{ClientInfo, ClientPortalStore, Type};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::PgWireBackendMessage;
use datafusion_postgres::pgwire::messages::data::DataRow;
use datafusion_postgres::{DfSessionService, Parser};
use futures::{FutureExt, Sink, Stream};
use tokio::runtime::Handle;

/// The settings a client may SET or RESET: what drivers and BI tools send when they connect.
/// Each changes only how this connection's results are written, never what can be read.
const CLIENT_SETTINGS: [&str; 13] = [
    "application_name",
    "bytea_output",
    "client_encoding",
    "client_min_messages",
    "datestyle",
    "extra_float_digits",
    "intervalstyle",
    "lc_messages",
    "search_path",
    "standard_conforming_strings",
    "statement_timeout",
    "timezone",
    "time_zone",
];

/// Table functions a query may call: those that compute rows and read nothing.
const TABLE_FUNCTIONS: [&str; 3] = ["generate_series", "range", "unnest"];

/// Where datafusion-postgres keeps a client's `SET statement_timeout`, in milliseconds.
const TIMEOUT_METADATA: &str = "statement_timeout_ms";

/// A statement serve will not run, with the SQLSTATE the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    pub(super) code: &'static str,
    pub(super) message: String,
}

impl Refusal {
    /// `read_only_sql_transaction`: the statement would change something.
    fn read_only(what: impl std::fmt::Display) -> Self {
        Self { code: "25006", message: format!("opslake serve is read-only: {what}") }
    }

    /// `insufficient_privilege`: the statement changes the server, not the connection.
    fn privilege(what: impl std::fmt::Display) -> Self {
        Self { code: "42501", message: format!("opslake serve: {what}") }
    }
}

impl From<Refusal> for PgWireError {
    fn from(r: Refusal) -> Self {
        error(r.code, r.message)
    }
}

/// An ERROR with its SQLSTATE, as the client gets it.
fn error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".into(), code.into(), message)))
}

/// What a statement that passed needs before it runs.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Route {
    /// Run by DataFusion: its plan is checked too.
    Plan,
    /// Answered by a datafusion-postgres hook (SET, SHOW, BEGIN, FETCH, CLOSE) without a plan.
    Hook,
    /// A cursor: each query it declares is planned and checked.
    Declare(Vec<Query>),
    /// A RESET of a client setting, answered here.
    Reset(String),
}

/// The kind check: which statements may run at all, from the AST alone.
pub(super) fn classify(statement: &Statement) -> Result<Route, Refusal> {
    match statement {
        Statement::Query(q) => read_only_query(q).map(|()| Route::Plan),
        // EXPLAIN ANALYZE runs its statement, and either form may be told so by an option:
        // the statement explained must pass on its own.
        Statement::Explain { statement, .. } => match classify(statement)? {
            Route::Plan => Ok(Route::Plan),
            _ => Err(Refusal::read_only("EXPLAIN of that statement")),
        },
        Statement::ExplainTable { .. } | Statement::ShowTables { .. } | Statement::ShowColumns { .. } => {
            Ok(Route::Plan)
        }
        Statement::ShowVariable { .. }
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. } => Ok(Route::Hook),
        Statement::Set(set) => client_setting(set).map(|()| Route::Hook),
        Statement::Reset(reset) => match &reset.reset {
            Reset::ConfigurationParameter(name) if is_client_setting(name) => Ok(Route::Reset(setting_name(name))),
            Reset::ConfigurationParameter(name) => {
                Err(Refusal::privilege(format!("'{name}' is a server setting; clients may reset only client settings")))
            }
            Reset::ALL => {
                Err(Refusal::privilege("RESET ALL would reset server settings; reset a client setting by name"))
            }
        },
        Statement::Declare { stmts } => {
            let mut queries = Vec::new();
            for d in stmts {
                match (&d.declare_type, &d.for_query) {
                    (Some(DeclareType::Cursor), Some(q)) => {
                        read_only_query(q)?;
                        queries.push((**q).clone());
                    }
                    _ => return Err(Refusal::read_only("only DECLARE ... CURSOR FOR a query is allowed")),
                }
            }
            Ok(Route::Declare(queries))
        }
        other => Err(Refusal::read_only(format!("{} is not allowed", kind(other)))),
    }
}

/// The first words of a statement, to name it in a refusal without echoing its whole text.
fn kind(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> =
        text.split_whitespace().take_while(|w| w.chars().all(|c| c.is_ascii_alphabetic())).take(2).collect();
    if words.is_empty() { "that statement".into() } else { words.join(" ").to_uppercase() }
}

fn setting_name(name: &ObjectName) -> String {
    name.to_string().to_lowercase()
}

fn is_client_setting(name: &ObjectName) -> bool {
    CLIENT_SETTINGS.contains(&setting_name(name).as_str())
}

/// SET of a client setting passes (datafusion-postgres keeps it per connection); anything else
/// would change the server (`datafusion.*`), a role, or more than one thing at once.
fn client_setting(set: &Set) -> Result<(), Refusal> {
    match set {
        Set::SingleAssignment { variable, values, .. } if is_client_setting(variable) => {
            if setting_name(variable) == "client_encoding" {
                let value = values.first().map(literal).unwrap_or_default().to_uppercase().replace(['-', '_'], "");
                if value != "UTF8" && value != "UNICODE" {
                    return Err(Refusal {
                        code: "0A000",
                        message: format!("opslake serve speaks UTF8 only, not client_encoding {value}"),
                    });
                }
            }
            Ok(())
        }
        Set::SingleAssignment { variable, .. } => {
            Err(Refusal::privilege(format!("'{variable}' is a server setting; clients may set only client settings")))
        }
        Set::SetTimeZone { .. } | Set::SetTransaction { .. } => Ok(()),
        _ => Err(Refusal::privilege("that SET is not a client setting")),
    }
}

fn literal(expr: &Expr) -> String {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        other => other.to_string(),
    }
}

/// A query that only reads: no data-modifying statement inside it (`WITH x AS (INSERT ...)`),
/// no `SELECT ... INTO`, and no table function that could read files.
fn read_only_query(query: &Query) -> Result<(), Refusal> {
    struct Reads;
    impl Visitor for Reads {
        type Break = Refusal;

        fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<Refusal> {
            ControlFlow::Break(Refusal::read_only(format!("{} inside a query is not allowed", kind(statement))))
        }

        fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<Refusal> {
            match &select.into {
                Some(_) => ControlFlow::Break(Refusal::read_only("SELECT ... INTO would create a table")),
                None => ControlFlow::Continue(()),
            }
        }

        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<Refusal> {
            let function = match factor {
                TableFactor::Table { name, args: Some(_), .. } | TableFactor::Function { name, .. } => name,
                TableFactor::TableFunction { .. } => {
                    return ControlFlow::Break(Refusal::read_only("TABLE(...) functions are not allowed"));
                }
                _ => return ControlFlow::Continue(()),
            };
            let short = function.0.last().map(|p| p.to_string().to_lowercase()).unwrap_or_default();
            if TABLE_FUNCTIONS.contains(&short.trim_matches('"')) {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(Refusal::read_only(format!("table function {function} is not allowed")))
            }
        }
    }
    match query.visit(&mut Reads) {
        ControlFlow::Break(r) => Err(r),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// The plan check, on a plan made exactly as it will be run.
fn verify(plan: datafusion::error::Result<datafusion::logical_expr::LogicalPlan>) -> Result<(), Refusal> {
    // Fail closed: what does not plan here would not run either, and must not be let through.
    let plan = plan.map_err(|e| Refusal { code: "42000", message: e.to_string() })?;
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(Refusal::read_only)
}

/// Both checks for a statement of the simple protocol, which datafusion-postgres runs from its
/// text (`statement.to_string()` planned by `SessionContext::sql`), and for cursor queries.
pub(super) async fn check_simple(statement: &Statement, ctx: &SessionContext) -> Result<Route, Refusal> {
    let route = classify(statement)?;
    match &route {
        Route::Plan => verify(ctx.state().create_logical_plan(&statement.to_string()).await)?,
        Route::Declare(queries) => check_cursors(queries, ctx).await?,
        Route::Hook | Route::Reset(_) => {}
    }
    Ok(route)
}

/// datafusion-postgres runs a declared cursor's query from its text, over either protocol.
async fn check_cursors(queries: &[Query], ctx: &SessionContext) -> Result<(), Refusal> {
    for q in queries {
        verify(ctx.state().create_logical_plan(&q.to_string()).await)?;
    }
    Ok(())
}

/// Both checks for a Parse, which datafusion-postgres plans from the AST; its cursors it runs
/// from their text, as the simple protocol does.
async fn check_extended(statement: &Statement, ctx: &SessionContext) -> Result<Route, Refusal> {
    let route = classify(statement)?;
    match &route {
        Route::Plan => {
            verify(ctx.state().statement_to_plan(DfStatement::Statement(Box::new(statement.clone()))).await)?
        }
        Route::Declare(queries) => check_cursors(queries, ctx).await?,
        Route::Reset(_) => {
            return Err(Refusal { code: "0A000", message: "send RESET as a simple query, not a prepared one".into() });
        }
        Route::Hook => {}
    }
    Ok(route)
}

fn syntax(e: impl std::fmt::Display) -> PgWireError {
    error("42601", e.to_string())
}

/// The statement's time limit: the server's, or the client's `SET statement_timeout` when it
/// is lower (0 means none for Postgres, so it means the server's here).
fn time_limit(client: &impl ClientInfo, cap: Duration) -> Duration {
    let asked = client.metadata().get(TIMEOUT_METADATA).and_then(|s| s.parse::<u64>().ok()).filter(|ms| *ms > 0);
    asked.map_or(cap, |ms| cap.min(Duration::from_millis(ms)))
}

fn timed_out(limit: Duration) -> PgWireError {
    error("57014", format!("canceling statement due to statement timeout ({} ms)", limit.as_millis()))
}

fn panicked(payload: &(dyn std::any::Any + Send)) -> PgWireError {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!("a query panicked ({what}); this is a bug, please report it; the server goes on");
    error(
        "XX000",
        "internal error: the query hit a bug in opslake and was stopped (the server goes on; please report it)".into(),
    )
}

/// A memory refusal gets Postgres' `out_of_memory` code and names the setting that decides
/// it: DataFusion's own advice (raise `datafusion.runtime.memory_limit`) is not the client's
/// to take.
fn classify_error(e: PgWireError) -> PgWireError {
    let text = e.to_string();
    let by_pool = text.contains("serve.query_memory_mib") || text.contains("serve.total_memory_mib");
    if !by_pool && !text.contains("Resources exhausted") && !text.contains("Not enough memory") {
        return e;
    }
    let message = if by_pool {
        text
    } else {
        format!(
            "{text} (opslake serve: the limits are serve.query_memory_mib and serve.total_memory_mib in opslake.yml)"
        )
    };
    error("53200", message)
}

/// Runs `work` with the query runtime as tokio's current one, under the statement's time
/// limit, with panics turned into errors.
async fn guarded<T>(limit: Duration, queries: &Handle, work: impl Future<Output = PgWireResult<T>>) -> PgWireResult<T> {
    let work = OnRuntime { handle: queries.clone(), inner: Box::pin(work) };
    match tokio::time::timeout(limit, AssertUnwindSafe(work).catch_unwind()).await {
        Err(_) => Err(timed_out(limit)),
        Ok(Err(payload)) => Err(panicked(payload.as_ref())),
        Ok(Ok(result)) => result.map_err(classify_error),
    }
}

/// Polls a future with `handle` entered, so the tasks DataFusion spawns while planning and
/// running land on the query runtime while the future itself stays with its connection.
struct OnRuntime<F> {
    handle: Handle,
    inner: Pin<Box<F>>,
}

impl<F: Future> Future for OnRuntime<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _entered = self.handle.enter();
        self.inner.as_mut().poll(cx)
    }
}

/// Rows are made while they are sent, after the handler returned: the time limit, panics and
/// memory errors are applied to the row stream too.
fn guard_response(response: Response, deadline: tokio::time::Instant, limit: Duration, queries: &Handle) -> Response {
    match response {
        Response::Query(q) => {
            let rows = GuardedRows {
                rows: q.data_rows,
                deadline: Box::pin(tokio::time::sleep_until(deadline)),
                limit,
                queries: queries.clone(),
                done: false,
            };
            let mut guarded = QueryResponse::new(q.row_schema, rows);
            guarded.command_tag = q.command_tag;
            Response::Query(guarded)
        }
        other => other,
    }
}

struct GuardedRows {
    rows: Pin<Box<dyn Stream<Item = PgWireResult<DataRow>> + Send>>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
    queries: Handle,
    done: bool,
}

impl GuardedRows {
    fn end(&mut self, item: Option<PgWireResult<DataRow>>) -> Poll<Option<PgWireResult<DataRow>>> {
        self.done = true;
        Poll::Ready(item)
    }
}

impl Stream for GuardedRows {
    type Item = PgWireResult<DataRow>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            let limit = self.limit;
            return self.end(Some(Err(timed_out(limit))));
        }
        let this = &mut *self;
        let _entered = this.queries.enter();
        match std::panic::catch_unwind(AssertUnwindSafe(|| this.rows.as_mut().poll_next(cx))) {
            Ok(Poll::Ready(Some(Err(e)))) => this.end(Some(Err(classify_error(e)))),
            Ok(Poll::Ready(None)) => this.end(None),
            Ok(poll) => poll,
            Err(payload) => this.end(Some(Err(panicked(payload.as_ref())))),
        }
    }
}

/// datafusion-postgres' service behind the checks: one per connection, over that connection's
/// own session.
pub(super) struct Guarded {
    inner: Arc<DfSessionService>,
    /// Also the simple protocol's: its parser and the connection's session.
    parser: Arc<GuardedParser>,
    timeout: Duration,
    queries: Handle,
}

impl Guarded {
    pub(super) fn new(inner: DfSessionService, ctx: Arc<SessionContext>, timeout: Duration, queries: Handle) -> Self {
        let inner = Arc::new(inner);
        let parser = Arc::new(GuardedParser {
            inner: ExtendedQueryHandler::query_parser(inner.as_ref()),
            ctx,
            sql: PostgresCompatibilityParser::new(),
        });
        Self { inner, parser, timeout, queries }
    }
}

#[async_trait]
impl SimpleQueryHandler for Guarded {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // The same parser datafusion-postgres uses, so the statements checked are the ones run.
        let statements = self.parser.sql.parse(query).map_err(syntax)?;
        let mut reset_of = None;
        for statement in &statements {
            if let Route::Reset(name) = check_simple(statement, &self.parser.ctx).await? {
                reset_of = Some(name);
            }
        }
        if let Some(name) = reset_of {
            if statements.len() > 1 {
                return Err(
                    Refusal { code: "0A000", message: "send RESET alone, not with other statements".into() }.into()
                );
            }
            return Ok(vec![reset(client, &name)]);
        }
        let limit = time_limit(client, self.timeout);
        let deadline = tokio::time::Instant::now() + limit;
        let responses =
            guarded(limit, &self.queries, SimpleQueryHandler::do_query(self.inner.as_ref(), client, query)).await?;
        Ok(responses.into_iter().map(|r| guard_response(r, deadline, limit, &self.queries)).collect())
    }
}

/// A client setting back to its default: datafusion-postgres reads each from the connection's
/// metadata, where its SET put it.
fn reset(client: &mut impl ClientInfo, name: &str) -> Response {
    let key = if name == "statement_timeout" { TIMEOUT_METADATA } else { name };
    client.metadata_mut().remove(key);
    Response::Execution(Tag::new("RESET"))
}

#[async_trait]
impl ExtendedQueryHandler for Guarded {
    type Statement = <DfSessionService as ExtendedQueryHandler>::Statement;
    type QueryParser = GuardedParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // Every portal comes from a Parse the parser below checked, or from a checked DECLARE.
        let limit = time_limit(client, self.timeout);
        let deadline = tokio::time::Instant::now() + limit;
        let work = ExtendedQueryHandler::do_query(self.inner.as_ref(), client, portal, max_rows);
        let response = guarded(limit, &self.queries, work).await?;
        Ok(guard_response(response, deadline, limit, &self.queries))
    }
}

/// datafusion-postgres' parser behind the checks.
pub(super) struct GuardedParser {
    inner: Arc<Parser>,
    ctx: Arc<SessionContext>,
    sql: PostgresCompatibilityParser,
}

#[async_trait]
impl QueryParser for GuardedParser {
    type Statement = <Parser as QueryParser>::Statement;

    async fn parse_sql<C>(&self, client: &C, sql: &str, types: &[Option<Type>]) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let statements = self.sql.parse(sql).map_err(syntax)?;
        // datafusion-postgres would keep the first and drop the rest unseen; Postgres refuses.
        if statements.len() > 1 {
            return Err(syntax("cannot insert multiple commands into a prepared statement"));
        }
        if let Some(statement) = statements.first() {
            check_extended(statement, &self.ctx).await?;
        }
        self.inner.parse_sql(client, sql, types).await
    }

    fn get_parameter_types(&self, statement: &Self::Statement) -> PgWireResult<Vec<Type>> {
        self.inner.get_parameter_types(statement)
    }

    fn get_result_schema(&self, statement: &Self::Statement, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        self.inner.get_result_schema(statement, format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sql: &str) -> Vec<Statement> {
        PostgresCompatibilityParser::new().parse(sql).expect("parses")
    }

    fn refused(sql: &str) -> Refusal {
        let statements = parse(sql);
        assert_eq!(statements.len(), 1, "{sql}");
        classify(&statements[0]).expect_err(sql)
    }

    #[test]
    fn writes_anywhere_in_a_statement_are_refused_with_25006() {
        for sql in [
            "INSERT INTO t SELECT * FROM t",
            "UPDATE t SET a = 1",
            "DELETE FROM t",
            "TRUNCATE t",
            "MERGE INTO t USING u ON t.a = u.a WHEN MATCHED THEN DELETE",
            "COPY (SELECT 1 AS x) TO 'x.csv'",
            "COPY t TO '/tmp/x.csv'",
            "CREATE TABLE x AS SELECT 1",
            "CREATE VIEW v AS SELECT 1",
            "DROP TABLE t",
            "ALTER TABLE t ADD COLUMN b INT",
            "CREATE SCHEMA s",
            "WITH w AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM w",
            "SELECT * INTO newtable FROM t",
            "DECLARE c CURSOR FOR INSERT INTO t SELECT * FROM t",
            "EXPLAIN ANALYZE INSERT INTO t VALUES (1)",
            "EXPLAIN (ANALYZE true) DELETE FROM t",
            "PREPARE p AS INSERT INTO t VALUES (1)",
            "SELECT * FROM read_parquet('/etc/passwd')",
            "SELECT * FROM TABLE(read_csv('/etc/passwd'))",
        ] {
            let r = refused(sql);
            assert_eq!(r.code, "25006", "{sql}: {r:?}");
            assert!(r.message.starts_with("opslake serve is read-only"), "{sql}: {r:?}");
        }
    }

    #[test]
    fn server_settings_are_refused_with_42501_and_client_settings_pass() {
        for sql in [
            "SET datafusion.execution.batch_size = 1",
            "SET datafusion.runtime.memory_limit = '100G'",
            "SET ROLE admin",
            "SET SESSION AUTHORIZATION admin",
            "RESET ALL",
            "RESET datafusion.execution.batch_size",
        ] {
            assert_eq!(refused(sql).code, "42501", "{sql}");
        }
        assert_eq!(refused("SET client_encoding = 'LATIN1'").code, "0A000");
        for sql in [
            "SET application_name = 'PostgreSQL JDBC Driver'",
            "SET extra_float_digits = 3",
            "SET client_encoding = 'UTF8'",
            "SET DateStyle = 'ISO, MDY'",
            "SET search_path TO public",
            "SET statement_timeout = 5000",
            "SET TIME ZONE 'UTC'",
            "SET timezone = 'Europe/Paris'",
            "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
            "SHOW transaction_isolation",
            "BEGIN",
            "COMMIT",
            "ROLLBACK",
            "FETCH ALL FROM c",
            "CLOSE c",
        ] {
            assert_eq!(classify(&parse(sql)[0]), Ok(Route::Hook), "{sql}");
        }
        assert_eq!(classify(&parse("RESET search_path")[0]), Ok(Route::Reset("search_path".into())));
    }

    #[test]
    fn reads_pass_the_kind_check() {
        for sql in [
            "SELECT 1",
            "WITH a AS (SELECT 1 AS x) SELECT x FROM a",
            "VALUES (1), (2)",
            "SELECT * FROM generate_series(1, 3)",
            "SELECT * FROM crm.people p JOIN finance.payments f ON p.email = f.customer_email",
            "EXPLAIN SELECT 1",
            "EXPLAIN ANALYZE SELECT 1",
            "SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE n.nspname !~ '^pg_'",
        ] {
            assert_eq!(classify(&parse(sql)[0]), Ok(Route::Plan), "{sql}");
        }
        let declared = classify(&parse("DECLARE c CURSOR FOR SELECT 1")[0]).expect("a read-only cursor");
        assert!(matches!(declared, Route::Declare(q) if q.len() == 1));
    }

    /// The plan check catches what the kind check cannot see: a statement DataFusion's own
    /// parser reads differently, or one that does not plan at all.
    #[tokio::test]
    async fn the_plan_check_refuses_writes_and_fails_closed() {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t AS VALUES (1)").await.expect("plans").collect().await.expect("creates");
        for (sql, code) in [("SELECT * FROM t", None), ("SELECT * FROM nowhere", Some("42000"))] {
            let got = check_simple(&parse(sql)[0], &ctx).await.err().map(|r| r.code);
            assert_eq!(got, code, "{sql}");
        }
        // A plan that writes is refused whatever let it through the kind check.
        let plan = ctx.state().create_logical_plan("INSERT INTO t VALUES (2)").await;
        assert_eq!(verify(plan).expect_err("DML").code, "25006");
        let plan = ctx.state().create_logical_plan("COPY t TO 'x.csv'").await;
        assert_eq!(verify(plan).expect_err("COPY").code, "25006");
        assert!(!std::path::Path::new("x.csv").exists());
    }
}
