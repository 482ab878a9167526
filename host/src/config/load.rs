//! The way into the config layer: a file (or text) → [`RawConfig`](super::raw::RawConfig) →
//! [`validate`](super::validate) → [`Config`].

use std::path::{Path, PathBuf};

use super::{Config, ConfigError, Problem, raw, validate};

/// Reads, parses, validates and resolves a config file. Relative paths inside it are taken from the
/// file's folder.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    load_text(&text, path)
}

/// Parses, validates and resolves `text` as the config file at `path` (which is named in errors
/// and whose folder relative paths are taken from), e.g. a file's text with a value overridden.
pub fn load_text(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let base_dir = path.parent().unwrap_or(Path::new("."));
    parse(text, base_dir).map_err(|err| match err {
        ParseError::Syntax(message) => ConfigError::Syntax {
            path: path.to_owned(),
            message,
        },
        ParseError::Invalid(problems) => ConfigError::Invalid {
            path: path.to_owned(),
            problems,
        },
    })
}

/// Every file a config reads: the config itself, then the TLS certificate and key, CA bundles, the
/// client-secret file and policy files it names — whether or not they exist or the config is
/// valid, so a reload can watch for the file that will fix it. Empty-handed (just the config)
/// when the file does not parse.
pub fn referenced_files(path: &Path) -> Vec<PathBuf> {
    let mut files = vec![path.to_owned()];
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let raw = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| toml::from_str::<raw::RawConfig>(&text).ok());
    if let Some(raw) = raw {
        files.extend(
            raw.referenced_files()
                .into_iter()
                .map(|file| base_dir.join(file)),
        );
    }
    files.sort();
    files.dedup();
    files
}

/// What [`parse`] can fail with; [`load`] adds the file name.
#[derive(Debug)]
pub enum ParseError {
    /// See [`ConfigError::Syntax`].
    Syntax(String),
    /// See [`ConfigError::Invalid`].
    Invalid(Vec<Problem>),
}

/// Parses config text; files it names are read relative to `base_dir`.
pub fn parse(text: &str, base_dir: &Path) -> Result<Config, ParseError> {
    let raw: raw::RawConfig =
        toml::from_str(text).map_err(|err| ParseError::Syntax(err.to_string()))?;
    validate::validate(raw, base_dir).map_err(ParseError::Invalid)
}
