//! PostgreSQL and Redis values: what a server sends back (binary PostgreSQL values, RESP
//! replies) and what a guest passes in (query parameters, command arguments).

use arbitrary::{Arbitrary, Unstructured};
use bytes::BytesMut;
use edge_host::bindings::fermyon::spin2_0_0::redis as redis_wit;
use edge_host::bindings::spin::postgres4_0_0::postgres as pg;
use edge_host::capabilities::postgres::convert::{db_value, numeric_text, param_from_v4};
use edge_host::capabilities::redis::{check_shareable, flatten_reply};
use tokio_postgres::types::{ToSql, Type};

/// Every result type the decoder knows, plus text-like and unknown ones.
const RESULT_TYPES: &[Type] = &[
    Type::BOOL,
    Type::CHAR,
    Type::INT2,
    Type::INT4,
    Type::INT8,
    Type::FLOAT4,
    Type::FLOAT8,
    Type::BYTEA,
    Type::DATE,
    Type::TIME,
    Type::TIMESTAMP,
    Type::TIMESTAMPTZ,
    Type::UUID,
    Type::JSONB,
    Type::JSON,
    Type::NUMERIC,
    Type::INT4_RANGE,
    Type::INT8_RANGE,
    Type::NUM_RANGE,
    Type::INT4_ARRAY,
    Type::INT8_ARRAY,
    Type::NUMERIC_ARRAY,
    Type::TEXT_ARRAY,
    Type::VARCHAR_ARRAY,
    Type::BPCHAR_ARRAY,
    Type::INTERVAL,
    Type::TEXT,
    Type::VARCHAR,
    Type::NAME,
    Type::INET,
    Type::OID,
];

#[derive(Arbitrary, Debug)]
enum Bound {
    Inclusive,
    Exclusive,
}

impl From<Bound> for pg::RangeBoundKind {
    fn from(bound: Bound) -> Self {
        match bound {
            Bound::Inclusive => Self::Inclusive,
            Bound::Exclusive => Self::Exclusive,
        }
    }
}

/// `spin:postgres@4.0.0`'s `parameter-value`, which the bindings do not make arbitrary.
#[derive(Arbitrary, Debug)]
enum Param {
    Boolean(bool),
    Int8(i8),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    Floating32(f32),
    Floating64(f64),
    Str(String),
    Binary(Vec<u8>),
    Date((i32, u8, u8)),
    Time((u8, u8, u8, u32)),
    Datetime((i32, u8, u8, u8, u8, u8, u32)),
    Timestamp(i64),
    Uuid(String),
    Jsonb(Vec<u8>),
    Decimal(String),
    RangeInt32(Option<(i32, Bound)>, Option<(i32, Bound)>),
    RangeInt64(Option<(i64, Bound)>, Option<(i64, Bound)>),
    RangeDecimal(Option<(String, Bound)>, Option<(String, Bound)>),
    ArrayInt32(Vec<Option<i32>>),
    ArrayInt64(Vec<Option<i64>>),
    ArrayDecimal(Vec<Option<String>>),
    ArrayStr(Vec<Option<String>>),
    Interval(i64, i32, i32),
    DbNull,
}

fn bound<T>(bound: Option<(T, Bound)>) -> Option<(T, pg::RangeBoundKind)> {
    bound.map(|(value, kind)| (value, kind.into()))
}

impl From<Param> for pg::ParameterValue {
    fn from(param: Param) -> Self {
        use pg::ParameterValue as P;
        match param {
            Param::Boolean(v) => P::Boolean(v),
            Param::Int8(v) => P::Int8(v),
            Param::Int16(v) => P::Int16(v),
            Param::Int32(v) => P::Int32(v),
            Param::Int64(v) => P::Int64(v),
            Param::Floating32(v) => P::Floating32(v),
            Param::Floating64(v) => P::Floating64(v),
            Param::Str(v) => P::Str(v),
            Param::Binary(v) => P::Binary(v),
            Param::Date(v) => P::Date(v),
            Param::Time(v) => P::Time(v),
            Param::Datetime(v) => P::Datetime(v),
            Param::Timestamp(v) => P::Timestamp(v),
            Param::Uuid(v) => P::Uuid(v),
            Param::Jsonb(v) => P::Jsonb(v),
            Param::Decimal(v) => P::Decimal(v),
            Param::RangeInt32(l, u) => P::RangeInt32((bound(l), bound(u))),
            Param::RangeInt64(l, u) => P::RangeInt64((bound(l), bound(u))),
            Param::RangeDecimal(l, u) => P::RangeDecimal((bound(l), bound(u))),
            Param::ArrayInt32(v) => P::ArrayInt32(v),
            Param::ArrayInt64(v) => P::ArrayInt64(v),
            Param::ArrayDecimal(v) => P::ArrayDecimal(v),
            Param::ArrayStr(v) => P::ArrayStr(v),
            Param::Interval(micros, days, months) => P::Interval(pg::Interval {
                micros,
                days,
                months,
            }),
            Param::DbNull => P::DbNull,
        }
    }
}

/// What the decoder must give back for a parameter that went to the wire in binary, as
/// `Debug` text (the WIT types have no `PartialEq`); `None` where the wire form is not the
/// parameter's own (text-format parameters, `int8` sent as `int2`, a timestamp read back
/// as a date-time). PostgreSQL keeps microseconds, so nanoseconds come back truncated.
fn expected_back(param: &pg::ParameterValue) -> Option<String> {
    use pg::ParameterValue as P;
    let micros = |nanos: u32| nanos / 1000 * 1000;
    // chrono writes a leap second as nanoseconds past 1e9; PostgreSQL has no leap seconds
    // and folds it into the next second (23:59:59 + 1.5 s is 00:00:00.5 of the next minute).
    let leap = |nanos: u32| nanos >= 1_000_000_000;
    Some(match param {
        P::Time((.., ns)) | P::Datetime((.., ns)) if leap(*ns) => return None,
        P::Time((h, m, s, ns)) => format!("Time({:?})", (h, m, s, micros(*ns))),
        P::Datetime((y, mo, d, h, mi, s, ns)) => {
            format!("Datetime({:?})", (y, mo, d, h, mi, s, micros(*ns)))
        }
        P::Boolean(_)
        | P::Int16(_)
        | P::Int32(_)
        | P::Int64(_)
        | P::Floating32(_)
        | P::Floating64(_)
        | P::Binary(_)
        | P::Date(_)
        | P::Jsonb(_)
        | P::ArrayInt32(_)
        | P::ArrayInt64(_)
        | P::ArrayStr(_)
        | P::Interval(_) => variant_text(format!("{param:?}")),
        _ => return None,
    })
}

/// `Debug` text without the enum's name, so a parameter and a result value compare.
fn variant_text(debug: String) -> String {
    debug
        .trim_start_matches("ParameterValue::")
        .trim_start_matches("DbValue::")
        .to_owned()
}

/// Binary result values of every type decode without panicking (what does not fit the WIT
/// becomes `unsupported`); a guest parameter is either refused with a message or encodes,
/// and what encodes in binary decodes back to the same value.
pub fn pg_values(data: &[u8]) {
    #[derive(Arbitrary, Debug)]
    enum Input {
        Result { ty: u8, raw: Vec<u8> },
        Numeric(Vec<u8>),
        Param(Param),
    }
    let Ok(input) = Input::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    match input {
        Input::Result { ty, raw } => {
            let ty = &RESULT_TYPES[usize::from(ty) % RESULT_TYPES.len()];
            let _ = db_value(ty, Some(&raw));
        }
        Input::Numeric(raw) => {
            if let Ok(text) = numeric_text(&raw) {
                assert!(!text.is_empty(), "an empty numeric from {raw:?}");
            }
        }
        Input::Param(param) => {
            let param = pg::ParameterValue::from(param);
            let expected = expected_back(&param);
            let Ok(value) = param_from_v4(param) else {
                return;
            };
            let ty = value.declared_type();
            let mut wire = BytesMut::new();
            let Ok(tokio_postgres::types::IsNull::No) = value.to_sql_checked(&ty, &mut wire) else {
                return;
            };
            if let Some(expected) = expected {
                let back = variant_text(format!("{:?}", db_value(&ty, Some(&wire))));
                assert_eq!(back, expected, "{ty} did not survive the wire");
            }
        }
    }
}

/// RESP replies as a Redis server could send them, flattened the way Spin does; and guest
/// commands checked against the shared connection's rules.
pub fn redis_values(data: &[u8]) {
    #[derive(Arbitrary, Debug)]
    enum Input {
        Reply(Vec<u8>),
        Command {
            name: String,
            args: Vec<Result<i64, Vec<u8>>>,
        },
    }
    let Ok(input) = Input::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    match input {
        Input::Reply(bytes) => {
            if let Ok(value) = redis::parse_redis_value(&bytes) {
                let mut out = Vec::new();
                let _ = flatten_reply(value, &mut out);
            }
        }
        Input::Command { name, args } => {
            let args: Vec<redis_wit::RedisParameter> = args
                .into_iter()
                .map(|arg| match arg {
                    Ok(v) => redis_wit::RedisParameter::Int64(v),
                    Err(bytes) => redis_wit::RedisParameter::Binary(bytes),
                })
                .collect();
            let allowed = check_shareable(&name, &args).is_ok();
            // Commands are case-insensitive: the answer must not depend on the spelling.
            let shouted = check_shareable(&name.to_uppercase(), &args).is_ok();
            let quiet = check_shareable(&name.to_lowercase(), &args).is_ok();
            if name.is_ascii() {
                assert_eq!(allowed, shouted, "`{name}` vs upper case");
                assert_eq!(allowed, quiet, "`{name}` vs lower case");
            }
        }
    }
}
