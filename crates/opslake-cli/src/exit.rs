//! Exit codes, by who must act. A scheduler can branch on them; the README lists them.

use std::fmt;
use std::path::Path;

use opslake_schema::ErrorClass;

/// Success.
pub const OK: u8 = 0;
/// Bad command-line arguments (clap's own code).
pub const USAGE: u8 = 2;
/// The user's input is wrong: config, contract, pipelines, data. Fix it and rerun.
pub const USER: u8 = 3;
/// Something outside opslake failed: file system, object store, network. Retrying may help.
pub const EXTERNAL: u8 = 4;
/// The run finished but the data is not all in: a file failed, or more rows were rejected than
/// `max_reject_ratio` allows. What did land is committed; see the summary and `_rejects`.
pub const DATA: u8 = 5;
/// The data is in but a model errored or a data test (severity error) failed; see
/// `target/run_results.json` and `test_failures.<test>`.
pub const MODELS: u8 = 6;
/// opslake itself is wrong (EX_SOFTWARE). Please report it.
pub const INTERNAL: u8 = 70;
/// Another run holds the lake (EX_TEMPFAIL): nothing was done; run again later.
pub const BUSY: u8 = 75;

/// An error on its way to the terminal, with the class that picks the exit code.
#[derive(Debug)]
pub struct CliError {
    class: ErrorClass,
    error: anyhow::Error,
    /// An exit code more precise than the class's ([`DATA`], [`MODELS`]).
    code: Option<u8>,
}

impl CliError {
    /// An error of `class`.
    pub fn new(class: ErrorClass, error: impl Into<anyhow::Error>) -> Self {
        Self { class, error: error.into(), code: None }
    }

    /// A user error with a message saying what to fix.
    pub fn user(message: impl fmt::Display) -> Self {
        Self { class: ErrorClass::User, error: anyhow::anyhow!("{message}"), code: None }
    }

    /// The data did not all land (failed files, too many rejects): exit code [`DATA`].
    pub fn data(message: impl fmt::Display) -> Self {
        Self { class: ErrorClass::User, error: anyhow::anyhow!("{message}"), code: Some(DATA) }
    }

    /// A model errored or a data test failed: exit code [`MODELS`].
    pub fn models(message: impl fmt::Display) -> Self {
        Self { class: ErrorClass::User, error: anyhow::anyhow!("{message}"), code: Some(MODELS) }
    }

    /// A failed read or write of `path`.
    pub fn io(path: &Path, err: std::io::Error) -> Self {
        Self {
            class: ErrorClass::External,
            error: anyhow::anyhow!("cannot access {}: {err}", path.display()),
            code: None,
        }
    }

    /// An error from opslake-schema, classified by that crate.
    pub fn from_schema(err: opslake_schema::Error) -> Self {
        Self::new(err.class(), err)
    }

    /// An error opening the project: a config that does not parse is the user's to fix.
    pub fn from_project(err: opslake_config::ProjectError) -> Self {
        match err {
            opslake_config::ProjectError::Parse(p) => Self::user(p),
            io @ opslake_config::ProjectError::Io { .. } => Self::new(ErrorClass::External, io),
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        if let Some(code) = self.code {
            return code;
        }
        match self.class {
            ErrorClass::User => USER,
            ErrorClass::External => EXTERNAL,
            ErrorClass::Internal => INTERNAL,
            ErrorClass::Busy => BUSY,
        }
    }
}

impl CliError {
    /// This error, its message followed by later problems of the same run.
    pub fn also(self, later: &[String]) -> Self {
        if later.is_empty() {
            return self;
        }
        let error = anyhow::anyhow!("{}; then {}", self.message(), later.join("; "));
        Self { error, ..self }
    }

    /// The message, without the `error: ` the terminal gets.
    pub fn message(&self) -> String {
        format!("{:#}", self.error)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {:#}", self.error)
    }
}
