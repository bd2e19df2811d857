//! glibc's allocator, held closer to the live heap.
//!
//! With its defaults glibc keeps up to eight arenas per core and raises its mmap threshold after
//! every large free, so the big buffers of Arrow and Parquet land in arenas and stay there once
//! freed: ingest's peak RSS ran at about twice its peak heap (docs/performance.md). Two arenas and
//! a fixed 1 MiB threshold took a 1M-row ingest from about 460 to 330 MiB for 4–7% more wall
//! time, and a 5M-row one from about 760 to 510 MiB for none (docs/decisions.md). A user's own
//! `MALLOC_*` or `GLIBC_TUNABLES` settings win. Other C libraries (musl, macOS, Windows) have
//! neither knob, and there this does nothing.

use std::sync::OnceLock;

/// One allocator setting: the variable that sets it by hand, the `mallopt` parameter and value.
// Elsewhere than glibc the list is empty, so its fields are never read there.
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Setting {
    /// The variable glibc reads for it, checked for a user's own value.
    env: &'static str,
    param: i32,
    value: i32,
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
const SETTINGS: &[Setting] = &[
    Setting { env: "MALLOC_ARENA_MAX", param: libc::M_ARENA_MAX, value: 2 },
    // A fixed threshold also stops glibc from raising it.
    Setting { env: "MALLOC_MMAP_THRESHOLD_", param: libc::M_MMAP_THRESHOLD, value: 1 << 20 },
];

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
const SETTINGS: &[Setting] = &[];

/// The settings to apply given which variables are set: none when `GLIBC_TUNABLES` is (the user
/// tunes glibc by hand), otherwise those whose own variable is not.
fn settings_to_apply(is_set: impl Fn(&str) -> bool) -> Vec<Setting> {
    if is_set("GLIBC_TUNABLES") {
        return Vec::new();
    }
    SETTINGS.iter().copied().filter(|s| !is_set(s.env)).collect()
}

static REFUSED: OnceLock<Vec<Setting>> = OnceLock::new();

/// Applies the settings the environment leaves to us. Call it first thing in `main`, before any
/// thread starts: an arena limit binds only the threads that start after it.
pub fn tune() {
    let settings = settings_to_apply(|name| std::env::var_os(name).is_some());
    let refused: Vec<Setting> = settings.into_iter().filter(|s| !apply(*s)).collect();
    let _ = REFUSED.set(refused);
}

/// Logs the settings the allocator refused, once logging is set up: the defaults stay, so this
/// costs memory, not correctness.
pub fn log_refused() {
    for setting in REFUSED.get().into_iter().flatten() {
        tracing::debug!(setting = setting.env, value = setting.value, "the allocator refused a setting");
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn apply(setting: Setting) -> bool {
    // SAFETY: mallopt takes two integers and sets the allocator's own parameters under its
    // lock; a value it does not accept is refused with 0, not undefined behaviour.
    unsafe { libc::mallopt(setting.param, setting.value) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply(_setting: Setting) -> bool {
    true
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    fn names(settings: &[Setting]) -> Vec<&'static str> {
        settings.iter().map(|s| s.env).collect()
    }

    #[test]
    fn a_users_own_setting_wins() {
        assert_eq!(names(&settings_to_apply(|_| false)), ["MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_"]);
        assert_eq!(names(&settings_to_apply(|name| name == "MALLOC_ARENA_MAX")), ["MALLOC_MMAP_THRESHOLD_"]);
        assert!(settings_to_apply(|name| name == "GLIBC_TUNABLES").is_empty());
    }

    #[test]
    fn glibc_accepts_every_setting() {
        for setting in SETTINGS {
            assert!(apply(*setting), "mallopt refused {setting:?}");
        }
    }
}
