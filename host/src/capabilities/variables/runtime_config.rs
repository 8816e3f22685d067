//! Variables take no runtime-config table: values come from `--variable`, the
//! environment and manifest defaults. Spin's `[[config_provider]]` and
//! `[variables_provider]` tables (Vault, Azure Key Vault) are refused by name in
//! `crate::runtime_config`.
