use super::*;

fn text(value: &str) -> v3::Value {
    v3::Value::Text(value.into())
}

/// A database in `dir` (or memory) under the label `test`.
fn database(path: Option<PathBuf>) -> Arc<Database> {
    Arc::new(Database::new("test", path))
}

#[test]
fn at_statements_name_a_file_and_an_optional_label() {
    assert_eq!(file_and_label("seed.sql"), Ok(("seed.sql", "default")));
    assert_eq!(
        file_and_label(" seed.sql : notes "),
        Ok(("seed.sql", "notes"))
    );
    assert!(file_and_label("seed.sql:").is_err());
    assert!(file_and_label(":notes").is_err());
    assert!(file_and_label("").is_err());
}

#[test]
fn every_value_type_round_trips_with_column_names() {
    let connection = database(None).connect().unwrap();
    connection
        .execute_batch("CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n)")
        .unwrap();
    let values = vec![
        v3::Value::Integer(-7),
        v3::Value::Real(2.5),
        text("grüße"),
        v3::Value::Blob(vec![0, 255, 1]),
        v3::Value::Null,
    ];
    query(
        &connection,
        "INSERT INTO t VALUES (?, ?, ?, ?, ?)",
        values.clone(),
    )
    .unwrap();
    let result = query(&connection, "SELECT i, r, s, b, n AS absent FROM t", vec![]).unwrap();
    assert_eq!(result.columns, ["i", "r", "s", "b", "absent"]);
    assert_eq!(result.rows.len(), 1);
    assert_eq!(
        format!("{:?}", result.rows[0].values),
        format!("{values:?}")
    );
}

#[test]
fn a_bad_statement_is_an_error_with_sqlites_message() {
    let connection = database(None).connect().unwrap();
    let err = query(&connection, "SELEC 1", vec![]).unwrap_err();
    assert!(err.0.contains("syntax error"), "{err}");
    let err = query(&connection, "SELECT ?", vec![]).unwrap_err();
    assert!(!err.0.is_empty());
}

#[test]
fn a_result_over_the_limit_is_an_error_not_a_partial_answer() {
    let connection = database(None).connect().unwrap();
    let statement =
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) \
                     SELECT printf('%050d', i) FROM n";
    assert_eq!(
        query(&connection, statement, vec![]).unwrap().rows.len(),
        100
    );
    let err = query_within(&connection, statement, vec![], 1000).unwrap_err();
    assert!(err.0.contains("exceeds limit of 1000 bytes"), "{err}");
}

#[test]
fn text_that_is_not_utf8_is_given_with_replacements_not_a_panic() {
    let connection = database(None).connect().unwrap();
    let result = query(&connection, "SELECT CAST(x'66ff6f' AS TEXT)", vec![]).unwrap();
    assert_eq!(
        format!("{:?}", result.rows[0].values),
        format!("{:?}", vec![text("f\u{fffd}o")])
    );
}

#[test]
fn no_other_file_can_be_attached_or_written() {
    let dir = tempfile::tempdir().unwrap();
    let connection = database(Some(dir.path().join("app.db"))).connect().unwrap();
    let other = dir.path().join("other.db");
    let attach = format!("ATTACH DATABASE '{}' AS other", other.display());
    assert!(query(&connection, &attach, vec![]).is_err());
    let vacuum = format!("VACUUM INTO '{}'", other.display());
    assert!(query(&connection, &vacuum, vec![]).is_err());
    assert!(!other.exists(), "SQL reached a file outside the database");
}

#[test]
fn the_in_memory_database_is_shared_by_the_apps_connections() {
    let memory = database(None);
    let first = memory.connect().unwrap();
    first
        .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1)")
        .unwrap();
    drop(first);
    let second = memory.connect().unwrap();
    let result = query(&second, "SELECT x FROM t", vec![]).unwrap();
    assert_eq!(result.rows.len(), 1);
    // Another app's (another label's) memory database is its own.
    let other = database(None).connect().unwrap();
    assert!(query(&other, "SELECT x FROM t", vec![]).is_err());
}

#[tokio::test]
async fn changes_and_rowid_are_the_handles_own() {
    let dir = tempfile::tempdir().unwrap();
    let shared = database(Some(dir.path().join("app.db")));
    let mine = OpenConnection::open(shared.clone()).await.unwrap();
    let theirs = OpenConnection::open(shared).await.unwrap();
    mine.execute("CREATE TABLE t (x)".into(), vec![])
        .await
        .unwrap();
    mine.execute("INSERT INTO t VALUES (1), (2)".into(), vec![])
        .await
        .unwrap();
    theirs
        .execute("INSERT INTO t VALUES (3)".into(), vec![])
        .await
        .unwrap();
    assert_eq!(mine.changes().await.unwrap(), 2);
    assert_eq!(mine.last_insert_rowid().await.unwrap(), 2);
    assert_eq!(theirs.changes().await.unwrap(), 1);
    assert_eq!(theirs.last_insert_rowid().await.unwrap(), 3);
}

#[tokio::test]
async fn a_transaction_left_open_dies_with_its_handle() {
    let dir = tempfile::tempdir().unwrap();
    let shared = database(Some(dir.path().join("app.db")));
    let setup = OpenConnection::open(shared.clone()).await.unwrap();
    setup
        .execute("CREATE TABLE t (x)".into(), vec![])
        .await
        .unwrap();
    let careless = OpenConnection::open(shared.clone()).await.unwrap();
    careless
        .execute("BEGIN IMMEDIATE".into(), vec![])
        .await
        .unwrap();
    careless
        .execute("INSERT INTO t VALUES (1)".into(), vec![])
        .await
        .unwrap();
    drop(careless);
    // The next writer is neither blocked nor sees the uncommitted row.
    setup
        .execute("INSERT INTO t VALUES (2)".into(), vec![])
        .await
        .unwrap();
    let rows = setup
        .execute("SELECT x FROM t".into(), vec![])
        .await
        .unwrap();
    assert_eq!(
        format!("{:?}", rows.rows),
        format!(
            "{:?}",
            vec![v3::RowResult {
                values: vec![v3::Value::Integer(2)]
            }]
        )
    );
}

#[test]
fn startup_statements_run_in_order_on_their_labels() {
    let dir = tempfile::tempdir().unwrap();
    let config = SqliteConfig {
        databases: [(
            "notes".to_owned(),
            SqliteDatabaseConfig::Spin {
                path: Some(dir.path().join("notes.db")),
            },
        )]
        .into(),
        base_dir: None,
    };
    let databases = SqliteDatabases::new(&config, Some(dir.path()));
    let seed = dir.path().join("seed.sql");
    std::fs::write(
        &seed,
        "CREATE TABLE n (x); INSERT INTO n VALUES ('seeded');",
    )
    .unwrap();
    databases
        .run_startup_statements(&[
            "CREATE TABLE d (x)".into(),
            "INSERT INTO d VALUES (42)".into(),
            format!("@{}:notes", seed.display()),
        ])
        .unwrap();
    let default = databases.get(DEFAULT_DATABASE).unwrap().connect().unwrap();
    assert_eq!(
        query(&default, "SELECT x FROM d", vec![])
            .unwrap()
            .rows
            .len(),
        1
    );
    assert!(dir.path().join(DEFAULT_FILE).is_file());
    let notes = databases.get("notes").unwrap().connect().unwrap();
    assert_eq!(
        query(&notes, "SELECT x FROM n", vec![]).unwrap().rows.len(),
        1
    );
    // A failing statement and an unknown label stop start-up, naming the statement.
    let err = databases
        .run_startup_statements(&["INSERT INTO missing VALUES (1)".into()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("INSERT INTO missing") && err.contains("no such table"),
        "{err}"
    );
    let err = databases
        .run_startup_statements(&[format!("@{}:nowhere", seed.display())])
        .unwrap_err()
        .to_string();
    assert!(err.contains("[sqlite_database.nowhere]"), "{err}");
}

#[test]
fn an_undefined_granted_label_is_named_at_start_up() {
    let databases = SqliteDatabases::new(&SqliteConfig::default(), None);
    databases.prepare("web", &["default".into()]).unwrap();
    let err = databases
        .prepare("web", &["default".into(), "notes".into()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`web`") && err.contains("[sqlite_database.notes]"),
        "{err}"
    );
}
