//! opslake-config: what a project says about itself, apart from the canonical contract.
//!
//! `opslake.yml` is parsed into [`ProjectConfig`] and validated with every problem's file, line
//! and column ([`config`]): its connections, the lake and publish locations ([`location`]),
//! serve's users and TLS (their SCRAM secrets, [`scram`]), and the personal-data policy
//! ([`privacy`]), resolved against the contract's tables.

pub mod config;
pub mod location;
pub mod privacy;
pub mod scram;

pub use config::{
    CONFIG_FILE, Connection, ConnectionOptions, DriftPolicy, Project, ProjectConfig, ProjectError, PublishConfig,
    SchemaDrift, ServeConfig, ServeUser, TlsConfig,
};
pub use location::{ObjectStoreKind, StorageLocation};
pub use privacy::{KEY_ENV, PersonalData, PersonalKey, PiiAction, Privacy};
