use std::collections::HashMap;
use std::sync::Arc;

use super::*;
use crate::capabilities::test_support::{app_capabilities, component_with};
use crate::capabilities::CapabilityState;
use wasmtime::component::ResourceTable;

#[tokio::test]
async fn variables_expand_templates_and_name_errors() {
    let component = component_with(
        &[],
        HashMap::from([
            ("greeting".to_owned(), "hello {{ who }}!".to_owned()),
            ("plain".to_owned(), "x".to_owned()),
        ]),
        &[("who", "world")],
    );
    let mut state = CapabilityState::new(Arc::new(app_capabilities()), component);
    let mut table = ResourceTable::new();
    let mut view = CapabilityView {
        state: &mut state,
        table: &mut table,
    };

    let got = spin_variables::Host::get(&mut view, "greeting".into())
        .await
        .unwrap();
    assert_eq!(got.unwrap(), "hello world!");
    let missing = spin_variables::Host::get(&mut view, "absent".into())
        .await
        .unwrap();
    assert!(
        matches!(missing, Err(spin_variables::Error::Undefined(_))),
        "{missing:?}"
    );
    let invalid = spin_variables::Host::get(&mut view, "Bad-Name".into())
        .await
        .unwrap();
    assert!(
        matches!(invalid, Err(spin_variables::Error::InvalidName(_))),
        "{invalid:?}"
    );

    let config = wasi_config::Host::get(&mut view, "greeting".into())
        .await
        .unwrap();
    assert_eq!(config.unwrap().as_deref(), Some("hello world!"));
    let config_missing = wasi_config::Host::get(&mut view, "absent".into())
        .await
        .unwrap();
    assert_eq!(config_missing.unwrap(), None);
    let all = wasi_config::Host::get_all(&mut view)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        all,
        vec![
            ("greeting".to_owned(), "hello world!".to_owned()),
            ("plain".to_owned(), "x".to_owned())
        ]
    );
}
