//! `[session] store = "redis" | "redis-cluster"`: where the shared store is and how long to wait
//! for it. Every message names its key and what to do; none shows a URL (it may hold a password).

use std::fmt;
use std::path::Path;
use std::time::Duration;

use url::Url;

use super::check::{Problems, duration_within};
use super::defaults;

/// A shared Redis store, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// One server, or the nodes of a cluster.
    pub target: RedisTarget,
    /// What every key of this deployment starts with (several deployments may share a Redis).
    pub key_prefix: String,
    /// The longest a request waits for Redis (to connect, or to answer one command).
    pub timeout: Duration,
    /// The CA certificates (PEM, as read at start) that verify a `rediss://` server; `None`: the
    /// public web roots.
    pub ca: Option<Vec<u8>>,
}

/// Where Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// `store = "redis"`: one server (or a proxy in front of several).
    Server(RedisUrl),
    /// `store = "redis-cluster"`: nodes of one Redis Cluster; the client finds the others.
    Cluster(Vec<RedisUrl>),
}

/// A `redis://` or `rediss://` URL. May carry a password: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// A `redis://` or `rediss://` URL with a host; the message (which never repeats the URL)
    /// says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        redis_url(text)
    }

    /// The URL itself, for the Redis client only (never a log).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RedisUrl([redacted])")
    }
}

/// The `[session]` keys of a Redis store, as written.
pub(super) struct RawRedis<'a> {
    pub url: Option<&'a str>,
    pub url_file: Option<&'a str>,
    pub nodes: Option<&'a [String]>,
    pub key_prefix: Option<&'a str>,
    pub timeout: Option<&'a str>,
    pub ca: Option<&'a str>,
}

impl RawRedis<'_> {
    /// Whether any Redis key is written (they mean nothing for another store).
    pub fn any(&self) -> bool {
        self.url.is_some()
            || self.url_file.is_some()
            || self.nodes.is_some()
            || self.key_prefix.is_some()
            || self.timeout.is_some()
            || self.ca.is_some()
    }
}

/// `store = "redis"` (`cluster` false) or `"redis-cluster"`: every key checked.
pub(super) fn validate(
    raw: &RawRedis<'_>,
    cluster: bool,
    base_dir: &Path,
    problems: &mut Problems,
) -> Option<RedisConfig> {
    let target = if cluster {
        cluster_target(raw, problems)
    } else {
        server_target(raw, base_dir, problems)
    };
    let key_prefix = raw.key_prefix.unwrap_or(defaults::SESSION_KEY_PREFIX);
    let prefix_ok = key_prefix.len() <= 64 && key_prefix.bytes().all(|b| b.is_ascii_graphic());
    if !prefix_ok {
        problems.add(
            "session.key_prefix",
            format!(
                "use at most 64 visible ASCII characters, no spaces (e.g. \"portcullis:\"): {key_prefix:?}"
            ),
        );
    }
    let timeout = duration_within(
        problems,
        "session.redis_timeout",
        raw.timeout,
        defaults::SESSION_REDIS_TIMEOUT,
        Duration::from_millis(10)..=Duration::from_secs(60),
        "between 10ms and 60s",
    );
    let ca = raw
        .ca
        .and_then(|file| redis_ca(file, target.as_ref(), base_dir, problems));
    if raw.ca.is_some() && ca.is_none() {
        return None;
    }
    Some(RedisConfig {
        ca,
        target: target?,
        key_prefix: prefix_ok.then(|| key_prefix.to_owned())?,
        timeout: timeout?,
    })
}

fn server_target(
    raw: &RawRedis<'_>,
    base_dir: &Path,
    problems: &mut Problems,
) -> Option<RedisTarget> {
    if raw.nodes.is_some() {
        problems.add(
            "session.redis_nodes",
            "lists the nodes of a Redis Cluster: set `store = \"redis-cluster\"`, or use `redis_url` for one server",
        );
    }
    let (key, text) = match (raw.url, raw.url_file) {
        (Some(_), Some(_)) => {
            problems.add(
                "session.redis_url",
                "set either `redis_url` or `redis_url_file`, not both",
            );
            return None;
        }
        (None, None) => {
            problems.add(
                "session.redis_url",
                "is required with `store = \"redis\"`: e.g. \"redis://127.0.0.1:6379\" (or `redis_url_file` naming a private file that holds the URL with its password)",
            );
            return None;
        }
        (Some(url), None) => ("session.redis_url", url.to_owned()),
        (None, Some(file)) => (
            "session.redis_url_file",
            problems.check("session.redis_url_file", read_url_file(base_dir, file))?,
        ),
    };
    let url = problems.check(key, redis_url(&text))?;
    // What the client itself refuses (a 0.0.0.0 host, a password that is not UTF-8, unknown
    // parameters), found now rather than by `run`.
    problems.check(
        key,
        redis::Client::open(url.expose())
            .map(drop)
            .map_err(|err| {
                client_refusal(
                    &err,
                    &[url.expose()],
                    "write it as redis://[user:password@]host:port[/db], with a host it can connect to (not 0.0.0.0)",
                )
            }),
    )?;
    Some(RedisTarget::Server(url))
}

fn cluster_target(raw: &RawRedis<'_>, problems: &mut Problems) -> Option<RedisTarget> {
    if raw.url.is_some() || raw.url_file.is_some() {
        problems.add(
            "session.redis_url",
            "names one server: with `store = \"redis-cluster\"` list the cluster's nodes in `redis_nodes`",
        );
    }
    let Some(nodes) = raw.nodes else {
        problems.add(
            "session.redis_nodes",
            "is required with `store = \"redis-cluster\"`: e.g. [\"redis://10.0.0.1:6379\", \"redis://10.0.0.2:6379\", \"redis://10.0.0.3:6379\"]",
        );
        return None;
    };
    if nodes.len() < 2 {
        problems.add(
            "session.redis_nodes",
            format!(
                "lists {} node(s); a Redis Cluster has at least three masters: list two or more of them, so that the proxy finds the cluster while one is down (or use `store = \"redis\"` for a single server)",
                nodes.len()
            ),
        );
        return None;
    }
    let urls: Vec<Option<RedisUrl>> = nodes
        .iter()
        .enumerate()
        .map(|(at, node)| problems.check(format!("session.redis_nodes[{at}]"), redis_url(node)))
        .collect();
    let urls: Vec<RedisUrl> = urls.into_iter().collect::<Option<Vec<_>>>()?;
    let distinct: std::collections::BTreeSet<Option<(String, u16)>> =
        urls.iter().map(|url| node_address(url.expose())).collect();
    if distinct.len() < urls.len() {
        problems.add(
            "session.redis_nodes",
            "names one node twice: list two or more different nodes of the cluster",
        );
        return None;
    }
    let texts: Vec<&str> = urls.iter().map(RedisUrl::expose).collect();
    problems.check(
        "session.redis_nodes",
        redis::cluster::ClusterClient::new(texts.clone())
            .map(drop)
            .map_err(|err| {
                client_refusal(
                    &err,
                    &texts,
                    "every node needs the same password and the same scheme, and a host it can connect to (not 0.0.0.0)",
                )
            }),
    )?;
    Some(RedisTarget::Cluster(urls))
}

/// A node's host (lowercase) and port (6379 when not written): two URLs naming one node differ
/// only in what this drops.
fn node_address(url: &str) -> Option<(String, u16)> {
    let url = Url::parse(url).ok()?;
    Some((
        url.host_str()?.to_ascii_lowercase(),
        url.port().unwrap_or(6379),
    ))
}

/// The Redis client's reason for refusing a URL, without the URL or anything in it.
fn client_refusal(err: &redis::RedisError, urls: &[&str], advice: &str) -> String {
    let detail = err.detail().unwrap_or_default();
    let leaks = urls.iter().any(|url| {
        Url::parse(url).is_ok_and(|url| {
            let password = url.password().unwrap_or_default();
            (!password.is_empty() && detail.contains(password))
                || (!url.username().is_empty() && detail.contains(url.username()))
        }) || detail.contains(url)
    });
    let reason = if leaks || detail.is_empty() {
        format!("{:?}", err.kind())
    } else {
        format!("{:?}: {detail}", err.kind())
    };
    format!("the Redis client refuses it ({reason}); {advice}")
}

/// `redis_ca`: a PEM bundle of CA certificates, for `rediss://` URLs only.
fn redis_ca(
    file: &str,
    target: Option<&RedisTarget>,
    base_dir: &Path,
    problems: &mut Problems,
) -> Option<Vec<u8>> {
    let urls: Vec<&RedisUrl> = match target? {
        RedisTarget::Server(url) => vec![url],
        RedisTarget::Cluster(nodes) => nodes.iter().collect(),
    };
    if !urls.iter().all(|url| url.expose().starts_with("rediss://")) {
        problems.add(
            "session.redis_ca",
            "verifies a TLS server: use rediss:// URLs, or remove it",
        );
        return None;
    }
    let path = base_dir.join(file);
    problems.check(
        "session.redis_ca",
        crate::tls::load_ca_bundle(&path, file).and_then(|_| {
            std::fs::read(&path).map_err(|err| format!("cannot read {file:?}: {err}"))
        }),
    )
}

/// A `redis://` or `rediss://` URL with a host. The message never repeats the URL.
fn redis_url(text: &str) -> Result<RedisUrl, String> {
    const FORM: &str = "redis://[user:password@]host:port[/db] or rediss://… for TLS";
    let url = Url::parse(text.trim())
        .map_err(|err| format!("is not a URL ({err}); write it as {FORM}"))?;
    if !matches!(url.scheme(), "redis" | "rediss") {
        return Err(format!(
            "has the scheme {:?}; write it as {FORM}",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("names no host; write it as {FORM}"));
    }
    let db = url.path().trim_start_matches('/');
    if !db.is_empty() && db.parse::<u16>().is_err() {
        return Err(format!(
            "ends in a path that is not a database number; write it as {FORM}"
        ));
    }
    Ok(RedisUrl(text.trim().to_owned()))
}

/// `redis_url_file`: a file only its owner can read, holding the URL (and its password).
fn read_url_file(base_dir: &Path, file: &str) -> Result<String, String> {
    let path = base_dir.join(file);
    let meta = std::fs::metadata(&path).map_err(|err| {
        format!(
            "cannot read {}: {err}; write the URL (e.g. redis://:password@host:6379) into it, readable by Portcullis's user only",
            path.display()
        )
    })?;
    if !meta.is_file() {
        return Err(format!(
            "{} is not a file; write the URL (e.g. redis://:password@host:6379) into a file readable by Portcullis's user only, and name that",
            path.display()
        ));
    }
    super::secret::owner_only(&path, &meta)?;
    let text = std::fs::read_to_string(&path)
        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    let url = text.trim();
    if url.is_empty() {
        return Err(format!(
            "{} is empty; write the Redis URL into it",
            path.display()
        ));
    }
    Ok(url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_without_repeating_them() {
        assert!(redis_url("redis://127.0.0.1:6379").is_ok());
        assert!(redis_url("rediss://:pw@redis.example:6380/2").is_ok());
        for bad in [
            "http://:hunter2@127.0.0.1:6379",
            "redis://:hunter2@/",
            "127.0.0.1:6379",
            "redis://:hunter2@host/not-a-db",
        ] {
            let message = redis_url(bad).unwrap_err();
            assert!(!message.contains("hunter2"), "{message}");
            assert!(message.contains("redis://"), "{message}");
        }
    }
}
