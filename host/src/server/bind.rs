//! Binding listening sockets, before the runtime starts or inside it.

use std::net::SocketAddr;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    /// The address that could not be bound.
    pub addr: SocketAddr,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

/// How many connections the kernel queues before they are accepted (tokio's default).
const LISTEN_BACKLOG: i32 = 1024;

/// Binds `addr` (before the runtime starts, or inside it). An IPv6 address listens for IPv6 only
/// (`IPV6_V6ONLY`, as nginx does): Linux would otherwise make `[::]:443` take IPv4's port 443 as
/// well, and `listen = ["0.0.0.0:443", "[::]:443"]` could not start.
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, BindError> {
    let bound = || -> std::io::Result<std::net::TcpListener> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        // One socket per worker on the same address (see `worker`).
        socket.set_reuse_port(true)?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.bind(&addr.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        Ok(socket.into())
    };
    bound().map_err(|source| BindError { addr, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: `listen = ["0.0.0.0:443", "[::]:443"]` (the documented example) did not start,
    /// because an IPv6 socket on Linux also takes the IPv4 port unless told not to.
    #[test]
    fn an_ipv6_listener_leaves_the_ipv4_port_free() {
        let listener = bind("[::1]:0".parse().unwrap()).unwrap();
        // On loopback the test cannot show the clash itself (only wildcards take both
        // families); the option that prevents it is what is checked.
        assert!(socket2::SockRef::from(&listener).only_v6().unwrap());
    }
}
