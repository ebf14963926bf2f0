//! Exit codes, kept in one place so `--help`, the README and the code agree.

/// Success (for `wsc`: the connection ended with a normal close, 1000 or 1001).
pub const OK: i32 = 0;
/// A failure: cannot listen, cannot connect, the handshake was refused.
pub const FAILURE: i32 = 1;
/// A usage or configuration error, reported before anything else happens.
pub const USAGE: i32 = 2;
/// `wsc`: the connection ended abnormally (another close code, a reset, a timeout).
pub const ABNORMAL: i32 = 3;
/// `wsd`: a second SIGINT or SIGTERM cut the graceful shutdown short
/// (128 + SIGINT, as shells report an interrupted program).
pub const INTERRUPTED: i32 = 130;
