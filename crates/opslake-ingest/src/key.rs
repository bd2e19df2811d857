//! The key of the personal-data hashes.

use opslake_lake::Lake;
use opslake_lake::salt::{SALT_PATH, legacy};

use crate::{Event, IngestOptions, Progress, Result};

/// The key given from outside the lake. A lake an older opslake wrote may hold its salt
/// instead: used, with a warning saying how to move it, when no key is given, since its hashes
/// must go on matching; a different key is refused unless every table is rebuilt, because old
/// and new hashes of one email would silently stop joining.
pub(crate) async fn hash_key(lake: &Lake, options: &IngestOptions, progress: &mut Progress<'_>) -> Result<Vec<u8>> {
    let old = legacy(lake).await?;
    let salt = SALT_PATH;
    let env = opslake_config::KEY_ENV;
    let refused = |message: String| opslake_lake::Error::Location { message }.into();
    match (&options.key, old) {
        (Some(key), Some(old)) if key.bytes() == old.as_slice() => {
            progress(Event::Warning(&format!(
                "the personal-data key is also kept in the lake ({salt}), where whoever can read the lake can \
                 read it: delete {salt}"
            )));
            Ok(old)
        }
        (Some(_), Some(_)) if !options.full_refresh => Err(refused(format!(
            "the personal-data key differs from the salt this lake was hashed with ({salt}): hashes would stop \
             matching. Use the salt's value as the key, or rebuild every table with --full-refresh"
        ))),
        (Some(key), _) => Ok(key.bytes().to_vec()),
        (None, Some(old)) => {
            progress(Event::Warning(&format!(
                "hashing with the salt kept in the lake ({salt}), which whoever can read the lake can read: move \
                 it out (put its contents in {env}, or in a file named by personal_data.key_file), then delete {salt}"
            )));
            Ok(old)
        }
        (None, None) => Err(refused(format!(
            "the personal-data policy hashes values and needs a key kept outside the lake: set {env} or \
             personal_data.key_env / key_file in opslake.yml (make one with `openssl rand -hex 32`)"
        ))),
    }
}
