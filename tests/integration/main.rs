//! One integration test binary (faster to link than one per file).
//!
//! * `support`: stub authoritative upstream on 127.0.0.1:0, raw DNS client, server starter.
//! * `resolver`: forwarding fidelity, every policy action, allowlist, client ACL, upstream down.
//! * `events`: the DnsEvents wire format, pinned with independent structs.
//! * `e2e`: the built binary on the shipped config, driven with `dig`.

mod e2e;
mod events;
mod reload;
mod remote;
mod resolver;
mod support;
