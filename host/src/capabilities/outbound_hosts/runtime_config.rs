//! No runtime-config table yet. Spin's `[outbound_networking]` (blocked networks) is
//! refused by name in `crate::runtime_config`.
