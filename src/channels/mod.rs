//! Publish/subscribe on this node: channel names and namespace rules, the
//! service sessions and the HTTP API call ([`Channels`]), the router that
//! sends each publication once to every worker with subscribers, and the
//! per-worker hubs that queue it into each subscriber's send queue.
//!
//! - `name`: [`ChannelName`], what a valid name is, and its namespace.
//! - `rules`: namespaces and tokens: who may subscribe and publish.
//! - `command`: JSON mode's commands and replies.
//! - `error`: [`ChannelError`] and the documented error codes.
//! - `node`: [`Channels`], the service (subscribe in three steps, publish,
//!   history, presence, listing).
//! - `router`: the node's routing table (channel -> worker hubs).
//! - `hub`: one per worker thread: its subscribers, and delivery.
//! - `metrics`: the channel metrics.
//!
//! Where offsets, history and presence live is the engine's business
//! ([`crate::engine`]).

mod command;
mod error;
mod hub;
mod metrics;
mod name;
mod node;
mod router;
mod rules;

pub use command::{
    BadCommand, Command, Op, error as error_reply, ok as ok_reply, parse as parse_command, payload,
};
pub use error::{ChannelError, ErrorCode};
pub use hub::Subscriber;
pub use metrics::{ChannelMetrics, Source};
pub use name::{ChannelName, MAX_NAME, NameError, check_namespace_name};
pub use node::{ChannelInfo, Channels, Publish, Start};
pub use rules::Action;
