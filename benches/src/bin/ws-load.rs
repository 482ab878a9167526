//! The client of the WebSocket tunnel load test (`benches/load/websocket.sh`). It opens N tunnels
//! (the HTTP/1.1 upgrade handshake, its `101` and `Sec-WebSocket-Accept` checked), then in each,
//! for D seconds, sends one masked text message and waits for its echo from `ws-echo` before the
//! next: round trips, one message in flight per tunnel, as a chat or an RPC-over-WebSocket client.
//! Every echo is compared with what was sent (each message carries its tunnel and sequence number),
//! so a proxy that corrupts, mixes up or drops tunnels fails the run instead of giving a fast
//! number. Prints one line: round trips per second (all tunnels) and the p50, p99 and max latency
//! of a round trip in µs. One thread, like `wrk -t1` in `run.sh`.
//!
//! `--check` instead tests the tunnel itself before any measurement: messages of 0 bytes to 1 MiB
//! (the 16- and 64-bit length forms), two frames in one write, one frame in three writes, ping and
//! pong, then the close handshake and the end of the connection passing through.
//!
//! ```sh
//! ws-load --tunnels 32 --seconds 5 --size 64 127.0.0.1:8081 /none
//! ws-load --check 127.0.0.1:8081 /none
//! ```

use std::time::{Duration, Instant};

use base64::Engine as _;
use portcullis_benches::websocket::{
    self, FrameHead, OPCODE_BINARY, OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG, OPCODE_TEXT,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

type Tunnel = BufReader<TcpStream>;
type Error = Box<dyn std::error::Error + Send + Sync>;

/// How long after the end of the measurement a tunnel may still be waiting for an echo before the
/// run is an error (a stalled tunnel must not hang the script).
const STALL: Duration = Duration::from_secs(10);

struct Options {
    address: String,
    path: String,
    tunnels: usize,
    seconds: f64,
    size: usize,
    check: bool,
}

fn main() {
    let result = options().and_then(|options| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async {
                if options.check {
                    check(&options).await
                } else {
                    load(&options).await
                }
            })
    });
    if let Err(err) = result {
        eprintln!("ws-load: {err}");
        std::process::exit(1);
    }
}

fn options() -> Result<Options, Error> {
    let usage =
        "usage: ws-load [--check] [--tunnels N] [--seconds S] [--size BYTES] HOST:PORT [PATH]";
    let mut options = Options {
        address: String::new(),
        path: "/".into(),
        tunnels: 32,
        seconds: 5.0,
        size: 64,
        check: false,
    };
    let mut positional = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(usage);
        match arg.as_str() {
            "--check" => options.check = true,
            "--tunnels" => options.tunnels = value()?.parse()?,
            "--seconds" => options.seconds = value()?.parse()?,
            "--size" => options.size = value()?.parse()?,
            _ if arg.starts_with("--") => return Err(usage.into()),
            _ => positional.push(arg),
        }
    }
    match positional.as_slice() {
        [address] => options.address = address.clone(),
        [address, path] => (options.address, options.path) = (address.clone(), path.clone()),
        _ => return Err(usage.into()),
    }
    if options.tunnels == 0 || options.seconds.is_nan() || options.seconds <= 0.0 {
        return Err("--tunnels and --seconds must be positive".into());
    }
    Ok(options)
}

/// The measurement: all tunnels opened first (handshakes are not timed), then round trips in every
/// tunnel until the deadline.
async fn load(options: &Options) -> Result<(), Error> {
    let mut tunnels = Vec::with_capacity(options.tunnels);
    for i in 0..options.tunnels {
        let tunnel = open(&options.address, &options.path, &mut Rng::new(i))
            .await
            .map_err(|err| format!("tunnel {i}: handshake: {err}"))?;
        tunnels.push(tunnel);
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(options.seconds);
    let tasks: Vec<_> = tunnels
        .into_iter()
        .enumerate()
        .map(|(i, tunnel)| tokio::spawn(round_trips(i, tunnel, deadline, options.size)))
        .collect();
    let (mut latencies, mut end) = (Vec::new(), start);
    for (i, task) in tasks.into_iter().enumerate() {
        let (tunnel_latencies, tunnel_end) =
            tokio::time::timeout_at((deadline + STALL).into(), task)
                .await
                .map_err(|_| format!("tunnel {i}: no echo {} s after the end", STALL.as_secs()))??
                .map_err(|err| format!("tunnel {i}: {err}"))?;
        latencies.extend(tunnel_latencies);
        end = end.max(tunnel_end);
    }
    if latencies.is_empty() {
        return Err("no round trip completed".into());
    }
    latencies.sort_unstable();
    let percentile = |q: usize| latencies[(latencies.len() * q / 100).min(latencies.len() - 1)];
    let micros = |nanos: u64| nanos as f64 / 1e3;
    let seconds = (end - start).as_secs_f64();
    println!(
        "tunnels={} size={} seconds={seconds:.3} round_trips={} per_second={:.1} p50_us={:.1} p99_us={:.1} max_us={:.1} echoes=verified",
        options.tunnels,
        options.size,
        latencies.len(),
        latencies.len() as f64 / seconds,
        micros(percentile(50)),
        micros(percentile(99)),
        micros(latencies[latencies.len() - 1]),
    );
    Ok(())
}

/// One tunnel's part of the measurement: the latency of each round trip (ns) and when the last one
/// ended. Closes the tunnel with the close handshake after the deadline.
async fn round_trips(
    tunnel_number: usize,
    mut tunnel: Tunnel,
    deadline: Instant,
    size: usize,
) -> std::io::Result<(Vec<u64>, Instant)> {
    let mut rng = Rng::new(tunnel_number);
    let mut message = vec![b'.'; size];
    let (mut frame, mut echo) = (Vec::new(), Vec::new());
    let mut latencies = Vec::with_capacity(1 << 16);
    let mut end = Instant::now();
    for sequence in 0u64.. {
        let sent = Instant::now();
        if sent >= deadline {
            break;
        }
        stamp(&mut message, tunnel_number, sequence);
        frame.clear();
        websocket::encode_frame(&mut frame, OPCODE_TEXT, &message, Some(rng.mask()));
        tunnel.get_mut().write_all(&frame).await?;
        let head = websocket::read_frame(&mut tunnel, &mut echo, size as u64).await?;
        end = Instant::now();
        expect_echo(head, OPCODE_TEXT, &echo, &message)
            .map_err(|err| std::io::Error::other(format!("message {sequence}: {err}")))?;
        latencies.push((end - sent).as_nanos() as u64);
    }
    close(&mut tunnel, &mut rng).await?;
    Ok((latencies, end))
}

/// Writes the tunnel and sequence numbers into the end of the message (as hex digits, without
/// allocating), so that an echo from another tunnel or of an earlier message does not compare equal.
fn stamp(message: &mut [u8], tunnel_number: usize, sequence: u64) {
    let number = (tunnel_number as u128) << 64 | u128::from(sequence);
    for (i, byte) in message.iter_mut().rev().take(24).enumerate() {
        *byte = b"0123456789abcdef"[(number >> (4 * i)) as usize & 0xF];
    }
}

/// The correctness test of `--check`, in every tunnel at once.
async fn check(options: &Options) -> Result<(), Error> {
    // RFC 6455 §1.3's example: `ws-load` checks the proxy's 101 with this function.
    if websocket::accept_key(b"dGhlIHNhbXBsZSBub25jZQ==") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
        return Err("accept_key does not give the RFC's example".into());
    }
    let mut tasks = Vec::new();
    for i in 0..options.tunnels {
        let tunnel = open(&options.address, &options.path, &mut Rng::new(i))
            .await
            .map_err(|err| format!("tunnel {i}: handshake: {err}"))?;
        tasks.push(tokio::spawn(check_tunnel(i, tunnel)));
    }
    let mut messages = 0;
    for (i, task) in tasks.into_iter().enumerate() {
        messages += tokio::time::timeout(STALL * 3, task)
            .await
            .map_err(|_| format!("tunnel {i}: stalled"))??
            .map_err(|err| format!("tunnel {i}: {err}"))?;
    }
    println!(
        "check: {} tunnels, {messages} messages (0 B to 1 MiB, split and coalesced writes, ping) echoed intact, close handshakes and ends of connection passed through",
        options.tunnels
    );
    Ok(())
}

async fn check_tunnel(tunnel_number: usize, mut tunnel: Tunnel) -> Result<usize, Error> {
    let mut rng = Rng::new(tunnel_number);
    let mut echo = Vec::new();
    let mut count = 0;
    // Each size on its own; the length field's 7-, 16- and 64-bit forms and their edges.
    for size in [0, 1, 64, 125, 126, 127, 4096, 65535, 65536, 1 << 20] {
        let mut message = vec![0; size];
        rng.fill(&mut message);
        let mut frame = Vec::new();
        websocket::encode_frame(&mut frame, OPCODE_BINARY, &message, Some(rng.mask()));
        tunnel.get_mut().write_all(&frame).await?;
        let head = websocket::read_frame(&mut tunnel, &mut echo, 1 << 20).await?;
        expect_echo(head, OPCODE_BINARY, &echo, &message)
            .map_err(|err| format!("{size}-byte message: {err}"))?;
        count += 1;
    }
    // Two messages in one write, then one message in three writes with pauses: the proxy must
    // forward bytes as they come, not frames or reads.
    let (first, second) = (b"first of two in one write".to_vec(), vec![7; 300]);
    let mut frames = Vec::new();
    websocket::encode_frame(&mut frames, OPCODE_TEXT, &first, Some(rng.mask()));
    websocket::encode_frame(&mut frames, OPCODE_BINARY, &second, Some(rng.mask()));
    tunnel.get_mut().write_all(&frames).await?;
    for (opcode, message) in [(OPCODE_TEXT, &first), (OPCODE_BINARY, &second)] {
        let head = websocket::read_frame(&mut tunnel, &mut echo, 1 << 20).await?;
        expect_echo(head, opcode, &echo, message).map_err(|err| format!("coalesced: {err}"))?;
        count += 1;
    }
    let mut split = vec![0; 1000];
    rng.fill(&mut split);
    let mut frame = Vec::new();
    websocket::encode_frame(&mut frame, OPCODE_BINARY, &split, Some(rng.mask()));
    for part in [&frame[..1], &frame[1..500], &frame[500..]] {
        tunnel.get_mut().write_all(part).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let head = websocket::read_frame(&mut tunnel, &mut echo, 1 << 20).await?;
    expect_echo(head, OPCODE_BINARY, &echo, &split).map_err(|err| format!("split: {err}"))?;
    count += 1;
    let ping = format!("ping from tunnel {tunnel_number}").into_bytes();
    let mut frame = Vec::new();
    websocket::encode_frame(&mut frame, OPCODE_PING, &ping, Some(rng.mask()));
    tunnel.get_mut().write_all(&frame).await?;
    let head = websocket::read_frame(&mut tunnel, &mut echo, 1 << 20).await?;
    expect_echo(head, OPCODE_PONG, &echo, &ping).map_err(|err| format!("ping: {err}"))?;
    count += 1;
    close(&mut tunnel, &mut rng).await?;
    // The echo server shuts the connection after its close: the proxy must pass the end on.
    let mut rest = Vec::new();
    match tokio::time::timeout(Duration::from_secs(5), tunnel.read_to_end(&mut rest)).await {
        Ok(Ok(0)) => Ok(count),
        Ok(Ok(n)) => Err(format!("{n} bytes after the close").into()),
        Ok(Err(err)) => Err(format!("after the close: {err}").into()),
        Err(_) => Err("the connection stayed open 5 s after the close handshake".into()),
    }
}

/// The opening handshake (RFC 6455 §4.1): a `GET` with `Upgrade: websocket` and a random key;
/// the answer must be `101` with `Upgrade: websocket`, `Connection: upgrade` and the key's accept
/// value (hop-by-hop headers a proxy has to put back itself).
async fn open(address: &str, path: &str, rng: &mut Rng) -> Result<Tunnel, Error> {
    let stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let mut tunnel = BufReader::with_capacity(64 << 10, stream);
    let mut key = [0u8; 16];
    rng.fill(&mut key);
    let key = base64::engine::general_purpose::STANDARD.encode(key);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tunnel.get_mut().write_all(request.as_bytes()).await?;
    let mut status = String::new();
    tunnel.read_line(&mut status).await?;
    if !status.starts_with("HTTP/1.1 101 ") {
        return Err(format!("answered {:?}, not 101", status.trim_end()).into());
    }
    let (mut upgrade, mut connection, mut accept) = (false, false, None);
    loop {
        let mut line = String::new();
        if tunnel.read_line(&mut line).await? == 0 {
            return Err("the connection ended inside the 101's headers".into());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("a header line without a colon: {line:?}").into());
        };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "upgrade" => upgrade = value.eq_ignore_ascii_case("websocket"),
            "connection" => {
                connection = value
                    .split(',')
                    .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
            }
            "sec-websocket-accept" => accept = Some(value.to_owned()),
            _ => {}
        }
    }
    let expected = websocket::accept_key(key.as_bytes());
    match (upgrade, connection, accept) {
        (true, true, Some(accept)) if accept == expected => Ok(tunnel),
        (true, true, accept) => {
            Err(format!("Sec-WebSocket-Accept {accept:?}, not {expected}").into())
        }
        _ => Err("the 101 lacks `Upgrade: websocket` or `Connection: upgrade`".into()),
    }
}

/// The closing handshake (RFC 6455 §5.5.1): a close with status 1000, echoed back.
async fn close(tunnel: &mut Tunnel, rng: &mut Rng) -> std::io::Result<()> {
    let status = 1000u16.to_be_bytes();
    let mut frame = Vec::new();
    websocket::encode_frame(&mut frame, OPCODE_CLOSE, &status, Some(rng.mask()));
    tunnel.get_mut().write_all(&frame).await?;
    let mut echo = Vec::new();
    let head = websocket::read_frame(tunnel, &mut echo, 125).await?;
    expect_echo(head, OPCODE_CLOSE, &echo, &status)
        .map_err(|err| std::io::Error::other(format!("close: {err}")))
}

/// An echo from the server is a final, unmasked frame with the opcode and bytes sent.
fn expect_echo(head: FrameHead, opcode: u8, echo: &[u8], sent: &[u8]) -> Result<(), String> {
    let expected = FrameHead {
        fin: true,
        opcode,
        masked: false,
    };
    if head != expected {
        return Err(format!("{head:?} came back, not {expected:?}"));
    }
    if echo != sent {
        return Err(format!(
            "the echo differs: {} bytes sent, {} back, first difference at byte {}",
            sent.len(),
            echo.len(),
            sent.iter().zip(echo).take_while(|(a, b)| a == b).count()
        ));
    }
    Ok(())
}

/// xorshift64*: masks, keys and check payloads only need to differ, not to be secret.
struct Rng(u64);

impl Rng {
    fn new(stream: usize) -> Self {
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64);
        Rng((time ^ (stream as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn mask(&mut self) -> [u8; 4] {
        (self.next() as u32).to_le_bytes()
    }

    fn fill(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes()[..chunk.len()]);
        }
    }
}
