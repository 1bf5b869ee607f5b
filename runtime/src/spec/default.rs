//! `husk spec`: the default `config.json`, as `runc spec` makes it (with `--rootless` too).

/// The default spec as JSON.
pub fn generate(_rootless: bool) -> serde_json::Value {
    serde_json::json!({})
}
