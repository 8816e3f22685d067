use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::*;

fn admission(limits: AdmissionLimits, config: &str) -> Result<Admission, UnknownComponent> {
    let config: AdmissionConfig = toml::from_str(config).expect("test config parses");
    Admission::new(limits, &config, ["auth", "todos"], 8)
}

const ONE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const TWO: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

#[test]
fn a_client_over_its_in_flight_cap_is_refused_and_others_are_not() {
    let limits = AdmissionLimits {
        max_client_in_flight: 2,
        ..AdmissionLimits::default()
    };
    let admission = admission(limits, "").unwrap();
    let first = admission.client(ONE).unwrap();
    let _second = admission.client(ONE).unwrap();
    assert_eq!(admission.client(ONE).err(), Some(Refusal::ClientBusy));
    assert!(admission.client(TWO).is_ok());
    drop(first);
    assert!(
        admission.client(ONE).is_ok(),
        "a finished request frees its place"
    );
}

#[test]
fn a_zero_client_cap_is_off() {
    let limits = AdmissionLimits {
        max_client_in_flight: 0,
        ..AdmissionLimits::default()
    };
    let admission = admission(limits, "").unwrap();
    let passes: Vec<_> = (0..1000).map(|_| admission.client(ONE).unwrap()).collect();
    assert_eq!(passes.len(), 1000);
}

#[tokio::test]
async fn a_full_component_waits_its_queue_wait_then_is_refused_and_others_pass() {
    let limits = AdmissionLimits {
        max_queue_wait: Duration::from_millis(50),
        ..AdmissionLimits::default()
    };
    let admission = admission(
        limits,
        "[component.auth]\nmax_concurrency = 1\nmax_queue_wait_ms = 0\n",
    )
    .unwrap();
    let held = admission
        .component("auth", admission.deadline("auth"))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let refused = admission
        .component("auth", admission.deadline("auth"))
        .await;
    assert_eq!(refused.err(), Some(Refusal::Overloaded));
    assert!(
        started.elapsed() < Duration::from_millis(40),
        "no wait at 0 ms"
    );
    // todos has the default cap: three quarters of 8 slots.
    let mut todos = Vec::new();
    for _ in 0..6 {
        todos.push(
            admission
                .component("todos", admission.deadline("todos"))
                .await
                .unwrap(),
        );
    }
    let started = std::time::Instant::now();
    let seventh = admission
        .component("todos", admission.deadline("todos"))
        .await;
    assert_eq!(seventh.err(), Some(Refusal::Overloaded));
    assert!(
        started.elapsed() >= Duration::from_millis(45),
        "waited the flag's 50 ms"
    );
    drop(held);
    assert!(admission
        .component("auth", admission.deadline("auth"))
        .await
        .is_ok());
}

#[test]
fn a_table_for_a_component_the_manifest_lacks_is_an_error_naming_it() {
    let err = admission(
        AdmissionLimits::default(),
        "[component.atuh]\nmax_concurrency = 1\n",
    )
    .err()
    .expect("unknown component")
    .to_string();
    assert!(
        err.contains("atuh") && err.contains("edge_host.admission"),
        "{err}"
    );
}

#[test]
fn a_zero_cap_and_unknown_fields_are_refused() {
    let config: AdmissionConfig =
        toml::from_str("[component.auth]\nmax_concurrency = 0\n").unwrap();
    assert!(config.validate().unwrap_err().contains("at least 1"));
    let typo = toml::from_str::<AdmissionConfig>("[component.auth]\nmax_concurency = 2\n");
    assert!(typo.unwrap_err().to_string().contains("max_concurency"));
}
