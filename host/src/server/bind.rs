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
///
/// The socket has `SO_REUSEPORT`, so that each worker can bind a socket of its own to the same
/// address ([`bind_sibling`]). That option would also let a second process of the same user bind
/// the address and silently take a share of the connections (a second `portcullis run` with the
/// same config): so the address is first bound without it, which fails as it always did ("address
/// in use") while anything else listens there.
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, BindError> {
    let bound = || -> std::io::Result<std::net::TcpListener> {
        if addr.port() != 0 {
            drop(socket(addr, false)?);
        }
        socket(addr, true)
    };
    bound().map_err(|source| BindError { addr, source })
}

/// Binds `addr` with `SO_REUSEPORT` beside whatever listens there already: a Portcullis being
/// replaced (`portcullis run --takeover`), whose sockets have the option too. The kernel then
/// shares new connections between both until the old process closes its sockets.
pub fn bind_joining(addr: SocketAddr) -> Result<std::net::TcpListener, BindError> {
    socket(addr, true).map_err(|source| BindError { addr, source })
}

/// Another socket on the address of `listener` (bound by [`bind`]), for another worker.
pub(super) fn bind_sibling(addr: SocketAddr) -> Result<std::net::TcpListener, BindError> {
    socket(addr, true).map_err(|source| BindError { addr, source })
}

fn socket(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(reuse_port)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    if !reuse_port {
        // A probe: bound is all it had to show.
        return Ok(socket.into());
    }
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
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

    /// Every worker's socket has `SO_REUSEPORT`; a second `bind` of the same address (a second
    /// process with the same config) still fails as it did before, instead of taking a share of
    /// the connections.
    #[test]
    fn a_bound_address_cannot_be_bound_again_but_workers_can_join_it() {
        let first = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        let again = bind(addr).expect_err("the address is taken");
        assert_eq!(
            again.source.kind(),
            std::io::ErrorKind::AddrInUse,
            "{again}"
        );
        let sibling = bind_sibling(addr).unwrap();
        assert_eq!(sibling.local_addr().unwrap(), addr);
    }
}
