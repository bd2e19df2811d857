//! What most commands start from: the project, the contract and the lake, opened.

use opslake_config::StorageLocation;
use opslake_lake::Lake;
use opslake_schema::Contract;

use crate::{CliError, LakeArgs, ProjectArgs};

/// A project, its contract and its lake, opened.
pub(crate) struct OpenLake {
    pub project: opslake_config::Project,
    pub contract: Contract,
    pub location: StorageLocation,
    pub lake: Lake,
}

pub(crate) fn open_lake(project: &ProjectArgs, lake: &LakeArgs) -> Result<OpenLake, CliError> {
    let contract = Contract::embedded().map_err(CliError::from_schema)?;
    let project = project.open()?;
    let location = project.lake(lake.lake.as_deref()).map_err(CliError::user)?;
    let lake = Lake::open(&location).map_err(lake_err)?;
    Ok(OpenLake { project, contract, location, lake })
}

pub(crate) fn lake_err(e: opslake_lake::Error) -> CliError {
    CliError::new(e.class(), e)
}
