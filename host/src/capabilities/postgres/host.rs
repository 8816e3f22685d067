//! The WIT host implementations: 4.0.0 is the real one; 3.0.0 and the 2.0.0 `fermyon`
//! interface convert their values to and from it.

use wasmtime::component::{Linker, Resource};

use super::convert::{self, PgParam};
use super::{destinations, parse_config, redacted, PgError, PgSession};
use crate::bindings::fermyon::spin2_0_0::{postgres as v2, rdbms_types as v2_types};
use crate::bindings::spin::postgres3_0_0::postgres as v3;
use crate::bindings::spin::postgres4_0_0::postgres as v4;
use crate::capabilities::InstanceState;
use crate::capabilities::{CapabilityView, HasCapabilities, ViewGetter};

type Outcome<T, E> = wasmtime::Result<Result<T, E>>;

impl From<PgError> for v4::Error {
    fn from(error: PgError) -> Self {
        match error {
            PgError::ConnectionFailed(text) => Self::ConnectionFailed(text),
            PgError::BadParameter(text) => Self::BadParameter(text),
            PgError::QueryFailed(query) => Self::QueryFailed(*query),
            PgError::ValueConversionFailed(text) => Self::ValueConversionFailed(text),
            PgError::Other(text) => Self::Other(text),
        }
    }
}

impl From<PgError> for v3::Error {
    fn from(error: PgError) -> Self {
        let text = error.to_string();
        match error {
            PgError::ConnectionFailed(_) => Self::ConnectionFailed(text),
            PgError::BadParameter(_) => Self::BadParameter(text),
            PgError::QueryFailed(_) => Self::QueryFailed(text),
            PgError::ValueConversionFailed(_) => Self::ValueConversionFailed(text),
            PgError::Other(_) => Self::Other(text),
        }
    }
}

impl From<PgError> for v2_types::Error {
    fn from(error: PgError) -> Self {
        let text = error.to_string();
        match error {
            PgError::ConnectionFailed(_) => Self::ConnectionFailed(text),
            PgError::BadParameter(_) => Self::BadParameter(text),
            PgError::QueryFailed(_) => Self::QueryFailed(text),
            PgError::ValueConversionFailed(_) => Self::ValueConversionFailed(text),
            PgError::Other(_) => Self::Other(text),
        }
    }
}

impl CapabilityView<'_> {
    /// Hands the guest its handle to `session` and records it, so the end of the request
    /// releases it if the guest has not (see `OpenedSessions`).
    fn push_session<W: 'static>(&mut self, session: PgSession) -> wasmtime::Result<Resource<W>> {
        let handle = self.push_resource(session)?;
        self.state.postgres_sessions.record(handle.rep());
        Ok(handle)
    }

    /// Checks `allowed_outbound_hosts` for every host of the connection string, then
    /// checks a connection out of the pool.
    async fn open_postgres(&mut self, address: &str) -> Result<PgSession, PgError> {
        let config = parse_config(address)?;
        let allowed = &self.state.component.allowed_hosts;
        let hosts = destinations(&config);
        let permitted = !hosts.is_empty()
            && hosts.iter().all(|destination| {
                destination.as_ref().is_some_and(|(host, port)| {
                    // Both URL schemes PostgreSQL accepts may appear in the manifest.
                    allowed.allows("postgres", host, *port)
                        || allowed.allows("postgresql", host, *port)
                })
            });
        if !permitted {
            let destination = redacted(address);
            tracing::warn!(
                component = self.component_id(),
                destination,
                "PostgreSQL connection denied: not in allowed_outbound_hosts"
            );
            return Err(PgError::ConnectionFailed(format!(
                "{destination} is not allowed by the component's allowed_outbound_hosts"
            )));
        }
        self.state
            .app
            .postgres
            .checkout(address)
            .await
            .inspect_err(|err| {
                tracing::warn!(
                    component = self.component_id(),
                    destination = redacted(address),
                    "PostgreSQL connection failed: {err}"
                );
            })
    }

    async fn postgres_query<W: 'static>(
        &mut self,
        connection: &Resource<W>,
        statement: &str,
        params: Result<Vec<PgParam>, PgError>,
    ) -> wasmtime::Result<Result<v4::RowSet, PgError>> {
        let params = match params {
            Ok(params) => params,
            Err(err) => return Ok(Err(err)),
        };
        let session: &mut PgSession = self.resource_mut(connection)?;
        Ok(session.query(statement, &params).await)
    }

    async fn postgres_execute<W: 'static>(
        &mut self,
        connection: &Resource<W>,
        statement: &str,
        params: Result<Vec<PgParam>, PgError>,
    ) -> wasmtime::Result<Result<u64, PgError>> {
        let params = match params {
            Ok(params) => params,
            Err(err) => return Ok(Err(err)),
        };
        let session: &mut PgSession = self.resource_mut(connection)?;
        Ok(session.execute(statement, &params).await)
    }
}

fn v4_params(params: Vec<v4::ParameterValue>) -> Result<Vec<PgParam>, PgError> {
    params
        .into_iter()
        .enumerate()
        .map(|(index, param)| {
            convert::param_from_v4(param)
                .map_err(|err| PgError::BadParameter(format!("parameter ${}: {err}", index + 1)))
        })
        .collect()
}

fn v3_params(params: Vec<v3::ParameterValue>) -> Result<Vec<PgParam>, PgError> {
    v4_params(params.into_iter().map(convert::param_v3_to_v4).collect())
}

fn v2_params(params: Vec<v2_types::ParameterValue>) -> Result<Vec<PgParam>, PgError> {
    let params = params
        .into_iter()
        .enumerate()
        .map(|(index, param)| {
            convert::param_v2_to_v4(param)
                .map_err(|err| PgError::BadParameter(format!("parameter ${}: {err}", index + 1)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    v4_params(params)
}

/// A 4.0.0 row set in an older interface's column and value types (their `RowSet`
/// records differ only in those).
fn older_row_set<C, V>(
    rows: v4::RowSet,
    column: impl Fn(String, v4::DbDataType) -> C,
    value: impl Fn(v4::DbValue) -> V,
) -> (Vec<C>, Vec<Vec<V>>) {
    let columns = rows
        .columns
        .into_iter()
        .map(|c| column(c.name, c.data_type))
        .collect();
    let rows = rows
        .rows
        .into_iter()
        .map(|row| row.into_iter().map(&value).collect())
        .collect();
    (columns, rows)
}

impl v4::Host for CapabilityView<'_> {}

impl v4::HostConnection for CapabilityView<'_> {
    async fn open(&mut self, address: String) -> Outcome<Resource<v4::Connection>, v4::Error> {
        match self.open_postgres(&address).await {
            Ok(session) => Ok(Ok(self.push_session(session)?)),
            Err(err) => Ok(Err(err.into())),
        }
    }

    async fn query(
        &mut self,
        connection: Resource<v4::Connection>,
        statement: String,
        params: Vec<v4::ParameterValue>,
    ) -> Outcome<v4::RowSet, v4::Error> {
        let result = self
            .postgres_query(&connection, &statement, v4_params(params))
            .await?;
        Ok(result.map_err(Into::into))
    }

    async fn execute(
        &mut self,
        connection: Resource<v4::Connection>,
        statement: String,
        params: Vec<v4::ParameterValue>,
    ) -> Outcome<u64, v4::Error> {
        let result = self
            .postgres_execute(&connection, &statement, v4_params(params))
            .await?;
        Ok(result.map_err(Into::into))
    }

    async fn drop(&mut self, connection: Resource<v4::Connection>) -> wasmtime::Result<()> {
        self.delete_resource::<PgSession, _>(connection)?;
        Ok(())
    }
}

impl v3::Host for CapabilityView<'_> {}

impl v3::HostConnection for CapabilityView<'_> {
    async fn open(&mut self, address: String) -> Outcome<Resource<v3::Connection>, v3::Error> {
        match self.open_postgres(&address).await {
            Ok(session) => Ok(Ok(self.push_session(session)?)),
            Err(err) => Ok(Err(err.into())),
        }
    }

    async fn query(
        &mut self,
        connection: Resource<v3::Connection>,
        statement: String,
        params: Vec<v3::ParameterValue>,
    ) -> Outcome<v3::RowSet, v3::Error> {
        let result = self
            .postgres_query(&connection, &statement, v3_params(params))
            .await?;
        Ok(result
            .map(|rows| {
                let (columns, rows) = older_row_set(
                    rows,
                    |name, data_type| v3::Column {
                        name,
                        data_type: convert::data_type_v4_to_v3(data_type),
                    },
                    convert::value_v4_to_v3,
                );
                v3::RowSet { columns, rows }
            })
            .map_err(Into::into))
    }

    async fn execute(
        &mut self,
        connection: Resource<v3::Connection>,
        statement: String,
        params: Vec<v3::ParameterValue>,
    ) -> Outcome<u64, v3::Error> {
        let result = self
            .postgres_execute(&connection, &statement, v3_params(params))
            .await?;
        Ok(result.map_err(Into::into))
    }

    async fn drop(&mut self, connection: Resource<v3::Connection>) -> wasmtime::Result<()> {
        self.delete_resource::<PgSession, _>(connection)?;
        Ok(())
    }
}

impl v2_types::Host for CapabilityView<'_> {}

impl v2::Host for CapabilityView<'_> {}

impl v2::HostConnection for CapabilityView<'_> {
    async fn open(
        &mut self,
        address: String,
    ) -> Outcome<Resource<v2::Connection>, v2_types::Error> {
        match self.open_postgres(&address).await {
            Ok(session) => Ok(Ok(self.push_session(session)?)),
            Err(err) => Ok(Err(err.into())),
        }
    }

    async fn query(
        &mut self,
        connection: Resource<v2::Connection>,
        statement: String,
        params: Vec<v2_types::ParameterValue>,
    ) -> Outcome<v2_types::RowSet, v2_types::Error> {
        let result = self
            .postgres_query(&connection, &statement, v2_params(params))
            .await?;
        Ok(result
            .map(|rows| {
                let (columns, rows) = older_row_set(
                    rows,
                    |name, data_type| v2_types::Column {
                        name,
                        data_type: convert::data_type_v4_to_v2(data_type),
                    },
                    convert::value_v4_to_v2,
                );
                v2_types::RowSet { columns, rows }
            })
            .map_err(Into::into))
    }

    async fn execute(
        &mut self,
        connection: Resource<v2::Connection>,
        statement: String,
        params: Vec<v2_types::ParameterValue>,
    ) -> Outcome<u64, v2_types::Error> {
        let result = self
            .postgres_execute(&connection, &statement, v2_params(params))
            .await?;
        Ok(result.map_err(Into::into))
    }

    async fn drop(&mut self, connection: Resource<v2::Connection>) -> wasmtime::Result<()> {
        self.delete_resource::<PgSession, _>(connection)?;
        Ok(())
    }
}

/// Links the three PostgreSQL interfaces (and the 2.0.0 types interface they share).
pub(crate) fn add_to_linker(
    linker: &mut Linker<InstanceState>,
    view: ViewGetter,
) -> anyhow::Result<()> {
    v4::add_to_linker::<InstanceState, HasCapabilities>(linker, view)?;
    v3::add_to_linker::<InstanceState, HasCapabilities>(linker, view)?;
    v2_types::add_to_linker::<InstanceState, HasCapabilities>(linker, view)?;
    v2::add_to_linker::<InstanceState, HasCapabilities>(linker, view)?;
    Ok(())
}
