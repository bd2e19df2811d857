//! The lake's salt, the key of the personal-data policy's hashes: 32 random bytes made by the
//! first run that hashes and kept in the lake (`_opslake/salt`), so a value hashes alike in
//! every run and table of one lake (joins on a hashed email match) and differently in another.

use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::{Error, Lake, Result};

const SALT_PATH: &str = "_opslake/salt";

/// The lake's salt, created on first use. Two runs creating it at once agree: the create is
/// conditional, and the one that loses reads the winner's.
pub async fn salt(lake: &Lake) -> Result<Vec<u8>> {
    let path = Path::from(SALT_PATH);
    if let Some(salt) = read(lake, &path).await? {
        return Ok(salt);
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::Internal { message: format!("no randomness for the salt: {e}") })?;
    let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let opts = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
    match lake.store().put_opts(&path, PutPayload::from(text.into_bytes()), opts).await {
        Ok(_) => Ok(bytes.to_vec()),
        Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
            read(lake, &path).await?.ok_or_else(|| Error::Internal { message: "the salt vanished".into() })
        }
        Err(source) => Err(Error::Store { context: "writing the salt".into(), source }),
    }
}

async fn read(lake: &Lake, path: &Path) -> Result<Option<Vec<u8>>> {
    let bytes = match lake.store().get(path).await {
        Ok(got) => got.bytes().await.map_err(|source| Error::Store { context: "reading the salt".into(), source })?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(source) => return Err(Error::Store { context: "reading the salt".into(), source }),
    };
    let text = std::str::from_utf8(&bytes).unwrap_or_default().trim();
    let salt: Option<Vec<u8>> =
        (0..text.len()).step_by(2).map(|i| text.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect();
    match salt {
        Some(s) if s.len() >= 16 => Ok(Some(s)),
        _ => Err(Error::Location {
            message: format!("{SALT_PATH} in the lake is not a hex salt; restore it (hashes depend on it)"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opslake_schema::StorageLocation;

    #[tokio::test]
    async fn the_salt_is_made_once_and_read_after() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::open(&StorageLocation::Local(dir.path().to_path_buf())).expect("lake");
        let first = salt(&lake).await.expect("made");
        assert_eq!(first.len(), 32);
        assert_eq!(salt(&lake).await.expect("read"), first);
        let other = tempfile::tempdir().expect("tempdir");
        let other = Lake::open(&StorageLocation::Local(other.path().to_path_buf())).expect("lake");
        assert_ne!(salt(&other).await.expect("made"), first, "each lake has its own");
    }
}
