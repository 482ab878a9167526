//! The little of WebSocket (RFC 6455) that the tunnel load test (`benches/load/websocket.sh`)
//! needs, shared by its backend (`ws-echo`) and its client (`ws-load`): the handshake's accept key
//! and reading or writing one frame. Messages are single frames (no fragmentation), no extensions.
//! Written out rather than taken from a WebSocket crate so that both ends are small, allocate
//! nothing per message and cost the same on the shared load-generator core whatever the proxy.

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt};

pub const OPCODE_TEXT: u8 = 0x1;
pub const OPCODE_BINARY: u8 = 0x2;
pub const OPCODE_CLOSE: u8 = 0x8;
pub const OPCODE_PING: u8 = 0x9;
pub const OPCODE_PONG: u8 = 0xA;

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64(SHA-1(key + the RFC's GUID)), RFC 6455
/// §4.2.2. SHA-1 from `ring`, which the host crate already builds (TLS). `ws-load --check` tests it
/// against the RFC's example (this crate's library has no unit tests).
pub fn accept_key(key: &[u8]) -> String {
    let mut sha1 = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    sha1.update(key);
    sha1.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha1.finish())
}

/// Appends one final frame (FIN set) to `out`, masked with `mask` when given: a client must mask
/// every frame it sends and a server must mask none (RFC 6455 §5.1).
pub fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    out.push(0x80 | opcode);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        len @ 0..=125 => out.push(mask_bit | len as u8),
        len @ 126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    if let Some(mask) = mask {
        out.extend_from_slice(&mask);
    }
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(mask) = mask {
        apply_mask(&mut out[start..], mask);
    }
}

/// A frame's header as read; its payload is in the caller's buffer, unmasked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    pub fin: bool,
    pub opcode: u8,
    pub masked: bool,
}

/// Reads one frame into `payload` (replacing its contents, reusing its allocation) and unmasks it.
/// A frame longer than `max_len`, or with reserved bits set (no extension was negotiated), is an
/// error, as is the stream ending inside a frame.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    payload: &mut Vec<u8>,
    max_len: u64,
) -> std::io::Result<FrameHead> {
    let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let mut head = [0u8; 2];
    reader.read_exact(&mut head).await?;
    if head[0] & 0x70 != 0 {
        return Err(invalid(format!("reserved bits set: {:#04x}", head[0])));
    }
    let len = match head[1] & 0x7F {
        126 => u64::from(reader.read_u16().await?),
        127 => reader.read_u64().await?,
        len => u64::from(len),
    };
    if len > max_len {
        return Err(invalid(format!(
            "a frame of {len} bytes (at most {max_len})"
        )));
    }
    let masked = head[1] & 0x80 != 0;
    let mut mask = [0u8; 4];
    if masked {
        reader.read_exact(&mut mask).await?;
    }
    payload.clear();
    payload.resize(len as usize, 0);
    reader.read_exact(payload).await?;
    if masked {
        apply_mask(payload, mask);
    }
    Ok(FrameHead {
        fin: head[0] & 0x80 != 0,
        opcode: head[0] & 0x0F,
        masked,
    })
}

/// XORs `data` with the 4-byte `mask`, repeated (masking and unmasking are the same).
pub fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in data.iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}
