//! `husk features`: what this runtime supports, in the JSON shape of the runtime-spec
//! features document (as `runc features` prints it).

/// The features document.
pub fn features() -> serde_json::Value {
    serde_json::json!({})
}
