//! Triggers: what makes a component run.

pub mod http;
pub mod problem;
pub mod redis;
pub mod reuse;
