//! Embeds `schemas/` into the crate so the `opslake` binary carries its contract and tool
//! files wherever it is copied.

include!("../../build/embed.rs");

fn main() {
    let manifest =
        std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.join("../../schemas").canonicalize().expect("schemas/ exists at the repository root");
    let yaml = |p: &std::path::Path| p.extension().is_some_and(|e| e == "yaml" || e == "yml");
    embed_dir(
        &root,
        &yaml,
        "/// Every YAML file under `schemas/`, as (path relative to `schemas/`, content).\npub static FILES",
        "embedded_schemas.rs",
    );
}
