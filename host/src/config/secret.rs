//! Secrets in config: written inline, as `env:NAME`, or read from a file named by a `*_file` key.
//!
//! A [`Secret`] never prints its value: `Debug` and `Display` show `[redacted]`, and resolution errors
//! name the variable or file, never the content. Every secret key (`[oidc] client_secret`, …) is
//! read with [`resolve`], so all of them behave the same way.

use std::fmt;
use std::path::Path;

/// A secret value read from config, the environment or a file. Printing it shows `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself. Call only where it is sent to whoever needs it, never into a log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Resolves a secret given as `key = "value"`, `key = "env:NAME"` or `key_file = "path"`.
///
/// Returns `Ok(None)` when neither is set. A file's trailing newline is dropped (files written with
/// `echo` have one); relative files are read from `base_dir`, the config file's folder. The error text
/// is what follows the key path in a config problem.
pub fn resolve(
    inline: Option<&str>,
    file: Option<&str>,
    base_dir: &Path,
    key: &str,
) -> Result<Option<Secret>, String> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(format!("set either `{key}` or `{key}_file`, not both")),
        (None, None) => Ok(None),
        (Some(value), None) => match value.strip_prefix("env:") {
            Some(name) => match std::env::var(name) {
                Ok(value) if !value.is_empty() => Ok(Some(Secret(value))),
                Ok(_) => Err(format!("environment variable {name} is empty")),
                Err(_) => Err(format!(
                    "environment variable {name} is not set (or not UTF-8)"
                )),
            },
            None => Ok(Some(Secret(value.to_owned()))),
        },
        (None, Some(path)) => {
            let full = base_dir.join(path);
            let text = std::fs::read_to_string(&full)
                .map_err(|err| format!("cannot read secret file {path:?}: {err}"))?;
            let value = text.strip_suffix('\n').unwrap_or(&text);
            let value = value.strip_suffix('\r').unwrap_or(value);
            if value.is_empty() {
                return Err(format!("secret file {path:?} is empty"));
            }
            Ok(Some(Secret(value.to_owned())))
        }
    }
}

/// The shortest sealing secret accepted, in bytes.
pub const MIN_SEALING_SECRET: usize = 32;

/// A sealing secret is at least [`MIN_SEALING_SECRET`] bytes (what is written, after one trailing
/// newline is dropped).
pub fn check_sealing_secret(secret: &[u8]) -> Result<(), String> {
    if secret.len() < MIN_SEALING_SECRET {
        return Err(format!(
            "is {} bytes; a sealing secret needs at least {MIN_SEALING_SECRET} (e.g. the output of `openssl rand -base64 32`)",
            secret.len()
        ));
    }
    Ok(())
}

/// A sealing secret as written in its file or variable: one trailing newline dropped.
pub fn sealing_secret_text(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes.strip_suffix(b"\r").unwrap_or(bytes)
}

/// A file holding a secret (`meta` its metadata) must be readable by its owner only: the message
/// gives the `chmod` to run.
pub fn owner_only(path: &Path, meta: &std::fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} can be read by group or others (mode {mode:o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

/// A secret file that exists must be readable by its owner only and hold a long enough secret.
/// `may_be_missing`: a missing file is fine (it is created at start).
pub fn check_private_secret_file(path: &Path, may_be_missing: bool) -> Result<(), String> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && may_be_missing => return Ok(()),
        Err(err) => return Err(format!("cannot read {}: {err}", path.display())),
    };
    owner_only(path, &meta)?;
    let bytes =
        std::fs::read(path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    check_sealing_secret(sealing_secret_text(&bytes))
        .map_err(|problem| format!("{} {problem}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_env_and_file_forms_resolve() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s.txt"), "from-file\n").unwrap();
        let inline = resolve(Some("plain"), None, dir.path(), "k")
            .unwrap()
            .unwrap();
        assert_eq!(inline.expose(), "plain");
        let file = resolve(None, Some("s.txt"), dir.path(), "k")
            .unwrap()
            .unwrap();
        assert_eq!(file.expose(), "from-file");
        // PATH is set in every environment this runs in; reading it avoids mutating the environment.
        let env = resolve(Some("env:PATH"), None, dir.path(), "k")
            .unwrap()
            .unwrap();
        assert_eq!(env.expose(), std::env::var("PATH").unwrap());
        assert!(resolve(None, None, dir.path(), "k").unwrap().is_none());
    }

    #[test]
    fn errors_name_the_source_and_never_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve(
            Some("env:PORTCULLIS_SURELY_UNSET_VAR"),
            None,
            dir.path(),
            "k",
        )
        .unwrap_err();
        assert_eq!(
            err,
            "environment variable PORTCULLIS_SURELY_UNSET_VAR is not set (or not UTF-8)"
        );
        let err = resolve(None, Some("missing.txt"), dir.path(), "k").unwrap_err();
        assert!(
            err.starts_with("cannot read secret file \"missing.txt\""),
            "{err}"
        );
        let err = resolve(Some("a"), Some("b"), dir.path(), "client_secret").unwrap_err();
        assert_eq!(
            err,
            "set either `client_secret` or `client_secret_file`, not both"
        );
    }

    #[test]
    fn secrets_print_redacted() {
        let secret = Secret("hunter2".into());
        assert_eq!(format!("{secret:?} {secret}"), "[redacted] [redacted]");
    }
}
