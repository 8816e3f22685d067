//! These interfaces take no runtime-config table. Spin's tables for them
//! (`[sqlite_database.*]`, `[llm_compute]`) are refused by name in
//! `crate::runtime_config`.
