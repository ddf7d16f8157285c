//! Helpers for connector tests: fixture loading.

use std::path::{Path, PathBuf};

/// Reads `tests/fixtures/<provider>/<name>` under a crate's manifest dir.
/// Use as `fixture(env!("CARGO_MANIFEST_DIR"), "generic", "message.json")`.
pub fn fixture(manifest_dir: &str, provider: &str, name: &str) -> Vec<u8> {
    let path: PathBuf = Path::new(manifest_dir)
        .join("tests/fixtures")
        .join(provider)
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}
