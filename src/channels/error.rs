//! The errors a channel client can be given, with the code that JSON-mode
//! replies and HTTP answers carry (documented in the README).

use std::fmt;

/// The documented error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    /// A token was needed and is missing, or is invalid.
    Unauthorized,
    UnknownNamespace,
    Forbidden,
    NotSubscribed,
    TooBig,
    Limit,
    Unavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::UnknownNamespace => "unknown_namespace",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotSubscribed => "not_subscribed",
            ErrorCode::TooBig => "too_big",
            ErrorCode::Limit => "limit",
            ErrorCode::Unavailable => "unavailable",
        }
    }

    /// The HTTP status of an API answer with this error.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::NotSubscribed => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::UnknownNamespace => 404,
            ErrorCode::TooBig => 413,
            ErrorCode::Limit => 429,
            ErrorCode::Unavailable => 503,
        }
    }
}

/// An error for a channel client: a code and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelError {
    pub code: ErrorCode,
    pub message: String,
}

impl ChannelError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ChannelError {
        ChannelError {
            code,
            message: message.into(),
        }
    }

    /// `{"code":..,"message":..}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"code": self.code.as_str(), "message": self.message})
    }

    /// The message cut to fit a close frame's reason (123 bytes), on a
    /// character boundary.
    pub fn close_reason(&self) -> &str {
        let mut end = self.message.len().min(123);
        while !self.message.is_char_boundary(end) {
            end -= 1;
        }
        &self.message[..end]
    }
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ChannelError {}

impl From<crate::engine::EngineError> for ChannelError {
    fn from(e: crate::engine::EngineError) -> ChannelError {
        ChannelError::new(ErrorCode::Unavailable, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_fit_a_close_frame() {
        let e = ChannelError::new(ErrorCode::Forbidden, "é".repeat(100));
        assert!(e.close_reason().len() <= 123);
        assert!(e.close_reason().chars().all(|c| c == 'é'));
    }
}
