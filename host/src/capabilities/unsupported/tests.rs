use std::sync::Arc;

use wasmtime::component::ResourceTable;

use super::host::NOT_SUPPORTED;
use super::*;
use crate::capabilities::test_support::{app_capabilities, component_with};
use crate::capabilities::CapabilityState;

#[tokio::test]
async fn unsupported_interfaces_answer_with_their_own_errors() {
    let component = component_with(&[], Default::default(), &[]);
    let mut state = CapabilityState::new(Arc::new(app_capabilities()), component);
    let mut table = ResourceTable::new();
    let mut view = CapabilityView {
        state: &mut state,
        table: &mut table,
    };
    let llm = llm::Host::infer(&mut view, "m".into(), "p".into(), None)
        .await
        .unwrap();
    assert!(matches!(llm, Err(llm::Error::ModelNotSupported)));
    let wasi = wasi_kv::Host::open(&mut view, "default".into())
        .await
        .unwrap();
    assert!(matches!(wasi, Err(wasi_kv::Error::NoSuchStore)));
    let my = mysql::HostConnection::open(&mut view, "mysql://h".into())
        .await
        .unwrap();
    assert!(matches!(my, Err(rdbms_types::Error::ConnectionFailed(m)) if m == NOT_SUPPORTED));
    let mq = mqtt::HostConnection::open(
        &mut view,
        "mqtt://h".into(),
        String::new(),
        String::new(),
        1,
    )
    .await
    .unwrap();
    assert!(matches!(mq, Err(mqtt::Error::ConnectionFailed(m)) if m == NOT_SUPPORTED));
    let warned = view.state.app.warned_unsupported.lock().unwrap().len();
    assert_eq!(warned, 4, "one warning per component and interface");
    // A second call does not warn again.
    let _ = llm::Host::infer(&mut view, "m".into(), "p".into(), None)
        .await
        .unwrap();
    assert_eq!(view.state.app.warned_unsupported.lock().unwrap().len(), 4);
}
