//! Tests against the real PostgreSQL (`DATABASE_URL`, as `scripts/services env` exports):
//! every WIT type in and out, structured errors, `allowed_outbound_hosts`, and session
//! hygiene of pooled connections.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use wasmtime::component::{Resource, ResourceTable};

use super::*;
use crate::bindings::fermyon::spin2_0_0::{postgres as v2, rdbms_types as v2_types};
use crate::bindings::spin::postgres3_0_0::postgres as v3;
use crate::capabilities::test_support::{component_with, env_url, origin_of};
use crate::capabilities::{
    AppCapabilities, CapabilityState, CapabilityView, ComponentCapabilities,
};
use v4::HostConnection as _;
use v4::{DbDataType as T, DbValue as V, ParameterValue as P, RangeBoundKind as K};

/// One app with its pools, and a component allowed to reach the test database.
struct Fixture {
    url: String,
    app: Arc<AppCapabilities>,
    component: Arc<ComponentCapabilities>,
}

/// What one request holds: its capability state and resource table.
struct Request {
    state: CapabilityState,
    table: ResourceTable,
}

impl Request {
    fn view(&mut self) -> CapabilityView<'_> {
        CapabilityView {
            state: &mut self.state,
            table: &mut self.table,
        }
    }
}

impl Fixture {
    fn new(max_connections: usize) -> Self {
        let url = env_url("DATABASE_URL");
        let mut config = crate::capabilities::EdgeHostConfig::default();
        config.postgres.max_connections = max_connections;
        let app = Arc::new(AppCapabilities::new(&config).unwrap());
        let allowed = origin_of(&url).replace("postgresql://", "postgres://");
        let component = component_with(&[allowed.as_str()], Default::default(), &[]);
        Self {
            url,
            app,
            component,
        }
    }

    fn request(&self) -> Request {
        Request {
            state: CapabilityState::new(self.app.clone(), self.component.clone()),
            table: ResourceTable::new(),
        }
    }

    fn stats(&self) -> &SessionStats {
        self.app.postgres.stats()
    }
}

async fn open(view: &mut CapabilityView<'_>, url: &str) -> Resource<v4::Connection> {
    v4::HostConnection::open(view, url.to_owned())
        .await
        .unwrap()
        .unwrap()
}

/// A request with one connection open, as a guest handler holds it. Dropping it ends
/// the request (the whole store goes, as when the guest returns without dropping handles).
struct Session {
    request: Request,
    connection: Resource<v4::Connection>,
}

impl Fixture {
    /// A fresh request with a connection checked out of the pool.
    async fn session(&self) -> Session {
        let mut request = self.request();
        let connection = open(&mut request.view(), &self.url).await;
        Session {
            request,
            connection,
        }
    }
}

impl Session {
    fn handle(&self) -> Resource<v4::Connection> {
        Resource::new_borrow(self.connection.rep())
    }

    async fn query(&mut self, sql: &str, params: Vec<P>) -> Result<v4::RowSet, v4::Error> {
        let handle = self.handle();
        let mut view = self.request.view();
        view.query(handle, sql.to_owned(), params).await.unwrap()
    }

    async fn execute(&mut self, sql: &str) -> Result<u64, v4::Error> {
        let handle = self.handle();
        let mut view = self.request.view();
        view.execute(handle, sql.to_owned(), vec![]).await.unwrap()
    }

    /// The single value of a one-row, one-column query, with its column type.
    async fn scalar(&mut self, sql: &str, params: Vec<P>) -> (T, V) {
        let rows = self
            .query(sql, params)
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err:?}"));
        assert_eq!(rows.rows.len(), 1, "{sql}");
        assert_eq!(rows.columns.len(), 1, "{sql}");
        (rows.columns[0].data_type.clone(), rows.rows[0][0].clone())
    }

    async fn backend_pid(&mut self) -> i32 {
        match self.scalar("SELECT pg_backend_pid()", vec![]).await.1 {
            V::Int32(pid) => pid,
            other => panic!("pid: {other:?}"),
        }
    }

    /// Drops the connection handle, as the guest does when it is done, and ends the request.
    async fn close(self) {
        let Session {
            mut request,
            connection,
        } = self;
        v4::HostConnection::drop(&mut request.view(), connection)
            .await
            .unwrap();
    }
}

fn debug<D: std::fmt::Debug>(value: D) -> String {
    format!("{value:?}")
}

/// What `every_type_round_trips_through_the_real_server` sends and expects back, one case
/// a line: (statement, parameter, expected column type, expected value).
#[rustfmt::skip]
fn round_trip_cases() -> Vec<(&'static str, Option<P>, T, V)> {
    vec![
        ("SELECT $1", Some(P::Boolean(true)), T::Boolean, V::Boolean(true)),
        ("SELECT $1", Some(P::Int8(-5)), T::Int16, V::Int16(-5)),
        ("SELECT $1", Some(P::Int16(i16::MIN)), T::Int16, V::Int16(i16::MIN)),
        ("SELECT $1", Some(P::Int32(i32::MAX)), T::Int32, V::Int32(i32::MAX)),
        ("SELECT $1", Some(P::Int64(i64::MIN)), T::Int64, V::Int64(i64::MIN)),
        ("SELECT $1", Some(P::Floating32(1.5)), T::Floating32, V::Floating32(1.5)),
        ("SELECT $1", Some(P::Floating64(-2.25)), T::Floating64, V::Floating64(-2.25)),
        ("SELECT $1::text", Some(P::Str("héllo 'x'".into())), T::Str, V::Str("héllo 'x'".into())),
        ("SELECT $1::varchar(10)", Some(P::Str("v".into())), T::Str, V::Str("v".into())),
        ("SELECT 'a'::\"char\"", None, T::Int8, V::Int8(97)),
        ("SELECT 'n'::name", None, T::Str, V::Str("n".into())),
        ("SELECT $1", Some(P::Binary(vec![0, 1, 255])), T::Binary, V::Binary(vec![0, 1, 255])),
        ("SELECT $1", Some(P::Date((2024, 2, 29))), T::Date, V::Date((2024, 2, 29))),
        ("SELECT $1", Some(P::Date((-44, 3, 15))), T::Date, V::Date((-44, 3, 15))),
        ("SELECT $1", Some(P::Time((23, 59, 58, 123_456_000))), T::Time, V::Time((23, 59, 58, 123_456_000))),
        ("SELECT $1", Some(P::Datetime((2024, 2, 29, 12, 30, 45, 123_456_000))), T::Datetime, V::Datetime((2024, 2, 29, 12, 30, 45, 123_456_000))),
        // A naive date-time stored in a timestamptz is the same UTC instant.
        ("SELECT $1::timestamptz", Some(P::Datetime((2024, 2, 29, 12, 30, 45, 0))), T::Datetime, V::Datetime((2024, 2, 29, 12, 30, 45, 0))),
        ("SELECT $1", Some(P::Timestamp(1_700_000_000)), T::Datetime, V::Datetime((2023, 11, 14, 22, 13, 20, 0))),
        ("SELECT $1", Some(P::Uuid("A1A2A3A4-B1B2-C1C2-D1D2-D3D4D5D6D7D8".into())), T::Uuid, V::Uuid("a1a2a3a4-b1b2-c1c2-d1d2-d3d4d5d6d7d8".into())),
        // A `str` takes the type the statement needs: here a uuid.
        ("SELECT $1::uuid", Some(P::Str("a1a2a3a4-b1b2-c1c2-d1d2-d3d4d5d6d7d8".into())), T::Uuid, V::Uuid("a1a2a3a4-b1b2-c1c2-d1d2-d3d4d5d6d7d8".into())),
        ("SELECT $1", Some(P::Jsonb(br#"{"a":[1,2],"b":null}"#.to_vec())), T::Jsonb, V::Jsonb(br#"{"a": [1, 2], "b": null}"#.to_vec())),
        ("SELECT '{\"x\":1}'::json", None, T::Jsonb, V::Jsonb(br#"{"x":1}"#.to_vec())),
        ("SELECT $1", Some(P::Decimal("-12345678901234567890.000000000000000000001".into())), T::Decimal, V::Decimal("-12345678901234567890.000000000000000000001".into())),
        ("SELECT $1", Some(P::Decimal("1.50".into())), T::Decimal, V::Decimal("1.50".into())),
        ("SELECT $1", Some(P::Decimal("0.0001".into())), T::Decimal, V::Decimal("0.0001".into())),
        ("SELECT $1", Some(P::Decimal("1e3".into())), T::Decimal, V::Decimal("1000".into())),
        ("SELECT $1", Some(P::Decimal("NaN".into())), T::Decimal, V::Decimal("NaN".into())),
        ("SELECT $1", Some(P::RangeInt32((Some((1, K::Inclusive)), Some((5, K::Exclusive))))), T::RangeInt32, V::RangeInt32((Some((1, K::Inclusive)), Some((5, K::Exclusive))))),
        // PostgreSQL canonicalises integer ranges to [lower, upper).
        ("SELECT $1", Some(P::RangeInt64((None, Some((5, K::Inclusive))))), T::RangeInt64, V::RangeInt64((None, Some((6, K::Exclusive))))),
        // Empty comes back as (0,0), which is empty again when sent back.
        ("SELECT 'empty'::int4range", None, T::RangeInt32, V::RangeInt32((Some((0, K::Exclusive)), Some((0, K::Exclusive))))),
        ("SELECT $1", Some(P::RangeDecimal((Some(("1.5".into(), K::Inclusive)), None))), T::RangeDecimal, V::RangeDecimal((Some(("1.5".into(), K::Inclusive)), None))),
        ("SELECT $1", Some(P::ArrayInt32(vec![Some(1), None, Some(3)])), T::ArrayInt32, V::ArrayInt32(vec![Some(1), None, Some(3)])),
        ("SELECT $1", Some(P::ArrayInt64(vec![Some(i64::MAX), None])), T::ArrayInt64, V::ArrayInt64(vec![Some(i64::MAX), None])),
        ("SELECT $1", Some(P::ArrayInt32(vec![])), T::ArrayInt32, V::ArrayInt32(vec![])),
        ("SELECT $1", Some(P::ArrayDecimal(vec![Some("1.50".into()), None, Some("-3".into())])), T::ArrayDecimal, V::ArrayDecimal(vec![Some("1.50".into()), None, Some("-3".into())])),
        ("SELECT $1", Some(P::ArrayStr(vec![Some("a\"b,c".into()), None, Some("NULL".into())])), T::ArrayStr, V::ArrayStr(vec![Some("a\"b,c".into()), None, Some("NULL".into())])),
        ("SELECT $1", Some(P::Interval(v4::Interval { micros: 3_600_000_001, days: -2, months: 14 })), T::Interval, V::Interval(v4::Interval { micros: 3_600_000_001, days: -2, months: 14 })),
        ("SELECT $1::int4", Some(P::DbNull), T::Int32, V::DbNull),
        ("SELECT $1::text", Some(P::DbNull), T::Str, V::DbNull),
        // Domains decode as their base type.
        ("SELECT 7::information_schema.cardinal_number", None, T::Int32, V::Int32(7)),
    ]
}

#[tokio::test]
#[ignore = "needs DATABASE_URL (run through scripts/test)"]
async fn every_type_round_trips_through_the_real_server() {
    let fixture = Fixture::new(4);
    let mut session = fixture.session().await;

    for (sql, param, expected_type, expected_value) in round_trip_cases() {
        let label = format!("{sql} with {param:?}");
        let (data_type, value) = session.scalar(sql, param.into_iter().collect()).await;
        assert_eq!(debug(&data_type), debug(&expected_type), "{label}");
        if let (V::Jsonb(got), V::Jsonb(want)) = (&value, &expected_value) {
            let got: serde_json::Value = serde_json::from_slice(got).unwrap();
            let want: serde_json::Value = serde_json::from_slice(want).unwrap();
            assert_eq!(got, want, "{label}");
        } else {
            assert_eq!(debug(&value), debug(&expected_value), "{label}");
        }
    }

    // Values with no WIT form come back as `unsupported` with PostgreSQL's bytes, and
    // types with none as `other(name)`.
    let (data_type, value) = session.scalar("SELECT '10.1.2.3'::inet", vec![]).await;
    assert_eq!(debug(data_type), debug(T::Other("inet".into())));
    assert!(matches!(value, V::Unsupported(bytes) if !bytes.is_empty()));
    let (data_type, value) = session.scalar("SELECT 'infinity'::timestamp", vec![]).await;
    assert_eq!(debug(data_type), debug(T::Datetime));
    assert!(matches!(value, V::Unsupported(_)));
    let (_, value) = session.scalar("SELECT ARRAY[[1,2],[3,4]]", vec![]).await;
    assert!(matches!(value, V::Unsupported(_)));

    // Several rows and columns, names kept.
    let rows = session
        .query(
            "SELECT n AS number, n::text AS label FROM generate_series(1, 3) AS n",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        rows.columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["number", "label"]
    );
    assert_eq!(rows.rows.len(), 3);
    assert_eq!(
        debug(&rows.rows[2]),
        debug(vec![V::Int32(3), V::Str("3".into())])
    );
}

/// One query through an older interface's bindings (`v3` or `v2`), on a connection
/// opened for it and closed after it; gives back the query's result.
macro_rules! query_through {
    ($interface:ident, $view:expr, $url:expr, $sql:expr, $params:expr) => {{
        let connection = $interface::HostConnection::open($view, $url)
            .await
            .unwrap()
            .unwrap();
        let handle = Resource::new_borrow(connection.rep());
        let result = $interface::HostConnection::query($view, handle, $sql.into(), $params).await;
        $interface::HostConnection::drop($view, connection)
            .await
            .unwrap();
        result
    }};
}

#[tokio::test]
#[ignore = "needs DATABASE_URL (run through scripts/test)"]
async fn older_interfaces_share_the_mapping() {
    let fixture = Fixture::new(2);
    let mut request = fixture.request();
    let mut view = request.view();

    let params = vec![
        v3::ParameterValue::Int32(7),
        v3::ParameterValue::Str("s".into()),
        v3::ParameterValue::Date((2020, 1, 2)),
    ];
    let sql = "SELECT $1::int4, $2::text, $3::date, 1.5::numeric";
    let rows = query_through!(v3, &mut view, fixture.url.clone(), sql, params)
        .unwrap()
        .unwrap();
    assert_eq!(
        debug(rows.columns.iter().map(|c| c.data_type).collect::<Vec<_>>()),
        debug(vec![
            v3::DbDataType::Int32,
            v3::DbDataType::Str,
            v3::DbDataType::Date,
            v3::DbDataType::Other
        ])
    );
    assert_eq!(
        debug(&rows.rows[0]),
        debug(vec![
            v3::DbValue::Int32(7),
            v3::DbValue::Str("s".into()),
            v3::DbValue::Date((2020, 1, 2)),
            v3::DbValue::Unsupported
        ])
    );

    let params = vec![
        v2_types::ParameterValue::Uint32(u32::MAX),
        v2_types::ParameterValue::Str("x".into()),
    ];
    let rows = query_through!(
        v2,
        &mut view,
        fixture.url.clone(),
        "SELECT $1 + 1, $2",
        params
    );
    // An untyped `str` with nothing to infer from is text.
    let rows = rows.unwrap().unwrap();
    assert_eq!(
        debug(&rows.rows[0]),
        debug(vec![
            v2_types::DbValue::Int64(i64::from(u32::MAX) + 1),
            v2_types::DbValue::Str("x".into())
        ])
    );
}

#[tokio::test]
#[ignore = "needs DATABASE_URL (run through scripts/test)"]
async fn errors_carry_sqlstate_and_hide_passwords() {
    let fixture = Fixture::new(2);
    let mut session = fixture.session().await;

    session
        .execute("CREATE TEMP TABLE unique_things (id int PRIMARY KEY)")
        .await
        .unwrap();
    let inserted = session
        .execute("INSERT INTO unique_things VALUES (1), (2)")
        .await;
    assert_eq!(inserted.unwrap(), 2);
    let duplicate = session
        .execute("INSERT INTO unique_things VALUES (1)")
        .await;
    let Err(v4::Error::QueryFailed(v4::QueryError::DbError(db))) = duplicate else {
        panic!("expected a database error, got {duplicate:?}");
    };
    assert_eq!(db.code, "23505");
    assert_eq!(db.severity, "ERROR");
    assert!(
        db.detail.as_deref().is_some_and(|d| d.contains("(id)=(1)")),
        "{db:?}"
    );
    assert!(
        db.extras
            .iter()
            .any(|(k, v)| k == "constraint" && v == "unique_things_pkey"),
        "{db:?}"
    );

    let divide = session.query("SELECT 1 / $1", vec![P::Int32(0)]).await;
    assert!(
        matches!(&divide, Err(v4::Error::QueryFailed(v4::QueryError::DbError(db))) if db.code == "22012")
    );

    let bad = session
        .query("SELECT $1", vec![P::Date((2023, 2, 29))])
        .await;
    assert!(
        matches!(&bad, Err(v4::Error::BadParameter(m)) if m.contains("$1")),
        "{bad:?}"
    );

    // A host outside allowed_outbound_hosts is refused before any connection, and the
    // message names the destination without credentials.
    let elsewhere = fixture.url.replace("127.0.0.1", "127.0.0.2");
    let denied = v4::HostConnection::open(&mut session.request.view(), elsewhere)
        .await
        .unwrap();
    let Err(v4::Error::ConnectionFailed(message)) = denied else {
        panic!("expected connection-failed, got {denied:?}");
    };
    assert!(
        message.contains("127.0.0.2") && message.contains("allowed_outbound_hosts"),
        "{message}"
    );
    let password = url::Url::parse(&fixture.url)
        .unwrap()
        .password()
        .map(str::to_owned);
    if let Some(password) = password {
        assert!(!message.contains(&password));
    }
    // A wrong password is the server's answer, and it does not echo the password either.
    let mut wrong = url::Url::parse(&fixture.url).unwrap();
    wrong.set_password(Some("not-the-password")).unwrap();
    let refused = v4::HostConnection::open(&mut session.request.view(), wrong.to_string())
        .await
        .unwrap();
    let Err(v4::Error::ConnectionFailed(message)) = refused else {
        panic!("expected connection-failed, got {refused:?}");
    };
    assert!(!message.contains("not-the-password"), "{message}");
}

/// Opens a connection in a fresh request, runs `statements`, and ends the request
/// either by dropping the handle (as the guest does) or by dropping the whole store.
async fn dirty_request(fixture: &Fixture, statements: &[&str], drop_store_only: bool) -> i32 {
    let mut session = fixture.session().await;
    let pid = session.backend_pid().await;
    for statement in statements {
        let _ = session.execute(statement).await;
    }
    if drop_store_only {
        drop(session);
    } else {
        session.close().await;
    }
    pid
}

/// Asserts what the next user of the (single) pooled connection sees; returns its pid.
async fn assert_clean_session(fixture: &Fixture, table: &str) -> i32 {
    let mut session = fixture.session().await;
    let checks: &[(&str, V)] = &[
        ("SELECT current_setting('application_name')", V::Str("edge-host".into())),
        ("SELECT current_setting('TimeZone')", V::Str("UTC".into())),
        ("SELECT coalesce(current_setting('edge.leak', true), '')", V::Str(String::new())),
        ("SELECT to_regclass('leaked_temp') IS NULL", V::Boolean(true)),
        ("SELECT count(*)::int4 FROM pg_listening_channels()", V::Int32(0)),
        ("SELECT count(*)::int4 FROM pg_cursors WHERE name <> ''", V::Int32(0)),
        ("SELECT count(*)::int4 FROM pg_prepared_statements WHERE from_sql", V::Int32(0)),
        ("SELECT count(*)::int4 FROM pg_prepared_statements WHERE name = 'leaked_plan'", V::Int32(0)),
        (
            "SELECT count(*)::int4 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
            V::Int32(0),
        ),
        ("SELECT current_user = session_user", V::Boolean(true)),
    ];
    for (sql, expected) in checks {
        let (_, value) = session.scalar(sql, vec![]).await;
        assert_eq!(debug(&value), debug(expected), "{sql}");
    }
    // Not inside someone else's transaction block: SAVEPOINT needs one.
    let probe = session.execute("SAVEPOINT probe").await;
    assert!(
        matches!(&probe, Err(v4::Error::QueryFailed(v4::QueryError::DbError(db))) if db.code == "25P01"),
        "a transaction block leaked: {probe:?}"
    );
    let (_, uncommitted) = session
        .scalar(&format!("SELECT count(*)::int4 FROM {table}"), vec![])
        .await;
    assert_eq!(
        debug(uncommitted),
        debug(V::Int32(0)),
        "a row of an unfinished transaction leaked"
    );
    let pid = session.backend_pid().await;
    session.close().await;
    pid
}

/// The release counters once every earlier release is done.
struct Counts {
    clean: u64,
    reset: u64,
    retired: u64,
}

/// Waits for the single pooled connection (so the last release, reset included, is
/// done), reads the counters, and gives it back unused (one more `clean`).
async fn settled(fixture: &Fixture) -> Counts {
    let _session = fixture.session().await;
    let stats = fixture.stats();
    Counts {
        clean: stats.returned_clean.load(Ordering::Relaxed),
        reset: stats.reset.load(Ordering::Relaxed),
        retired: stats.retired.load(Ordering::Relaxed),
    }
}

#[tokio::test]
#[ignore = "needs DATABASE_URL (run through scripts/test)"]
async fn pooled_connections_never_leak_session_state() {
    // One connection in the pool, so every request gets the same one.
    let fixture = Fixture::new(1);
    let table = format!("edge_host_hygiene_{}", std::process::id());
    {
        let mut session = fixture.session().await;
        session
            .execute(&format!("DROP TABLE IF EXISTS {table}"))
            .await
            .unwrap();
        session
            .execute(&format!("CREATE TABLE {table} (id int)"))
            .await
            .unwrap();
        session.close().await;
    }
    let first_pid = assert_clean_session(&fixture, &table).await;

    // A connection the guest ran nothing on goes back with no round trip (`settled`
    // itself is such a request).
    let before = settled(&fixture).await;
    for drop_store_only in [false, true] {
        let session = fixture.session().await;
        if !drop_store_only {
            session.close().await;
        }
    }
    let after = settled(&fixture).await;
    assert_eq!(after.clean, before.clean + 3);
    assert_eq!((after.reset, after.retired), (before.reset, before.retired));

    // Any statement costs one reset, on the same connection, whatever it left behind:
    // nothing (plain statements, finished transactions) or any kind of leftover.
    let dirty: &[&[&str]] = &[
        &[
            "SELECT 1",
            &format!("INSERT INTO {table} SELECT 1 WHERE false"),
            "BEGIN",
            "SET LOCAL statement_timeout = '5s'",
            &format!("SELECT * FROM {table} FOR UPDATE"),
            "COMMIT",
            "BEGIN",
            "ROLLBACK",
        ],
        &["SET application_name = 'leaked'"],
        &["SET TIME ZONE 'Asia/Tokyo'"],
        &["SELECT set_config('edge.leak', 'yes', false)"],
        &["BEGIN", &format!("INSERT INTO {table} VALUES (1)")],
        &["BEGIN", "SELECT 1 / 0"],
        &[
            "START TRANSACTION",
            "SAVEPOINT a",
            "SELECT 1 / 0",
            "ROLLBACK TO a",
        ],
        &["COMMIT AND CHAIN"],
        &["BEGIN", "COMMIT AND CHAIN", "SET edge.leak = 'yes'"],
        &["CREATE TEMP TABLE leaked_temp (x int)"],
        &["LISTEN edge_leak"],
        &["SELECT pg_advisory_lock(4242)"],
        &["SET ROLE NONE", "SET SESSION AUTHORIZATION DEFAULT"],
        &["DO $$ BEGIN PERFORM set_config('edge.leak', 'yes', false); END $$"],
        &["PREPARE leaked_plan AS SELECT 1"],
        &[
            "BEGIN",
            "PREPARE leaked_plan AS SELECT 1",
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
        ],
        &["DECLARE leaked_cursor CURSOR WITH HOLD FOR SELECT 1"],
    ];
    for statements in dirty {
        for drop_store_only in [false, true] {
            let before = settled(&fixture).await;
            let pid = dirty_request(&fixture, statements, drop_store_only).await;
            assert_eq!(pid, first_pid);
            let next_pid = assert_clean_session(&fixture, &table).await;
            assert_eq!(
                next_pid, first_pid,
                "{statements:?}: reset, not reconnected"
            );
            // assert_clean_session ran statements too.
            let after = settled(&fixture).await;
            assert_eq!(
                (after.reset, after.retired),
                (before.reset + 2, before.retired),
                "{statements:?}: exactly one reset per request, nothing closed"
            );
        }
    }

    let mut session = fixture.session().await;
    session
        .execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "needs DATABASE_URL (run through scripts/test)"]
async fn a_request_ending_mid_statement_cancels_it() {
    let fixture = Fixture::new(1);
    // In autocommit, and inside a block (which the cancel leaves failed: the reset then
    // needs its ROLLBACK).
    for opening in [None, Some("BEGIN")] {
        let mut session = fixture.session().await;
        let pid = session.backend_pid().await;
        if let Some(opening) = opening {
            session.execute(opening).await.unwrap();
        }
        // The request's deadline fires while the statement runs.
        let slow = session.execute("SELECT pg_sleep(30)");
        assert!(tokio::time::timeout(Duration::from_millis(200), slow)
            .await
            .is_err());
        drop(session);

        let started = std::time::Instant::now();
        let before = fixture.stats().reset.load(Ordering::Relaxed);
        let mut session = fixture.session().await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{opening:?}: the slow statement was cancelled"
        );
        assert_eq!(fixture.stats().reset.load(Ordering::Relaxed), before + 1);
        assert_eq!(session.backend_pid().await, pid, "{opening:?}");
        let probe = session.execute("SAVEPOINT probe").await;
        assert_eq!(sqlstate(&probe), "25P01", "{opening:?}: no block left open");
    }
}

#[tokio::test]
#[ignore = "needs DATABASE_URL (run through scripts/test)"]
async fn copy_fails_and_the_next_request_still_gets_a_working_connection() {
    let fixture = Fixture::new(1);
    let schema = format!("edge_host_copy_{}", std::process::id());
    create_schema(
        &fixture,
        &schema,
        &[&format!("CREATE TABLE {schema}.rows (x int)")],
    )
    .await;
    // The WIT has no COPY data transfer, so the driver fails the call. COPY TO leaves
    // the connection resettable; COPY FROM leaves the server waiting for data, the reset
    // fails, and the connection is closed rather than returned.
    let cases = [
        ("COPY (SELECT 1) TO STDOUT".to_owned(), false),
        (format!("COPY {schema}.rows FROM STDIN"), true),
    ];
    for (statement, closed) in cases {
        let retired_before = settled(&fixture).await.retired;
        let mut session = fixture.session().await;
        let pid = session.backend_pid().await;
        let copy = session.execute(&statement).await;
        assert!(copy.is_err(), "{statement}: {copy:?}");
        drop(session);

        let retired = settled(&fixture).await.retired - retired_before;
        let mut session = fixture.session().await;
        let next_pid = session.backend_pid().await;
        assert_eq!(next_pid != pid, closed, "{statement}: closed");
        let (_, count) = session
            .scalar(&format!("SELECT count(*)::int4 FROM {schema}.rows"), vec![])
            .await;
        assert_eq!(debug(count), debug(V::Int32(0)), "{statement}");
        drop(session);
        assert_eq!(
            retired,
            u64::from(closed),
            "{statement}: counted as retired"
        );
    }
    drop_schema(&fixture, &schema).await;
}

#[tokio::test]
#[ignore = "needs DATABASE_URL (run through scripts/test)"]
async fn enums_decode_as_text_and_a_connection_that_looked_up_a_type_is_closed() {
    let fixture = Fixture::new(1);
    // The driver looks up a type it does not know with prepared statements of its own,
    // which the reset deallocates: such a connection is closed, so that the next unknown
    // type is looked up on a fresh one instead of failing.
    let mut pids = Vec::new();
    for (round, label) in ["happy", "sad"].iter().enumerate() {
        let mut session = fixture.session().await;
        pids.push(session.backend_pid().await);
        let type_name = format!("pg_temp.mood_{round}");
        let create = format!("CREATE TYPE {type_name} AS ENUM ('happy', 'sad')");
        session.execute(&create).await.unwrap();
        let (data_type, value) = session
            .scalar(
                &format!("SELECT $1::{type_name}"),
                vec![P::Str((*label).into())],
            )
            .await;
        assert_eq!(debug(data_type), debug(T::Str));
        assert_eq!(debug(value), debug(V::Str((*label).into())));
        session.close().await;
    }
    // The next checkout waits for the single connection, so the last release is done.
    let mut session = fixture.session().await;
    pids.push(session.backend_pid().await);
    assert_eq!(fixture.stats().retired.load(Ordering::Relaxed), 2);
    assert_eq!(fixture.stats().reset.load(Ordering::Relaxed), 0);
    assert!(pids[0] != pids[1] && pids[1] != pids[2], "{pids:?}");
    session.close().await;
}

/// A plain tokio-postgres connection whose notices (warnings included) are collected.
async fn connect_collecting_notices(
    url: &str,
) -> (tokio_postgres::Client, Arc<std::sync::Mutex<Vec<String>>>) {
    use futures::StreamExt as _;
    let (client, mut connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    let notices = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = notices.clone();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notice(notice) = message {
                let text = format!(
                    "{} {}: {}",
                    notice.severity(),
                    notice.code().code(),
                    notice.message()
                );
                sink.lock().unwrap().push(text);
            }
        }
    });
    (client, notices)
}

async fn sqlstate_of(client: &tokio_postgres::Client, sql: &str) -> Option<String> {
    client
        .batch_execute(sql)
        .await
        .err()
        .and_then(|err| err.code().map(|code| code.code().to_owned()))
}

#[tokio::test]
#[ignore = "needs DATABASE_URL (run through scripts/test)"]
async fn discard_all_behaves_as_the_reset_relies_on() {
    let url = env_url("DATABASE_URL");
    let (client, notices) = connect_collecting_notices(&url).await;
    let take = || std::mem::take(&mut *notices.lock().unwrap());

    // Outside a transaction block: accepted, and no notice at all (ROLLBACK would warn,
    // which is why the reset never sends it blindly).
    assert_eq!(sqlstate_of(&client, RESET_SESSION).await, None);
    assert_eq!(take(), Vec::<String>::new());
    assert_eq!(sqlstate_of(&client, "ROLLBACK").await, None);
    assert_eq!(
        take(),
        ["WARNING 25P01: there is no transaction in progress"]
    );

    // Inside a block it is refused, which fails the block (so a ROLLBACK must follow);
    // in a failed block too.
    client.batch_execute("BEGIN").await.unwrap();
    assert_eq!(
        sqlstate_of(&client, RESET_SESSION).await.as_deref(),
        Some("25001")
    );
    assert_eq!(
        sqlstate_of(&client, "SAVEPOINT still_open")
            .await
            .as_deref(),
        Some("25P02")
    );
    assert_eq!(reset(&client, false, true).await.unwrap(), Reset::Clean);
    client.batch_execute("BEGIN").await.unwrap();
    assert!(sqlstate_of(&client, "SELECT 1 / 0").await.is_some());
    assert_eq!(
        sqlstate_of(&client, RESET_SESSION).await.as_deref(),
        Some("25P02")
    );
    assert_eq!(reset(&client, false, true).await.unwrap(), Reset::Clean);
    // After either reset no block is open (SAVEPOINT needs one) and nothing warned.
    assert_eq!(
        sqlstate_of(&client, "SAVEPOINT probe").await.as_deref(),
        Some("25P01")
    );
    assert_eq!(take(), Vec::<String>::new());
    // It must be a message of its own: in a multi-statement query it is in a block.
    assert_eq!(
        sqlstate_of(&client, "SELECT 1; DISCARD ALL")
            .await
            .as_deref(),
        Some("25001")
    );

    // What it removes, in one statement: a setting a function changed, sequence state,
    // a guest's prepared statement, a temporary table.
    client
        .batch_execute(
            "CREATE TEMP TABLE leaked (id serial); INSERT INTO leaked DEFAULT VALUES; \
             SELECT set_config('edge.leak', 'yes', false); PREPARE leaked_plan AS SELECT 1",
        )
        .await
        .unwrap();
    assert_eq!(reset(&client, false, true).await.unwrap(), Reset::Clean);
    assert_eq!(
        sqlstate_of(&client, "SELECT lastval()").await.as_deref(),
        Some("55000")
    );
    assert_eq!(
        sqlstate_of(&client, "EXECUTE leaked_plan").await.as_deref(),
        Some("26000")
    );
    assert_eq!(
        sqlstate_of(&client, "SELECT * FROM leaked")
            .await
            .as_deref(),
        Some("42P01")
    );
    let row = client
        .query_one(
            "SELECT coalesce(current_setting('edge.leak', true), '')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "");

    // It also deallocates the driver's type-lookup statements, and clear_type_cache does
    // not make tokio-postgres prepare them again: the next unknown type fails. Hence a
    // connection that had them is closed rather than returned.
    client
        .batch_execute("CREATE TYPE pg_temp.mood AS ENUM ('happy')")
        .await
        .unwrap();
    client
        .query("SELECT 'happy'::pg_temp.mood", &[])
        .await
        .unwrap();
    assert_eq!(
        reset(&client, false, true).await.unwrap(),
        Reset::DriverStatementsLost
    );
    client.clear_type_cache();
    client
        .batch_execute("CREATE TYPE pg_temp.mood AS ENUM ('happy')")
        .await
        .unwrap();
    let lookup = client.query("SELECT 'happy'::pg_temp.mood", &[]).await;
    assert_eq!(
        lookup
            .err()
            .and_then(|err| err.code().map(|c| c.code().to_owned()))
            .as_deref(),
        Some("26000"),
        "prepared statement does not exist"
    );
    assert_eq!(take(), Vec::<String>::new());
}

/// A throwaway schema for one test, dropped by `drop_schema`.
async fn create_schema(fixture: &Fixture, name: &str, statements: &[&str]) {
    let mut session = fixture.session().await;
    for statement in [
        format!("DROP SCHEMA IF EXISTS {name} CASCADE"),
        format!("CREATE SCHEMA {name}"),
    ]
    .iter()
    .map(String::as_str)
    .chain(statements.iter().copied())
    {
        session
            .execute(statement)
            .await
            .unwrap_or_else(|err| panic!("{statement}: {err:?}"));
    }
}

async fn drop_schema(fixture: &Fixture, name: &str) {
    let mut session = fixture.session().await;
    session
        .execute(&format!("DROP SCHEMA {name} CASCADE"))
        .await
        .unwrap();
}

/// The next request, asserting that it got the pooled connection with backend `pid`.
async fn next_session_on(fixture: &Fixture, pid: i32) -> Session {
    let mut session = fixture.session().await;
    let next_pid = session.backend_pid().await;
    assert_eq!(next_pid, pid, "the same pooled connection");
    session
}

/// The SQLSTATE of a failed call, or what it returned instead.
fn sqlstate<T: std::fmt::Debug>(result: &Result<T, v4::Error>) -> String {
    match result {
        Err(v4::Error::QueryFailed(v4::QueryError::DbError(db))) => db.code.clone(),
        other => format!("not a database error: {other:?}"),
    }
}

#[tokio::test]
#[ignore = "needs DATABASE_URL (run through scripts/test)"]
async fn a_setting_changed_inside_a_function_does_not_reach_the_next_request() {
    // One connection in the pool, so the next request gets the same one.
    let fixture = Fixture::new(1);
    let schema = format!("edge_host_fn_{}", std::process::id());
    let function = format!(
        "CREATE FUNCTION {schema}.remember_tenant(tenant text) RETURNS text LANGUAGE sql \
         AS $$ SELECT set_config('edge.tenant', tenant, false) $$"
    );
    create_schema(&fixture, &schema, &[&function]).await;

    // Nothing in the statement names set_config: only the function body does.
    let pid = {
        let mut session = fixture.session().await;
        let statement = format!("SELECT {schema}.remember_tenant($1)");
        let (_, value) = session
            .scalar(&statement, vec![P::Str("alice".into())])
            .await;
        assert_eq!(debug(value), debug(V::Str("alice".into())));
        session.backend_pid().await
    };

    let mut session = next_session_on(&fixture, pid).await;
    let (_, seen) = session
        .scalar(
            "SELECT coalesce(current_setting('edge.tenant', true), '')",
            vec![],
        )
        .await;
    assert_eq!(
        debug(seen),
        debug(V::Str(String::new())),
        "the previous request's setting reached the next one"
    );
    drop(session);
    drop_schema(&fixture, &schema).await;
}

#[tokio::test]
#[ignore = "needs DATABASE_URL (run through scripts/test)"]
async fn the_last_inserted_id_does_not_reach_the_next_request() {
    let fixture = Fixture::new(1);
    let schema = format!("edge_host_seq_{}", std::process::id());
    let table = format!("CREATE TABLE {schema}.notes (id serial PRIMARY KEY, owner text)");
    create_schema(&fixture, &schema, &[&table]).await;

    // A plain insert in autocommit: it sets the session's lastval and currval.
    let pid = {
        let mut session = fixture.session().await;
        let insert = format!("INSERT INTO {schema}.notes (owner) VALUES ('alice')");
        assert_eq!(session.execute(&insert).await.unwrap(), 1);
        session.backend_pid().await
    };

    let mut session = next_session_on(&fixture, pid).await;
    // 55000: "lastval is not yet defined in this session", as on a fresh connection.
    let lastval = session.query("SELECT lastval()", vec![]).await;
    assert_eq!(
        sqlstate(&lastval),
        "55000",
        "alice's id reached the next request: {lastval:?}"
    );
    let currval = session
        .query(&format!("SELECT currval('{schema}.notes_id_seq')"), vec![])
        .await;
    assert_eq!(
        sqlstate(&currval),
        "55000",
        "alice's id reached the next request: {currval:?}"
    );
    drop(session);
    drop_schema(&fixture, &schema).await;
}

#[tokio::test]
#[ignore = "needs DATABASE_URL (run through scripts/test)"]
async fn a_type_lookup_the_reset_could_not_see_costs_one_statement_and_the_connection() {
    // One connection in the pool, so each request gets the same one until it is closed.
    let fixture = Fixture::new(1);
    let schema = format!("edge_host_lookup_{}", std::process::id());
    let first = format!("CREATE TYPE {schema}.first AS ENUM ('a')");
    let second = format!("CREATE TYPE {schema}.second AS ENUM ('b')");
    create_schema(&fixture, &schema, &[&first, &second]).await;
    let mut pids = Vec::new();
    let mut outcomes = Vec::new();
    let statements = [
        // The driver looks the type up, but no row shows it: the reset skips its probe
        // and deallocates the driver's lookup statements without knowing.
        format!("SELECT NULL::{schema}.first WHERE false"),
        // The next new type needs those statements: this one statement fails (26000)...
        format!("SELECT 'b'::{schema}.second"),
        // ...and the connection was closed instead of returned, so this one works.
        format!("SELECT 'b'::{schema}.second"),
    ];
    for statement in &statements {
        let mut session = fixture.session().await;
        pids.push(session.backend_pid().await);
        outcomes.push(session.query(statement, vec![]).await.is_ok());
        session.close().await;
    }
    assert_eq!(outcomes, [true, false, true], "{pids:?}");
    assert_eq!(pids[0], pids[1], "the first reset returned the connection");
    assert_ne!(
        pids[1], pids[2],
        "the connection that lost its statements was closed"
    );
    drop_schema(&fixture, &schema).await;
}

/// `url` with one more query parameter.
fn with_param(url: &str, name: &str, value: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{name}={value}")
}

/// Spin 4.1's `[outbound_pg] max_connections`: no more connections than the cap reach the
/// server (counted in `pg_stat_activity` by this test's own `application_name`), a guest
/// beyond it waits at most `acquire_timeout_ms` and then gets `connection-failed` naming
/// the setting, and a waiter gets the connection another request gives back.
#[tokio::test]
#[ignore = "needs DATABASE_URL (run through scripts/test)"]
async fn outbound_pg_max_connections_caps_connections_and_bounds_waiters() {
    let tag = format!("edge_host_cap_{}", std::process::id());
    let mut config = crate::capabilities::EdgeHostConfig::default();
    config.postgres.outbound.max_connections = Some(2);
    // Also the pool's connect timeout: long enough for a connection on a busy machine.
    config.postgres.acquire_timeout_ms = 1_000;
    let observer = Fixture::new(4);
    let capped = Fixture {
        url: with_param(&observer.url, "application_name", &tag),
        app: Arc::new(AppCapabilities::new(&config).unwrap()),
        component: observer.component.clone(),
    };
    let mut watch = observer.session().await;
    let count_sql = "SELECT count(*)::int4 FROM pg_stat_activity WHERE application_name = $1";
    let count = async |watch: &mut Session| match watch
        .scalar(count_sql, vec![P::Str(tag.clone())])
        .await
        .1
    {
        V::Int32(n) => n,
        other => panic!("count: {other:?}"),
    };

    let mut first = capped.session().await;
    first.execute("SELECT 1").await.unwrap();
    let mut second = capped.session().await;
    second.execute("SELECT 1").await.unwrap();
    assert_eq!(count(&mut watch).await, 2);

    let mut third = capped.request();
    let started = std::time::Instant::now();
    let refused = v4::HostConnection::open(&mut third.view(), capped.url.clone())
        .await
        .unwrap();
    let waited = started.elapsed();
    assert!(
        matches!(&refused, Err(v4::Error::ConnectionFailed(m))
            if m.contains("[outbound_pg] max_connections") && !m.contains(&observer.url)),
        "{refused:?}"
    );
    assert!(
        waited >= Duration::from_millis(1_000) && waited < Duration::from_millis(2_500),
        "waited {waited:?}"
    );
    assert_eq!(count(&mut watch).await, 2, "the cap held");

    // A waiter gets the connection the first request gives back.
    let mut third_view = third.view();
    let (opened, ()) = tokio::join!(
        v4::HostConnection::open(&mut third_view, capped.url.clone()),
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            first.close().await;
        }
    );
    assert!(matches!(opened, Ok(Ok(_))), "{opened:?}");
    assert_eq!(count(&mut watch).await, 2, "still at most the cap");
    drop(second);
}

/// `sslmode=require|verify-ca|verify-full` with `sslrootcert`: the session is encrypted
/// (`pg_stat_ssl`); a server whose certificate does not chain to the given CA (or, without
/// `sslrootcert`, to the Mozilla roots) is refused with an error naming the address and
/// never the password.
#[tokio::test]
#[ignore = "needs PostgreSQL binaries (run through scripts/test)"]
async fn tls_to_postgresql_is_verified() {
    let server = test_support::TlsPostgres::start();
    let ca = server.cert("ca.crt");
    let other = server.cert("other-ca.crt");
    let app = Arc::new(AppCapabilities::new(&Default::default()).unwrap());
    let allowed = format!("postgres://127.0.0.1:{}", server.port);
    let fixture = Fixture {
        url: String::new(),
        app,
        component: component_with(&[allowed.as_str()], Default::default(), &[]),
    };
    let ssl = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    for (query, encrypted) in [
        (format!("sslmode=verify-full&sslrootcert={ca}"), true),
        (format!("sslrootcert={ca}&sslmode=verify-ca"), true),
        (format!("sslmode=require&sslrootcert={ca}"), true),
        ("sslmode=disable".to_owned(), false),
    ] {
        let mut request = fixture.request();
        let mut view = request.view();
        let connection = v4::HostConnection::open(&mut view, server.url(&query))
            .await
            .unwrap()
            .unwrap_or_else(|err| panic!("{query}: {err:?}"));
        let rows = view
            .query(connection, ssl.into(), vec![])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            format!("{:?}", rows.rows[0][0]),
            format!("{:?}", V::Boolean(encrypted)),
            "{query}"
        );
    }

    let address = format!("127.0.0.1:{}", server.port);
    for query in [
        format!("sslmode=verify-full&sslrootcert={other}"),
        format!("sslmode=verify-ca&sslrootcert={other}"),
        // No sslrootcert: the Mozilla roots, which did not sign the test CA.
        "sslmode=require".to_owned(),
    ] {
        let mut request = fixture.request();
        let refused = v4::HostConnection::open(&mut request.view(), server.url(&query))
            .await
            .unwrap();
        let message = match refused {
            Err(v4::Error::ConnectionFailed(message)) => message,
            other => panic!("{query}: {other:?}"),
        };
        eprintln!("refused as expected: {message}");
        assert!(message.contains(&address), "{query}: {message}");
        assert!(message.contains("certificate"), "{query}: {message}");
        assert!(!message.contains(&server.password), "{query}: {message}");
    }

    let mut request = fixture.request();
    let missing = v4::HostConnection::open(
        &mut request.view(),
        server.url("sslmode=verify-full&sslrootcert=/nonexistent/ca.crt"),
    )
    .await
    .unwrap();
    assert!(
        matches!(&missing, Err(v4::Error::ConnectionFailed(m)) if m.contains("/nonexistent/ca.crt")),
        "{missing:?}"
    );
}
