//! `schemas/` as compiled into the binary (see build.rs).

mod generated {
    include!(concat!(env!("OUT_DIR"), "/embedded_schemas.rs"));
}

/// Every embedded YAML file as (path relative to `schemas/`, content), sorted by path.
pub fn files() -> impl Iterator<Item = (&'static str, &'static str)> {
    generated::FILES.iter().copied()
}
