//! No runtime-config table: Spin's `[[client_tls]]` (custom CAs and client
//! certificates for outbound HTTP) is refused by name in `crate::runtime_config`.
