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
//!   hickory server), and the hickory-resolver upstream.
//! * [`events`]: the `DnsEvents` wire format and the bounded, never-blocking writer.
//! * [`metrics`]: metric names and handles.
//! * [`app`]: wiring, listeners, shutdown.
//! * [`cli`]: the `check` and `lint` commands.

#![forbid(unsafe_code)]
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
