//! No WIT of its own: this capability is asked by the others (postgres, redis,
//! outbound_http) before they connect, and a denial reaches the guest as the asking
//! interface's own error (`connection-failed`, `HTTP-request-denied`), as in Spin.
