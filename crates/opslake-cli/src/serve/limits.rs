//! What keeps one client from taking the server from the others: working memory per query and
//! for the whole server, a cap on connections, TLS when it is required, and SCRAM answers that
//! do not tell which user names exist.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation};
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::api::auth::StartupHandler;
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use futures::Sink;
use opslake_config::scram::ScramSecret;
use sha2::{Digest, Sha256};

/// The working memory of one connection's queries, counted against its own limit and the
/// server's pool: a query over either fails, and only that query.
#[derive(Debug)]
pub(super) struct QueryPool {
    limit: usize,
    used: AtomicUsize,
    server: Arc<dyn MemoryPool>,
}

impl QueryPool {
    pub(super) fn new(limit: usize, server: Arc<dyn MemoryPool>) -> Self {
        Self { limit, used: AtomicUsize::new(0), server }
    }
}

impl std::fmt::Display for QueryPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "query pool ({} of {} bytes)", self.used.load(Ordering::Relaxed), self.limit)
    }
}

impl MemoryPool for QueryPool {
    fn name(&self) -> &str {
        "opslake-serve-query"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.server.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.server.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.used.fetch_add(additional, Ordering::SeqCst);
        self.server.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.used.fetch_sub(shrink, Ordering::SeqCst);
        self.server.shrink(reservation, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        let before = self.used.fetch_add(additional, Ordering::SeqCst);
        if before + additional > self.limit {
            self.used.fetch_sub(additional, Ordering::SeqCst);
            return Err(DataFusionError::ResourcesExhausted(format!(
                "the query needs more than serve.query_memory_mib ({} MiB) of working memory",
                self.limit >> 20
            )));
        }
        if let Err(e) = self.server.try_grow(reservation, additional) {
            self.used.fetch_sub(additional, Ordering::SeqCst);
            return Err(DataFusionError::ResourcesExhausted(format!(
                "the server's queries together hold serve.total_memory_mib of working memory ({e})"
            )));
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}

/// Answers for user names serve does not know: a salt that is the same on every attempt, as a
/// real user's is, and that no one without the users' secrets can compute. Postgres does the
/// same (`scram_mock_salt`); a fresh random salt per attempt would tell an attacker in two
/// tries which names exist.
pub(super) struct MockSalts {
    key: [u8; 32],
}

impl MockSalts {
    /// Keyed by the users' secrets, so the salts stay the same across restarts while the
    /// users do.
    pub(super) fn new(users: &BTreeMap<String, ScramSecret>) -> Self {
        let mut h = Sha256::new();
        h.update(b"opslake serve mock salt\0");
        for (name, secret) in users {
            for part in [name.as_bytes(), &secret.salt, &secret.salted_password] {
                h.update((part.len() as u64).to_be_bytes());
                h.update(part);
            }
        }
        Self { key: h.finalize().into() }
    }

    /// The salt offered to `user`, as long as a real one (16 bytes).
    pub(super) fn salt(&self, user: &str) -> Vec<u8> {
        hmac_sha256(&self.key, &[b"salt\0", user.as_bytes()])[..16].to_vec()
    }

    /// A stored key no password derives, stable per name like the salt.
    pub(super) fn stored_key(&self, user: &str) -> Vec<u8> {
        hmac_sha256(&self.key, &[b"key\0", user.as_bytes()]).to_vec()
    }
}

/// HMAC-SHA-256 (RFC 2104) of the concatenated `parts`.
fn hmac_sha256(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut padded = [0u8; 64];
    padded[..32].copy_from_slice(key);
    let mut inner = Sha256::new();
    inner.update(padded.map(|b| b ^ 0x36));
    for p in parts {
        inner.update(p);
    }
    let mut outer = Sha256::new();
    outer.update(padded.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// The first step of every connection: refuses it with FATAL 53300 when the server is full,
/// and 28000 when TLS is required and the client did not ask for it; then authentication, by
/// `tls` on a TLS connection (SCRAM with channel binding) and by `plain` otherwise: a client
/// offered channel binding over plaintext refuses to log in.
pub(super) struct Gate<H> {
    pub(super) plain: Arc<H>,
    pub(super) tls: Option<Arc<H>>,
    pub(super) admitted: bool,
    pub(super) tls_required: bool,
    pub(super) max_connections: u32,
}

fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("FATAL".into(), code.into(), message)))
}

#[async_trait]
impl<H: StartupHandler> StartupHandler for Gate<H> {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let PgWireFrontendMessage::Startup(_) = &message {
            if !self.admitted {
                return Err(fatal(
                    "53300",
                    format!("sorry, too many clients already (serve.max_connections is {})", self.max_connections),
                ));
            }
            if self.tls_required && !client.is_secure() {
                return Err(fatal(
                    "28000",
                    "this server requires TLS (serve.tls.required): connect with sslmode=require".into(),
                ));
            }
        }
        match &self.tls {
            Some(tls) if client.is_secure() => tls.on_startup(client, message).await,
            _ => self.plain.on_startup(client, message).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::memory_pool::GreedyMemoryPool;

    #[test]
    fn a_query_is_held_to_its_own_limit_and_to_what_the_server_has_left() {
        let server: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(1000));
        let a: Arc<dyn MemoryPool> = Arc::new(QueryPool::new(600, server.clone()));
        let b: Arc<dyn MemoryPool> = Arc::new(QueryPool::new(600, server.clone()));
        let ra = MemoryConsumer::new("a").register(&a);
        let rb = MemoryConsumer::new("b").register(&b);
        ra.try_grow(500).expect("within both");
        let err = ra.try_grow(200).expect_err("over its own limit").to_string();
        assert!(err.contains("serve.query_memory_mib"), "{err}");
        assert_eq!((a.reserved(), server.reserved()), (500, 500), "a refused grow leaves no trace");
        let err = rb.try_grow(550).expect_err("over what the server has left").to_string();
        assert!(err.contains("serve.total_memory_mib"), "{err}");
        assert_eq!((b.reserved(), server.reserved()), (0, 500));
        drop(ra);
        rb.try_grow(550).expect("freed by the other query");
        assert_eq!((a.reserved(), b.reserved(), server.reserved()), (0, 550, 550));
    }

    #[test]
    fn mock_salts_are_stable_per_name_and_differ_between_names_and_servers() {
        let users = |salt: u8| {
            BTreeMap::from([(
                "analyst".to_string(),
                ScramSecret { salt: vec![salt; 16], salted_password: vec![7; 32] },
            )])
        };
        let (one, again, other) = (MockSalts::new(&users(1)), MockSalts::new(&users(1)), MockSalts::new(&users(2)));
        assert_eq!(one.salt("mallory"), again.salt("mallory"), "the same on every attempt and restart");
        assert_eq!(one.salt("mallory").len(), 16);
        assert_ne!(one.salt("mallory"), one.salt("eve"));
        assert_ne!(one.salt("mallory"), other.salt("mallory"), "keyed by the server's secrets");
        assert_ne!(one.salt("mallory"), one.stored_key("mallory")[..16]);
    }

    #[test]
    fn hmac_matches_rfc_4231_shape() {
        // RFC 4231 test case 2 uses a 4-byte key; ours are 32 bytes, zero-padded the same way,
        // so a key of "Jefe" followed by zeros gives the published digest.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let mac = hmac_sha256(&key, &[b"what do ya want ", b"for nothing?"]);
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
