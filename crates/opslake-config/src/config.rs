//! The project config, `opslake.yml`: where the lake is, which exports to read, and how to
//! report. Parsed strictly (unknown keys are errors), then validated as a whole.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use crate::location::StorageLocation;
use opslake_schema::diag::{Problem, is_snake_case, parse_yaml};

/// File name of the project config.
pub const CONFIG_FILE: &str = "opslake.yml";

/// `opslake.yml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct ProjectConfig {
    /// Where the lake lives: a local directory (relative to the project) or an `s3://`,
    /// `gs://` or `az://` URL. Default `./lake`. `--lake` on the command line overrides it.
    #[serde(default = "default_lake")]
    pub lake: Spanned<String>,
    /// ISO 4217 currency marts report money in. Default USD.
    #[serde(default = "default_currency")]
    pub reporting_currency: Spanned<String>,
    /// IANA time zone marts bucket days and months in. Default UTC.
    #[serde(default = "default_timezone")]
    pub reporting_timezone: Spanned<String>,
    /// Month the fiscal year starts in, 1 (January) to 12. Default 1.
    #[serde(default = "default_fiscal_month")]
    pub fiscal_year_start_month: Spanned<u32>,
    /// Share of rows that may be rejected before a run fails, 0 to 1. Default 0.01.
    #[serde(default = "default_max_reject_ratio")]
    pub max_reject_ratio: Spanned<f64>,
    /// The share of its rows a re-export of a file loaded before may lose (rows that would be
    /// flagged deleted) before it is refused as a likely truncated download. Default 0.1;
    /// `--allow-shrink` loads such a file anyway.
    #[serde(default = "default_max_shrink_ratio")]
    pub max_shrink_ratio: Spanned<f64>,
    /// What a file whose layout drifted from its connection's accepted layout does, unless
    /// the connection says otherwise.
    #[serde(default)]
    pub schema_drift: SchemaDrift,
    /// The exports to read, one entry per connected tool account.
    #[serde(default)]
    pub connections: Vec<Connection>,
    /// What happens to personal data before it is written (see [`crate::privacy`]).
    #[serde(default)]
    pub personal_data: crate::privacy::PersonalData,
    /// Where `opslake run` publishes a Parquet snapshot after a clean build; no snapshot when
    /// absent.
    #[serde(default)]
    pub publish: Option<PublishConfig>,
    /// How `opslake serve` listens and whom it lets in.
    #[serde(default)]
    pub serve: ServeConfig,
}

/// `schema_drift:`: how files whose layout changed are treated (see [`DriftPolicy`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct SchemaDrift {
    /// `evolve`, `freeze` or `quarantine`, for every connection that does not name its own.
    /// Default evolve.
    #[serde(default = "default_drift_policy")]
    pub policy: Spanned<String>,
    /// The share of a mapped column's values that may fail to parse (and be nulled) in one
    /// file before it is a drift event. Default 0.2.
    #[serde(default = "default_max_nulled_ratio")]
    pub max_nulled_ratio: Spanned<f64>,
}

impl Default for SchemaDrift {
    fn default() -> Self {
        Self { policy: default_drift_policy(), max_nulled_ratio: default_max_nulled_ratio() }
    }
}

/// What becomes of a file whose layout drifted from the accepted layout of its connection and
/// shape: a mapped column missing or renamed, or a new column. Whatever the policy, each such
/// change is a warning and a row in `_drift`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DriftPolicy {
    /// The file loads; new columns go to custom_fields and join the accepted layout, a missing
    /// mapped column is warned of on every file until the layout is accepted.
    #[default]
    Evolve,
    /// The file fails (exit 5) until its layout is accepted.
    Freeze,
    /// The file is held, not loaded, and read again each run until its layout is accepted.
    Quarantine,
}

impl DriftPolicy {
    /// The policy `name` names.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "evolve" => Ok(Self::Evolve),
            "freeze" => Ok(Self::Freeze),
            "quarantine" => Ok(Self::Quarantine),
            other => Err(format!("schema_drift must be evolve, freeze or quarantine, not '{other}'")),
        }
    }

    /// Its name in opslake.yml and the run records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Evolve => "evolve",
            Self::Freeze => "freeze",
            Self::Quarantine => "quarantine",
        }
    }
}

/// `publish:`: the snapshot `opslake run` writes for BI tools.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct PublishConfig {
    /// A local directory (relative to the project) or an object-store URL.
    pub out: Spanned<String>,
}

/// `serve:`: the Postgres wire protocol endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct ServeConfig {
    /// Address and port to listen on. Default `127.0.0.1:5433`: loopback only.
    #[serde(default = "default_listen")]
    pub listen: Spanned<String>,
    /// Who may connect. More users come from `OPSLAKE_SERVE_USER` and
    /// `OPSLAKE_SERVE_PASSWORD_HASH`; with none, `serve` refuses to start.
    #[serde(default)]
    pub users: Vec<ServeUser>,
    /// A certificate to offer TLS with; `serve` refuses to start when it cannot be loaded.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Connections served at once; the one over it is refused with SQLSTATE 53300. Default 64.
    #[serde(default = "default_max_connections")]
    pub max_connections: Spanned<u32>,
    /// Seconds a statement may run, rows sent included; a client's `SET statement_timeout`
    /// can only lower it. Default 300.
    #[serde(default = "default_statement_timeout")]
    pub statement_timeout_seconds: Spanned<u64>,
    /// MiB of working memory one connection's query may hold (joins, sorts, aggregates); a
    /// query over it fails with SQLSTATE 53200 and the server goes on. Default 512.
    #[serde(default = "default_query_memory")]
    pub query_memory_mib: Spanned<u64>,
    /// MiB of working memory all queries together may hold. Default 2048.
    #[serde(default = "default_total_memory")]
    pub total_memory_mib: Spanned<u64>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            users: Vec::new(),
            tls: None,
            max_connections: default_max_connections(),
            statement_timeout_seconds: default_statement_timeout(),
            query_memory_mib: default_query_memory(),
            total_memory_mib: default_total_memory(),
        }
    }
}

/// One user of `opslake serve`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct ServeUser {
    /// The user name clients log in with.
    pub name: Spanned<String>,
    /// The SCRAM-SHA-256 secret `opslake serve --hash-password` prints; never the password.
    /// Written here, it is in every copy of the file: prefer `password_hash_env` or
    /// `password_hash_file` (`opslake validate` warns when the file is tracked by git).
    #[serde(default)]
    pub password_hash: Option<Spanned<String>>,
    /// The environment variable that holds the secret.
    #[serde(default)]
    pub password_hash_env: Option<Spanned<String>>,
    /// A file that holds the secret (a mounted secret, say), relative to the project.
    #[serde(default)]
    pub password_hash_file: Option<Spanned<String>>,
}

/// Where a serve user's secret is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretSource<'a> {
    /// In opslake.yml itself.
    Inline(&'a str),
    /// In the environment variable of that name.
    Env(&'a str),
    /// In the file at that path, relative to the project.
    File(&'a str),
}

impl ServeUser {
    /// The one place the secret is kept, or a message when there is none or more than one.
    pub fn secret_source(&self) -> Result<SecretSource<'_>, String> {
        let sources: Vec<SecretSource<'_>> = [
            self.password_hash.as_ref().map(|v| SecretSource::Inline(&v.value)),
            self.password_hash_env.as_ref().map(|v| SecretSource::Env(&v.value)),
            self.password_hash_file.as_ref().map(|v| SecretSource::File(&v.value)),
        ]
        .into_iter()
        .flatten()
        .collect();
        match sources.as_slice() {
            [one] => Ok(*one),
            [] => Err("needs password_hash_env, password_hash_file or password_hash".into()),
            _ => Err("has more than one of password_hash, password_hash_env and password_hash_file".into()),
        }
    }
}

/// A PEM certificate chain and its private key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct TlsConfig {
    /// Certificate chain, PEM, relative to the project.
    pub cert: Spanned<String>,
    /// Private key (PKCS#8, PKCS#1 or SEC1), PEM, relative to the project.
    pub key: Spanned<String>,
    /// Refuse clients that do not ask for TLS, instead of serving them in plaintext.
    #[serde(default)]
    pub required: bool,
}

/// One connected tool: where its exports are and how to read them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct Connection {
    /// Unique snake_case name; lands in every row as `source_connection`.
    pub name: Spanned<String>,
    /// The tool, as named by a file in schemas/tools (salesforce, hubspot, stripe, ...).
    pub tool: Spanned<String>,
    /// A file, a directory, a glob (`exports/sf/*.csv`) or an object-store URL.
    pub path: Spanned<String>,
    /// Settings that differ for this connection from the tool file's.
    #[serde(default)]
    pub options: ConnectionOptions,
}

impl ProjectConfig {
    /// The schema drift policy of `connection`: its own, else the project's.
    pub fn drift_policy(&self, connection: &Connection) -> Result<DriftPolicy, String> {
        match &connection.options.schema_drift {
            Some(own) => {
                DriftPolicy::parse(&own.value).map_err(|e| format!("connection '{}': {e}", connection.name.value))
            }
            None => self.default_drift_policy(),
        }
    }

    /// The project's drift policy (`schema_drift.policy`): that of `--path` files, and of
    /// every connection that sets none of its own.
    pub fn default_drift_policy(&self) -> Result<DriftPolicy, String> {
        DriftPolicy::parse(&self.schema_drift.policy.value).map_err(|e| format!("{e} (schema_drift.policy)"))
    }
}

/// Per-connection overrides of a tool's reading rules.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct ConnectionOptions {
    /// IANA time zone of the exports' timestamps written without offset (a HubSpot portal's
    /// zone, say), instead of the tool file's.
    #[serde(default)]
    pub timezone: Option<Spanned<String>>,
    /// Order of all-numeric dates such as 2/5/24: `mdy` or `dmy`, instead of the tool file's.
    #[serde(default)]
    pub date_order: Option<Spanned<String>>,
    /// The account's home currency (ISO 4217), for exports that leave the currency out of
    /// records in it (QuickBooks Online, Xero, Salesforce and HubSpot accounts with one
    /// currency); `reporting_currency` when absent.
    #[serde(default)]
    pub currency: Option<Spanned<String>>,
    /// The encoding of the exports (a WHATWG label: `windows-1250`, `shift_jis`, `utf-16le`),
    /// instead of detecting it from their bytes.
    #[serde(default)]
    pub encoding: Option<Spanned<String>>,
    /// The decimal mark of the exports' numbers: `.` or `,` (`1.234,56` in a German export).
    #[serde(default)]
    pub decimal_separator: Option<Spanned<String>>,
    /// The thousands separator of the exports' numbers: `,` `.` `'` `_`, a space, a no-break
    /// or a narrow no-break space; any of these but the decimal mark when absent.
    #[serde(default)]
    pub thousands_separator: Option<Spanned<String>>,
    /// This connection's schema drift policy: `evolve`, `freeze` or `quarantine`, instead of
    /// `schema_drift.policy`.
    #[serde(default)]
    pub schema_drift: Option<Spanned<String>>,
}

/// The decimal mark and thousands separator a tool file or a connection declares, checked:
/// each one character, the mark `.` or `,`, the separator a grouping character that is not it.
pub fn number_separators(decimal: Option<&str>, thousands: Option<&str>) -> Result<(char, Option<char>), String> {
    let one = |what: &str, v: &str| {
        let mut chars = v.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => Ok(c),
            _ => Err(format!("{what} must be one character, not '{v}'")),
        }
    };
    let decimal = decimal.map(|d| one("decimal_separator", d)).transpose()?.unwrap_or('.');
    if !matches!(decimal, '.' | ',') {
        return Err(format!("decimal_separator must be '.' or ',', not '{decimal}'"));
    }
    let thousands = thousands.map(|t| one("thousands_separator", t)).transpose()?;
    if let Some(t) = thousands {
        if t == decimal {
            return Err(format!("thousands_separator and decimal_separator are both '{t}'"));
        }
        if !matches!(t, ',' | '.' | '\'' | '_' | ' ' | '\u{a0}' | '\u{202f}') {
            return Err(format!("thousands_separator must be one of , . ' _ or a space, not '{t}'"));
        }
    }
    Ok((decimal, thousands))
}

fn spanned<T>(value: T) -> Spanned<T> {
    Spanned::new(value, Location::UNKNOWN, Location::UNKNOWN)
}
fn default_lake() -> Spanned<String> {
    spanned("./lake".to_string())
}
fn default_currency() -> Spanned<String> {
    spanned("USD".to_string())
}
fn default_timezone() -> Spanned<String> {
    spanned("UTC".to_string())
}
fn default_fiscal_month() -> Spanned<u32> {
    spanned(1)
}
fn default_max_reject_ratio() -> Spanned<f64> {
    spanned(0.01)
}
/// The default of `max_shrink_ratio`.
pub const DEFAULT_MAX_SHRINK_RATIO: f64 = 0.1;
fn default_max_shrink_ratio() -> Spanned<f64> {
    spanned(DEFAULT_MAX_SHRINK_RATIO)
}
fn default_drift_policy() -> Spanned<String> {
    spanned("evolve".to_string())
}
/// The default of `schema_drift.max_nulled_ratio`.
pub const DEFAULT_MAX_NULLED_RATIO: f64 = 0.2;
fn default_max_nulled_ratio() -> Spanned<f64> {
    spanned(DEFAULT_MAX_NULLED_RATIO)
}
fn default_listen() -> Spanned<String> {
    spanned("127.0.0.1:5433".to_string())
}
fn default_max_connections() -> Spanned<u32> {
    spanned(64)
}
fn default_statement_timeout() -> Spanned<u64> {
    spanned(300)
}
fn default_query_memory() -> Spanned<u64> {
    spanned(512)
}
fn default_total_memory() -> Spanned<u64> {
    spanned(2048)
}

impl Default for ProjectConfig {
    fn default() -> Self {
        Self {
            lake: default_lake(),
            reporting_currency: default_currency(),
            reporting_timezone: default_timezone(),
            fiscal_year_start_month: default_fiscal_month(),
            max_reject_ratio: default_max_reject_ratio(),
            max_shrink_ratio: default_max_shrink_ratio(),
            schema_drift: SchemaDrift::default(),
            connections: Vec::new(),
            personal_data: crate::privacy::PersonalData::default(),
            publish: None,
            serve: ServeConfig::default(),
        }
    }
}

impl ProjectConfig {
    /// Parses `text` read from `file`; a syntax error or unknown key is one problem.
    pub fn parse(file: &str, text: &str) -> Result<Self, Problem> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        parse_yaml(file, text)
    }

    /// Every problem in the parsed config. `known_tools` are the tools a connection may name.
    pub fn validate(&self, file: &str, known_tools: &BTreeSet<String>) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let Err(msg) = StorageLocation::parse(&self.lake.value) {
            problems.push(Problem::at(file, &self.lake, format!("lake {msg}")));
        }
        let currency = &self.reporting_currency;
        if iso_currency::Currency::from_code(&currency.value).is_none() {
            problems.push(Problem::at(
                file,
                currency,
                format!("reporting_currency '{}' is not an ISO 4217 code (USD, EUR, GBP, ...)", currency.value),
            ));
        }
        let tz = &self.reporting_timezone;
        if tz.value.parse::<chrono_tz::Tz>().is_err() {
            problems.push(Problem::at(
                file,
                tz,
                format!(
                    "reporting_timezone '{}' is not an IANA time zone (UTC, Europe/Paris, America/New_York, ...)",
                    tz.value
                ),
            ));
        }
        let month = &self.fiscal_year_start_month;
        if !(1..=12).contains(&month.value) {
            problems.push(Problem::at(file, month, format!("fiscal_year_start_month {} must be 1 to 12", month.value)));
        }
        for (name, ratio) in [
            ("max_reject_ratio", &self.max_reject_ratio),
            ("max_shrink_ratio", &self.max_shrink_ratio),
            ("schema_drift.max_nulled_ratio", &self.schema_drift.max_nulled_ratio),
        ] {
            if !(0.0..=1.0).contains(&ratio.value) {
                problems.push(Problem::at(file, ratio, format!("{name} {} must be between 0 and 1", ratio.value)));
            }
        }
        if let Some(publish) = &self.publish
            && let Err(msg) = StorageLocation::parse(&publish.out.value)
        {
            problems.push(Problem::at(file, &publish.out, format!("publish.out {msg}")));
        }
        let listen = &self.serve.listen;
        if listen.value.parse::<std::net::SocketAddr>().is_err() {
            problems.push(Problem::at(
                file,
                listen,
                format!("serve.listen '{}' is not an address and port (127.0.0.1:5433, [::1]:5433)", listen.value),
            ));
        }
        let serve = &self.serve;
        if serve.max_connections.value == 0 {
            problems.push(Problem::at(file, &serve.max_connections, "serve.max_connections must be at least 1"));
        }
        if serve.statement_timeout_seconds.value == 0 {
            problems.push(Problem::at(
                file,
                &serve.statement_timeout_seconds,
                "serve.statement_timeout_seconds must be at least 1",
            ));
        }
        if serve.query_memory_mib.value < 16 {
            problems.push(Problem::at(file, &serve.query_memory_mib, "serve.query_memory_mib must be at least 16"));
        }
        if serve.total_memory_mib.value < serve.query_memory_mib.value {
            problems.push(Problem::at(
                file,
                &serve.total_memory_mib,
                format!(
                    "serve.total_memory_mib {} is less than serve.query_memory_mib {}",
                    serve.total_memory_mib.value, serve.query_memory_mib.value
                ),
            ));
        }
        let mut users: BTreeMap<&str, u64> = BTreeMap::new();
        for u in &self.serve.users {
            if let Some(line) = users.insert(&u.name.value, u.name.referenced.line()) {
                problems.push(Problem::at(
                    file,
                    &u.name,
                    format!("serve user '{}' is already defined on line {line}", u.name.value),
                ));
            }
            match u.secret_source() {
                Err(msg) => problems.push(Problem::at(file, &u.name, format!("serve user '{}' {msg}", u.name.value))),
                Ok(SecretSource::Inline(text)) => {
                    if let (Err(msg), Some(hash)) = (crate::scram::ScramSecret::parse(text), &u.password_hash) {
                        problems.push(Problem::at(
                            file,
                            hash,
                            format!("serve user '{}': password_hash {msg}", u.name.value),
                        ));
                    }
                }
                // Read where serve runs, which may not be where validate does.
                Ok(SecretSource::Env(_) | SecretSource::File(_)) => {}
            }
        }
        if let Err(msg) = DriftPolicy::parse(&self.schema_drift.policy.value) {
            problems.push(Problem::at(file, &self.schema_drift.policy, format!("{msg} (schema_drift.policy)")));
        }
        let mut names: BTreeMap<&str, u64> = BTreeMap::new();
        for c in &self.connections {
            let name = c.name.value.as_str();
            if !is_snake_case(name) {
                problems.push(Problem::at(
                    file,
                    &c.name,
                    format!("connection name '{name}' must be snake_case ([a-z][a-z0-9_]*)"),
                ));
            }
            if let Some(line) = names.insert(name, c.name.referenced.line()) {
                problems.push(Problem::at(
                    file,
                    &c.name,
                    format!("connection '{name}' is already defined on line {line}"),
                ));
            }
            if !known_tools.contains(&c.tool.value) {
                let known = if known_tools.is_empty() {
                    "none are installed".to_string()
                } else {
                    known_tools.iter().cloned().collect::<Vec<_>>().join(", ")
                };
                problems.push(Problem::at(
                    file,
                    &c.tool,
                    format!("connection '{name}': unknown tool '{}'; known tools: {known}", c.tool.value),
                ));
            }
            if let Err(msg) = StorageLocation::parse(&c.path.value) {
                problems.push(Problem::at(file, &c.path, format!("connection '{name}': path {msg}")));
            }
            if let Some(tz) = &c.options.timezone
                && tz.value.parse::<chrono_tz::Tz>().is_err()
            {
                problems.push(Problem::at(
                    file,
                    tz,
                    format!("connection '{name}': timezone '{}' is not an IANA time zone", tz.value),
                ));
            }
            if let Some(cur) = &c.options.currency
                && iso_currency::Currency::from_code(&cur.value).is_none()
            {
                problems.push(Problem::at(
                    file,
                    cur,
                    format!("connection '{name}': currency '{}' is not an ISO 4217 code", cur.value),
                ));
            }
            if let Err(message) = number_separators(
                c.options.decimal_separator.as_ref().map(|d| d.value.as_str()),
                c.options.thousands_separator.as_ref().map(|t| t.value.as_str()),
            ) {
                let at = c.options.decimal_separator.as_ref().or(c.options.thousands_separator.as_ref());
                problems.push(match at {
                    Some(at) => Problem::at(file, at, format!("connection '{name}': {message}")),
                    None => Problem::in_file(file, format!("connection '{name}': {message}")),
                });
            }
            if let Some(enc) = &c.options.encoding
                && encoding_rs::Encoding::for_label(enc.value.trim().as_bytes()).is_none()
            {
                problems.push(Problem::at(
                    file,
                    enc,
                    format!(
                        "connection '{name}': unknown encoding '{}' (utf-8, windows-1250, shift_jis, utf-16le, ...)",
                        enc.value
                    ),
                ));
            }
            if let Some(policy) = &c.options.schema_drift
                && let Err(msg) = DriftPolicy::parse(&policy.value)
            {
                problems.push(Problem::at(file, policy, format!("connection '{name}': {msg}")));
            }
            if let Some(order) = &c.options.date_order
                && !matches!(order.value.as_str(), "mdy" | "dmy")
            {
                problems.push(Problem::at(
                    file,
                    order,
                    format!("connection '{name}': date_order must be mdy or dmy, not '{}'", order.value),
                ));
            }
        }
        problems
    }
}

/// A project on disk: its directory and, when it has one, its parsed config.
#[derive(Debug, Clone)]
pub struct Project {
    /// The directory holding opslake.yml and pipelines/.
    pub dir: PathBuf,
    /// The config file, when the project has one.
    pub config_file: Option<PathBuf>,
    /// The parsed config (defaults when there is no file).
    pub config: ProjectConfig,
}

impl Project {
    /// Opens the project whose config is `config_file`; `None` for the defaults in `dir`.
    pub fn open(dir: &Path, config_file: Option<&Path>) -> Result<Self, ProjectError> {
        let Some(file) = config_file else {
            return Ok(Self { dir: dir.to_path_buf(), config_file: None, config: ProjectConfig::default() });
        };
        let text =
            std::fs::read_to_string(file).map_err(|source| ProjectError::Io { path: file.to_path_buf(), source })?;
        let config = ProjectConfig::parse(&file.display().to_string(), &text).map_err(ProjectError::Parse)?;
        let dir = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
        Ok(Self { dir, config_file: Some(file.to_path_buf()), config })
    }

    /// The lake location: `lake_override` (from `--lake`) if given, else the config's; a
    /// relative local path is taken relative to the project directory.
    pub fn lake(&self, lake_override: Option<&str>) -> Result<StorageLocation, String> {
        let raw = lake_override.unwrap_or(&self.config.lake.value);
        match StorageLocation::parse(raw)? {
            StorageLocation::Local(p) if p.is_relative() && lake_override.is_none() => {
                // `./lake` under `acme/` reads better as `acme/lake` than `acme/./lake`.
                let rel: PathBuf = p.components().filter(|c| !matches!(c, std::path::Component::CurDir)).collect();
                Ok(StorageLocation::Local(self.dir.join(rel)))
            }
            other => Ok(other),
        }
    }

    /// Where `opslake run` publishes: `publish.out`, a relative local path taken relative to
    /// the project directory. `None` when the config has no `publish`.
    pub fn publish_location(&self) -> Option<Result<StorageLocation, String>> {
        let out = &self.config.publish.as_ref()?.out.value;
        Some(StorageLocation::parse(out).map(|loc| match loc {
            StorageLocation::Local(p) if p.is_relative() => StorageLocation::Local(self.dir.join(p)),
            other => other,
        }))
    }

    /// A path of the config (a TLS certificate, say) relative to the project directory.
    pub fn path(&self, value: &str) -> PathBuf {
        self.dir.join(value)
    }

    /// The text of a secret kept where `source` says, and where it came from as messages name
    /// it: `field`, `<field>_env <VAR>` or `<field>_file <path>`, `field` being the config key
    /// of its inline form (`password_hash`, `personal_data.key`). An error names where the
    /// secret was looked for, never what it holds.
    pub fn read_secret(&self, field: &str, source: SecretSource<'_>) -> Result<(String, String), String> {
        match source {
            SecretSource::Inline(text) => Ok((text.to_string(), field.to_string())),
            SecretSource::Env(var) => {
                let from = format!("{field}_env {var}");
                match std::env::var(var) {
                    Ok(text) => Ok((text, from)),
                    Err(_) => Err(format!("{from} is not set")),
                }
            }
            SecretSource::File(file) => {
                let path = self.path(file);
                let from = format!("{field}_file {}", path.display());
                match std::fs::read_to_string(&path) {
                    Ok(text) => Ok((text.trim().to_string(), from)),
                    Err(e) => Err(format!("{from}: {e}")),
                }
            }
        }
    }
}

/// Why a project could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// The config file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The config file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The config file is not valid YAML or has unknown keys.
    #[error("{0}")]
    Parse(Problem),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools() -> BTreeSet<String> {
        ["salesforce".to_string()].into()
    }

    #[test]
    fn defaults_apply_to_an_empty_file() {
        let config = ProjectConfig::parse("opslake.yml", "").expect("empty is fine");
        assert_eq!(config.lake.value, "./lake");
        assert_eq!(config.reporting_currency.value, "USD");
        assert_eq!(config.reporting_timezone.value, "UTC");
        assert_eq!(config.fiscal_year_start_month.value, 1);
        assert!(config.validate("opslake.yml", &tools()).is_empty());
    }

    #[test]
    fn unknown_keys_are_errors_with_a_line() {
        let err = ProjectConfig::parse("opslake.yml", "lake: ./lake\nreporting_curency: EUR\n").expect_err("typo");
        assert_eq!(err.line, 2);
        assert!(err.message.contains("reporting_curency"), "{err}");
    }

    #[test]
    fn reports_every_problem_with_its_line() {
        let text = "reporting_currency: EURO\nreporting_timezone: Mars/Olympus\nfiscal_year_start_month: 13\nconnections:\n  - {name: sf, tool: salesforce, path: ./x}\n  - {name: sf, tool: sugarcrm, path: 'ftp://h/x'}\n";
        let config = ProjectConfig::parse("opslake.yml", text).expect("parses");
        let problems = config.validate("opslake.yml", &tools());
        let lines: Vec<u64> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [1, 2, 3, 6, 6, 6], "{problems:#?}");
        let text = problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
        assert!(text.contains("already defined on line 5"), "{text}");
        assert!(text.contains("unknown tool 'sugarcrm'; known tools: salesforce"), "{text}");
        assert!(text.contains("unsupported scheme 'ftp'"), "{text}");
    }

    #[test]
    fn a_drift_policy_is_checked_where_it_is_set_and_a_connections_own_wins() {
        let text = "schema_drift: {policy: strict, max_nulled_ratio: 1.5}\nconnections:\n  - {name: sf, tool: salesforce, path: ./x, options: {schema_drift: frozen}}\n  - {name: hs, tool: salesforce, path: ./y, options: {schema_drift: quarantine}}\n";
        let config = ProjectConfig::parse("opslake.yml", text).expect("parses");
        let problems = config.validate("opslake.yml", &tools());
        let said: Vec<(u64, bool)> =
            problems.iter().map(|p| (p.line, p.message.contains("evolve, freeze or quarantine"))).collect();
        assert_eq!(said, [(1, false), (1, true), (3, true)], "{problems:#?}");
        assert!(problems[0].message.contains("schema_drift.max_nulled_ratio 1.5"), "{problems:#?}");
        assert_eq!(config.drift_policy(&config.connections[1]), Ok(DriftPolicy::Quarantine));
        assert!(config.drift_policy(&config.connections[0]).is_err_and(|e| e.contains("connection 'sf'")));
        let plain = ProjectConfig::parse("opslake.yml", "connections:\n  - {name: sf, tool: salesforce, path: ./x}\n")
            .expect("parses");
        assert_eq!(plain.drift_policy(&plain.connections[0]), Ok(DriftPolicy::Evolve));
    }

    #[test]
    fn lake_override_wins_and_relative_paths_follow_the_project() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join(CONFIG_FILE);
        std::fs::write(&file, "lake: data/lake\n").expect("write");
        let project = Project::open(dir.path(), Some(&file)).expect("opens");
        assert_eq!(project.lake(None), Ok(StorageLocation::Local(dir.path().join("data/lake"))));
        assert!(matches!(project.lake(Some("s3://b/p")), Ok(StorageLocation::ObjectStore { .. })));
    }
}
