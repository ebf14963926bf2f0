//! Publish/subscribe: channel names and namespaces, publications, the
//! per-worker hubs that hand them to subscribers, and the rules of who may
//! do what.

mod name;

pub use name::{ChannelName, MAX_NAME, NameError, check_namespace_name};
