//! opslake-schema: the only place canonical columns exist.
//!
//! `schemas/canonical/**.yaml` (compiled into the binary, see build.rs) is loaded into a
//! [`Contract`]: the envelope applied to every table, every problem reported with file and
//! line, an Arrow schema per table. Everything downstream (readers, mappings, the lake, models,
//! docs) asks this crate for tables and columns instead of spelling them. The project's own
//! settings (`opslake.yml`) are opslake-config's.

pub mod contract;
pub mod diag;
pub mod docs;
pub mod embedded;
pub mod files;
pub mod types;

use std::path::PathBuf;

pub use contract::{Column, Contract, EnvelopeRole, Table, TableId, WriteMode};
pub use diag::{ErrorClass, Problem};
pub use types::ColumnType;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Files the user wrote are invalid; every problem is listed.
    #[error("{} problem(s):\n{}", problems.len(), diag::format_problems(problems))]
    Invalid {
        /// What is wrong, where.
        problems: Vec<Problem>,
    },
    /// A file or directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// What was being read.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The contract compiled into the binary does not validate.
    #[error(
        "the canonical contract built into opslake is invalid; this is a bug:\n{}",
        diag::format_problems(problems)
    )]
    EmbeddedContract {
        /// What is wrong, where.
        problems: Vec<Problem>,
    },
}

impl Error {
    /// Who must act.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Invalid { .. } => ErrorClass::User,
            Self::Io { .. } => ErrorClass::External,
            Self::EmbeddedContract { .. } => ErrorClass::Internal,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
