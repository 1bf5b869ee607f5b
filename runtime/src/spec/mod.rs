//! config.json: load, validate, plan.

pub mod default;
