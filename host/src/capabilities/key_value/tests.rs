use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::{Resource, ResourceTable};

use super::*;
use crate::bindings::fermyon::spin2_0_0::key_value::{self as kv, HostStore};
use crate::capabilities::test_support::{app_capabilities, component_with, env_url};
use crate::capabilities::{
    AppCapabilities, CapabilityState, CapabilityView, ComponentCapabilities, EdgeHostConfig,
};

/// A component allowed to open `labels`.
fn component(labels: &[&str]) -> Arc<ComponentCapabilities> {
    let mut component = Arc::try_unwrap(component_with(&[], Default::default(), &[]))
        .ok()
        .expect("a fresh component");
    component.key_value_stores = labels.iter().map(|l| (*l).to_owned()).collect();
    Arc::new(component)
}

struct Guest {
    state: CapabilityState,
    table: ResourceTable,
}

impl Guest {
    fn new(app: AppCapabilities, labels: &[&str]) -> Self {
        Self {
            state: CapabilityState::new(Arc::new(app), component(labels)),
            table: ResourceTable::new(),
        }
    }

    fn view(&mut self) -> CapabilityView<'_> {
        CapabilityView {
            state: &mut self.state,
            table: &mut self.table,
        }
    }

    async fn open(&mut self, label: &str) -> Result<Resource<kv::Store>, kv::Error> {
        HostStore::open(&mut self.view(), label.into())
            .await
            .unwrap()
    }
}

fn app_with(stores: &[(&str, KeyValueStoreConfig)], state_dir: Option<&Path>) -> AppCapabilities {
    let config = EdgeHostConfig {
        key_value: KeyValueConfig {
            stores: stores
                .iter()
                .map(|(label, store)| ((*label).to_owned(), store.clone()))
                .collect::<BTreeMap<_, _>>(),
            base_dir: None,
        },
        ..EdgeHostConfig::default()
    };
    AppCapabilities::with_state_dir(&config, state_dir).unwrap()
}

/// set, get, exists, get-keys, delete, on one open store.
async fn exercise(guest: &mut Guest, label: &str) {
    let store = guest.open(label).await.expect("open");
    let mut view = guest.view();
    let handle = || Resource::<kv::Store>::new_borrow(store.rep());
    assert_eq!(
        HostStore::get(&mut view, handle(), "a".into())
            .await
            .unwrap()
            .unwrap(),
        None
    );
    HostStore::set(&mut view, handle(), "a".into(), b"one".to_vec())
        .await
        .unwrap()
        .unwrap();
    HostStore::set(&mut view, handle(), "b".into(), b"two".to_vec())
        .await
        .unwrap()
        .unwrap();
    HostStore::set(&mut view, handle(), "a".into(), b"uno".to_vec())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        HostStore::get(&mut view, handle(), "a".into())
            .await
            .unwrap()
            .unwrap(),
        Some(b"uno".to_vec())
    );
    assert!(HostStore::exists(&mut view, handle(), "b".into())
        .await
        .unwrap()
        .unwrap());
    let mut keys = HostStore::get_keys(&mut view, handle())
        .await
        .unwrap()
        .unwrap();
    keys.sort();
    assert_eq!(keys, ["a", "b"]);
    HostStore::delete(&mut view, handle(), "b".into())
        .await
        .unwrap()
        .unwrap();
    HostStore::delete(&mut view, handle(), "never-there".into())
        .await
        .unwrap()
        .unwrap();
    assert!(!HostStore::exists(&mut view, handle(), "b".into())
        .await
        .unwrap()
        .unwrap());
    HostStore::drop(&mut view, store).await.unwrap();
}

#[tokio::test]
async fn the_default_store_keeps_values_in_spins_file_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut guest = Guest::new(app_with(&[], Some(dir.path())), &["default"]);
    exercise(&mut guest, "default").await;
    let file = dir.path().join("sqlite_key_value.db");
    assert!(
        file.is_file(),
        "the default store lives in the state directory"
    );
    // A new app on the same state directory (a restart) reads what the first wrote.
    let mut again = Guest::new(app_with(&[], Some(dir.path())), &["default"]);
    let store = again.open("default").await.unwrap();
    let value = HostStore::get(&mut again.view(), store, "a".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(value, Some(b"uno".to_vec()));
    // Spin's schema: the same table and columns.
    let db = rusqlite::Connection::open(&file).unwrap();
    let row: (String, String) = db
        .query_row("SELECT store, key FROM spin_key_value", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(row, ("default".into(), "a".into()));
}

#[tokio::test]
async fn labels_are_separate_stores_in_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let stores = [("other", KeyValueStoreConfig::Spin { path: None })];
    let mut guest = Guest::new(app_with(&stores, Some(dir.path())), &["default", "other"]);
    let default = guest.open("default").await.unwrap();
    HostStore::set(&mut guest.view(), default, "k".into(), b"d".to_vec())
        .await
        .unwrap()
        .unwrap();
    let other = guest.open("other").await.unwrap();
    let seen = HostStore::get(&mut guest.view(), other, "k".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen, None, "one label's keys are not another's");
}

#[tokio::test]
async fn only_listed_labels_open_and_handles_are_bounded() {
    let stores = [("granted", KeyValueStoreConfig::Spin { path: None })];
    let mut guest = Guest::new(app_with(&stores, None), &["default"]);
    // Defined but not listed, and neither: access-denied both, as in Spin.
    assert!(matches!(
        guest.open("granted").await,
        Err(kv::Error::AccessDenied)
    ));
    assert!(matches!(
        guest.open("nope").await,
        Err(kv::Error::AccessDenied)
    ));
    let mut held = Vec::new();
    for _ in 0..MAX_OPEN_STORES {
        held.push(guest.open("default").await.unwrap());
    }
    assert!(matches!(
        guest.open("default").await,
        Err(kv::Error::StoreTableFull)
    ));
    HostStore::drop(&mut guest.view(), held.pop().unwrap())
        .await
        .unwrap();
    assert!(
        guest.open("default").await.is_ok(),
        "a dropped handle frees its place"
    );
}

#[test]
fn a_listed_label_no_runtime_config_defines_stops_start_up() {
    let stores = KeyValueStores::new(&KeyValueConfig::default(), None);
    stores.prepare("web", &["default".into()]).unwrap();
    let err = stores
        .prepare("web", &["sessions".into()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`web`") && err.contains("[key_value_store.sessions]"),
        "{err}"
    );
    // An unwritable path is named at start-up, not on the first request.
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "").unwrap();
    let config = KeyValueConfig {
        stores: [(
            "x".to_owned(),
            KeyValueStoreConfig::Spin {
                path: Some(blocker.join("kv.db")),
            },
        )]
        .into(),
        base_dir: None,
    };
    let err = KeyValueStores::new(&config, None)
        .prepare("c", &["x".into()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("kv.db"), "{err}");
}

#[tokio::test]
#[ignore = "needs REDIS_URL (scripts/test provides it)"]
async fn a_redis_store_behaves_like_the_sqlite_one() {
    let url = format!("{}/5", env_url("REDIS_URL").trim_end_matches('/'));
    // Database 5 of the test Redis, emptied first: the store is the whole database.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("FLUSHDB").query_async(&mut conn).await.unwrap();
    let stores = [("cache", KeyValueStoreConfig::Redis { url })];
    let mut guest = Guest::new(app_with(&stores, None), &["cache"]);
    exercise(&mut guest, "cache").await;
}

#[tokio::test]
async fn the_in_memory_default_works_without_a_state_directory() {
    let mut guest = Guest::new(app_capabilities(), &["default"]);
    exercise(&mut guest, "default").await;
}
