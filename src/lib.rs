//! # iocdns
//!
//! A DNS forwarding resolver that checks every query against threat-intel IOC domains
//! (ThreatFox and other feeds), sinkholes or logs the matches, forwards everything else upstream,
//! and writes one Microsoft Sentinel `DnsEvents`-shaped NDJSON record per query.
//!
//! # Layout
//! * [`config`]: TOML → validated [`config::Config`]; every error names its key.
//! * [`ioc`]: feed formats (ThreatFox CSV/JSON, hosts, domains, adblock, RPZ, STIX, markdown),
//!   refanging and normalisation. Plain synchronous code.
//! * [`policy`]: build-then-freeze matcher and [`policy::PolicySnapshot`], swapped atomically
//!   through [`policy::SharedPolicy`]; decides per query with no lock and no allocation.
//! * [`dns`]: [`dns::IocHandler`], a hickory-server `RequestHandler` (embeddable in another
//!   hickory server) with the hickory-resolver upstream; the UDP fast path
//!   ([`dns::fast`]: blocked and cached answers from the receive loop), the packet relay for
//!   cache misses ([`dns::forward`]) and the UDP/TCP listeners ([`dns::server`]).
//! * [`events`]: the `DnsEvents` wire format and the bounded, never-blocking writer.
//! * [`reload`]: hot reload (file watcher, SIGHUP, last-good fallback per feed).
//! * [`remote`]: downloading `url` feeds (conditional GET, retries, zip, on-disk cache).
//! * [`metrics`]: metric names and handles, the Prometheus endpoint.
//! * [`app`]: wiring, start-up order, shutdown.
//! * [`cli`]: the `check` and `lint` commands.
//!
//! `unsafe` is denied everywhere except two small, commented places: the `recvmmsg` /
//! `sendmmsg` calls of [`dns::batch`] (nix's `sendmmsg` reports how many datagrams went out
//! only through an iterator that reads address slots it never filled, so the calls are made on
//! `libc` directly) and the `madvise(MADV_HUGEPAGE)` hint that puts the matcher on huge pages.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod app;
pub mod cli;
pub mod config;
pub mod dns;
pub mod events;
pub mod ioc;
pub mod metrics;
pub mod policy;
pub mod reload;
pub mod remote;
