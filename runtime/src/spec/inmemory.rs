//! A spec built in memory (by `husk sandbox`) rather than read from `config.json`: validated and
//! planned by exactly the same code, so it gets the same checks and the same runtime path.

use std::path::Path;

use oci_spec::runtime::Spec;

use super::{validate, Plan, SpecError};

/// Validate `spec` and plan it; relative paths resolve against `bundle_dir`, and errors name
/// the JSON path inside `<in-memory spec>`.
pub fn plan_from_spec(spec: Spec, bundle_dir: &Path) -> Result<Plan, SpecError> {
    let bundle = std::path::absolute(bundle_dir).map_err(|source| SpecError::Read {
        path: bundle_dir.to_path_buf(),
        source,
    })?;
    validate::plan(spec, bundle, Path::new("<in-memory spec>"))
}
