//! Settings a running process cannot change: they are reported, and the rest of a reload applies.

use std::net::SocketAddr;

use crate::config::{ServerConfig, SessionConfig};

/// `server.listen`, `server.admin_listen` and `server.workers` differ from what is bound.
pub(super) fn listeners(
    listen: &[SocketAddr],
    admin_listen: Option<SocketAddr>,
    workers: usize,
    wanted: &ServerConfig,
) -> Vec<String> {
    let mut changed = Vec::new();
    if listen != wanted.listen {
        changed.push("server.listen".to_owned());
    }
    if workers != wanted.workers {
        changed.push("server.workers".to_owned());
    }
    if admin_listen != wanted.admin_listen {
        changed.push("server.admin_listen".to_owned());
    }
    changed
}

/// `[dev_idp]` differs from the provider started with the process.
pub(super) fn dev_idp(
    started: &Option<crate::config::DevIdpConfig>,
    wanted: &Option<crate::config::DevIdpConfig>,
) -> Vec<String> {
    if started == wanted {
        Vec::new()
    } else {
        vec!["dev_idp".to_owned()]
    }
}

/// `[session]` keys that differ from the settings the session store was opened with.
pub(super) fn sessions(opened_with: &SessionConfig, wanted: &SessionConfig) -> Vec<String> {
    // Destructured so that a new `[session]` key cannot be forgotten here.
    let SessionConfig {
        store,
        cookie_name,
        cookie_secure,
        cookie_persistent,
        cookie_domain,
        renew,
        lifetime,
        idle_timeout,
        cache_entries,
        sweep_interval,
        cache_lifetime,
        sealing,
    } = wanted;
    [
        (
            "session.store / session.path / session.redis_* / session.key_prefix",
            opened_with.store != *store,
        ),
        (
            "session.cookie_name",
            opened_with.cookie_name != *cookie_name,
        ),
        (
            "session.cookie_secure",
            opened_with.cookie_secure != *cookie_secure,
        ),
        (
            "session.cookie_persistent",
            opened_with.cookie_persistent != *cookie_persistent,
        ),
        (
            "session.cookie_domain",
            opened_with.cookie_domain != *cookie_domain,
        ),
        ("session.renew", opened_with.renew != *renew),
        ("session.lifetime", opened_with.lifetime != *lifetime),
        (
            "session.idle_timeout",
            opened_with.idle_timeout != *idle_timeout,
        ),
        (
            "session.cache_entries",
            opened_with.cache_entries != *cache_entries,
        ),
        (
            "session.sweep_interval",
            opened_with.sweep_interval != *sweep_interval,
        ),
        (
            "session.cache_lifetime",
            opened_with.cache_lifetime != *cache_lifetime,
        ),
        (
            "session.secret_file / session.previous_secret_files",
            opened_with.sealing != *sealing,
        ),
    ]
    .into_iter()
    .filter(|(_, changed)| *changed)
    .map(|(key, _)| key.to_owned())
    .collect()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::config::{Sealing, SecretSource, StoreKind};

    fn opened() -> SessionConfig {
        SessionConfig {
            store: StoreKind::Sled(PathBuf::from("data/sessions")),
            cookie_name: "sess".into(),
            cookie_secure: true,
            cookie_persistent: true,
            cookie_domain: None,
            renew: Duration::from_secs(3600),
            lifetime: Duration::from_secs(86_400),
            idle_timeout: Duration::from_secs(28_800),
            cache_entries: 10_000,
            sweep_interval: Duration::from_secs(60),
            cache_lifetime: Duration::from_secs(1),
            sealing: Sealing {
                current: SecretSource::File(PathBuf::from("data/session.key")),
                previous: Vec::new(),
            },
        }
    }

    /// A change to one `[session]` key, and the name it is reported under.
    type Change = (&'static str, fn(&mut SessionConfig));

    /// Every `[session]` key, changed on its own, is reported by its name: a reload can change
    /// none of them (the store and the cookies it issued were made with the old ones).
    #[test]
    fn every_session_key_changed_is_reported_as_needing_a_restart() {
        let changes: [Change; 12] = [
            (
                "session.store / session.path / session.redis_* / session.key_prefix",
                |s| s.store = StoreKind::Memory,
            ),
            ("session.cookie_name", |s| s.cookie_name = "other".into()),
            ("session.cookie_secure", |s| s.cookie_secure = false),
            ("session.cookie_persistent", |s| s.cookie_persistent = false),
            ("session.cookie_domain", |s| {
                s.cookie_domain = Some("example.com".into())
            }),
            ("session.renew", |s| s.renew = Duration::from_secs(60)),
            ("session.lifetime", |s| s.lifetime = Duration::from_secs(60)),
            ("session.idle_timeout", |s| {
                s.idle_timeout = Duration::from_secs(60)
            }),
            ("session.cache_entries", |s| s.cache_entries = 1),
            ("session.sweep_interval", |s| {
                s.sweep_interval = Duration::from_secs(1)
            }),
            ("session.cache_lifetime", |s| {
                s.cache_lifetime = Duration::from_secs(5)
            }),
            ("session.secret_file / session.previous_secret_files", |s| {
                s.sealing.previous = vec![PathBuf::from("old.key")]
            }),
        ];
        assert!(sessions(&opened(), &opened()).is_empty());
        for (key, change) in changes {
            let mut wanted = opened();
            change(&mut wanted);
            assert_eq!(sessions(&opened(), &wanted), vec![key.to_owned()]);
        }
    }
}
