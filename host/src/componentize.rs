//! Core WebAssembly modules as components: what `spin up` does for a `source` built for
//! `wasm32-wasip1` (Spin 2/3-era Rust SDKs, TinyGo, older templates), done here once per
//! module and then cached with the compiled code (the cache key is the module's digest).
//!
//! A module built with wit-bindgen 0.5 or newer carries its interface types in
//! `component-type` custom sections; wit-component's encoder turns it into a component,
//! with wasmtime's WASI preview1 adapter (the reactor flavour, the one Spin's
//! `spin-componentize` calls its upstream adapter) translating the module's preview1
//! calls into WASI 0.2 imports. Both steps are the well-kept crates Spin itself uses
//! (`wit-component`, `wasi-preview1-component-adapter-provider`), at the versions matching
//! this host's wasmtime.
//!
//! Not supported, with an error saying so: modules without that type information
//! (wit-bindgen 0.2, i.e. Spin 1.x SDKs, and WAGI commands), which Spin adapts with an
//! adapter of its own and its v1 `inbound-http` interface.

use std::borrow::Cow;

use wasmparser::{Encoding, Parser, Payload};

/// The import module name preview1 modules use, which the adapter provides.
const PREVIEW1_MODULE: &str = "wasi_snapshot_preview1";

#[derive(Debug, thiserror::Error)]
pub enum ComponentizeError {
    #[error("not a WebAssembly binary: {0}")]
    Parse(#[from] wasmparser::BinaryReaderError),
    #[error("not a WebAssembly binary: no version after the magic number")]
    NoVersion,
    #[error(
        "a core WebAssembly module without component type information (no `component-type` \
         custom section: built with wit-bindgen older than 0.5, e.g. a Spin 1.x SDK, or a WAGI \
         command); edge-host adapts only modules built with current SDKs. Rebuild it with a \
         current SDK, or for wasm32-wasip2"
    )]
    NoComponentType,
    #[error("adapting the core module to a component: {0:#}")]
    Encode(anyhow::Error),
}

/// `bytes` unchanged when they are a component; the component made from them when they
/// are a core module.
/// Anything that is not binary WebAssembly (the text format, which wasmtime compiles
/// itself) is passed through too.
pub fn componentize_if_module(bytes: &[u8]) -> Result<Cow<'_, [u8]>, ComponentizeError> {
    if !bytes.starts_with(b"\0asm") {
        return Ok(Cow::Borrowed(bytes));
    }
    match encoding(bytes)? {
        Encoding::Component => Ok(Cow::Borrowed(bytes)),
        Encoding::Module => componentize(bytes).map(Cow::Owned),
    }
}

fn encoding(bytes: &[u8]) -> Result<Encoding, ComponentizeError> {
    for payload in Parser::new(0).parse_all(bytes) {
        if let Payload::Version { encoding, .. } = payload? {
            return Ok(encoding);
        }
    }
    Err(ComponentizeError::NoVersion)
}

fn has_component_type(module: &[u8]) -> Result<bool, ComponentizeError> {
    for payload in Parser::new(0).parse_all(module) {
        if let Payload::CustomSection(section) = payload? {
            if section.name().starts_with("component-type") {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn componentize(module: &[u8]) -> Result<Vec<u8>, ComponentizeError> {
    if !has_component_type(module)? {
        return Err(ComponentizeError::NoComponentType);
    }
    let adapter = wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER;
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(module)
        .and_then(|encoder| encoder.adapter(PREVIEW1_MODULE, adapter))
        .and_then(|mut encoder| encoder.encode())
        .map_err(ComponentizeError::Encode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_pass_through_untouched() {
        let component = wat::parse_str("(component)").unwrap();
        assert!(matches!(
            componentize_if_module(&component).unwrap(),
            Cow::Borrowed(b) if b == component.as_slice()
        ));
    }

    #[test]
    fn a_module_without_type_information_is_refused_with_the_reason() {
        let module = wat::parse_str(
            r#"(module (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
                       (func (export "handle-http-request")))"#,
        )
        .unwrap();
        let err = componentize_if_module(&module).unwrap_err();
        assert!(matches!(err, ComponentizeError::NoComponentType), "{err}");
        assert!(
            err.to_string().contains("wit-bindgen older than 0.5"),
            "{err}"
        );
    }

    #[test]
    fn a_broken_binary_is_a_parse_error_and_text_is_left_to_wasmtime() {
        let err = componentize_if_module(b"\0asm\x01\0\0\0\x7f").unwrap_err();
        assert!(matches!(err, ComponentizeError::Parse(_)), "{err}");
        assert!(matches!(
            componentize_if_module(b"(component)").unwrap(),
            Cow::Borrowed(_)
        ));
    }
}
