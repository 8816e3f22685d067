//! Host bindings generated from Spin's WIT (see `host/wit/`).
//!
//! Every import is async so capabilities can do network I/O without blocking the
//! executor, and trappable so a host bug surfaces as a trap (a 500 for that request)
//! rather than a panic.

wasmtime::component::bindgen!({
    path: "wit",
    world: "edge:host/spin-platform",
    imports: { default: async | trappable },
});

/// Bindings for the export of Redis-triggered components (`#[redis_component]`).
pub mod redis_trigger {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "edge:host/redis-trigger",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}
