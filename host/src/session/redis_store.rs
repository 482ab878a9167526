//! [`RedisStore`]: sessions in Redis or a Redis Cluster, shared by every instance that names it.
//!
//! - Key: `key_prefix` + the store key in hex (`portcullis:73…`): readable in `redis-cli --scan`,
//!   and never a cookie value (store keys are hashes).
//! - Value: 8 bytes big-endian expiry, then the (sealed) record, as in sled. Redis drops the key
//!   by itself at that expiry (`PX`, relative, so the clocks of Redis and the instance need not
//!   agree); readers also check it against the store's clock, so a record is gone at its expiry
//!   whatever Redis's timer does.
//! - Conditional writes (`put_new`, `replace`) are one Lua script each, and `take` is `GETDEL`:
//!   atomic on one key, so they hold in a cluster too (every command touches one key).
//! - One multiplexed connection per instance (the `redis` crate's connection manager, or its
//!   async cluster connection): every request pipelines on it, so there is no pool to size. It is
//!   made on first use and re-made by the client after a failure; every command is bounded by
//!   `redis_timeout`, so an unreachable Redis costs a request that long at most (then a 503).

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};
use tokio::sync::OnceCell;

use super::store::{Clock, SessionStore, StoreError, UnixTime};
use crate::config::{RedisConfig, RedisTarget};

/// `put_new`: set unless a live record is there. KEYS[1]; ARGV: record, ttl ms, now.
const PUT_NEW: &str = r"
local current = redis.call('GET', KEYS[1])
if current and string.len(current) >= 8 then
  local expiry = 0
  for i = 1, 8 do expiry = expiry * 256 + string.byte(current, i) end
  if expiry > tonumber(ARGV[3]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// `replace`: set only while a live record is there. KEYS[1]; ARGV: record, ttl ms, now.
const REPLACE: &str = r"
local current = redis.call('GET', KEYS[1])
if not current or string.len(current) < 8 then return 0 end
local expiry = 0
for i = 1, 8 do expiry = expiry * 256 + string.byte(current, i) end
if expiry <= tonumber(ARGV[3]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// A [`SessionStore`] in Redis.
pub struct RedisStore {
    link: Link,
    key_prefix: Vec<u8>,
    timeout: Duration,
    clock: Arc<dyn Clock>,
    put_new: Script,
    replace: Script,
}

/// The connection: made on first use, then kept (the client reconnects it by itself).
enum Link {
    Server(ConnectionManager),
    Cluster(Box<LazyCluster>),
}

/// A cluster client and its connection, once made.
struct LazyCluster {
    client: redis::cluster::ClusterClient,
    connection: OnceCell<ClusterConnection>,
}

impl RedisStore {
    /// A store on the configured Redis. Connects on first use: a Redis that is down at start is
    /// not fatal (requests that need it get a 503 until it answers).
    pub fn open(config: &RedisConfig, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let link = match &config.target {
            RedisTarget::Server(url) => {
                let client = redis::Client::open(url.expose()).map_err(|err| {
                    StoreError(format!(
                        "session.redis_url is not usable ({:?})",
                        err.kind()
                    ))
                })?;
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(config.timeout))
                    .set_response_timeout(Some(config.timeout))
                    // A failed connection is re-made on the next command, once: requests must not
                    // queue behind a retry schedule while Redis is down.
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(10))
                    .set_max_delay(config.timeout);
                Link::Server(
                    ConnectionManager::new_lazy_with_config(client, manager_config).map_err(
                        |err| StoreError(format!("cannot set up the Redis connection: {err}")),
                    )?,
                )
            }
            RedisTarget::Cluster(nodes) => {
                let client = redis::cluster::ClusterClient::builder(
                    nodes.iter().map(|url| url.expose().to_owned()),
                )
                .connection_timeout(config.timeout)
                .response_timeout(config.timeout)
                .retries(2)
                .build()
                .map_err(|err| {
                    StoreError(format!(
                        "session.redis_nodes are not usable ({:?})",
                        err.kind()
                    ))
                })?;
                Link::Cluster(Box::new(LazyCluster {
                    client,
                    connection: OnceCell::new(),
                }))
            }
        };
        Ok(RedisStore {
            link,
            key_prefix: config.key_prefix.as_bytes().to_vec(),
            timeout: config.timeout,
            clock,
            put_new: Script::new(PUT_NEW),
            replace: Script::new(REPLACE),
        })
    }

    /// The connection to send a command on.
    async fn connection(&self) -> Result<Connection, StoreError> {
        match &self.link {
            Link::Server(manager) => Ok(Connection::Server(manager.clone())),
            Link::Cluster(cluster) => {
                let connection = cluster
                    .connection
                    .get_or_try_init(|| cluster.client.get_async_connection())
                    .await
                    .map_err(|err| StoreError(format!("cannot reach the Redis Cluster: {err}")))?;
                Ok(Connection::Cluster(connection.clone()))
            }
        }
    }

    /// Runs `command` within the timeout.
    async fn run<T>(
        &self,
        what: &str,
        command: impl AsyncFnOnce(Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let attempt = async {
            let connection = self.connection().await?;
            command(connection)
                .await
                .map_err(|err| StoreError(format!("Redis {what} failed: {err}")))
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(StoreError(format!(
                "Redis did not answer {what} within {:?} (session.redis_timeout)",
                self.timeout
            ))),
        }
    }

    fn redis_key(&self, key: &[u8]) -> Vec<u8> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut redis_key = Vec::with_capacity(self.key_prefix.len() + key.len() * 2);
        redis_key.extend_from_slice(&self.key_prefix);
        for byte in key {
            redis_key.push(HEX[usize::from(byte >> 4)]);
            redis_key.push(HEX[usize::from(byte & 0xf)]);
        }
        redis_key
    }

    /// The value of a stored record if it is live by the store's clock.
    fn live(&self, record: Option<Vec<u8>>) -> Option<Vec<u8>> {
        let record = record?;
        let (expiry, value) = record.split_first_chunk::<8>()?;
        (u64::from_be_bytes(*expiry) > self.clock.now()).then(|| value.to_vec())
    }

    /// The record to store, and how long Redis keeps it (at least 1 ms: `PX` takes no zero).
    fn record(&self, value: &[u8], expires_at: UnixTime) -> (Vec<u8>, u64) {
        let mut record = Vec::with_capacity(8 + value.len());
        record.extend_from_slice(&expires_at.to_be_bytes());
        record.extend_from_slice(value);
        let ttl_ms = expires_at
            .saturating_sub(self.clock.now())
            .saturating_mul(1000)
            .max(1);
        (record, ttl_ms)
    }

    async fn conditional_set(
        &self,
        what: &str,
        script: &Script,
        key: &[u8],
        value: &[u8],
        expires_at: UnixTime,
    ) -> Result<bool, StoreError> {
        let redis_key = self.redis_key(key);
        let (record, ttl_ms) = self.record(value, expires_at);
        let now = self.clock.now();
        let done: i64 = self
            .run(what, async |mut connection| {
                script
                    .key(&redis_key)
                    .arg(&record)
                    .arg(ttl_ms)
                    .arg(now)
                    .invoke_async(&mut connection)
                    .await
            })
            .await?;
        Ok(done == 1)
    }
}

#[async_trait::async_trait]
impl SessionStore for RedisStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let redis_key = self.redis_key(key);
        let record: Option<Vec<u8>> = self
            .run("GET", async |mut connection| {
                redis::cmd("GET")
                    .arg(&redis_key)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        Ok(self.live(record))
    }

    async fn put(&self, key: &[u8], value: &[u8], expires_at: UnixTime) -> Result<(), StoreError> {
        let redis_key = self.redis_key(key);
        if expires_at <= self.clock.now() {
            return self.remove(key).await;
        }
        let (record, ttl_ms) = self.record(value, expires_at);
        self.run("SET", async |mut connection| {
            redis::cmd("SET")
                .arg(&redis_key)
                .arg(&record)
                .arg("PX")
                .arg(ttl_ms)
                .query_async::<()>(&mut connection)
                .await
        })
        .await
    }

    async fn put_new(
        &self,
        key: &[u8],
        value: &[u8],
        expires_at: UnixTime,
    ) -> Result<bool, StoreError> {
        self.conditional_set("put_new", &self.put_new, key, value, expires_at)
            .await
    }

    async fn replace(
        &self,
        key: &[u8],
        value: &[u8],
        expires_at: UnixTime,
    ) -> Result<bool, StoreError> {
        self.conditional_set("replace", &self.replace, key, value, expires_at)
            .await
    }

    async fn take(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let redis_key = self.redis_key(key);
        let record: Option<Vec<u8>> = self
            .run("GETDEL", async |mut connection| {
                redis::cmd("GETDEL")
                    .arg(&redis_key)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        Ok(self.live(record))
    }

    async fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        let redis_key = self.redis_key(key);
        self.run("DEL", async |mut connection| {
            redis::cmd("DEL")
                .arg(&redis_key)
                .query_async::<()>(&mut connection)
                .await
        })
        .await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // An acknowledged write is in Redis; how long it survives Redis's own restart is its
        // persistence settings' business (docs/operations.md).
        Ok(())
    }

    async fn sweep(&self) -> Result<usize, StoreError> {
        // Redis drops every record at its expiry by itself (`PX`).
        Ok(0)
    }

    fn expires_records_itself(&self) -> bool {
        true
    }
}

/// One connection handle, whichever kind (both are cheap clones of a multiplexed connection).
#[derive(Clone)]
enum Connection {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Server(connection) => connection.req_packed_command(cmd),
            Connection::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Server(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
            Connection::Cluster(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Server(connection) => connection.get_db(),
            Connection::Cluster(connection) => connection.get_db(),
        }
    }
}
