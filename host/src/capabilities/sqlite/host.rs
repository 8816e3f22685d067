//! The WIT host implementations of `spin:sqlite/sqlite@3.0.0` and
//! `fermyon:spin/sqlite@2.0.0` on [`CapabilityView`]. Both share one resource kind
//! ([`OpenConnection`]); 2.0 converts its values and errors from and to 3.0's, which have
//! the same cases (Spin's `factor-sqlite/src/host.rs` does the same).

use wasmtime::component::{Linker, Resource};

use super::{OpenConnection, StatementFailure, MAX_OPEN_CONNECTIONS};
use crate::bindings::fermyon::spin2_0_0::sqlite as v2;
use crate::bindings::spin::sqlite::sqlite as v3;
use crate::capabilities::{CapabilityView, HasCapabilities, InstanceState, ViewGetter};

type Answer<T> = wasmtime::Result<Result<T, v3::Error>>;

impl CapabilityView<'_> {
    /// Opens `label` for the guest: access first, as Spin does (an unlisted label is
    /// `access-denied` whether or not the app has such a database).
    async fn sqlite_open<W: 'static>(&mut self, label: String) -> Answer<Resource<W>> {
        if !self.state.component.sqlite_databases.contains(&label) {
            return Ok(Err(v3::Error::AccessDenied));
        }
        let Some(database) = self.state.app.sqlite.get(&label) else {
            return Ok(Err(v3::Error::NoSuchDatabase));
        };
        if self.state.sqlite_open >= MAX_OPEN_CONNECTIONS {
            return Ok(Err(v3::Error::Io("too many connections opened".into())));
        }
        match OpenConnection::open(database).await {
            Ok(connection) => {
                self.state.sqlite_open += 1;
                Ok(Ok(self.push_resource(connection)?))
            }
            Err(failure) => Ok(Err(self.sqlite_failed(&label, failure))),
        }
    }

    /// Runs a statement on an open connection.
    async fn sqlite_execute<W: 'static>(
        &mut self,
        connection: &Resource<W>,
        statement: String,
        parameters: Vec<v3::Value>,
    ) -> Answer<v3::QueryResult> {
        let Ok(open) = self.resource_mut::<OpenConnection, _>(connection) else {
            return Ok(Err(v3::Error::InvalidConnection));
        };
        let connection = open.clone();
        Ok(connection
            .execute(statement, parameters)
            .await
            .map_err(|failure| v3::Error::Io(failure.0)))
    }

    /// The connection behind a handle, for `changes` and `last-insert-rowid` (which have
    /// no error case: a handle the guest does not hold is a trap).
    fn sqlite_connection<W: 'static>(
        &mut self,
        connection: &Resource<W>,
    ) -> wasmtime::Result<OpenConnection> {
        Ok(self.resource_mut::<OpenConnection, _>(connection)?.clone())
    }

    fn sqlite_failed(&self, label: &str, failure: StatementFailure) -> v3::Error {
        tracing::warn!(component = %self.component_id(), database = %label, error = %failure, "SQLite open failed");
        v3::Error::Io(failure.0)
    }

    fn sqlite_drop<W: 'static>(&mut self, connection: Resource<W>) -> wasmtime::Result<()> {
        self.delete_resource::<OpenConnection, _>(connection)?;
        self.state.sqlite_open = self.state.sqlite_open.saturating_sub(1);
        Ok(())
    }
}

impl v3::Host for CapabilityView<'_> {}

impl v3::HostConnection for CapabilityView<'_> {
    async fn open(&mut self, database: String) -> Answer<Resource<v3::Connection>> {
        self.sqlite_open(database).await
    }

    async fn execute(
        &mut self,
        connection: Resource<v3::Connection>,
        statement: String,
        parameters: Vec<v3::Value>,
    ) -> Answer<v3::QueryResult> {
        self.sqlite_execute(&connection, statement, parameters)
            .await
    }

    async fn last_insert_rowid(
        &mut self,
        connection: Resource<v3::Connection>,
    ) -> wasmtime::Result<i64> {
        let connection = self.sqlite_connection(&connection)?;
        Ok(connection.last_insert_rowid().await?)
    }

    async fn changes(&mut self, connection: Resource<v3::Connection>) -> wasmtime::Result<u64> {
        let connection = self.sqlite_connection(&connection)?;
        Ok(connection.changes().await?)
    }

    async fn drop(&mut self, connection: Resource<v3::Connection>) -> wasmtime::Result<()> {
        self.sqlite_drop(connection)
    }
}

impl v2::Host for CapabilityView<'_> {}

impl v2::HostConnection for CapabilityView<'_> {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<v2::Connection>, v2::Error>> {
        Ok(self.sqlite_open(database).await?.map_err(to_v2_error))
    }

    async fn execute(
        &mut self,
        connection: Resource<v2::Connection>,
        statement: String,
        parameters: Vec<v2::Value>,
    ) -> wasmtime::Result<Result<v2::QueryResult, v2::Error>> {
        let parameters = parameters.into_iter().map(from_v2_value).collect();
        let result = self
            .sqlite_execute(&connection, statement, parameters)
            .await?;
        Ok(result.map(to_v2_result).map_err(to_v2_error))
    }

    async fn drop(&mut self, connection: Resource<v2::Connection>) -> wasmtime::Result<()> {
        self.sqlite_drop(connection)
    }
}

fn to_v2_error(error: v3::Error) -> v2::Error {
    match error {
        v3::Error::NoSuchDatabase => v2::Error::NoSuchDatabase,
        v3::Error::AccessDenied => v2::Error::AccessDenied,
        v3::Error::InvalidConnection => v2::Error::InvalidConnection,
        v3::Error::DatabaseFull => v2::Error::DatabaseFull,
        v3::Error::Io(text) => v2::Error::Io(text),
    }
}

fn from_v2_value(value: v2::Value) -> v3::Value {
    match value {
        v2::Value::Integer(integer) => v3::Value::Integer(integer),
        v2::Value::Real(real) => v3::Value::Real(real),
        v2::Value::Text(text) => v3::Value::Text(text),
        v2::Value::Blob(blob) => v3::Value::Blob(blob),
        v2::Value::Null => v3::Value::Null,
    }
}

fn to_v2_value(value: v3::Value) -> v2::Value {
    match value {
        v3::Value::Integer(integer) => v2::Value::Integer(integer),
        v3::Value::Real(real) => v2::Value::Real(real),
        v3::Value::Text(text) => v2::Value::Text(text),
        v3::Value::Blob(blob) => v2::Value::Blob(blob),
        v3::Value::Null => v2::Value::Null,
    }
}

fn to_v2_result(result: v3::QueryResult) -> v2::QueryResult {
    v2::QueryResult {
        columns: result.columns,
        rows: result
            .rows
            .into_iter()
            .map(|row| v2::RowResult {
                values: row.values.into_iter().map(to_v2_value).collect(),
            })
            .collect(),
    }
}

pub(crate) fn add_to_linker(
    linker: &mut Linker<InstanceState>,
    view: ViewGetter,
) -> anyhow::Result<()> {
    v2::add_to_linker::<InstanceState, HasCapabilities>(linker, view)?;
    v3::add_to_linker::<InstanceState, HasCapabilities>(linker, view)?;
    Ok(())
}
