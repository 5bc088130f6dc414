//! Batched UDP receive and send: up to [`BATCH`] datagrams per system call.
//!
//! Why: profiling the blocked-query path at saturation (`perf`, 1M-domain list, dnsperf on
//! loopback) showed the kernel side of one `recvfrom` + one `sendto` per query as more than
//! half of the worker's CPU, while the answer itself costs ~0.5 µs. Under load the socket
//! queue holds many queries, so on Linux the listener takes them with one `recvmmsg` and sends
//! the answers it produced from the receive loop (blocked, cached, FORMERR) with one
//! `sendmmsg`. At low load a batch is one datagram and costs the same as before. Knot DNS and
//! dnsdist use the same calls for the same reason.
//!
//! Other systems get the same interface over one `recv_from` / `send_to` per datagram.
//!
//! The `unsafe` code here is limited to the two calls: the headers handed to the kernel point
//! only at buffers owned by the batch, rebuilt right before each call, so no pointer outlives
//! the call that uses it.

use std::io;
use std::net::SocketAddr;

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tracing::debug;

/// Datagrams per system call. 32 bounds how long the first answer of a batch waits for the
/// others (32 fast-path answers are ~10–15 µs of work) while dividing the per-call cost by up
/// to 32 under load.
pub const BATCH: usize = 32;

/// Largest query datagram accepted; longer ones are dropped (a DNS query is a few hundred
/// bytes; 4096 is the common EDNS buffer size).
pub const MAX_QUERY: usize = 4096;

/// Datagrams received by one call, with their sources.
pub struct RecvBatch {
    bufs: Box<[u8]>,
    lens: [usize; BATCH],
    srcs: [SocketAddr; BATCH],
    n: usize,
    #[cfg(target_os = "linux")]
    sys: Box<linux::Headers>,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBatch {
    /// Allocates the buffers (128 KiB) once; receiving allocates nothing.
    pub fn new() -> Self {
        Self {
            bufs: vec![0u8; BATCH * MAX_QUERY].into_boxed_slice(),
            lens: [0; BATCH],
            srcs: [SocketAddr::from(([0, 0, 0, 0], 0)); BATCH],
            n: 0,
            #[cfg(target_os = "linux")]
            sys: Box::default(),
        }
    }

    /// Number of datagrams held.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether no datagram is held.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Datagram `i` and its source.
    pub fn get(&self, i: usize) -> (&[u8], SocketAddr) {
        let start = i * MAX_QUERY;
        (&self.bufs[start..start + self.lens[i]], self.srcs[i])
    }

    /// Takes what is queued on `sock` without waiting (at most [`BATCH`] datagrams) and
    /// returns how many; `WouldBlock` when the queue is empty (the socket's readiness is then
    /// cleared, so `sock.readable()` waits for the next one).
    pub fn try_recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        self.n = 0;
        let n = sock.try_io(Interest::READABLE, || self.recv_now(sock))?;
        self.n = n;
        Ok(n)
    }

    #[cfg(target_os = "linux")]
    fn recv_now(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let got = self.sys.recv(sock.as_raw_fd(), &mut self.bufs)?;
        let mut kept = 0;
        for i in 0..got {
            // Truncated (longer than MAX_QUERY) or from an unknown address family: dropped.
            let Some((len, src)) = self.sys.message(i) else {
                continue;
            };
            if kept != i {
                self.bufs
                    .copy_within(i * MAX_QUERY..i * MAX_QUERY + len, kept * MAX_QUERY);
            }
            self.lens[kept] = len;
            self.srcs[kept] = src;
            kept += 1;
        }
        if kept == 0 && got > 0 {
            // Only dropped datagrams: report "nothing yet" without clearing readiness.
            return Ok(0);
        }
        Ok(kept)
    }

    #[cfg(not(target_os = "linux"))]
    fn recv_now(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        let (len, src) = sock.try_recv_from(&mut self.bufs[..MAX_QUERY])?;
        self.lens[0] = len;
        self.srcs[0] = src;
        Ok(1)
    }
}

/// Answers collected while a [`RecvBatch`] is handled, sent together by [`SendBatch::flush`].
pub struct SendBatch {
    bufs: Vec<Vec<u8>>,
    dsts: [SocketAddr; BATCH],
    n: usize,
    #[cfg(target_os = "linux")]
    sys: Box<linux::Headers>,
}

impl Default for SendBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl SendBatch {
    /// Allocates the answer buffers once; they keep their capacity, so queuing an answer does
    /// not allocate once the buffers have grown to the largest answer seen.
    pub fn new() -> Self {
        Self {
            bufs: (0..BATCH).map(|_| Vec::with_capacity(512)).collect(),
            dsts: [SocketAddr::from(([0, 0, 0, 0], 0)); BATCH],
            n: 0,
            #[cfg(target_os = "linux")]
            sys: Box::default(),
        }
    }

    /// Number of answers queued.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether no answer is queued.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Whether the batch is full ([`SendBatch::flush`] before queuing more).
    pub fn is_full(&self) -> bool {
        self.n == BATCH
    }

    /// The (cleared) buffer for the next answer; it is queued only by [`SendBatch::push`].
    pub fn next_buf(&mut self) -> &mut Vec<u8> {
        let b = &mut self.bufs[self.n];
        b.clear();
        b
    }

    /// Queues the answer written into [`SendBatch::next_buf`] for `dst`.
    pub fn push(&mut self, dst: SocketAddr) {
        self.dsts[self.n] = dst;
        self.n += 1;
    }

    /// Sends every queued answer on `sock`, waiting for the socket when its send buffer is
    /// full (loopback and LAN sends rarely wait). An answer the kernel refuses (unreachable
    /// destination...) is skipped and logged at debug level, like a failed `send_to`.
    pub async fn flush(&mut self, sock: &UdpSocket) {
        let mut start = 0;
        while start < self.n {
            match sock.try_io(Interest::WRITABLE, || self.send_now(sock, start)) {
                Ok(sent) => start += sent.max(1),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = sock.writable().await {
                        debug!(error = %e, "udp socket not writable");
                        break;
                    }
                }
                Err(e) => {
                    debug!(error = %e, dst = %self.dsts[start], "udp send error");
                    start += 1;
                }
            }
        }
        self.n = 0;
    }

    #[cfg(target_os = "linux")]
    fn send_now(&mut self, sock: &UdpSocket, start: usize) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        self.sys.send(
            sock.as_raw_fd(),
            &self.bufs[start..self.n],
            &self.dsts[start..self.n],
        )
    }

    #[cfg(not(target_os = "linux"))]
    fn send_now(&mut self, sock: &UdpSocket, start: usize) -> io::Result<usize> {
        sock.try_send_to(&self.bufs[start], self.dsts[start])?;
        Ok(1)
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod linux {
    //! `recvmmsg` / `sendmmsg` over headers owned by the batch.

    use std::io;
    use std::mem::{size_of, zeroed};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::RawFd;
    use std::ptr;

    use super::{BATCH, MAX_QUERY};

    /// Kernel-facing headers of a batch (one set per `RecvBatch` / `SendBatch`).
    pub struct Headers {
        hdrs: [libc::mmsghdr; BATCH],
        iovs: [libc::iovec; BATCH],
        names: [libc::sockaddr_storage; BATCH],
    }

    // SAFETY: the raw pointers inside the headers are scratch values, written right before the
    // system call that reads them and never dereferenced by Rust code; moving the headers to
    // another thread between calls cannot make them dangle in a way that is ever observed.
    unsafe impl Send for Headers {}

    impl Default for Headers {
        fn default() -> Self {
            // SAFETY: these are plain C structs for which all-zero bytes are a valid value.
            unsafe { zeroed() }
        }
    }

    impl Headers {
        /// Points header `i` at its own address slot (`namelen` bytes of it) and at one iovec
        /// over `len` bytes at `base`.
        fn point(&mut self, i: usize, namelen: libc::socklen_t, base: *mut u8, len: usize) {
            self.iovs[i] = libc::iovec {
                iov_base: base.cast(),
                iov_len: len,
            };
            let h = &mut self.hdrs[i];
            h.msg_len = 0;
            h.msg_hdr.msg_name = ptr::from_mut(&mut self.names[i]).cast();
            h.msg_hdr.msg_namelen = namelen;
            h.msg_hdr.msg_iov = ptr::from_mut(&mut self.iovs[i]);
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
        }

        /// One `recvmmsg(MSG_DONTWAIT)` into `bufs` (`BATCH` slots of `MAX_QUERY` bytes).
        pub fn recv(&mut self, fd: RawFd, bufs: &mut [u8]) -> io::Result<usize> {
            assert!(bufs.len() >= BATCH * MAX_QUERY);
            let storage = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            for i in 0..BATCH {
                self.point(i, storage, bufs[i * MAX_QUERY..].as_mut_ptr(), MAX_QUERY);
            }
            // SAFETY: each of the BATCH headers points at its own name slot and one iovec
            // covering MAX_QUERY bytes of `bufs`, all alive and exclusively borrowed for the
            // duration of the call; the kernel writes at most the lengths given.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    self.hdrs.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    ptr::null_mut(),
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(n as usize)
        }

        /// Length and source of received message `i`; `None` when it was truncated or its
        /// source is not an IP address.
        pub fn message(&self, i: usize) -> Option<(usize, SocketAddr)> {
            let h = &self.hdrs[i];
            if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                return None;
            }
            let src = from_storage(&self.names[i])?;
            Some((h.msg_len as usize, src))
        }

        /// One `sendmmsg(MSG_DONTWAIT)` of `bufs[i]` to `dsts[i]`; returns how many were sent
        /// (an error only when the first one failed).
        pub fn send(
            &mut self,
            fd: RawFd,
            bufs: &[Vec<u8>],
            dsts: &[SocketAddr],
        ) -> io::Result<usize> {
            let n = bufs.len().min(dsts.len()).min(BATCH);
            for i in 0..n {
                let namelen = to_storage(dsts[i], &mut self.names[i]);
                // The kernel only reads a send buffer; iov_base is *mut in the C type only.
                self.point(i, namelen, bufs[i].as_ptr().cast_mut(), bufs[i].len());
            }
            // SAFETY: the first n headers point at their own address slot and one iovec over
            // `bufs[i]`, all alive for the duration of the call; the kernel only reads them.
            let sent = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if sent < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(sent as usize)
        }
    }

    fn from_storage(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
        match i32::from(s.ss_family) {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in, which fits in and
                // is less aligned than sockaddr_storage.
                let a = unsafe { &*ptr::from_ref(s).cast::<libc::sockaddr_in>() };
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: as above, for sockaddr_in6.
                let a = unsafe { &*ptr::from_ref(s).cast::<libc::sockaddr_in6>() };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(a.sin6_addr.s6_addr),
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }

    fn to_storage(addr: SocketAddr, s: &mut libc::sockaddr_storage) -> libc::socklen_t {
        match addr {
            SocketAddr::V4(a) => {
                // SAFETY: sockaddr_in fits in and is less aligned than sockaddr_storage, and
                // all-zero bytes are a valid sockaddr_in.
                let out = unsafe { &mut *ptr::from_mut(s).cast::<libc::sockaddr_in>() };
                *out = unsafe { zeroed() };
                out.sin_family = libc::AF_INET as libc::sa_family_t;
                out.sin_port = a.port().to_be();
                out.sin_addr = libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                };
                size_of::<libc::sockaddr_in>() as libc::socklen_t
            }
            SocketAddr::V6(a) => {
                // SAFETY: as above, for sockaddr_in6.
                let out = unsafe { &mut *ptr::from_mut(s).cast::<libc::sockaddr_in6>() };
                *out = unsafe { zeroed() };
                out.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                out.sin6_port = a.port().to_be();
                out.sin6_flowinfo = a.flowinfo();
                out.sin6_addr = libc::in6_addr {
                    s6_addr: a.ip().octets(),
                };
                out.sin6_scope_id = a.scope_id();
                size_of::<libc::sockaddr_in6>() as libc::socklen_t
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn addresses_round_trip_through_sockaddr_storage() {
            for addr in [
                "127.0.0.1:53".parse::<SocketAddr>().unwrap(),
                "203.0.113.7:65535".parse().unwrap(),
                "[::1]:5300".parse().unwrap(),
                "[fe80::1%3]:1".parse().unwrap(),
            ] {
                // SAFETY: all-zero bytes are a valid sockaddr_storage.
                let mut s: libc::sockaddr_storage = unsafe { zeroed() };
                to_storage(addr, &mut s);
                assert_eq!(from_storage(&s), Some(addr));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real sockets: a burst of datagrams from two senders is received in batches with the
    /// right sources and contents, and answers sent as one batch reach each sender.
    #[tokio::test]
    async fn a_burst_is_received_and_answered_in_batches() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let total = BATCH + 8;
        for i in 0..total {
            let from = if i % 2 == 0 { &a } else { &b };
            from.send_to(format!("q{i}").as_bytes(), addr)
                .await
                .unwrap();
        }
        let mut rx = RecvBatch::new();
        let mut tx = SendBatch::new();
        let mut seen = Vec::new();
        while seen.len() < total {
            server.readable().await.unwrap();
            match rx.try_recv(&server) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => panic!("{e}"),
            }
            assert!(rx.len() <= BATCH);
            for i in 0..rx.len() {
                let (msg, src) = rx.get(i);
                let text = String::from_utf8(msg.to_vec()).unwrap();
                let n: usize = text[1..].parse().unwrap();
                let expected = if n.is_multiple_of(2) { &a } else { &b };
                assert_eq!(src, expected.local_addr().unwrap());
                if tx.is_full() {
                    tx.flush(&server).await;
                }
                tx.next_buf().extend_from_slice(format!("a{n}").as_bytes());
                tx.push(src);
                seen.push(n);
            }
            tx.flush(&server).await;
            assert!(tx.is_empty());
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..total).collect::<Vec<_>>());
        let mut buf = [0u8; 64];
        for (sock, parity) in [(&a, 0), (&b, 1)] {
            let mut got = Vec::new();
            for _ in 0..total / 2 {
                let n =
                    tokio::time::timeout(std::time::Duration::from_secs(2), sock.recv(&mut buf))
                        .await
                        .expect("answer arrives")
                        .unwrap();
                got.push(String::from_utf8(buf[..n].to_vec()).unwrap());
            }
            let want: Vec<String> = (0..total)
                .filter(|i| i % 2 == parity)
                .map(|i| format!("a{i}"))
                .collect();
            assert_eq!(got, want);
        }
    }

    /// A datagram longer than [`MAX_QUERY`] is dropped; the ones around it are kept.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn an_oversized_datagram_is_dropped() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.send_to(b"first", addr).await.unwrap();
        c.send_to(&vec![7u8; MAX_QUERY + 100], addr).await.unwrap();
        c.send_to(b"last", addr).await.unwrap();
        let mut rx = RecvBatch::new();
        let mut got = Vec::new();
        while got.len() < 2 {
            server.readable().await.unwrap();
            if rx.try_recv(&server).is_ok() {
                for i in 0..rx.len() {
                    got.push(rx.get(i).0.to_vec());
                }
            }
        }
        assert_eq!(got, vec![b"first".to_vec(), b"last".to_vec()]);
    }
}
