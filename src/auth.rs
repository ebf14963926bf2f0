// LOCAL SCAFFOLD, NOT COMMITTED: replaced by the auth branch.
use crate::channels::ChannelName;
#[derive(Debug, Clone)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
}
impl Claims {
    pub fn may_subscribe(&self, _: &ChannelName) -> bool {
        todo!()
    }
    pub fn may_publish(&self, _: &ChannelName) -> bool {
        todo!()
    }
    pub fn expires_at(&self) -> std::time::SystemTime {
        todo!()
    }
}
pub struct Verifier;
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("x")]
    Expired,
}
impl TokenError {
    pub fn code(&self) -> &'static str {
        todo!()
    }
}
impl Verifier {
    pub fn verify(&self, _: &str) -> Result<Claims, TokenError> {
        todo!()
    }
}
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("x")]
    X,
}
impl Verifier {
    pub fn new(_: &crate::config::AuthConfig) -> Result<Option<Verifier>, AuthError> {
        Ok(None)
    }
}
