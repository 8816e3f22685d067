//! These interfaces take no runtime-config table. Spin's tables for them
//! (`[key_value_store.*]`, `[sqlite_database.*]`, `[llm_compute]`) are refused by name in
//! `crate::runtime_config`.
