//! Channel names: what a valid one is, its namespace, and lists of them.

use std::fmt;
use std::sync::Arc;

/// The longest channel name, in bytes.
pub const MAX_NAME: usize = 255;

/// A channel name that passed [`ChannelName::parse`]: 1-255 bytes of
/// `A-Z a-z 0-9 _ - . : @`. Cheap to clone (the text is shared), because the
/// same name is held by the engine, the hubs and every subscription.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(Arc<str>);

/// Quoted like a string, because refusals show names with `{:?}` to users.
impl fmt::Debug for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// Why a channel name was refused; the message quotes the name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("empty channel name")]
    Empty,
    #[error("channel name of {0} bytes; at most {MAX_NAME} are allowed")]
    TooLong(usize),
    #[error("channel name {name:?} holds {bad:?}; allowed are A-Z a-z 0-9 _ - . : @")]
    BadChar { name: String, bad: char },
}

fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'@')
}

impl ChannelName {
    pub fn parse(text: &str) -> Result<ChannelName, NameError> {
        if text.is_empty() {
            return Err(NameError::Empty);
        }
        if text.len() > MAX_NAME {
            return Err(NameError::TooLong(text.len()));
        }
        if let Some(bad) = text.chars().find(|c| !c.is_ascii() || !allowed(*c as u8)) {
            return Err(NameError::BadChar {
                name: text.chars().take(64).collect(),
                bad,
            });
        }
        Ok(ChannelName(Arc::from(text)))
    }

    /// Several names separated by commas (`a,b,c`), as in a URL path; no
    /// name twice, in the order given.
    pub fn parse_list(text: &str) -> Result<Vec<ChannelName>, NameError> {
        let mut names: Vec<ChannelName> = Vec::new();
        for part in text.split(',') {
            let name = ChannelName::parse(part)?;
            if !names.contains(&name) {
                names.push(name);
            }
        }
        Ok(names)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The shared text, for maps keyed by name.
    pub fn shared(&self) -> &Arc<str> {
        &self.0
    }

    /// The part before the first `:`, or `""` (the default namespace).
    pub fn namespace(&self) -> &str {
        self.0.split_once(':').map_or("", |(ns, _)| ns)
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a namespace name from the config: `""`, or what may precede the
/// `:` of a channel name.
pub fn check_namespace_name(name: &str) -> Result<(), String> {
    if name.len() >= MAX_NAME {
        return Err(format!(
            "namespace name of {} bytes is too long",
            name.len()
        ));
    }
    match name.bytes().find(|&b| !allowed(b) || b == b':') {
        Some(_) => Err(format!(
            "namespace name {name:?} may hold only A-Z a-z 0-9 _ - . @ (no ':')"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_namespaces() {
        let n = ChannelName::parse("ticks:BTC-USD").unwrap();
        assert_eq!(n.namespace(), "ticks");
        assert_eq!(ChannelName::parse("lobby").unwrap().namespace(), "");
        assert_eq!(ChannelName::parse("a:b:c").unwrap().namespace(), "a");
        assert_eq!(ChannelName::parse(":x").unwrap().namespace(), "");
        assert_eq!(
            ChannelName::parse(&"x".repeat(255)).unwrap().as_str().len(),
            255
        );
    }

    #[test]
    fn bad_names_are_refused_with_the_reason() {
        assert_eq!(ChannelName::parse(""), Err(NameError::Empty));
        assert_eq!(
            ChannelName::parse(&"x".repeat(256)),
            Err(NameError::TooLong(256))
        );
        for bad in ["a b", "a/b", "é", "a,b", "a%20", "a*"] {
            assert!(
                matches!(ChannelName::parse(bad), Err(NameError::BadChar { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn lists_split_on_commas_without_duplicates() {
        let names = ChannelName::parse_list("a,b,a,c").unwrap();
        let names: Vec<&str> = names.iter().map(ChannelName::as_str).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(ChannelName::parse_list("a,,b").is_err());
    }

    #[test]
    fn namespace_names() {
        assert!(check_namespace_name("").is_ok());
        assert!(check_namespace_name("ticks").is_ok());
        assert!(check_namespace_name("a:b").is_err());
        assert!(check_namespace_name("a b").is_err());
    }
}
