//! The column types a canonical contract may declare, and their Arrow types.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, TimeUnit};

/// Time zone of every canonical instant: sources' local times are converted at ingest.
pub const TIMESTAMP_TZ: &str = "UTC";

/// A column type in the contract's spelling (`decimal(38,6)`, `map<string,string>`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// UTF-8 text.
    String,
    /// 64-bit signed integer.
    Int64,
    /// 64-bit float; for ratios only, never money.
    Float64,
    /// Exact decimal; money is always a decimal.
    Decimal {
        /// Total digits, 1 to 38.
        precision: u8,
        /// Digits after the point, 0 to precision.
        scale: i8,
    },
    /// true or false.
    Bool,
    /// A calendar day without time zone.
    Date,
    /// An instant, microseconds, UTC.
    Timestamp,
    /// Text keys to text values (custom fields).
    MapStringString,
    /// A list of texts.
    ListString,
}

impl ColumnType {
    /// The Arrow type the lake stores this column as.
    pub fn arrow(&self) -> DataType {
        match *self {
            Self::String => DataType::Utf8,
            Self::Int64 => DataType::Int64,
            Self::Float64 => DataType::Float64,
            Self::Decimal { precision, scale } => DataType::Decimal128(precision, scale),
            Self::Bool => DataType::Boolean,
            Self::Date => DataType::Date32,
            Self::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some(TIMESTAMP_TZ.into())),
            // Entry and child names follow the Parquet/Delta conventions (key_value, element)
            // so Spark, DuckDB and delta-rs read the same schema back.
            Self::MapStringString => DataType::Map(
                Arc::new(Field::new(
                    "key_value",
                    DataType::Struct(Fields::from(vec![
                        Field::new("key", DataType::Utf8, false),
                        Field::new("value", DataType::Utf8, true),
                    ])),
                    false,
                )),
                false,
            ),
            Self::ListString => DataType::List(Arc::new(Field::new("element", DataType::Utf8, true))),
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::String => f.write_str("string"),
            Self::Int64 => f.write_str("int64"),
            Self::Float64 => f.write_str("float64"),
            Self::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            Self::Bool => f.write_str("bool"),
            Self::Date => f.write_str("date"),
            Self::Timestamp => f.write_str("timestamp"),
            Self::MapStringString => f.write_str("map<string,string>"),
            Self::ListString => f.write_str("list<string>"),
        }
    }
}

const KNOWN: &str = "string, int64, float64, decimal(p,s), bool, date, timestamp, map<string,string>, list<string>";

impl FromStr for ColumnType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase();
        let ty = match compact.as_str() {
            "string" => Self::String,
            "int64" => Self::Int64,
            "float64" => Self::Float64,
            "bool" => Self::Bool,
            "date" => Self::Date,
            "timestamp" => Self::Timestamp,
            "map<string,string>" => Self::MapStringString,
            "list<string>" => Self::ListString,
            other => {
                let args = other
                    .strip_prefix("decimal(")
                    .and_then(|rest| rest.strip_suffix(')'))
                    .ok_or_else(|| format!("unknown type '{s}'; known types: {KNOWN}"))?;
                let (p, sc) =
                    args.split_once(',').ok_or_else(|| format!("type '{s}': write decimal(precision,scale)"))?;
                let precision: u8 = p.parse().map_err(|_| format!("type '{s}': precision '{p}' is not a number"))?;
                let scale: u8 = sc.parse().map_err(|_| format!("type '{s}': scale '{sc}' is not a number"))?;
                if !(1..=38).contains(&precision) {
                    return Err(format!("type '{s}': precision must be 1 to 38"));
                }
                if scale > precision {
                    return Err(format!("type '{s}': scale must not exceed precision"));
                }
                Self::Decimal { precision, scale: scale as i8 }
            }
        };
        Ok(ty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_spelling() {
        for s in [
            "string",
            "int64",
            "float64",
            "decimal(38,6)",
            "bool",
            "date",
            "timestamp",
            "map<string,string>",
            "list<string>",
        ] {
            let ty: ColumnType = s.parse().expect(s);
            assert_eq!(ty.to_string(), s);
        }
        assert_eq!("Decimal( 18 , 2 )".parse::<ColumnType>(), Ok(ColumnType::Decimal { precision: 18, scale: 2 }));
    }

    #[test]
    fn rejects_unknown_and_out_of_range() {
        assert!("varchar".parse::<ColumnType>().unwrap_err().contains("unknown type 'varchar'"));
        assert!("decimal(39,2)".parse::<ColumnType>().unwrap_err().contains("precision must be 1 to 38"));
        assert!("decimal(4,5)".parse::<ColumnType>().unwrap_err().contains("scale must not exceed"));
        assert!("decimal(4)".parse::<ColumnType>().is_err());
    }

    #[test]
    fn instants_are_utc_microseconds() {
        assert_eq!(ColumnType::Timestamp.arrow(), DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())));
    }
}
