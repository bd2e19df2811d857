//! Exports in an object store (`s3://`, `gs://`, `az://`): listed under a prefix or a glob, and
//! read as they stream in, one object at a time, never the bucket downloaded first.
//!
//! An object is named by its URL, which is its manifest key and its rows' `_source_file`, and
//! fingerprinted by its ETag (or version) and size as listed. It is read with that ETag as a
//! precondition, so the bytes loaded are the ones the plan decided about: an object rewritten
//! between listing and reading fails its file cleanly, and the next run reads the new one.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path as StorePath;
use object_store::{GetOptions, ObjectMeta, ObjectStore, ObjectStoreExt};
use opslake_config::StorageLocation;
use opslake_lake::manifest::Fingerprint;
use opslake_tools::input::{Opened, visit_reader_as};
use sha2::{Digest, Sha256};
use url::Url;

use crate::{Error, Result};

/// One object to read.
#[derive(Debug, Clone)]
pub struct Object {
    /// The store of its bucket or container.
    pub store: Arc<dyn ObjectStore>,
    /// Its key in the store.
    pub location: StorePath,
    /// `s3://bucket/key`.
    pub url: String,
    /// As listed.
    pub meta: ObjectMeta,
}

impl Object {
    /// Its fingerprint as listed: size, time, and ETag (its version where the store has no ETag).
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint {
            size: self.meta.size,
            modified_at: Some(self.meta.last_modified.timestamp_micros()),
            etag: self.meta.e_tag.clone().or_else(|| self.meta.version.clone()),
        }
    }

    /// The last segment of its key: what tool files match file names with.
    pub fn file_name(&self) -> &str {
        self.location.filename().unwrap_or_default()
    }

    /// Calls `visit` with each stream of the object, as [`opslake_tools::input::visit_inputs_as`]
    /// does for a local file, and returns the SHA-256 of its bytes, hashed as they were read.
    /// Must run on a multi-threaded runtime, inside `block_in_place`: the reads wait on the
    /// store from the calling (mapping) thread.
    pub fn visit(&self, name: &str, visit: &mut dyn FnMut(Opened<'_>) -> opslake_tools::Result<()>) -> Result<String> {
        let handle = tokio::runtime::Handle::current();
        let options = GetOptions {
            if_match: self.meta.e_tag.clone(),
            version: self.meta.version.clone(),
            ..GetOptions::default()
        };
        let got = handle.block_on(self.store.get_opts(&self.location, options)).map_err(|source| {
            let context = match source {
                object_store::Error::Precondition { .. } => {
                    format!("reading {}: it changed since it was listed; the next run reads the new version", self.url)
                }
                _ => format!("reading {}", self.url),
            };
            Error::Store { context, source }
        })?;
        let mut reader = ObjectReader {
            handle,
            stream: got.into_stream(),
            chunk: Bytes::new(),
            url: &self.url,
            hasher: Sha256::new(),
        };
        visit_reader_as(&mut reader, name, self.file_name(), visit)?;
        // A reader may stop before the end (a trailing blank, a zip's directory): the hash is
        // of every byte.
        io::copy(&mut reader, &mut io::sink()).map_err(|e| opslake_tools::Error::BadInput {
            file: name.to_string(),
            line: 0,
            message: format!("cannot read: {e}"),
        })?;
        Ok(format!("{:x}", reader.hasher.finalize()))
    }
}

/// An object's body as a blocking reader, one chunk from the store at a time.
struct ObjectReader<'a> {
    handle: tokio::runtime::Handle,
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    chunk: Bytes,
    url: &'a str,
    hasher: Sha256,
}

impl Read for ObjectReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.handle.block_on(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => {
                    return Err(io::Error::other(format!(
                        "{} stopped arriving: {e}; the next run reads it again",
                        self.url
                    )));
                }
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.hasher.update(&buf[..n]);
        self.chunk.advance(n);
        Ok(n)
    }
}

/// The stores opened so far in one listing, one per bucket or container.
#[derive(Default)]
pub struct Stores {
    options: Option<HashMap<String, String>>,
    open: HashMap<String, Arc<dyn ObjectStore>>,
}

impl Stores {
    fn at(&mut self, root: &Url) -> Result<Arc<dyn ObjectStore>> {
        if let Some(store) = self.open.get(root.as_str()) {
            return Ok(Arc::clone(store));
        }
        let options = self.options.get_or_insert_with(opslake_lake::storage_options_from_env);
        let store = opslake_lake::store_at(root, options)?;
        self.open.insert(root.to_string(), Arc::clone(&store));
        Ok(store)
    }
}

/// Whether `text` names an object-store location rather than a local path.
pub fn is_url(text: &str) -> bool {
    matches!(StorageLocation::parse(text), Ok(StorageLocation::ObjectStore { .. }))
}

/// The objects `url` names, by key: the object itself; every object under it when it ends in
/// `/` or names no object; or the matches of a glob in it (`s3://b/exports/**/*.csv`), listed
/// from the longest prefix without a glob character. Keys with a segment that starts with `.`
/// are left out, as hidden files are locally.
pub async fn list(stores: &mut Stores, url: &str) -> Result<Vec<Object>> {
    let Ok(StorageLocation::ObjectStore { bucket, .. }) = StorageLocation::parse(url) else {
        return Err(bad(format!("{url} is not an object-store URL")));
    };
    let (scheme, rest) = url.trim().split_once("://").expect("parsed as a URL");
    let key = rest.split_once('/').map_or("", |(_, key)| key);
    let root = Url::parse(&format!("{scheme}://{bucket}/")).map_err(|e| bad(format!("{url}: {e}")))?;
    let store = stores.at(&root)?;
    matching(store, &root, key, url).await
}

/// [`list`] in `store`, whose root is `root`: the objects `key` (a key, a prefix or a glob)
/// names.
async fn matching(store: Arc<dyn ObjectStore>, root: &Url, key: &str, url: &str) -> Result<Vec<Object>> {
    let object = |meta: ObjectMeta| Object {
        store: Arc::clone(&store),
        url: format!("{root}{}", meta.location),
        location: meta.location.clone(),
        meta,
    };
    let glob_at = key.split('/').position(|segment| segment.contains(['*', '?', '[']));
    let Some(glob_at) = glob_at else {
        if !key.is_empty() && !key.ends_with('/') {
            match store.head(&StorePath::from(key)).await {
                Ok(meta) => return Ok(vec![object(meta)]),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => return Err(store_err(format!("looking up {url}"), source)),
            }
        }
        let found = listed(&store, key, url).await?;
        if found.is_empty() && !key.is_empty() && !key.ends_with('/') {
            return Err(bad(format!("{url}: no such object, and no objects under it")));
        }
        return Ok(found.into_iter().map(object).collect());
    };
    let matcher = globset::Glob::new(key).map_err(|e| bad(format!("bad glob '{url}': {e}")))?.compile_matcher();
    let base = key.split('/').take(glob_at).collect::<Vec<_>>().join("/");
    let found = listed(&store, &base, url).await?;
    Ok(found.into_iter().filter(|m| matcher.is_match(m.location.as_ref())).map(object).collect())
}

/// Every object below `prefix`, sorted by key, hidden ones left out.
async fn listed(store: &Arc<dyn ObjectStore>, prefix: &str, url: &str) -> Result<Vec<ObjectMeta>> {
    let prefix = prefix.trim_end_matches('/');
    let at = (!prefix.is_empty()).then(|| StorePath::from(prefix));
    let depth = at.as_ref().map_or(0, |p| p.parts().count());
    let mut stream = store.list(at.as_ref());
    let mut out = Vec::new();
    while let Some(meta) = stream.next().await {
        let meta = meta.map_err(|source| store_err(format!("listing {url}"), source))?;
        let hidden = meta.location.parts().skip(depth).any(|p| p.as_ref().starts_with('.'));
        if !hidden {
            out.push(meta);
        }
    }
    out.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(out)
}

fn store_err(context: String, source: object_store::Error) -> Error {
    Error::Store { context, source }
}

fn bad(message: String) -> Error {
    Error::Input { message }
}

#[cfg(test)]
mod tests {
    use object_store::PutPayload;
    use object_store::memory::InMemory;

    use super::*;

    async fn put(store: &InMemory, key: &str, body: &str) {
        store.put(&StorePath::from(key), PutPayload::from(body.to_string())).await.expect("put");
    }

    /// A store of exports, listed by [`listed`] and matched as [`list`] matches a glob.
    #[tokio::test(flavor = "multi_thread")]
    async fn listing_leaves_out_hidden_keys_and_sorts_by_key() {
        let memory = InMemory::new();
        for key in ["exports/b.csv", "exports/a.csv", "exports/.tmp/c.csv", "exports/sub/.hidden.csv", "other/x.csv"] {
            put(&memory, key, "id\n1\n").await;
        }
        let store: Arc<dyn ObjectStore> = Arc::new(memory);
        let keys: Vec<String> = listed(&store, "exports/", "mem://x")
            .await
            .expect("lists")
            .iter()
            .map(|m| m.location.to_string())
            .collect();
        assert_eq!(keys, ["exports/a.csv", "exports/b.csv"]);
        let all = listed(&store, "", "mem://x").await.expect("lists");
        assert_eq!(all.len(), 3, "the bucket's visible keys: {all:?}");
    }

    async fn keys(store: &Arc<dyn ObjectStore>, key: &str) -> Result<Vec<String>> {
        let root = Url::parse("s3://b/").expect("url");
        let url = format!("s3://b/{key}");
        Ok(matching(Arc::clone(store), &root, key, &url).await?.into_iter().map(|o| o.url).collect())
    }

    /// An object, a prefix and a glob name what they would on a local disk.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_url_names_an_object_a_prefix_or_the_matches_of_a_glob() {
        let memory = InMemory::new();
        for key in
            ["sf/2024/accounts.csv", "sf/2024/contacts.csv", "sf/2025/accounts.csv", "sf/readme.txt", "sfx/a.csv"]
        {
            put(&memory, key, "id\n1\n").await;
        }
        let store: Arc<dyn ObjectStore> = Arc::new(memory);
        assert_eq!(keys(&store, "sf/2024/accounts.csv").await.expect("object"), ["s3://b/sf/2024/accounts.csv"]);
        // A prefix is a directory: `sf` is not `sfx`.
        assert_eq!(keys(&store, "sf").await.expect("prefix").len(), 4);
        assert_eq!(keys(&store, "sf/").await.expect("prefix").len(), 4);
        assert_eq!(
            keys(&store, "sf/*/accounts.csv").await.expect("glob"),
            ["s3://b/sf/2024/accounts.csv", "s3://b/sf/2025/accounts.csv"]
        );
        assert_eq!(keys(&store, "sf/**/*.csv").await.expect("glob").len(), 3);
        assert_eq!(keys(&store, "nothing/*.csv").await.expect("a glob may match nothing"), Vec::<String>::new());
        let missing = keys(&store, "sf/2026").await.expect_err("neither an object nor a prefix");
        assert!(missing.to_string().contains("s3://b/sf/2026: no such object, and no objects under it"), "{missing}");
        assert!(keys(&store, "sf/[.csv").await.expect_err("bad glob").to_string().contains("bad glob"));
    }

    /// An object rewritten after it was listed is not read as the listed one.
    #[tokio::test(flavor = "multi_thread")]
    async fn an_object_rewritten_after_listing_fails_its_read() {
        let memory = InMemory::new();
        put(&memory, "x/a.csv", "id\n1\n").await;
        let store: Arc<dyn ObjectStore> = Arc::new(memory);
        let root = Url::parse("s3://b/").expect("url");
        let listed = matching(Arc::clone(&store), &root, "x/a.csv", "s3://b/x/a.csv").await.expect("lists");
        store.put(&StorePath::from("x/a.csv"), PutPayload::from("id\n2\n")).await.expect("rewrite");
        let err = tokio::task::block_in_place(|| listed[0].visit("s3://b/x/a.csv", &mut |_| Ok(())))
            .expect_err("the ETag no longer matches");
        assert!(err.to_string().contains("changed since it was listed"), "{err}");
    }

    /// The bytes read through [`Object::visit`] are the object's, and so is their hash.
    #[tokio::test(flavor = "multi_thread")]
    async fn an_object_is_read_as_it_streams_and_hashed_whole() {
        let memory = InMemory::new();
        let body = "Id,Name\n".to_string() + &"1,Acme\n".repeat(20_000);
        put(&memory, "exports/accounts.csv", &body).await;
        let store: Arc<dyn ObjectStore> = Arc::new(memory);
        let meta = store.head(&StorePath::from("exports/accounts.csv")).await.expect("head");
        let object =
            Object { store, location: meta.location.clone(), url: "mem://b/exports/accounts.csv".into(), meta };
        let mut seen = Vec::new();
        let sha = tokio::task::block_in_place(|| {
            object.visit(&object.url.clone(), &mut |opened| {
                seen.push((opened.name.clone(), opened.file_name.clone()));
                let mut text = String::new();
                opened.into_text(opslake_tools::input::TextEncoding::Utf8).read_to_string(&mut text).expect("reads");
                assert_eq!(text, body);
                Ok(())
            })
        })
        .expect("visits");
        assert_eq!(seen, [("mem://b/exports/accounts.csv".to_string(), "accounts.csv".to_string())]);
        assert_eq!(sha, format!("{:x}", Sha256::digest(body.as_bytes())));
    }
}
