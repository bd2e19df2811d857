//! Casting mapped values to contract types. Text is parsed with [`crate::parse`] (so `1,234.50`
//! becomes a decimal and `2/5/24 1:51` a timestamp in the source's zone); other types go
//! through Arrow's cast. Every value that was present but could not be cast is reported by row.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder, Int64Builder, ListBuilder,
    MapBuilder, MapFieldNames, StringArray, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::compute::{CastOptions, cast, cast_with_options};
use arrow::datatypes::{DataType, Field};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono_tz::Tz;
use opslake_schema::ColumnType;
use opslake_schema::types::TIMESTAMP_TZ;

use crate::parse::{self, DateOrder, NumberFormat, ParseError};

/// A value that could not be cast: its row, the value as text, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CastFailure {
    /// Row within the batch.
    pub row: usize,
    /// The value as it was.
    pub raw: String,
    /// Why it could not be cast.
    pub reason: String,
}

/// How naive text is read.
#[derive(Debug, Clone, Copy)]
pub struct TextRules {
    /// Zone of naive timestamps.
    pub tz: Tz,
    /// Order of numeric dates.
    pub order: DateOrder,
    /// How numbers are written.
    pub numbers: NumberFormat,
}

/// Casts `array` to the Arrow type of `ty`; failed values become null and are returned.
pub fn coerce(
    array: &ArrayRef,
    ty: ColumnType,
    rules: TextRules,
) -> Result<(ArrayRef, Vec<CastFailure>), arrow::error::ArrowError> {
    let target = ty.arrow();
    if array.data_type() == &target {
        return Ok((Arc::clone(array), Vec::new()));
    }
    if matches!(array.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
        let text = cast(array, &DataType::Utf8)?;
        let text = text.as_any().downcast_ref::<StringArray>().expect("Utf8");
        return Ok(parse_text(text, ty, rules));
    }
    if array.data_type() == &DataType::Null {
        return Ok((arrow::array::new_null_array(&target, array.len()), Vec::new()));
    }
    let options = CastOptions { safe: true, format_options: FormatOptions::default() };
    let out = match (array.data_type(), ty) {
        // Floats to decimals through their shortest text, so 0.1 stays 0.1.
        (DataType::Float32 | DataType::Float64, ColumnType::Decimal { .. }) => {
            let text = cast(array, &DataType::Utf8)?;
            let text = text.as_any().downcast_ref::<StringArray>().expect("Utf8");
            return Ok(parse_text(text, ty, rules));
        }
        _ => cast_with_options(array, &target, &options)?,
    };
    let formatter = ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default())?;
    let failures = (0..array.len())
        .filter(|&i| array.is_valid(i) && out.is_null(i))
        .map(|i| CastFailure { row: i, raw: formatter.value(i).to_string(), reason: format!("cannot cast to {ty}") })
        .collect();
    Ok((out, failures))
}

fn parse_text(text: &StringArray, ty: ColumnType, rules: TextRules) -> (ArrayRef, Vec<CastFailure>) {
    let n = text.len();
    let mut failures = Vec::new();
    let mut fail =
        |i: usize, e: ParseError| failures.push(CastFailure { row: i, raw: text.value(i).to_string(), reason: e.0 });
    macro_rules! each {
        ($builder:expr, $parse:expr) => {{
            let mut b = $builder;
            for i in 0..n {
                if text.is_null(i) {
                    b.append_null();
                    continue;
                }
                match $parse(text.value(i)) {
                    Ok(v) => b.append_option(v),
                    Err(e) => {
                        fail(i, e);
                        b.append_null();
                    }
                }
            }
            b.finish()
        }};
    }
    let array: ArrayRef = match ty {
        ColumnType::String => Arc::new(text.clone()),
        ColumnType::Int64 => Arc::new(each!(Int64Builder::with_capacity(n), |s| parse::parse_int_in(s, rules.numbers))),
        ColumnType::Float64 => {
            Arc::new(each!(Float64Builder::with_capacity(n), |s| parse::parse_float_in(s, rules.numbers)))
        }
        ColumnType::Bool => Arc::new(each!(BooleanBuilder::with_capacity(n), parse::parse_bool)),
        ColumnType::Decimal { precision, scale } => {
            let limit = 10i128.pow(u32::from(precision));
            let parsed = each!(Decimal128Builder::with_capacity(n), |s: &str| match parse::parse_decimal_in(
                s,
                scale,
                rules.numbers
            ) {
                Ok(Some(v)) if v.abs() >= limit => Err(ParseError(format!("'{s}' has more than {precision} digits"))),
                other => other,
            });
            Arc::new(
                parsed
                    .with_precision_and_scale(precision, scale)
                    .expect("precision and scale come from a validated contract"),
            )
        }
        ColumnType::Date => Arc::new(each!(Date32Builder::with_capacity(n), |s| parse::parse_date(s, rules.order)
            .map(|d| d.map(parse::days_from_date)))),
        ColumnType::Timestamp => {
            Arc::new(each!(TimestampMicrosecondBuilder::with_capacity(n).with_timezone(TIMESTAMP_TZ), |s| {
                parse::parse_timestamp(s, rules.tz, rules.order)
            }))
        }
        ColumnType::ListString => {
            let mut b = list_builder(n);
            for i in 0..n {
                if text.is_null(i) {
                    b.append_null();
                    continue;
                }
                match parse_list(text.value(i)) {
                    Ok(items) => {
                        items.iter().for_each(|s| b.values().append_value(s));
                        b.append(true);
                    }
                    Err(e) => {
                        fail(i, e);
                        b.append_null();
                    }
                }
            }
            Arc::new(b.finish())
        }
        ColumnType::MapStringString => {
            let mut b = map_builder(n);
            for i in 0..n {
                if text.is_null(i) {
                    b.append(false).expect("map entries balanced");
                    continue;
                }
                match parse_map(text.value(i)) {
                    Ok(pairs) => {
                        for (k, v) in pairs {
                            b.keys().append_value(k);
                            b.values().append_option(v);
                        }
                        b.append(true).expect("map entries balanced");
                    }
                    Err(e) => {
                        fail(i, e);
                        b.append(false).expect("map entries balanced");
                    }
                }
            }
            Arc::new(b.finish())
        }
    };
    (array, failures)
}

/// A builder for `list<string>` with the contract's field names.
pub fn list_builder(capacity: usize) -> ListBuilder<StringBuilder> {
    ListBuilder::with_capacity(StringBuilder::new(), capacity).with_field(Arc::new(Field::new(
        "element",
        DataType::Utf8,
        true,
    )))
}

/// A builder for `map<string,string>` with the contract's field names.
pub fn map_builder(capacity: usize) -> MapBuilder<StringBuilder, StringBuilder> {
    let names = MapFieldNames { entry: "key_value".into(), key: "key".into(), value: "value".into() };
    MapBuilder::with_capacity(Some(names), StringBuilder::new(), StringBuilder::new(), capacity)
        .with_values_field(Arc::new(Field::new("value", DataType::Utf8, true)))
}

/// A JSON array of strings or scalars, or a comma- or semicolon-separated list.
fn parse_list(s: &str) -> Result<Vec<String>, ParseError> {
    let t = s.trim();
    if t.starts_with('[') {
        let v: serde_json::Value =
            serde_json::from_str(t).map_err(|e| ParseError(format!("cannot read '{s}' as a list: {e}")))?;
        let items = v.as_array().ok_or_else(|| ParseError(format!("cannot read '{s}' as a list")))?;
        return Ok(items.iter().map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string)).collect());
    }
    let sep = if t.contains(';') { ';' } else { ',' };
    Ok(t.split(sep).map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect())
}

/// A JSON object; values that are not strings are kept as JSON text.
fn parse_map(s: &str) -> Result<Vec<(String, Option<String>)>, ParseError> {
    let v: serde_json::Value =
        serde_json::from_str(s).map_err(|e| ParseError(format!("cannot read '{s}' as a map: {e}")))?;
    let obj = v.as_object().ok_or_else(|| ParseError(format!("cannot read '{s}' as a map: not a JSON object")))?;
    Ok(obj
        .iter()
        .map(|(k, v)| {
            let value = match v {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            };
            (k.clone(), value)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    fn rules() -> TextRules {
        TextRules { tz: Tz::UTC, order: DateOrder::Mdy, numbers: NumberFormat::default() }
    }

    #[test]
    fn text_is_parsed_and_failures_reported_by_row() {
        let input: ArrayRef = Arc::new(StringArray::from(vec![Some("1,234.50"), None, Some("abc")]));
        let (out, failures) = coerce(&input, ColumnType::Decimal { precision: 38, scale: 6 }, rules()).expect("casts");
        assert_eq!(out.data_type(), &DataType::Decimal128(38, 6));
        assert_eq!(out.null_count(), 2);
        assert_eq!(
            failures,
            [CastFailure { row: 2, raw: "abc".into(), reason: "cannot read 'abc' as a number".into() }]
        );
    }

    #[test]
    fn numbers_cast_and_floats_keep_their_decimal_text() {
        let input: ArrayRef = Arc::new(arrow::array::Float64Array::from(vec![0.1, 2.5]));
        let (out, failures) = coerce(&input, ColumnType::Decimal { precision: 38, scale: 6 }, rules()).expect("casts");
        assert!(failures.is_empty());
        let d = out.as_any().downcast_ref::<arrow::array::Decimal128Array>().expect("decimal");
        assert_eq!(d.value(0), 100_000);
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
        let (out, _) = coerce(&ints, ColumnType::String, rules()).expect("casts");
        assert_eq!(out.data_type(), &DataType::Utf8);
    }

    #[test]
    fn lists_and_maps_match_the_contract_types() {
        let input: ArrayRef = Arc::new(StringArray::from(vec![Some(r#"["a","b"]"#), Some("x; y")]));
        let (out, failures) = coerce(&input, ColumnType::ListString, rules()).expect("casts");
        assert!(failures.is_empty());
        assert_eq!(out.data_type(), &ColumnType::ListString.arrow());
        let input: ArrayRef =
            Arc::new(StringArray::from(vec![Some(r#"{"Applied":"2024-01-01T00:00:00Z"}"#), Some("[1]")]));
        let (out, failures) = coerce(&input, ColumnType::MapStringString, rules()).expect("casts");
        assert_eq!(out.data_type(), &ColumnType::MapStringString.arrow());
        assert_eq!(failures.len(), 1);
    }
}
