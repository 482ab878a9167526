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

use futures_util::future::{BoxFuture, FutureExt, Shared};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, Script, ScriptInvocation, Value};
use tokio::sync::OnceCell;

use super::outage_log::OutageLog;
use super::store::{Clock, SessionStore, StoreError, UnixTime};
use crate::config::{RedisConfig, RedisTarget};

/// `put_new`: set unless a live record is there, other than this very one (the same command sent
/// again after a lost reply finds its own record: yes again). KEYS[1]; ARGV: record, ttl ms, now.
const PUT_NEW: &str = r"
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then return 1 end
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

/// Starts the message of a read that found something other than a record under a key (a list,
/// a hash: not written by Portcullis).
const NOT_A_RECORD: &str = "not a session record";

/// A read's outcome, where a key holding something other than a record counts as no record
/// (never a 503 for that cookie for good, logout included).
fn record_or_none(
    read: Result<Option<Vec<u8>>, StoreError>,
) -> Result<Option<Vec<u8>>, StoreError> {
    match read {
        Err(err) if err.0.starts_with(NOT_A_RECORD) => {
            tracing::warn!(error = %err, "a Redis key of this deployment holds something Portcullis did not write; it counts as no session");
            Ok(None)
        }
        read => read,
    }
}

/// A [`SessionStore`] in Redis.
pub struct RedisStore {
    link: Link,
    key_prefix: Vec<u8>,
    timeout: Duration,
    clock: Arc<dyn Clock>,
    put_new: Script,
    replace: Script,
    /// What has been said of the store's failures: at most a line per ten seconds each
    /// way, so a flood of requests (or reads that work while writes fail) cannot flood the
    /// log.
    outage: std::sync::Mutex<OutageLog>,
}

/// The connection: made on first use, then kept (the client reconnects it by itself).
enum Link {
    Server(ConnectionManager),
    Cluster(Box<LazyCluster>),
}

/// A cluster client and its connection, once made.
///
/// The connection is made by a task of its own, which a request's timeout does not cancel: the
/// client waits for every listed node (each up to `redis_timeout`), and a node that never answers
/// (a host whose packets are dropped) would otherwise make every attempt end at the request's
/// timeout, for good. Requests wait for the attempt in flight, within their own timeout.
struct LazyCluster {
    client: redis::cluster::ClusterClient,
    connection: Arc<OnceCell<ClusterConnection>>,
    attempt: std::sync::Mutex<Option<Attempt>>,
}

/// A connection attempt in flight (or ended): its outcome, for every request that waits for it.
type Attempt = Shared<BoxFuture<'static, Result<ClusterConnection, String>>>;

impl RedisStore {
    /// A store on the configured Redis. Connects on first use: a Redis that is down at start is
    /// not fatal (requests that need it get a 503 until it answers).
    pub fn open(config: &RedisConfig, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let link = match &config.target {
            RedisTarget::Server(url) => {
                let client = match &config.ca {
                    Some(ca) => redis::Client::build_with_tls(url.expose(), certificates(ca)),
                    None => redis::Client::open(url.expose()),
                }
                .map_err(|err| {
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
                let mut builder = redis::cluster::ClusterClient::builder(
                    nodes.iter().map(|url| url.expose().to_owned()),
                );
                if let Some(ca) = &config.ca {
                    builder = builder.certs(certificates(ca));
                }
                let client = builder
                    .connection_timeout(config.timeout)
                    .response_timeout(config.timeout)
                    // The client follows slot moves (MOVED, ASK) and waits out a failover
                    // (TRYAGAIN, CLUSTERDOWN) by retrying, within `redis_timeout`. It also resends
                    // after a lost connection: the lock script is made safe for that (it finds its
                    // own record); a GETDEL sent twice finds nothing the second time, so a login
                    // whose reply was lost is refused and started again, never doubled.
                    .retries(3)
                    .build()
                    .map_err(|err| {
                        StoreError(format!(
                            "session.redis_nodes are not usable ({:?})",
                            err.kind()
                        ))
                    })?;
                Link::Cluster(Box::new(LazyCluster {
                    client,
                    connection: Arc::new(OnceCell::new()),
                    attempt: std::sync::Mutex::new(None),
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
            outage: std::sync::Mutex::new(OutageLog::default()),
        })
    }

    /// The connection to send a command on.
    async fn connection(&self) -> Result<Connection, StoreError> {
        match &self.link {
            Link::Server(manager) => Ok(Connection::Server(manager.clone())),
            Link::Cluster(cluster) => cluster.connection().await.map(Connection::Cluster),
        }
    }

    /// Sends `request` within the timeout. A request whose connection turned out to be broken
    /// (Redis restarted since the last command) is sent once more, on the connection the client
    /// makes anew, so the first request after an outage is answered: an idempotent one whatever
    /// the breakage, any other only when it cannot have reached Redis (refused).
    async fn run<T: FromRedisValue>(
        &self,
        what: &str,
        request: Request<'_>,
    ) -> Result<T, StoreError> {
        let attempt = async {
            let mut result = request.send(self.connection().await?).await;
            if let Err(err) = &result
                && (request.is_idempotent() && (err.is_connection_dropped() || err.is_io_error())
                    || never_sent(err))
            {
                result = request.send(self.connection().await?).await;
            }
            result.map_err(|err| {
                if err.code() == Some("WRONGTYPE") {
                    StoreError(format!("{NOT_A_RECORD}: Redis {what} failed: {err}"))
                } else {
                    StoreError(format!("Redis {what} failed: {err}"))
                }
            })
        };
        let result = match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(StoreError(format!(
                "Redis did not answer {what} within {:?} (session.redis_timeout; is it up, and is the URL's scheme right: rediss:// for a TLS port, redis:// for a plain one?)",
                self.timeout
            ))),
        };
        self.note(&result);
        result
    }

    /// Logs the failures of an outage sparingly, and its end.
    fn note<T>(&self, result: &Result<T, StoreError>) {
        let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Err(err) => outage.failed(err),
            Ok(_) => outage.worked(),
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
        let mut invocation = script.key(&redis_key);
        invocation.arg(&record).arg(ttl_ms).arg(now);
        let done: i64 = match self.run(what, Request::Script(invocation)).await {
            // Something Portcullis did not write holds the key: no lock taken, nothing replaced.
            Err(err) if err.0.starts_with(NOT_A_RECORD) => {
                tracing::warn!(error = %err, "a Redis key of this deployment holds something Portcullis did not write");
                0
            }
            done => done?,
        };
        Ok(done == 1)
    }
}

impl LazyCluster {
    /// The cluster connection: the one made, or the outcome of the attempt in flight (one is
    /// started when none is, or the last one failed).
    async fn connection(&self) -> Result<ClusterConnection, StoreError> {
        if let Some(connection) = self.connection.get() {
            return Ok(connection.clone());
        }
        let attempt = {
            let mut attempt = self.attempt.lock().unwrap_or_else(|p| p.into_inner());
            let failed = attempt
                .as_ref()
                .and_then(|attempt| attempt.peek())
                .is_some_and(Result::is_err);
            if attempt.is_none() || failed {
                let client = self.client.clone();
                let made = self.connection.clone();
                let task = tokio::spawn(async move {
                    let connection = client
                        .get_async_connection()
                        .await
                        .map_err(|err| format!("cannot reach the Redis Cluster: {err}"))?;
                    let _ = made.set(connection.clone());
                    Ok(connection)
                });
                let outcome = async move {
                    task.await
                        .map_err(|err| format!("the Redis Cluster connection task failed: {err}"))?
                };
                *attempt = Some(outcome.boxed().shared());
            }
            attempt.clone().expect("an attempt was just made")
        };
        attempt.await.map_err(StoreError)
    }
}

#[async_trait::async_trait]
impl SessionStore for RedisStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let redis_key = self.redis_key(key);
        let mut get = redis::cmd("GET");
        get.arg(&redis_key);
        let record = record_or_none(self.run("GET", Request::Idempotent(get)).await)?;
        Ok(self.live(record))
    }

    async fn put(&self, key: &[u8], value: &[u8], expires_at: UnixTime) -> Result<(), StoreError> {
        let redis_key = self.redis_key(key);
        if expires_at <= self.clock.now() {
            return self.remove(key).await;
        }
        let (record, ttl_ms) = self.record(value, expires_at);
        let mut set = redis::cmd("SET");
        set.arg(&redis_key).arg(&record).arg("PX").arg(ttl_ms);
        self.run("SET", Request::Idempotent(set)).await
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
        // Not sent twice: a first GETDEL that did reach Redis took the record.
        let mut take = redis::cmd("GETDEL");
        take.arg(&redis_key);
        let record = record_or_none(self.run("GETDEL", Request::Once(take)).await)?;
        Ok(self.live(record))
    }

    async fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        let redis_key = self.redis_key(key);
        let mut del = redis::cmd("DEL");
        del.arg(&redis_key);
        self.run("DEL", Request::Idempotent(del)).await
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

    async fn check_setup(&self) -> Result<(), StoreError> {
        // After a Redis restart the scripts are loaded again on first use: `SCRIPT LOAD` must be
        // allowed, which a probe does not show while they are still cached.
        for (what, script) in [("put_new", PUT_NEW), ("replace", REPLACE)] {
            let mut load = redis::cmd("SCRIPT");
            load.arg("LOAD").arg(script);
            let _: String = self
                .run(&format!("SCRIPT LOAD of {what}"), Request::Idempotent(load))
                .await?;
        }
        Ok(())
    }
}

/// `redis_ca` as the client takes it: the roots that verify the server, no client certificate.
fn certificates(ca: &[u8]) -> redis::TlsCertificates {
    redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(ca.to_vec()),
    }
}

/// Whether a command that failed with `err` cannot have reached Redis: the connection was refused.
/// (A broken pipe cannot tell: the client reports a reply lost after the command arrived so too.)
fn never_sent(err: &redis::RedisError) -> bool {
    err.is_connection_refusal()
}

/// What is sent to Redis, and whether sending it twice does what sending it once does.
enum Request<'a> {
    /// GET, SET, DEL.
    Idempotent(Cmd),
    /// GETDEL: a second one finds nothing.
    Once(Cmd),
    /// The conditional writes: a second one finds the first's record and says yes again (see
    /// [`PUT_NEW`]; `replace` writes the same record twice).
    Script(ScriptInvocation<'a>),
}

impl Request<'_> {
    fn is_idempotent(&self) -> bool {
        matches!(self, Request::Idempotent(_) | Request::Script(_))
    }

    async fn send<T: FromRedisValue>(&self, mut connection: Connection) -> redis::RedisResult<T> {
        match self {
            Request::Idempotent(command) | Request::Once(command) => {
                command.query_async(&mut connection).await
            }
            Request::Script(invocation) => invocation.invoke_async(&mut connection).await,
        }
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
