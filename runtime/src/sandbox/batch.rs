//! Batch mode (stub).
use std::path::Path;

pub struct Summary {
    pub jobs: usize,
    pub bad_lines: usize,
}

pub fn run_file(_jobs: &Path, _base: &super::Options, _n: usize) -> Result<Summary, String> {
    Err("batch: not yet".into())
}
