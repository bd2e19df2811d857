// Shared by the build scripts that compile a folder of the repository into a crate
// (`include!`d: build scripts cannot depend on a workspace crate of their own).

/// Writes `$OUT_DIR/<out>` declaring `<decl>: &[(&str, &str)]` with every file under `root`
/// that `keep` accepts, as (path relative to `root`, content), sorted by path. `include_str!`
/// makes rustc track each file's content; the folders' reruns catch files added or removed.
fn embed_dir(root: &std::path::Path, keep: &dyn Fn(&std::path::Path) -> bool, decl: &str, out: &str) {
    use std::fmt::Write as _;
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    collect(root, root, keep, &mut files);
    files.sort();
    let mut text = format!("{decl}: &[(&str, &str)] = &[\n");
    for (rel, abs) in &files {
        writeln!(text, "    ({rel:?}, include_str!({abs:?})),").expect("writing to a String cannot fail");
    }
    text.push_str("];\n");
    let dest = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join(out);
    std::fs::write(dest, text).expect("OUT_DIR is writable");
}

fn collect(
    root: &std::path::Path,
    dir: &std::path::Path,
    keep: &dyn Fn(&std::path::Path) -> bool,
    files: &mut Vec<(String, String)>,
) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{} is readable: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a readable entry").path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(root, &path, keep, files);
        } else if keep(&path) {
            let rel = path.strip_prefix(root).expect("walked from root").to_string_lossy().replace('\\', "/");
            files.push((rel, path.to_string_lossy().into_owned()));
        }
    }
}
