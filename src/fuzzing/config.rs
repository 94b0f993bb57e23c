//! `pubq.toml`: parsed, resolved under no flags, its `[auth]` checked and
//! its declarations made in a fresh hub, as `pubq serve` does at start.

use std::sync::Arc;

use crate::auth::Auth;
use crate::config::{FileConfig, ServeArgs, ServerConfig};
use crate::hub::Hub;
use crate::model::ManualClock;

/// `config_file`: the text of a `pubq.toml`. Nothing panics on the way;
/// whether the hub took every declaration is the answer.
pub fn config_file(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(file) = FileConfig::parse(text) else {
        return false;
    };
    let Ok(config) = ServerConfig::resolve_with(&ServeArgs::default(), file) else {
        return false;
    };
    // Key files and the secret's variable would be read at start: the
    // input names them, but reading what it names (`/dev/zero`, anything)
    // is not what is being tested. Their contents are `auth_token`'s.
    let mut auth = config.auth.clone();
    auth.jwt.hs256_secret_file = None;
    auth.jwt.hs256_secret_env = None;
    auth.jwt.rs256_public_keys.clear();
    auth.jwt.eddsa_public_keys.clear();
    let _ = Auth::from_config(&auth);
    super::runtime().block_on(async {
        let hub = Hub::new(
            Arc::new(ManualClock::new(1_764_000_000_000)),
            config.limits.clone(),
        );
        crate::server::declare(&hub, &config.declare).await.is_ok()
    })
}
