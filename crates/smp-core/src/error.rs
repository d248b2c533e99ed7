//! Errors for files and values handed to the core types.

use thiserror::Error;

/// A person-edited or machine-written document that cannot be used as it is.
///
/// Each variant names the field and says what would fix it, so the CLI can print one line.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum SpecError {
    /// The text is not valid TOML/JSON, or a field has the wrong type.
    #[error("cannot parse {what}: {message}")]
    Parse { what: &'static str, message: String },
    /// The `version` field names a format this build does not read.
    #[error(
        "{what} has version {found}, this build reads version {expected}; convert the file or use a matching build"
    )]
    Version { what: &'static str, found: u32, expected: u32 },
    /// A field holds a value outside its allowed range (NaN, negative size, inverted limit...).
    #[error("{what}: field `{field}` {problem}")]
    Invalid { what: &'static str, field: String, problem: String },
}

impl SpecError {
    pub fn invalid(what: &'static str, field: impl Into<String>, problem: impl Into<String>) -> Self {
        SpecError::Invalid { what, field: field.into(), problem: problem.into() }
    }
}

/// Checks that a number is finite and inside `[min, max]`, naming the field otherwise.
pub fn check_range(what: &'static str, field: &str, value: f64, min: f64, max: f64) -> Result<(), SpecError> {
    if !value.is_finite() {
        return Err(SpecError::invalid(what, field, format!("is {value}; it must be a finite number")));
    }
    if value < min || value > max {
        return Err(SpecError::invalid(what, field, format!("is {value}; it must lie in [{min}, {max}]")));
    }
    Ok(())
}

/// Checks the `version` field of a document.
pub fn check_version(what: &'static str, found: u32, expected: u32) -> Result<(), SpecError> {
    if found != expected {
        return Err(SpecError::Version { what, found, expected });
    }
    Ok(())
}

/// Parses TOML into `T`, mapping the parser's message into a [`SpecError`].
pub fn parse_toml<T: serde::de::DeserializeOwned>(what: &'static str, text: &str) -> Result<T, SpecError> {
    toml::from_str(text).map_err(|e| SpecError::Parse { what, message: e.to_string().trim().replace('\n', " ") })
}

/// Parses JSON into `T`, mapping the parser's message into a [`SpecError`].
pub fn parse_json<T: serde::de::DeserializeOwned>(what: &'static str, text: &str) -> Result<T, SpecError> {
    serde_json::from_str(text).map_err(|e| SpecError::Parse { what, message: e.to_string() })
}
