//! The password secrets of `opslake serve`: what `serve.users[].password_hash` holds.
//!
//! pgwire's SCRAM-SHA-256 server checks a client's proof against the *salted password*
//! (RFC 5802's `Hi(password, salt, i)`), so that is what opslake keeps, as
//! `opslake-scram-sha-256$<iterations>:<salt>$<salted password>` (base64). It never reveals
//! the password, but it is enough to log in to this server, so the config holding it must stay
//! as private as a password file. PostgreSQL's own verifiers (`SCRAM-SHA-256$…$StoredKey:ServerKey`)
//! keep less and cannot be used here; the error says so.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The prefix of opslake's secrets.
pub const PREFIX: &str = "opslake-scram-sha-256$";

/// The iteration count the server announces: every secret must use it (RFC 7677's minimum).
pub const ITERATIONS: usize = 4096;

/// A parsed secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramSecret {
    /// The salt the client hashes its password with.
    pub salt: Vec<u8>,
    /// `Hi(password, salt, ITERATIONS)`, 32 bytes.
    pub salted_password: Vec<u8>,
}

impl ScramSecret {
    /// Parses `opslake-scram-sha-256$4096:<salt>$<salted>`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.starts_with("SCRAM-SHA-256$") {
            return Err(
                "is a PostgreSQL verifier; opslake needs its own form: make one with `opslake serve --hash-password`"
                    .into(),
            );
        }
        let rest = text
            .strip_prefix(PREFIX)
            .ok_or_else(|| format!("must start with '{PREFIX}' (make one with `opslake serve --hash-password`)"))?;
        let (params, salted) = rest.split_once('$').ok_or("has no '$' before the salted password")?;
        let (iterations, salt) = params.split_once(':').ok_or("has no ':' between iterations and salt")?;
        if iterations != ITERATIONS.to_string() {
            return Err(format!("uses {iterations} iterations; opslake serve announces {ITERATIONS}"));
        }
        let salt = STANDARD.decode(salt).map_err(|e| format!("salt is not base64: {e}"))?;
        let salted_password = STANDARD.decode(salted).map_err(|e| format!("salted password is not base64: {e}"))?;
        if salt.is_empty() {
            return Err("has an empty salt".into());
        }
        if salted_password.len() != 32 {
            return Err(format!("salted password is {} bytes, not the 32 of SHA-256", salted_password.len()));
        }
        Ok(Self { salt, salted_password })
    }

    /// The secret's text form.
    pub fn to_text(&self) -> String {
        format!("{PREFIX}{ITERATIONS}:{}${}", STANDARD.encode(&self.salt), STANDARD.encode(&self.salted_password))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_survives_its_text_form() {
        let secret = ScramSecret { salt: b"0123456789abcdef".to_vec(), salted_password: vec![7; 32] };
        assert_eq!(ScramSecret::parse(&secret.to_text()), Ok(secret));
    }

    #[test]
    fn postgres_verifiers_and_malformed_secrets_say_what_is_wrong() {
        let pg = "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy";
        assert!(ScramSecret::parse(pg).expect_err("pg").contains("PostgreSQL verifier"));
        assert!(ScramSecret::parse("hunter2").expect_err("plain").contains("must start with"));
        let few = format!("{PREFIX}1000:c2FsdA==${}", STANDARD.encode([0u8; 32]));
        assert!(ScramSecret::parse(&few).expect_err("iterations").contains("1000 iterations"));
        let short = format!("{PREFIX}4096:c2FsdA==${}", STANDARD.encode([0u8; 8]));
        assert!(ScramSecret::parse(&short).expect_err("length").contains("8 bytes"));
    }
}
