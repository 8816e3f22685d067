//! These interfaces take no runtime-config table. Spin's table for them (`[llm_compute]`)
//! is refused by name in `crate::runtime_config`.
