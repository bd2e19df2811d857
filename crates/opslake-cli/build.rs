//! Lists the repository's `pipelines/` for `opslake demo`, which writes them into the demo
//! project: a file added there is carried by the next build, with no list to keep by hand.

include!("../../build/embed.rs");

fn main() {
    let manifest =
        std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.join("../../pipelines").canonicalize().expect("pipelines/ exists at the repository root");
    embed_dir(
        &root,
        &|_| true,
        "/// Every file under the repository's `pipelines/`, as (path relative to it, content).\npub(crate) const PIPELINES",
        "demo_pipelines.rs",
    );
}
