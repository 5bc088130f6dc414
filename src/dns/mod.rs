//! The DNS side: the request handler (policy decision, synthesized answers, forwarding) and the
//! upstream client. [`IocHandler`] implements hickory-server's `RequestHandler`, so it can be
//! served by [`crate::app`] or embedded in another hickory server.

pub mod batch;
pub mod fast;
pub mod forward;
mod handler;
pub mod response;
pub mod server;
pub mod upstream;

pub use handler::{CACHEABLE, ClientAcl, IocHandler};
pub use upstream::{Upstream, UpstreamAnswer, UpstreamError, UpstreamFailure};
