use std::collections::HashMap;

use super::*;
use crate::capabilities::test_support::component_with;

fn policy(allowed: &[&str]) -> OutboundHttp {
    OutboundHttp::new(component_with(allowed, HashMap::new(), &[]))
}

#[test]
fn requests_are_checked_against_allowed_outbound_hosts() {
    let http = policy(&["https://api.example.com", "http://127.0.0.1:8080"]);
    let allowed = |uri: &str| http.allowed(&uri.parse::<http::Uri>().unwrap());
    assert!(allowed("https://api.example.com/v1"));
    assert!(allowed("http://127.0.0.1:8080/hook"));
    assert!(!allowed("http://api.example.com/v1"), "scheme must match");
    assert!(!allowed("http://127.0.0.1:8081/hook"), "port must match");
    assert!(!allowed("https://evil.example.com/"));
}

#[test]
fn nothing_is_allowed_by_default() {
    let http = policy(&[]);
    assert!(!http.allowed(&"https://example.com/".parse::<http::Uri>().unwrap()));
}
