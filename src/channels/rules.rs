//! Who may do what on which channel: the namespaces of the config and the
//! claims of a client's token.

use std::collections::HashMap;

use super::ChannelName;
use super::error::{ChannelError, ErrorCode};
use crate::auth::Claims;
use crate::config::{Access, NamespaceConfig};
use crate::engine::Retention;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Subscribe,
    Publish,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Subscribe => "subscribe",
            Action::Publish => "publish",
        }
    }
}

pub struct Rules {
    namespaces: HashMap<String, NamespaceConfig>,
}

impl Rules {
    pub fn new(namespaces: &[NamespaceConfig]) -> Rules {
        Rules {
            namespaces: namespaces
                .iter()
                .map(|ns| (ns.name.clone(), ns.clone()))
                .collect(),
        }
    }

    /// The rules of `channel`'s namespace; an unknown namespace is refused.
    pub fn namespace(&self, channel: &ChannelName) -> Result<&NamespaceConfig, ChannelError> {
        let ns = channel.namespace();
        self.namespaces.get(ns).ok_or_else(|| {
            ChannelError::new(
                ErrorCode::UnknownNamespace,
                if ns.is_empty() {
                    format!("channel {channel:?}: channels without a namespace are not configured")
                } else {
                    format!("channel {channel:?}: namespace {ns:?} is not configured")
                },
            )
        })
    }

    /// Whether a WebSocket client with `claims` (or none) may do `action` on
    /// `channel`. The refusal names the rule.
    pub fn check(
        &self,
        channel: &ChannelName,
        action: Action,
        claims: Option<&Claims>,
    ) -> Result<&NamespaceConfig, ChannelError> {
        let ns = self.namespace(channel)?;
        let access = match action {
            Action::Subscribe => ns.subscribe,
            Action::Publish => ns.publish,
        };
        let granted = match access {
            Access::Anyone => true,
            Access::Authenticated => claims.is_some(),
            Access::Token => claims.is_some_and(|c| match action {
                Action::Subscribe => c.may_subscribe(channel),
                Action::Publish => c.may_publish(channel),
            }),
            Access::Nobody => false,
        };
        if granted {
            return Ok(ns);
        }
        let (code, why) = match (access, claims) {
            (Access::Nobody, _) => (ErrorCode::Forbidden, "nobody"),
            (Access::Authenticated, None) | (Access::Token, None) => {
                (ErrorCode::Unauthorized, "a token is needed")
            }
            _ => (ErrorCode::Forbidden, "the token does not grant it"),
        };
        Err(ChannelError::new(
            code,
            format!(
                "{} on {channel:?} refused: namespace {:?} has {} = {:?}{}",
                action.as_str(),
                ns.name,
                action.as_str(),
                access.as_str(),
                if why == "nobody" {
                    String::new()
                } else {
                    format!(", and {why}")
                }
            ),
        ))
    }
}

/// How a namespace keeps history.
pub fn retention(ns: &NamespaceConfig) -> Retention {
    Retention {
        size: ns.history_size,
        ttl: ns.history_ttl,
    }
}
