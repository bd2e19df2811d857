//! Problems found in user files, with where they are, and the error classes the CLI maps to
//! exit codes.

use std::fmt;

use serde_saphyr::Spanned;

/// Who must act on an error. The CLI turns each class into its own exit code, so a scheduler
/// can tell "fix your config" from "S3 is down" from "report a bug".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The user's input is wrong: config, contract, pipelines, arguments, data.
    User,
    /// Something outside opslake failed: a file system, an object store, the network.
    External,
    /// opslake itself is wrong: a broken invariant.
    Internal,
    /// Another run holds the lake's lock: nothing is wrong, try again later.
    Busy,
}

/// One problem in one file: the unit `opslake validate` reports, all of them, not just the first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// Path of the file, as the user knows it (relative to the project where possible).
    pub file: String,
    /// 1-based line, or 0 when the problem concerns the whole file.
    pub line: u64,
    /// 1-based column, or 0 when unknown.
    pub column: u64,
    /// What is wrong and, where it helps, what to do.
    pub message: String,
}

impl Problem {
    /// A problem that concerns a whole file.
    pub fn in_file(file: impl Into<String>, message: impl Into<String>) -> Self {
        Self { file: file.into(), line: 0, column: 0, message: message.into() }
    }

    /// A problem at the place a YAML value was read from.
    pub fn at<T>(file: impl Into<String>, value: &Spanned<T>, message: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            line: value.referenced.line(),
            column: value.referenced.column(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (0, _) => write!(f, "{}: {}", self.file, self.message),
            (line, 0) => write!(f, "{}:{line}: {}", self.file, self.message),
            (line, column) => write!(f, "{}:{line}:{column}: {}", self.file, self.message),
        }
    }
}

/// Formats problems one per line, for error messages that carry several.
pub fn format_problems(problems: &[Problem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

/// Parses one YAML document into `T`, turning a syntax or shape error into a [`Problem`] with
/// the line and column the parser stopped at.
pub fn parse_yaml<'de, T: serde::Deserialize<'de>>(file: &str, text: &'de str) -> Result<T, Problem> {
    serde_saphyr::from_str(text).map_err(|err| {
        let (line, column) = err.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
        let message = err.without_snippet().to_string();
        // The parser appends its own " at line X column Y"; the location is already in front.
        let message = match message.rfind(" at line ") {
            Some(cut) if line > 0 => message[..cut].to_string(),
            _ => message,
        };
        // Type errors ("invalid u32") do not say which key; the line they point at does.
        let message = match key_on_line(text, line) {
            Some(key) if !message.contains(key) => format!("{key}: {message}"),
            _ => message,
        };
        Problem { file: file.to_string(), line, column, message }
    })
}

/// The mapping key written on 1-based `line` (`  - name: x` gives `name`), if any.
fn key_on_line(text: &str, line: u64) -> Option<&str> {
    let raw = text.lines().nth(usize::try_from(line).ok()?.checked_sub(1)?)?;
    let (key, _) = raw.trim_start().trim_start_matches("- ").split_once(':')?;
    let key = key.trim();
    (!key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')).then_some(key)
}

/// True for names that are safe as one segment of a path or URL and as a SQL identifier:
/// `[A-Za-z_][A-Za-z0-9_]*`, at most 128 characters. Never `.`, `..`, a separator or an
/// escape, so a name from a project file cannot lead a path out of its directory.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 128
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// True for names usable unquoted as SQL identifiers and file names: `[a-z][a-z0-9_]*`.
pub fn is_snake_case(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        name: String,
    }

    #[test]
    fn parse_errors_carry_line_and_column() {
        let err = parse_yaml::<Doc>("x.yml", "name: a\nnmae: b\n").expect_err("unknown key");
        assert_eq!(err.file, "x.yml");
        assert_eq!(err.line, 2, "{err}");
        assert!(err.message.contains("nmae"), "{err}");
        assert!(err.to_string().starts_with("x.yml:2:"), "{err}");
    }

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Num {
        month: u32,
    }

    #[test]
    fn type_errors_name_their_key() {
        let err = parse_yaml::<Num>("x.yml", "# c\nmonth: April\n").expect_err("not a number");
        assert_eq!(err.line, 2);
        assert!(err.message.starts_with("month: "), "{err}");
    }

    #[test]
    fn snake_case() {
        assert!(is_snake_case("crm"));
        assert!(is_snake_case("utm_source2"));
        assert!(!is_snake_case("Crm"));
        assert!(!is_snake_case("_runs"));
        assert!(!is_snake_case("2x"));
        assert!(!is_snake_case(""));
        assert!(!is_snake_case("a-b"));
    }
}
