//! The salt an older opslake kept in the lake (`_opslake/salt`) as the key of the
//! personal-data hashes. Anyone who can read the lake can read it, and with it recompute the
//! hash of a guessed email, so the key now lives outside the lake (`personal_data.key_env`,
//! `key_file`, or `OPSLAKE_PERSONAL_DATA_KEY`); this only reads an old lake's salt, so its
//! hashes go on matching until its owner moves the salt out. It is never written any more.

use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::{Error, Lake, Result};

/// Where an older opslake kept the salt, relative to the lake.
pub const SALT_PATH: &str = "_opslake/salt";

/// The old in-lake salt, when this lake has one.
pub async fn legacy(lake: &Lake) -> Result<Option<Vec<u8>>> {
    let path = Path::from(SALT_PATH);
    let bytes = match lake.store().get(&path).await {
        Ok(got) => got.bytes().await.map_err(|source| Error::Store { context: "reading the salt".into(), source })?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(source) => return Err(Error::Store { context: "reading the salt".into(), source }),
    };
    match opslake_config::PersonalKey::parse_hex(std::str::from_utf8(&bytes).unwrap_or_default()) {
        Ok(key) => Ok(Some(key.bytes().to_vec())),
        Err(_) => Err(Error::Location {
            message: format!("{SALT_PATH} in the lake is not a hex salt; restore it (hashes depend on it)"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::PutPayload;
    use opslake_config::StorageLocation;

    #[tokio::test]
    async fn an_old_lakes_salt_is_read_and_none_is_ever_made() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::open(&StorageLocation::Local(dir.path().to_path_buf())).expect("lake");
        assert_eq!(legacy(&lake).await.expect("reads"), None);
        assert!(!dir.path().join(SALT_PATH).exists(), "reading makes nothing");
        let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        lake.store().put(&Path::from(SALT_PATH), PutPayload::from(format!("{hex}\n").into_bytes())).await.expect("put");
        assert_eq!(legacy(&lake).await.expect("reads").expect("there").len(), 32);
        lake.store().put(&Path::from(SALT_PATH), PutPayload::from(b"zz".to_vec())).await.expect("put");
        assert!(legacy(&lake).await.is_err(), "a damaged salt is an error, not a new key");
    }
}
