//! From HubSpot's strings to typed values (every property value arrives as a string), shared by
//! staging and the audit so both read a value the same way.
//!
//! An empty string is no value (null) for every type but strings, which keep it. A value that
//! does not parse is not an error: staging keeps it raw in `_uncast` and the column holds null.

use super::ColumnType;

/// A value that does not cast to its column's type (it is kept raw in `_uncast`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the value does not cast to the column's type")]
pub struct DoesNotCast;

/// One value cast to its column's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Typed {
    Null,
    String(String),
    Float64(f64),
    Int64(i64),
    /// Scaled by 10^[`DECIMAL_SCALE`](super::DECIMAL_SCALE).
    Decimal(i128),
    Timestamp(i64),
    Date(i32),
    Boolean(bool),
    StringList(Vec<String>),
}

/// A finite number: HubSpot writes `1234.5`, `-3`, `1e3`; `NaN` and `inf` are not numbers here.
pub fn parse_f64(raw: &str) -> Option<f64> {
    let v = raw.trim();
    if v.bytes()
        .any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E')
    {
        return None;
    }
    v.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// A decimal with at most [`DECIMAL_SCALE`](super::DECIMAL_SCALE) places and 38 digits, scaled.
pub fn parse_decimal(raw: &str) -> Option<i128> {
    let v = raw.trim();
    let (neg, digits) = match v.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, v.strip_prefix('+').unwrap_or(v)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let scale = super::DECIMAL_SCALE as usize;
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.trim_end_matches('0').len() > scale
        || int.trim_start_matches('0').len() + scale > super::DECIMAL_PRECISION as usize
    {
        return None;
    }
    let mut value: i128 = 0;
    for b in int.bytes() {
        value = value.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    let frac = frac.as_bytes();
    for i in 0..scale {
        let d = frac.get(i).map_or(0, |b| i128::from(b - b'0'));
        value = value.checked_mul(10)?.checked_add(d)?;
    }
    Some(if neg { -value } else { value })
}

/// A date: `YYYY-MM-DD`, or what HubSpot also sends for dates: epoch milliseconds (midnight
/// UTC) or an ISO date-time; as days since 1970-01-01.
pub fn parse_date_days(raw: &str) -> Option<i32> {
    let v = raw.trim();
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
        return i32::try_from((d - epoch).num_days()).ok();
    }
    let ms = wire::parse_ms(v)?;
    i32::try_from(ms.div_euclid(86_400_000)).ok()
}

/// `true`/`false` as HubSpot writes booleans (any case), also `yes`/`no` and `1`/`0`.
pub fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Some(true),
        "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// A multi-select's options: `a;b;c`, empty options dropped.
pub fn split_multi(raw: &str) -> Vec<String> {
    raw.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

impl ColumnType {
    /// `raw` as this type: `Ok(Typed::Null)` for no value, [`DoesNotCast`] when it does not cast.
    pub fn cast(self, raw: Option<&str>) -> Result<Typed, DoesNotCast> {
        let Some(raw) = raw else { return Ok(Typed::Null) };
        if self == ColumnType::String {
            return Ok(Typed::String(raw.to_string()));
        }
        if raw.trim().is_empty() {
            return Ok(Typed::Null);
        }
        match self {
            ColumnType::String => Ok(Typed::String(raw.to_string())),
            ColumnType::Float64 => parse_f64(raw).map(Typed::Float64).ok_or(DoesNotCast),
            ColumnType::Int64 => raw
                .trim()
                .parse::<i64>()
                .map(Typed::Int64)
                .map_err(|_| DoesNotCast),
            ColumnType::Decimal => parse_decimal(raw).map(Typed::Decimal).ok_or(DoesNotCast),
            ColumnType::Timestamp => wire::parse_ms(raw).map(Typed::Timestamp).ok_or(DoesNotCast),
            ColumnType::Date => parse_date_days(raw).map(Typed::Date).ok_or(DoesNotCast),
            ColumnType::Boolean => parse_bool(raw).map(Typed::Boolean).ok_or(DoesNotCast),
            ColumnType::StringList => Ok(Typed::StringList(split_multi(raw))),
        }
    }
}

impl Typed {
    /// One text per value, the same for the lake's typed value and the source's string (the
    /// audit compares these): `None` for null.
    pub fn render(&self) -> Option<String> {
        match self {
            Typed::Null => None,
            Typed::String(s) => Some(s.clone()),
            Typed::Float64(f) => Some(format!("{f:?}")),
            Typed::Int64(i) => Some(i.to_string()),
            Typed::Decimal(d) => Some(d.to_string()),
            Typed::Timestamp(ms) => Some(wire::format_ms(*ms)),
            Typed::Date(d) => Some(format!("day {d}")),
            Typed::Boolean(b) => Some(b.to_string()),
            Typed::StringList(l) => Some(format!("[{}]", l.join(";"))),
        }
    }
}

/// The audit's view of a source value: its rendering once cast, or `uncast:<raw>` when it does
/// not cast (the lake must then hold it in `_uncast`).
pub fn canonical(ty: ColumnType, raw: Option<&str>) -> Option<String> {
    match ty.cast(raw) {
        Ok(t) => t.render(),
        Err(DoesNotCast) => raw.map(|r| format!("uncast:{r}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_cast_or_are_kept_raw() {
        use ColumnType::*;
        assert_eq!(Float64.cast(Some("1234.5")), Ok(Typed::Float64(1234.5)));
        assert_eq!(Float64.cast(Some("12;34")), Err(DoesNotCast));
        assert_eq!(Float64.cast(Some("NaN")), Err(DoesNotCast));
        assert_eq!(Float64.cast(Some("inf")), Err(DoesNotCast));
        assert_eq!(Float64.cast(Some("")), Ok(Typed::Null));
        assert_eq!(Float64.cast(None), Ok(Typed::Null));
        assert_eq!(String.cast(Some("")), Ok(Typed::String("".into())));
        assert_eq!(Boolean.cast(Some("TRUE")), Ok(Typed::Boolean(true)));
        assert_eq!(Boolean.cast(Some("maybe")), Err(DoesNotCast));
        assert_eq!(Date.cast(Some("1970-01-02")), Ok(Typed::Date(1)));
        assert_eq!(Date.cast(Some("86400000")), Ok(Typed::Date(1)));
        assert_eq!(Date.cast(Some("soon")), Err(DoesNotCast));
        assert_eq!(
            Timestamp.cast(Some("2024-05-01T12:00:00.123Z")),
            Ok(Typed::Timestamp(1_714_564_800_123))
        );
        assert_eq!(
            StringList.cast(Some("a;b;;c")),
            Ok(Typed::StringList(vec!["a".into(), "b".into(), "c".into()]))
        );
        assert_eq!(Decimal.cast(Some("12.5")), Ok(Typed::Decimal(12_500_000_000)));
        assert_eq!(Decimal.cast(Some("-0.000000001")), Ok(Typed::Decimal(-1)));
        assert_eq!(Decimal.cast(Some("0.0000000001")), Err(DoesNotCast));
        assert_eq!(Decimal.cast(Some("1.2.3")), Err(DoesNotCast));
        assert_eq!(canonical(Float64, Some("n/a")).as_deref(), Some("uncast:n/a"));
        assert_eq!(canonical(Float64, Some("3")).as_deref(), Some("3.0"));
        assert_eq!(Int64.cast(Some(" 4001 ")), Ok(Typed::Int64(4001)));
        assert_eq!(Int64.cast(Some("40.5")), Err(DoesNotCast));
    }
}
