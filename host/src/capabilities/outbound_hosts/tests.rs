use super::*;

fn hosts(entries: &[&str]) -> AllowedHosts {
    AllowedHosts::parse(entries.iter().copied()).unwrap()
}

#[test]
fn exact_host_and_port() {
    let allowed = hosts(&["postgres://127.0.0.1:55432"]);
    assert!(allowed.allows_url("postgres://todo:pw@127.0.0.1:55432/todo"));
    assert!(!allowed.allows_url("postgres://todo:pw@127.0.0.1:5432/todo"));
    assert!(!allowed.allows_url("redis://127.0.0.1:55432"));
    assert!(!allowed.allows_url("postgres://10.0.0.1:55432/todo"));
}

#[test]
fn default_ports_apply_to_both_sides() {
    let allowed = hosts(&["redis://cache"]);
    assert!(allowed.allows_url("redis://cache"));
    assert!(allowed.allows_url("redis://cache:6379"));
    assert!(!allowed.allows_url("redis://cache:6380"));
}

#[test]
fn wildcards_and_ranges() {
    let allowed = hosts(&["https://*.example.com", "*://mail.local:8000..8100"]);
    assert!(allowed.allows_url("https://api.example.com/x"));
    assert!(!allowed.allows_url("https://example.org/x"));
    assert!(allowed.allows_url("http://mail.local:8050/hook"));
    assert!(!allowed.allows_url("http://mail.local:8200/hook"));
    let any = hosts(&["*://*:*"]);
    assert!(any.allows_url("mqtt://broker:1234"));
}

#[test]
fn empty_list_denies_everything() {
    assert!(!AllowedHosts::default().allows_url("http://127.0.0.1:80"));
}

#[test]
fn bad_entries_are_named() {
    for bad in [
        "127.0.0.1:5432",
        "postgres://",
        "http://h:x",
        "custom://h",
        "http://a*b",
    ] {
        let err = AllowedHost::parse(bad).unwrap_err().to_string();
        assert!(err.contains(bad), "{err}");
    }
}
