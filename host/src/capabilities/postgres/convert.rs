//! Conversions between the `spin:postgres` WIT values and PostgreSQL's wire formats.
//!
//! The internal representation is the richest interface, `spin:postgres/postgres@4.0.0`;
//! the 3.0.0 and `fermyon:spin/postgres@2.0.0` interfaces convert to and from it.
//!
//! **Parameters** are sent with their type declared (one round trip per statement, no
//! server-side prepared statement): integers, floats, booleans, bytes, dates and times,
//! UUIDs, JSON, arrays and intervals in binary; decimals and ranges as text so that any
//! precision is exact. A `str` parameter is sent as text with its type left for the
//! server to infer from the statement, as a driver sends an untyped literal: it works for
//! every column that Spin's `str` works for, and also for `uuid`, enum, `citext` or date
//! columns. `db-null` is untyped for the same reason.
//!
//! **Results** arrive in binary and are decoded here, exactly (decimals are rendered from
//! PostgreSQL's base-10000 digits, never through a float or a 28-digit decimal). A value
//! that has no WIT form (for example `timestamp 'infinity'`, a two-dimensional array, or a
//! type the WIT lacks) becomes `unsupported` carrying PostgreSQL's binary bytes; its
//! column's type is `other(<type name>)` when the type itself has no WIT form.

use std::error::Error as StdError;
use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use fallible_iterator::FallibleIterator;
use postgres_protocol::types as wire;
use tokio_postgres::types::{to_sql_checked, Format, FromSql, IsNull, Kind, ToSql, Type};

use crate::bindings::fermyon::spin2_0_0::rdbms_types as v2;
use crate::bindings::spin::postgres3_0_0::postgres as v3;
use crate::bindings::spin::postgres4_0_0::postgres as v4;

type BoxError = Box<dyn StdError + Sync + Send>;

/// A guest parameter, validated and ready to be written to the wire.
#[derive(Debug, Clone)]
pub enum PgParam {
    Null,
    Bool(bool),
    Int2(i16),
    Int4(i32),
    Int8(i64),
    Float4(f32),
    Float8(f64),
    /// Text whose type the server infers from the statement.
    Untyped(String),
    Bytea(Vec<u8>),
    Date(NaiveDate),
    Time(NaiveTime),
    Timestamp(NaiveDateTime),
    TimestampTz(DateTime<Utc>),
    Uuid(uuid::Uuid),
    Jsonb(Vec<u8>),
    /// A value in PostgreSQL's text form for the given type (decimals, ranges,
    /// decimal arrays): parsed by the server, exact at any precision.
    Text(Type, String),
    Int4Array(Vec<Option<i32>>),
    Int8Array(Vec<Option<i64>>),
    TextArray(Vec<Option<String>>),
    Interval(v4::Interval),
}

impl PgParam {
    /// The type declared for this parameter in the Parse message; `unknown` lets the
    /// server infer it.
    pub fn declared_type(&self) -> Type {
        match self {
            Self::Null | Self::Untyped(_) => Type::UNKNOWN,
            Self::Bool(_) => Type::BOOL,
            Self::Int2(_) => Type::INT2,
            Self::Int4(_) => Type::INT4,
            Self::Int8(_) => Type::INT8,
            Self::Float4(_) => Type::FLOAT4,
            Self::Float8(_) => Type::FLOAT8,
            Self::Bytea(_) => Type::BYTEA,
            Self::Date(_) => Type::DATE,
            Self::Time(_) => Type::TIME,
            Self::Timestamp(_) => Type::TIMESTAMP,
            Self::TimestampTz(_) => Type::TIMESTAMPTZ,
            Self::Uuid(_) => Type::UUID,
            Self::Jsonb(_) => Type::JSONB,
            Self::Text(ty, _) => ty.clone(),
            Self::Int4Array(_) => Type::INT4_ARRAY,
            Self::Int8Array(_) => Type::INT8_ARRAY,
            Self::TextArray(_) => Type::TEXT_ARRAY,
            Self::Interval(_) => Type::INTERVAL,
        }
    }
}

impl ToSql for PgParam {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self {
            Self::Null => return Ok(IsNull::Yes),
            Self::Bool(v) => return v.to_sql(ty, out),
            Self::Int2(v) => return v.to_sql(ty, out),
            Self::Int4(v) => return v.to_sql(ty, out),
            Self::Int8(v) => return v.to_sql(ty, out),
            Self::Float4(v) => return v.to_sql(ty, out),
            Self::Float8(v) => return v.to_sql(ty, out),
            Self::Untyped(text) | Self::Text(_, text) => out.extend_from_slice(text.as_bytes()),
            Self::Bytea(bytes) => out.extend_from_slice(bytes),
            Self::Date(v) => return v.to_sql(ty, out),
            Self::Time(v) => return v.to_sql(ty, out),
            Self::Timestamp(v) => return v.to_sql(ty, out),
            Self::TimestampTz(v) => return v.to_sql(ty, out),
            Self::Uuid(v) => return v.to_sql(ty, out),
            Self::Jsonb(json) => {
                // jsonb's binary format: a version byte, then the JSON text.
                out.put_u8(1);
                out.extend_from_slice(json);
            }
            Self::Int4Array(v) => return v.to_sql(ty, out),
            Self::Int8Array(v) => return v.to_sql(ty, out),
            Self::TextArray(v) => return v.to_sql(ty, out),
            Self::Interval(v) => {
                out.put_i64(v.micros);
                out.put_i32(v.days);
                out.put_i32(v.months);
            }
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        // The declared type comes from `declared_type`, so it always matches.
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        match self {
            Self::Untyped(_) | Self::Text(..) => Format::Text,
            _ => Format::Binary,
        }
    }

    to_sql_checked!();
}

/// Converts a guest parameter; the error text names what is wrong (for `bad-parameter`).
pub fn param_from_v4(value: v4::ParameterValue) -> Result<PgParam, String> {
    use v4::ParameterValue as P;
    Ok(match value {
        P::Boolean(v) => PgParam::Bool(v),
        P::Int8(v) => PgParam::Int2(v.into()),
        P::Int16(v) => PgParam::Int2(v),
        P::Int32(v) => PgParam::Int4(v),
        P::Int64(v) => PgParam::Int8(v),
        P::Floating32(v) => PgParam::Float4(v),
        P::Floating64(v) => PgParam::Float8(v),
        P::Str(v) => PgParam::Untyped(v),
        P::Binary(v) => PgParam::Bytea(v),
        P::Date(v) => PgParam::Date(date_from_wit(v)?),
        P::Time(v) => PgParam::Time(time_from_wit(v)?),
        P::Datetime(v) => PgParam::Timestamp(datetime_from_wit(v)?),
        P::Timestamp(seconds) => PgParam::TimestampTz(
            DateTime::<Utc>::from_timestamp(seconds, 0)
                .ok_or_else(|| format!("timestamp {seconds} is out of range"))?,
        ),
        P::Uuid(text) => PgParam::Uuid(
            uuid::Uuid::parse_str(&text).map_err(|err| format!("invalid uuid `{text}`: {err}"))?,
        ),
        P::Jsonb(bytes) => {
            serde_json::from_slice::<serde::de::IgnoredAny>(&bytes)
                .map_err(|err| format!("invalid JSON for jsonb: {err}"))?;
            PgParam::Jsonb(bytes)
        }
        P::Decimal(text) => PgParam::Text(Type::NUMERIC, decimal_text(&text)?),
        P::RangeInt32((lower, upper)) => PgParam::Text(
            Type::INT4_RANGE,
            range_text(
                lower.map(|(v, k)| (v.to_string(), k)),
                upper.map(|(v, k)| (v.to_string(), k)),
            ),
        ),
        P::RangeInt64((lower, upper)) => PgParam::Text(
            Type::INT8_RANGE,
            range_text(
                lower.map(|(v, k)| (v.to_string(), k)),
                upper.map(|(v, k)| (v.to_string(), k)),
            ),
        ),
        P::RangeDecimal((lower, upper)) => {
            let bound = |bound: Option<(String, v4::RangeBoundKind)>| {
                bound
                    .map(|(text, kind)| decimal_text(&text).map(|text| (text, kind)))
                    .transpose()
            };
            PgParam::Text(Type::NUM_RANGE, range_text(bound(lower)?, bound(upper)?))
        }
        P::ArrayInt32(values) => PgParam::Int4Array(values),
        P::ArrayInt64(values) => PgParam::Int8Array(values),
        P::ArrayDecimal(values) => {
            let mut text = String::from("{");
            for (index, value) in values.iter().enumerate() {
                if index > 0 {
                    text.push(',');
                }
                match value {
                    Some(value) => text.push_str(&decimal_text(value)?),
                    None => text.push_str("NULL"),
                }
            }
            text.push('}');
            PgParam::Text(Type::NUMERIC_ARRAY, text)
        }
        P::ArrayStr(values) => PgParam::TextArray(values),
        P::Interval(v) => PgParam::Interval(v),
        P::DbNull => PgParam::Null,
    })
}

/// `spin:postgres@3.0.0` parameters are a subset of 4.0.0's.
pub fn param_v3_to_v4(value: v3::ParameterValue) -> v4::ParameterValue {
    use v3::ParameterValue as P3;
    use v4::ParameterValue as P4;
    match value {
        P3::Boolean(v) => P4::Boolean(v),
        P3::Int8(v) => P4::Int8(v),
        P3::Int16(v) => P4::Int16(v),
        P3::Int32(v) => P4::Int32(v),
        P3::Int64(v) => P4::Int64(v),
        P3::Floating32(v) => P4::Floating32(v),
        P3::Floating64(v) => P4::Floating64(v),
        P3::Str(v) => P4::Str(v),
        P3::Binary(v) => P4::Binary(v),
        P3::Date(v) => P4::Date(v),
        P3::Time(v) => P4::Time(v),
        P3::Datetime(v) => P4::Datetime(v),
        P3::Timestamp(v) => P4::Timestamp(v),
        P3::DbNull => P4::DbNull,
    }
}

/// `fermyon:spin/postgres@2.0.0` parameters; unsigned integers widen to the next signed
/// PostgreSQL integer (PostgreSQL has no unsigned types).
pub fn param_v2_to_v4(value: v2::ParameterValue) -> Result<v4::ParameterValue, String> {
    use v2::ParameterValue as P2;
    use v4::ParameterValue as P4;
    Ok(match value {
        P2::Boolean(v) => P4::Boolean(v),
        P2::Int8(v) => P4::Int8(v),
        P2::Int16(v) => P4::Int16(v),
        P2::Int32(v) => P4::Int32(v),
        P2::Int64(v) => P4::Int64(v),
        P2::Uint8(v) => P4::Int16(v.into()),
        P2::Uint16(v) => P4::Int32(v.into()),
        P2::Uint32(v) => P4::Int64(v.into()),
        P2::Uint64(v) => P4::Int64(
            i64::try_from(v).map_err(|_| format!("uint64 {v} does not fit PostgreSQL's bigint"))?,
        ),
        P2::Floating32(v) => P4::Floating32(v),
        P2::Floating64(v) => P4::Floating64(v),
        P2::Str(v) => P4::Str(v),
        P2::Binary(v) => P4::Binary(v),
        P2::DbNull => P4::DbNull,
    })
}

fn date_from_wit((year, month, day): (i32, u8, u8)) -> Result<NaiveDate, String> {
    NaiveDate::from_ymd_opt(year, month.into(), day.into())
        .ok_or_else(|| format!("invalid date {year:04}-{month:02}-{day:02}"))
}

/// PostgreSQL keeps whole microseconds: the nanoseconds below them are dropped here, so
/// every value is truncated toward the earlier instant. (Left to the wire encoding, which
/// counts microseconds from 2000-01-01 and truncates toward that date, a date-time before
/// 2000 was rounded up and one after it down: found by the `pg_values` fuzz target.)
fn time_from_wit((hour, minute, second, nanos): (u8, u8, u8, u32)) -> Result<NaiveTime, String> {
    let whole_micros = nanos - nanos % 1_000;
    NaiveTime::from_hms_nano_opt(hour.into(), minute.into(), second.into(), whole_micros)
        .ok_or_else(|| format!("invalid time {hour:02}:{minute:02}:{second:02}.{nanos:09}"))
}

fn datetime_from_wit(
    (year, month, day, hour, minute, second, nanos): (i32, u8, u8, u8, u8, u8, u32),
) -> Result<NaiveDateTime, String> {
    Ok(NaiveDateTime::new(
        date_from_wit((year, month, day))?,
        time_from_wit((hour, minute, second, nanos))?,
    ))
}

/// Checks a decimal's text (`-12.50`, `1e-3`, `NaN`, `Infinity`) and returns it trimmed;
/// PostgreSQL parses it exactly.
fn decimal_text(text: &str) -> Result<String, String> {
    let trimmed = text.trim();
    let special = [
        "nan",
        "infinity",
        "+infinity",
        "-infinity",
        "inf",
        "+inf",
        "-inf",
    ];
    if special.contains(&trimmed.to_ascii_lowercase().as_str()) {
        return Ok(trimmed.to_owned());
    }
    let unsigned = trimmed.strip_prefix(['+', '-']).unwrap_or(trimmed);
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok =
        digits(whole) && digits(fraction) && !(whole.is_empty() && fraction.is_empty());
    let exponent_ok = exponent.is_none_or(|exp| {
        let exp = exp.strip_prefix(['+', '-']).unwrap_or(exp);
        !exp.is_empty() && digits(exp)
    });
    if mantissa_ok && exponent_ok {
        Ok(trimmed.to_owned())
    } else {
        Err(format!("invalid decimal `{text}`"))
    }
}

/// A range in PostgreSQL's text form: `[1,5)`, `(,10]`, `(,)`.
fn range_text(
    lower: Option<(String, v4::RangeBoundKind)>,
    upper: Option<(String, v4::RangeBoundKind)>,
) -> String {
    let mut text = String::new();
    match lower {
        Some((value, v4::RangeBoundKind::Inclusive)) => {
            text.push('[');
            text.push_str(&value);
        }
        Some((value, v4::RangeBoundKind::Exclusive)) => {
            text.push('(');
            text.push_str(&value);
        }
        None => text.push('('),
    }
    text.push(',');
    match upper {
        Some((value, v4::RangeBoundKind::Inclusive)) => {
            text.push_str(&value);
            text.push(']');
        }
        Some((value, v4::RangeBoundKind::Exclusive)) => {
            text.push_str(&value);
            text.push(')');
        }
        None => text.push(')'),
    }
    text
}

/// The type behind domains (a domain's wire format is its base type's).
fn base_type(ty: &Type) -> &Type {
    match ty.kind() {
        Kind::Domain(inner) => base_type(inner),
        _ => ty,
    }
}

/// Types whose binary form is UTF-8 text.
fn is_text_type(ty: &Type) -> bool {
    matches!(
        *ty,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN
    ) || ty.name() == "citext"
        || matches!(ty.kind(), Kind::Enum(_))
}

/// The WIT data type of a result column.
pub fn data_type(ty: &Type) -> v4::DbDataType {
    use v4::DbDataType as D;
    let ty = base_type(ty);
    match *ty {
        Type::BOOL => D::Boolean,
        Type::CHAR => D::Int8,
        Type::INT2 => D::Int16,
        Type::INT4 => D::Int32,
        Type::INT8 => D::Int64,
        Type::FLOAT4 => D::Floating32,
        Type::FLOAT8 => D::Floating64,
        Type::BYTEA => D::Binary,
        Type::DATE => D::Date,
        Type::TIME => D::Time,
        Type::TIMESTAMP | Type::TIMESTAMPTZ => D::Datetime,
        Type::UUID => D::Uuid,
        Type::JSONB | Type::JSON => D::Jsonb,
        Type::NUMERIC => D::Decimal,
        Type::INT4_RANGE => D::RangeInt32,
        Type::INT8_RANGE => D::RangeInt64,
        Type::NUM_RANGE => D::RangeDecimal,
        Type::INT4_ARRAY => D::ArrayInt32,
        Type::INT8_ARRAY => D::ArrayInt64,
        Type::NUMERIC_ARRAY => D::ArrayDecimal,
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => D::ArrayStr,
        Type::INTERVAL => D::Interval,
        _ if is_text_type(ty) => D::Str,
        _ => D::Other(ty.name().to_owned()),
    }
}

/// Decodes one result value (`None` is SQL NULL).
pub fn db_value(ty: &Type, raw: Option<&[u8]>) -> v4::DbValue {
    let Some(raw) = raw else {
        return v4::DbValue::DbNull;
    };
    match decode(base_type(ty), raw) {
        Ok(value) => value,
        Err(err) => {
            tracing::debug!(
                pg_type = ty.name(),
                "value returned as `unsupported`: {err}"
            );
            v4::DbValue::Unsupported(raw.to_vec())
        }
    }
}

fn decode(ty: &Type, raw: &[u8]) -> Result<v4::DbValue, BoxError> {
    use v4::DbValue as V;
    Ok(match *ty {
        Type::BOOL => V::Boolean(bool::from_sql(ty, raw)?),
        Type::CHAR => V::Int8(i8::from_sql(ty, raw)?),
        Type::INT2 => V::Int16(i16::from_sql(ty, raw)?),
        Type::INT4 => V::Int32(i32::from_sql(ty, raw)?),
        Type::INT8 => V::Int64(i64::from_sql(ty, raw)?),
        Type::FLOAT4 => V::Floating32(f32::from_sql(ty, raw)?),
        Type::FLOAT8 => V::Floating64(f64::from_sql(ty, raw)?),
        Type::BYTEA => V::Binary(raw.to_vec()),
        Type::DATE => V::Date(date_to_wit(NaiveDate::from_sql(ty, raw)?)),
        Type::TIME => V::Time(time_to_wit(NaiveTime::from_sql(ty, raw)?)),
        Type::TIMESTAMP => V::Datetime(datetime_to_wit(NaiveDateTime::from_sql(ty, raw)?)),
        Type::TIMESTAMPTZ => V::Datetime(datetime_to_wit(
            DateTime::<Utc>::from_sql(ty, raw)?.naive_utc(),
        )),
        Type::UUID => V::Uuid(uuid::Uuid::from_sql(ty, raw)?.to_string()),
        Type::JSONB => match raw.split_first() {
            Some((1, json)) => V::Jsonb(json.to_vec()),
            _ => return Err("unknown jsonb format version".into()),
        },
        Type::JSON => V::Jsonb(raw.to_vec()),
        Type::NUMERIC => V::Decimal(numeric_text(raw)?),
        Type::INT4_RANGE => {
            let (lower, upper) = range_bounds(raw, |b| i32::from_sql(&Type::INT4, b))?;
            V::RangeInt32((lower.or_zero_if_empty(0), upper.or_zero_if_empty(0)))
        }
        Type::INT8_RANGE => {
            let (lower, upper) = range_bounds(raw, |b| i64::from_sql(&Type::INT8, b))?;
            V::RangeInt64((lower.or_zero_if_empty(0), upper.or_zero_if_empty(0)))
        }
        Type::NUM_RANGE => {
            let (lower, upper) = range_bounds(raw, numeric_text)?;
            V::RangeDecimal((
                lower.or_zero_if_empty("0".to_owned()),
                upper.or_zero_if_empty("0".to_owned()),
            ))
        }
        Type::INT4_ARRAY => V::ArrayInt32(array_values(raw, |b| i32::from_sql(&Type::INT4, b))?),
        Type::INT8_ARRAY => V::ArrayInt64(array_values(raw, |b| i64::from_sql(&Type::INT8, b))?),
        Type::NUMERIC_ARRAY => V::ArrayDecimal(array_values(raw, numeric_text)?),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => {
            V::ArrayStr(array_values(raw, |b| {
                Ok(std::str::from_utf8(b)?.to_owned())
            })?)
        }
        Type::INTERVAL => {
            let bytes: [u8; 16] = raw.try_into().map_err(|_| "interval is not 16 bytes")?;
            let (micros, rest) = bytes.split_at(8);
            let (days, months) = rest.split_at(4);
            V::Interval(v4::Interval {
                micros: i64::from_be_bytes(micros.try_into()?),
                days: i32::from_be_bytes(days.try_into()?),
                months: i32::from_be_bytes(months.try_into()?),
            })
        }
        _ if is_text_type(ty) => V::Str(std::str::from_utf8(raw)?.to_owned()),
        _ => return Err(format!("type `{}` has no WIT form", ty.name()).into()),
    })
}

fn date_to_wit(date: NaiveDate) -> (i32, u8, u8) {
    // Month and day always fit u8.
    (date.year(), date.month() as u8, date.day() as u8)
}

fn time_to_wit(time: NaiveTime) -> (u8, u8, u8, u32) {
    (
        time.hour() as u8,
        time.minute() as u8,
        time.second() as u8,
        time.nanosecond(),
    )
}

fn datetime_to_wit(datetime: NaiveDateTime) -> (i32, u8, u8, u8, u8, u8, u32) {
    let (year, month, day) = date_to_wit(datetime.date());
    let (hour, minute, second, nanos) = time_to_wit(datetime.time());
    (year, month, day, hour, minute, second, nanos)
}

type WitBound<T> = Option<(T, v4::RangeBoundKind)>;

/// A decoded range: both bounds, or `Empty`.
enum RangeSide<T> {
    Bound(WitBound<T>),
    Empty,
}

impl<T> RangeSide<T> {
    /// The WIT cannot say "empty"; `(0,0)` (both bounds exclusive at zero) is empty in
    /// PostgreSQL, and sending it back as a parameter gives an empty range again.
    fn or_zero_if_empty(self, zero: T) -> WitBound<T> {
        match self {
            Self::Bound(bound) => bound,
            Self::Empty => Some((zero, v4::RangeBoundKind::Exclusive)),
        }
    }
}

fn range_bounds<T>(
    raw: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, BoxError>,
) -> Result<(RangeSide<T>, RangeSide<T>), BoxError> {
    let side = |bound: wire::RangeBound<Option<&[u8]>>| -> Result<RangeSide<T>, BoxError> {
        Ok(RangeSide::Bound(match bound {
            wire::RangeBound::Inclusive(Some(value)) => {
                Some((decode(value)?, v4::RangeBoundKind::Inclusive))
            }
            wire::RangeBound::Exclusive(Some(value)) => {
                Some((decode(value)?, v4::RangeBoundKind::Exclusive))
            }
            wire::RangeBound::Inclusive(None) | wire::RangeBound::Exclusive(None) => {
                return Err("range bound is NULL".into())
            }
            wire::RangeBound::Unbounded => None,
        }))
    };
    match wire::range_from_sql(raw)? {
        wire::Range::Empty => Ok((RangeSide::Empty, RangeSide::Empty)),
        wire::Range::Nonempty(lower, upper) => Ok((side(lower)?, side(upper)?)),
    }
}

fn array_values<T>(
    raw: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, BoxError>,
) -> Result<Vec<Option<T>>, BoxError> {
    let array = wire::array_from_sql(raw)?;
    if array.dimensions().count()? > 1 {
        return Err("multi-dimensional arrays have no WIT form".into());
    }
    array
        .values()
        .map(|value| value.map(&decode).transpose())
        .collect()
}

/// Renders PostgreSQL's binary `numeric` (base-10000 digits, a weight, a sign and a display
/// scale) as exact decimal text, as PostgreSQL's own output function does.
pub fn numeric_text(raw: &[u8]) -> Result<String, BoxError> {
    let word = |at: usize| -> Result<u16, BoxError> {
        raw.get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "truncated numeric".into())
    };
    let ndigits = usize::from(word(0)?);
    let weight = i32::from(word(2)? as i16);
    let sign = word(4)?;
    let dscale = usize::from(word(6)?);
    if raw.len() != 8 + 2 * ndigits {
        return Err("numeric length does not match its digit count".into());
    }
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        0x0000 | 0x4000 => {}
        _ => return Err("invalid numeric sign".into()),
    }
    let digits = (0..ndigits)
        .map(|i| word(8 + 2 * i))
        .collect::<Result<Vec<u16>, _>>()?;
    if digits.iter().any(|&d| d > 9999) {
        return Err("invalid numeric digit".into());
    }
    let digit = |index: i32| -> u16 {
        usize::try_from(index)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut text = String::new();
    if sign == 0x4000 {
        text.push('-');
    }
    if weight < 0 {
        text.push('0');
    } else {
        for index in 0..=weight {
            if index == 0 {
                write!(text, "{}", digit(index))?;
            } else {
                write!(text, "{:04}", digit(index))?;
            }
        }
    }
    if dscale > 0 {
        let mut fraction = String::with_capacity(dscale + 4);
        let mut index = weight + 1;
        while fraction.len() < dscale {
            write!(fraction, "{:04}", digit(index))?;
            index += 1;
        }
        fraction.truncate(dscale);
        text.push('.');
        text.push_str(&fraction);
    }
    Ok(text)
}

/// A 4.0.0 data type as 3.0.0 sees it (types 3.0.0 lacks become `other`).
pub fn data_type_v4_to_v3(ty: v4::DbDataType) -> v3::DbDataType {
    use v3::DbDataType as D3;
    use v4::DbDataType as D4;
    match ty {
        D4::Boolean => D3::Boolean,
        D4::Int8 => D3::Int8,
        D4::Int16 => D3::Int16,
        D4::Int32 => D3::Int32,
        D4::Int64 => D3::Int64,
        D4::Floating32 => D3::Floating32,
        D4::Floating64 => D3::Floating64,
        D4::Str => D3::Str,
        D4::Binary => D3::Binary,
        D4::Date => D3::Date,
        D4::Time => D3::Time,
        D4::Datetime => D3::Datetime,
        D4::Timestamp => D3::Timestamp,
        _ => D3::Other,
    }
}

/// A 4.0.0 value as 3.0.0 sees it (values 3.0.0 lacks become `unsupported`).
pub fn value_v4_to_v3(value: v4::DbValue) -> v3::DbValue {
    use v3::DbValue as V3;
    use v4::DbValue as V4;
    match value {
        V4::Boolean(v) => V3::Boolean(v),
        V4::Int8(v) => V3::Int8(v),
        V4::Int16(v) => V3::Int16(v),
        V4::Int32(v) => V3::Int32(v),
        V4::Int64(v) => V3::Int64(v),
        V4::Floating32(v) => V3::Floating32(v),
        V4::Floating64(v) => V3::Floating64(v),
        V4::Str(v) => V3::Str(v),
        V4::Binary(v) => V3::Binary(v),
        V4::Date(v) => V3::Date(v),
        V4::Time(v) => V3::Time(v),
        V4::Datetime(v) => V3::Datetime(v),
        V4::Timestamp(v) => V3::Timestamp(v),
        V4::DbNull => V3::DbNull,
        _ => V3::Unsupported,
    }
}

/// A 4.0.0 data type as `fermyon:spin/rdbms-types@2.0.0` sees it.
pub fn data_type_v4_to_v2(ty: v4::DbDataType) -> v2::DbDataType {
    use v2::DbDataType as D2;
    use v4::DbDataType as D4;
    match ty {
        D4::Boolean => D2::Boolean,
        D4::Int8 => D2::Int8,
        D4::Int16 => D2::Int16,
        D4::Int32 => D2::Int32,
        D4::Int64 => D2::Int64,
        D4::Floating32 => D2::Floating32,
        D4::Floating64 => D2::Floating64,
        D4::Str => D2::Str,
        D4::Binary => D2::Binary,
        _ => D2::Other,
    }
}

/// A 4.0.0 value as `fermyon:spin/rdbms-types@2.0.0` sees it.
pub fn value_v4_to_v2(value: v4::DbValue) -> v2::DbValue {
    use v2::DbValue as V2;
    use v4::DbValue as V4;
    match value {
        V4::Boolean(v) => V2::Boolean(v),
        V4::Int8(v) => V2::Int8(v),
        V4::Int16(v) => V2::Int16(v),
        V4::Int32(v) => V2::Int32(v),
        V4::Int64(v) => V2::Int64(v),
        V4::Floating32(v) => V2::Floating32(v),
        V4::Floating64(v) => V2::Floating64(v),
        V4::Str(v) => V2::Str(v),
        V4::Binary(v) => V2::Binary(v),
        V4::DbNull => V2::DbNull,
        _ => V2::Unsupported,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes a numeric the way PostgreSQL does, for the decoder tests.
    fn numeric_bytes(weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(digits.len() as u16).to_be_bytes());
        out.extend_from_slice(&weight.to_be_bytes());
        out.extend_from_slice(&sign.to_be_bytes());
        out.extend_from_slice(&dscale.to_be_bytes());
        for d in digits {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out
    }

    #[test]
    fn numeric_rendering_matches_postgres() {
        assert_eq!(numeric_text(&numeric_bytes(0, 0, 0, &[])).unwrap(), "0");
        assert_eq!(numeric_text(&numeric_bytes(0, 0, 2, &[])).unwrap(), "0.00");
        assert_eq!(
            numeric_text(&numeric_bytes(0, 0, 2, &[12, 5000])).unwrap(),
            "12.50"
        );
        assert_eq!(
            numeric_text(&numeric_bytes(1, 0x4000, 0, &[1, 0])).unwrap(),
            "-10000"
        );
        assert_eq!(
            numeric_text(&numeric_bytes(-1, 0, 4, &[1])).unwrap(),
            "0.0001"
        );
        assert_eq!(
            numeric_text(&numeric_bytes(-2, 0, 5, &[1000])).unwrap(),
            "0.00001"
        );
        assert_eq!(
            numeric_text(&numeric_bytes(0, 0xC000, 0, &[])).unwrap(),
            "NaN"
        );
        assert!(numeric_text(&[0, 1]).is_err());
    }

    #[test]
    fn decimal_parameters_are_checked() {
        for ok in [
            "1",
            "-1.5",
            "+.5",
            "5.",
            "1e10",
            "1.5E-3",
            " 42 ",
            "NaN",
            "-Infinity",
        ] {
            assert!(decimal_text(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "1.2.3", "abc", "1e", "--1", "1,5", "0x10"] {
            assert!(decimal_text(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn range_text_forms() {
        use v4::RangeBoundKind::{Exclusive, Inclusive};
        assert_eq!(
            range_text(Some(("1".into(), Inclusive)), Some(("5".into(), Exclusive))),
            "[1,5)"
        );
        assert_eq!(range_text(None, Some(("5".into(), Inclusive))), "(,5]");
        assert_eq!(range_text(None, None), "(,)");
    }

    #[test]
    fn bad_parameters_are_named() {
        let err = param_from_v4(v4::ParameterValue::Date((2024, 2, 30))).unwrap_err();
        assert!(err.contains("2024-02-30"), "{err}");
        let err = param_from_v4(v4::ParameterValue::Uuid("nope".into())).unwrap_err();
        assert!(err.contains("nope"), "{err}");
        let err = param_from_v4(v4::ParameterValue::Jsonb(b"{".to_vec())).unwrap_err();
        assert!(err.contains("JSON"), "{err}");
        let err = param_v2_to_v4(v2::ParameterValue::Uint64(u64::MAX)).unwrap_err();
        assert!(err.contains("bigint"), "{err}");
    }
}
