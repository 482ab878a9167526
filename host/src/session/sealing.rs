//! Sealing session records at rest: ChaCha20-Poly1305 under keys derived from the configured
//! secrets, so a copy of the store's files (a backup, a world-readable folder, a log-structured
//! store's old pages) holds no token and no claim.
//!
//! - A key is HKDF-SHA256 of a secret (`[session] secret_file`, or `PORTCULLIS_SESSION_SECRET`);
//!   records are sealed with the current secret's key and opened with it or an earlier one
//!   (`previous_secret_files`), so a secret can be rotated without logging everyone out.
//! - A sealed record is `1 | key id (4) | nonce (12) | ciphertext and tag`. The key id says which
//!   key sealed it; the nonce is random.
//! - The record's store key is the associated data: a record copied under another key (another
//!   session's) does not open.
//! - A record that does not open is no record: the user logs in again.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;

use super::StoreError;
use crate::config::secret::{check_private_secret_file, check_sealing_secret, sealing_secret_text};
use crate::config::{SESSION_SECRET_ENV, Sealing, SecretSource};

/// The first byte of every sealed record.
const FORMAT: u8 = 1;
const KEY_ID_LEN: usize = 4;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;

/// One key and its id.
struct SealingKey {
    id: [u8; KEY_ID_LEN],
    key: LessSafeKey,
}

impl SealingKey {
    fn derive(secret: &[u8]) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"portcullis session records").extract(secret);
        let mut key = [0u8; 32];
        prk.expand(&[b"chacha20-poly1305 key"], Len(32))
            .and_then(|okm| okm.fill(&mut key))
            .expect("32 bytes is a valid HKDF-SHA256 length");
        let mut id = [0u8; KEY_ID_LEN];
        prk.expand(&[b"key id"], Len(KEY_ID_LEN))
            .and_then(|okm| okm.fill(&mut id))
            .expect("4 bytes is a valid HKDF-SHA256 length");
        let key = UnboundKey::new(&CHACHA20_POLY1305, &key).expect("a 32-byte key");
        SealingKey {
            id,
            key: LessSafeKey::new(key),
        }
    }
}

/// An HKDF output length.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// The keys that seal and open session records.
pub struct SealingKeys {
    current: SealingKey,
    previous: Vec<SealingKey>,
}

impl SealingKeys {
    /// Keys from secrets given directly (tests, benches).
    pub fn from_secrets(current: &[u8], previous: &[&[u8]]) -> Self {
        SealingKeys {
            current: SealingKey::derive(current),
            previous: previous.iter().map(|s| SealingKey::derive(s)).collect(),
        }
    }

    /// Reads the configured secrets; creates the current secret's file, private, with a new
    /// random secret when it is missing.
    pub fn load(sealing: &Sealing) -> Result<Self, StoreError> {
        let current = match &sealing.current {
            SecretSource::Env => {
                let value = std::env::var(SESSION_SECRET_ENV).map_err(|_| {
                    StoreError(format!("{SESSION_SECRET_ENV} is not set (or not UTF-8)"))
                })?;
                let secret = sealing_secret_text(value.as_bytes()).to_vec();
                check_sealing_secret(&secret)
                    .map_err(|problem| StoreError(format!("{SESSION_SECRET_ENV} {problem}")))?;
                secret
            }
            SecretSource::File(path) => {
                create_secret_file_if_missing(path)?;
                read_secret_file(path)?
            }
        };
        let previous = sealing
            .previous
            .iter()
            .map(|path| read_secret_file(path))
            .collect::<Result<Vec<_>, _>>()?;
        let previous: Vec<&[u8]> = previous.iter().map(Vec::as_slice).collect();
        Ok(Self::from_secrets(&current, &previous))
    }

    /// Seals `record`, bound to `store_key`.
    pub fn seal(&self, store_key: &[u8], record: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut sealed =
            Vec::with_capacity(HEADER_LEN + record.len() + CHACHA20_POLY1305.tag_len());
        sealed.push(FORMAT);
        sealed.extend_from_slice(&self.current.id);
        sealed.extend_from_slice(&nonce);
        let mut body = record.to_vec();
        self.current
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(store_key),
                &mut body,
            )
            .expect("a session record is far below ChaCha20-Poly1305's length limit");
        sealed.extend_from_slice(&body);
        sealed
    }

    /// The record sealed in `sealed` under `store_key`; `None` when it was sealed by a key not
    /// configured, was changed, or belongs under another key.
    pub fn open(&self, store_key: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let (&format, rest) = sealed.split_first()?;
        if format != FORMAT || rest.len() < KEY_ID_LEN + NONCE_LEN {
            return None;
        }
        let (id, rest) = rest.split_at(KEY_ID_LEN);
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|key| key.id == id)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = body.to_vec();
        let opened = key
            .key
            .open_in_place(nonce, Aad::from(store_key), &mut body)
            .ok()?;
        Some(opened.to_vec())
    }
}

/// Reads a secret file, refusing one that group or others can read.
fn read_secret_file(path: &Path) -> Result<Vec<u8>, StoreError> {
    check_private_secret_file(path, false)
        .map_err(|problem| StoreError(format!("session secret: {problem}")))?;
    let bytes = std::fs::read(path)
        .map_err(|err| StoreError(format!("cannot read {}: {err}", path.display())))?;
    Ok(sealing_secret_text(&bytes).to_vec())
}

/// Writes a new random secret (256 bits, base64url, one line) to `path`, private, unless the file
/// exists. Two processes starting at once agree: only one creates it, the other reads it.
fn create_secret_file_if_missing(path: &Path) -> Result<(), StoreError> {
    if path.exists() {
        return Ok(());
    }
    let fail = |what: &str, err: std::io::Error| {
        StoreError(format!(
            "cannot {what} the session secret {}: {err}",
            path.display()
        ))
    };
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(folder)
            .map_err(|err| fail("create the folder of", err))?;
    }
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    let mut file = match file {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(err) => return Err(fail("create", err)),
    };
    writeln!(file, "{}", URL_SAFE_NO_PAD.encode(secret))
        .and_then(|()| file.sync_all())
        .map_err(|err| fail("write", err))?;
    tracing::info!(path = %path.display(), "created a new session secret");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const OLD: &[u8] = b"an earlier secret, long enough.....";

    #[test]
    fn a_sealed_record_opens_under_its_key_only_and_shows_nothing_of_its_content() {
        let keys = SealingKeys::from_secrets(SECRET, &[]);
        let sealed = keys.seal(b"s-key", b"{\"access_token\":\"tok-123\"}");
        assert!(!sealed.windows(7).any(|w| w == b"tok-123"));
        assert_eq!(
            keys.open(b"s-key", &sealed).as_deref(),
            Some(&b"{\"access_token\":\"tok-123\"}"[..])
        );
        assert_eq!(keys.open(b"s-other", &sealed), None, "moved to another key");
        let mut changed = sealed.clone();
        *changed.last_mut().unwrap() ^= 1;
        assert_eq!(keys.open(b"s-key", &changed), None, "changed");
        assert_eq!(keys.open(b"s-key", &sealed[..10]), None, "cut short");
        assert_eq!(keys.open(b"s-key", b"{\"plain\":1}"), None, "never sealed");
    }

    #[test]
    fn a_previous_secret_opens_what_it_sealed_and_another_secret_opens_nothing() {
        let old = SealingKeys::from_secrets(OLD, &[]);
        let sealed = old.seal(b"k", b"record");
        let rotated = SealingKeys::from_secrets(SECRET, &[OLD]);
        assert_eq!(rotated.open(b"k", &sealed).as_deref(), Some(&b"record"[..]));
        let resealed = rotated.seal(b"k", b"record");
        assert_eq!(old.open(b"k", &resealed), None, "sealed with the new key");
        let other = SealingKeys::from_secrets(SECRET, &[]);
        assert_eq!(other.open(b"k", &sealed), None);
    }

    #[test]
    fn two_seals_of_one_record_differ() {
        let keys = SealingKeys::from_secrets(SECRET, &[]);
        assert_ne!(keys.seal(b"k", b"same"), keys.seal(b"k", b"same"));
    }

    #[test]
    fn a_missing_secret_file_is_created_private_and_read_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/session.key");
        let sealing = Sealing {
            current: SecretSource::File(path.clone()),
            previous: Vec::new(),
        };
        let first = SealingKeys::load(&sealing).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let folder = std::fs::metadata(path.parent().unwrap()).unwrap();
        assert_eq!(folder.permissions().mode() & 0o777, 0o700);
        let second = SealingKeys::load(&sealing).unwrap();
        let sealed = first.seal(b"k", b"v");
        assert_eq!(second.open(b"k", &sealed).as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn a_secret_file_others_can_read_or_too_short_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session.key");
        std::fs::write(&path, SECRET).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let sealing = Sealing {
            current: SecretSource::File(path.clone()),
            previous: Vec::new(),
        };
        let err = SealingKeys::load(&sealing).err().unwrap().0;
        assert!(
            err.contains(&format!("run `chmod 600 {}`", path.display())),
            "{err}"
        );
        std::fs::write(&path, "short\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = SealingKeys::load(&sealing).err().unwrap().0;
        assert!(err.contains("needs at least 32"), "{err}");
    }
}
