//! DataFusion functions the mappings call, backed by [`crate::parse`]. Ingest and models share
//! them. Each returns null for a null marker and for a value it cannot read; the mapping engine
//! notices a lost value and records it (see [`crate::mapping`]).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Int64Builder, StringArray, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit};
use chrono_tz::Tz;
use datafusion::common::{Result as DfResult, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, create_udf,
};
use opslake_schema::types::TIMESTAMP_TZ;

use crate::parse::{self, DateOrder, NumberFormat};

/// Scale of `parse_decimal`: money in the contract is decimal(38,6).
pub const DECIMAL_SCALE: i8 = 6;

/// What a parsing function produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Decimal,
    Int,
    Bool,
    Date,
    Timestamp,
    Email,
    EmailDomain,
    UrlDomain,
}

/// A function of one text argument (and, for `parse_timestamp`, an optional time zone).
#[derive(Debug, PartialEq, Eq, Hash)]
struct ParseUdf {
    name: &'static str,
    kind: Kind,
    signature: Signature,
    /// Time zone of naive timestamps: the source's declared zone.
    tz: String,
    order: DateOrderKey,
    numbers: NumberFormat,
}

/// `DateOrder` with the traits DataFusion requires of a UDF's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct DateOrderKey(bool);

impl DateOrderKey {
    fn get(self) -> DateOrder {
        if self.0 { DateOrder::Dmy } else { DateOrder::Mdy }
    }
}

impl ScalarUDFImpl for ParseUdf {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(match self.kind {
            Kind::Decimal => DataType::Decimal128(38, DECIMAL_SCALE),
            Kind::Int => DataType::Int64,
            Kind::Bool => DataType::Boolean,
            Kind::Date => DataType::Date32,
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some(TIMESTAMP_TZ.into())),
            Kind::Email | Kind::EmailDomain | Kind::UrlDomain => DataType::Utf8,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let Some(first) = arrays.first() else { return exec_err!("{}() takes one argument", self.name) };
        let input = cast(first, &DataType::Utf8)?;
        let input = input.as_any().downcast_ref::<StringArray>().expect("cast to Utf8 gives a StringArray");
        let tz: Tz = match arrays.get(1) {
            Some(a) if self.kind == Kind::Timestamp => {
                let a = cast(a, &DataType::Utf8)?;
                let a = a.as_any().downcast_ref::<StringArray>().expect("Utf8");
                let name = if a.is_empty() || a.is_null(0) { self.tz.as_str() } else { a.value(0) };
                match name.parse() {
                    Ok(tz) => tz,
                    Err(_) => return exec_err!("parse_timestamp: '{name}' is not an IANA time zone"),
                }
            }
            Some(_) => return exec_err!("{}() takes one argument", self.name),
            None => self.tz.parse().unwrap_or(Tz::UTC),
        };
        let order = self.order.get();
        let value = |i: usize| (!input.is_null(i)).then(|| input.value(i));
        let out: ArrayRef = match self.kind {
            Kind::Decimal => {
                let mut b = Decimal128Builder::with_capacity(n);
                (0..n).for_each(|i| {
                    b.append_option(
                        value(i).and_then(|s| parse::parse_decimal_in(s, DECIMAL_SCALE, self.numbers).ok().flatten()),
                    )
                });
                Arc::new(b.finish().with_precision_and_scale(38, DECIMAL_SCALE)?)
            }
            Kind::Int => {
                let mut b = Int64Builder::with_capacity(n);
                (0..n).for_each(|i| {
                    b.append_option(value(i).and_then(|s| parse::parse_int_in(s, self.numbers).ok().flatten()))
                });
                Arc::new(b.finish())
            }
            Kind::Bool => {
                let mut b = BooleanBuilder::with_capacity(n);
                (0..n).for_each(|i| b.append_option(value(i).and_then(|s| parse::parse_bool(s).ok().flatten())));
                Arc::new(b.finish())
            }
            Kind::Date => {
                let mut b = Date32Builder::with_capacity(n);
                (0..n).for_each(|i| {
                    b.append_option(
                        value(i).and_then(|s| parse::parse_date(s, order).ok().flatten()).map(parse::days_from_date),
                    );
                });
                Arc::new(b.finish())
            }
            Kind::Timestamp => {
                let mut b = TimestampMicrosecondBuilder::with_capacity(n).with_timezone(TIMESTAMP_TZ);
                (0..n).for_each(|i| {
                    b.append_option(value(i).and_then(|s| parse::parse_timestamp(s, tz, order).ok().flatten()))
                });
                Arc::new(b.finish())
            }
            Kind::Email | Kind::EmailDomain | Kind::UrlDomain => {
                let f = match self.kind {
                    Kind::Email => parse::normalize_email,
                    Kind::EmailDomain => parse::email_domain,
                    _ => parse::url_domain,
                };
                let mut b = StringBuilder::with_capacity(n, n * 16);
                (0..n).for_each(|i| b.append_option(value(i).and_then(|s| f(s).ok().flatten())));
                Arc::new(b.finish())
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// `key(id)`: the stable key a record with source id `id` has in this connection; the same
/// hash as the `<entity>_key` of the referenced table, so references join on one column.
#[derive(Debug, PartialEq, Eq, Hash)]
struct KeyUdf {
    signature: Signature,
    system: String,
    connection: String,
}

impl ScalarUDFImpl for KeyUdf {
    fn name(&self) -> &str {
        "key"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [id] = arrays.as_slice() else { return exec_err!("key() takes one argument: the referenced source id") };
        Ok(ColumnarValue::Array(entity_keys(&self.system, &self.connection, id)?))
    }
}

/// `stripe_amount(amount, currency)`: a Stripe API amount in minor units as decimal(38,6) in
/// major units, by the currency's minor unit (see [`parse::stripe_minor_digits`]).
#[derive(Debug, PartialEq, Eq, Hash)]
struct StripeAmountUdf {
    signature: Signature,
}

impl ScalarUDFImpl for StripeAmountUdf {
    fn name(&self) -> &str {
        "stripe_amount"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Decimal128(38, DECIMAL_SCALE))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [amount, currency] = arrays.as_slice() else {
            return exec_err!("stripe_amount() takes two arguments: the amount in minor units and its currency");
        };
        let (amount, currency) = (cast(amount, &DataType::Utf8)?, cast(currency, &DataType::Utf8)?);
        let amount = amount.as_any().downcast_ref::<StringArray>().expect("Utf8");
        let currency = currency.as_any().downcast_ref::<StringArray>().expect("Utf8");
        let mut b = Decimal128Builder::with_capacity(amount.len());
        for i in 0..amount.len() {
            let unit = if currency.is_null(i) { "" } else { currency.value(i) };
            let value = (!amount.is_null(i))
                .then(|| parse::parse_minor_units(amount.value(i), unit, DECIMAL_SCALE).ok().flatten())
                .flatten();
            b.append_option(value);
        }
        Ok(ColumnarValue::Array(Arc::new(b.finish().with_precision_and_scale(38, DECIMAL_SCALE)?)))
    }
}

/// A setting of the connection as a function of no arguments: `home_currency()` (null when
/// none is known), for records that leave their currency out because it is the account's own;
/// `source_timezone()`, the zone the connection reports days and naive times in.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SettingUdf {
    name: &'static str,
    signature: Signature,
    value: Option<String>,
}

impl ScalarUDFImpl for SettingUdf {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let value: ArrayRef = Arc::new(StringArray::from(vec![self.value.as_deref(); args.number_rows]));
        Ok(ColumnarValue::Array(value))
    }
}

/// A function of two texts giving a text, `f` applied row by row (null in, null out).
fn text_pair_udf(name: &'static str, f: fn(&str, &str) -> Option<String>) -> ScalarUDF {
    let body = move |args: &[ColumnarValue]| -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(args)?;
        let [a, b] = arrays.as_slice() else { return exec_err!("{name}() takes two arguments") };
        let a = a.as_any().downcast_ref::<StringArray>().expect("coerced to Utf8");
        let b = b.as_any().downcast_ref::<StringArray>().expect("coerced to Utf8");
        let out: StringArray = (0..a.len())
            .map(|i| (a.is_valid(i) && b.is_valid(i)).then(|| f(a.value(i), b.value(i))).flatten())
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    };
    create_udf(name, vec![DataType::Utf8, DataType::Utf8], DataType::Utf8, Volatility::Immutable, Arc::new(body))
}

/// Stable keys for every id in `ids` (null stays null).
pub fn entity_keys(system: &str, connection: &str, ids: &ArrayRef) -> DfResult<ArrayRef> {
    let ids = cast(ids, &DataType::Utf8)?;
    let ids = ids.as_any().downcast_ref::<StringArray>().expect("Utf8");
    let mut b = StringBuilder::with_capacity(ids.len(), ids.len() * 32);
    for i in 0..ids.len() {
        if ids.is_null(i) {
            b.append_null();
        } else {
            b.append_value(parse::stable_key([system, connection, ids.value(i)]));
        }
    }
    Ok(Arc::new(b.finish()))
}

/// Where the functions are used: the source's time zone and date order, and the connection
/// whose keys `key()` computes.
#[derive(Debug, Clone)]
pub struct UdfContext {
    /// IANA zone of naive timestamps.
    pub timezone: String,
    /// Day order of numeric dates.
    pub date_order: DateOrder,
    /// How numbers are written.
    pub numbers: NumberFormat,
    /// Tool name (source_system).
    pub system: String,
    /// Connection name (source_connection).
    pub connection: String,
    /// The account's home currency, when the connection declares one (or the project's
    /// reporting currency): `home_currency()`.
    pub home_currency: Option<String>,
}

/// Every opslake function, bound to `ctx`.
pub fn all(ctx: &UdfContext) -> Vec<ScalarUDF> {
    let order = DateOrderKey(ctx.date_order == DateOrder::Dmy);
    let parse = |name: &'static str, kind: Kind| {
        ScalarUDF::from(ParseUdf {
            name,
            kind,
            signature: Signature::variadic_any(Volatility::Immutable),
            tz: ctx.timezone.clone(),
            order,
            numbers: ctx.numbers,
        })
    };
    vec![
        parse("parse_decimal", Kind::Decimal),
        parse("parse_int", Kind::Int),
        parse("parse_bool", Kind::Bool),
        parse("parse_date", Kind::Date),
        parse("parse_timestamp", Kind::Timestamp),
        parse("normalize_email", Kind::Email),
        parse("email_domain", Kind::EmailDomain),
        parse("url_domain", Kind::UrlDomain),
        ScalarUDF::from(StripeAmountUdf { signature: Signature::any(2, Volatility::Immutable) }),
        // url_param(url, name): a query parameter of a URL, decoded; null when the URL has none.
        text_pair_udf("url_param", parse::url_param),
        // json_path(json, path): one value out of a JSON text by keys, positions from 0 and
        // [key=value] selectors; null when absent. The column still goes whole to custom_fields.
        text_pair_udf("json_path", parse::json_path),
        ScalarUDF::from(SettingUdf {
            name: "home_currency",
            signature: Signature::nullary(Volatility::Immutable),
            value: ctx.home_currency.clone(),
        }),
        ScalarUDF::from(SettingUdf {
            name: "source_timezone",
            signature: Signature::nullary(Volatility::Immutable),
            value: Some(ctx.timezone.clone()),
        }),
        ScalarUDF::from(KeyUdf {
            signature: Signature::variadic_any(Volatility::Immutable),
            system: ctx.system.clone(),
            connection: ctx.connection.clone(),
        }),
    ]
}

/// Installs every opslake function in `session`: the scalar functions of [`all`], bound to
/// `ctx`, and the aggregates `max_by` and `min_by`. Every session opslake gives SQL to, the
/// mapping's, the models' and the one `query` and `serve` answer with, gets them from here.
pub fn register(session: &datafusion::prelude::SessionContext, ctx: &UdfContext) {
    for f in all(ctx) {
        session.register_udf(f);
    }
    session.register_udaf(crate::max_by::max_by());
    session.register_udaf(crate::max_by::min_by());
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn eval(sql: &str) -> String {
        let ctx = SessionContext::new();
        let udfs = UdfContext {
            timezone: "America/New_York".into(),
            date_order: DateOrder::Mdy,
            numbers: NumberFormat::default(),
            system: "salesforce".into(),
            connection: "sf".into(),
            home_currency: Some("CAD".into()),
        };
        for f in all(&udfs) {
            ctx.register_udf(f);
        }
        let batches = ctx.sql(&format!("select {sql} as v")).await.expect("plans").collect().await.expect("runs");
        let col = cast(batches[0].column(0), &DataType::Utf8).expect("to text");
        let col = col.as_any().downcast_ref::<StringArray>().expect("Utf8");
        if col.is_null(0) { "NULL".into() } else { col.value(0).to_string() }
    }

    #[tokio::test]
    async fn functions_parse_real_quirks_in_sql() {
        assert_eq!(eval("parse_decimal('11.00 USD')").await, "11.000000");
        assert_eq!(eval("parse_decimal('1,234.50')").await, "1234.500000");
        assert_eq!(eval("parse_int('1.0')").await, "1");
        assert_eq!(eval("parse_bool('Yes')").await, "true");
        assert_eq!(eval("parse_date('0000-00-00')").await, "NULL");
        assert_eq!(eval("parse_date('45296')").await, "2024-01-05");
        assert_eq!(eval("parse_timestamp('2024-01-05 09:00:00')").await, "2024-01-05T14:00:00Z");
        assert_eq!(eval("parse_timestamp('2024-01-05 09:00:00', 'UTC')").await, "2024-01-05T09:00:00Z");
        assert_eq!(eval("parse_timestamp('/Date(1439434356790+0000)/')").await, "2015-08-13T02:52:36.790Z");
        assert_eq!(eval("normalize_email(' Amy@Demo.NET ')").await, "amy@demo.net");
        assert_eq!(eval("email_domain('amy@Demo.net')").await, "demo.net");
        assert_eq!(eval("url_domain('https://www.acme.com/x')").await, "acme.com");
        assert_eq!(eval("key('001')").await, parse::stable_key(["salesforce", "sf", "001"]));
        assert_eq!(eval("key(NULL)").await, "NULL");
        assert_eq!(eval("parse_decimal('n/a')").await, "NULL");
        assert_eq!(eval("stripe_amount('123450', 'usd')").await, "1234.500000");
        assert_eq!(eval("stripe_amount(5000, 'jpy')").await, "5000.000000");
        assert_eq!(eval("stripe_amount('100', 'not a currency')").await, "NULL");
        assert_eq!(eval("coalesce(NULL, home_currency())").await, "CAD");
        assert_eq!(eval("source_timezone()").await, "America/New_York");
        let landing = "'https://acme.com/demo?utm_source=google&utm_campaign=spring%20sale&utm_term=+tow+truck#top'";
        assert_eq!(eval(&format!("url_param({landing}, 'utm_campaign')")).await, "spring sale");
        assert_eq!(eval(&format!("url_param({landing}, 'utm_term')")).await, "tow truck");
        assert_eq!(eval(&format!("url_param({landing}, 'utm_medium')")).await, "NULL");
        assert_eq!(eval("url_param('{lpurl}?utm_campaign={campaignid}', 'utm_campaign')").await, "{campaignid}");
        let emails = r#"'[{"type":"personal","value":"a@b.example"},{"type":"work","value":"c@d.example"}]'"#;
        assert_eq!(eval(&format!("json_path({emails}, '1.value')")).await, "c@d.example");
        assert_eq!(eval(&format!("json_path({emails}, '2.value')")).await, "NULL");
        assert_eq!(eval(r#"json_path('{"a":{"n":4.25,"ok":true}}', 'a.n')"#).await, "4.25");
        assert_eq!(eval(r#"json_path('{"a":{"n":4.5,"ok":true}}', 'a')"#).await, r#"{"n":4.5,"ok":true}"#);
        assert_eq!(eval("json_path('not json', '0')").await, "NULL");
        let fields = r##"'[{"@id":"date","#text":"2010-06-01"},{"@id":"jobTitle","#text":"Machinist"}]'"##;
        assert_eq!(eval(&format!("json_path({fields}, '[@id=jobTitle].#text')")).await, "Machinist");
        assert_eq!(eval(&format!("json_path({fields}, '[@id=salary].#text')")).await, "NULL");
    }
}
