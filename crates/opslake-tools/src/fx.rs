//! Currency conversion: `fx_convert(amount, from, to, date)` over the rates of `ref.fx_rates`.
//!
//! A rate is looked up on or before the date (the latest published rate, as ECB's weekends
//! and holidays need): a direct rate first, then the inverse of the opposite pair, then a
//! cross rate through a currency both sides have rates with (EUR for ECB's table). A missing
//! rate gives null and is recorded with its pair and date: never a silent 1.0.
//!
//! All arithmetic is exact decimal: amounts at scale 6, rates at scale 12, products rounded
//! half away from zero.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, Decimal128Builder, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use datafusion::common::{Result as DfResult, exec_err};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};

use crate::udf::DECIMAL_SCALE;

/// Scale of rates (ref.fx_rates.rate is decimal(38,12)).
pub const RATE_SCALE: u32 = 12;
const RATE_ONE: i128 = 10i128.pow(RATE_SCALE);

/// Rates by pair, each sorted by day (days since the epoch).
#[derive(Debug, Default, Clone)]
pub struct FxRates {
    /// From currency, then to currency: looked up by `&str` for every row, without building a
    /// key.
    pairs: BTreeMap<String, BTreeMap<String, Vec<(i32, i128)>>>,
    /// Every currency of a pair: the candidates for a cross rate, kept here so that a
    /// conversion does not gather them again for each row.
    currencies: BTreeSet<String>,
}

/// A conversion that found no rate: the pair and the day asked for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MissingRate {
    /// Currency converted from.
    pub from: String,
    /// Currency converted to.
    pub to: String,
    /// Day (days since the epoch) of the amount.
    pub day: i32,
}

impl std::fmt::Display for MissingRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let date = chrono::DateTime::from_timestamp(i64::from(self.day) * 86_400, 0)
            .map_or_else(|| self.day.to_string(), |d| d.date_naive().to_string());
        write!(f, "no {}→{} rate on or before {date}", self.from, self.to)
    }
}

impl FxRates {
    /// Adds one rate: `rate` (scale 12) units of `to` for one `from`, on `day`.
    pub fn insert(&mut self, day: i32, from: &str, to: &str, rate: i128) {
        if rate <= 0 {
            return;
        }
        let (from, to) = (code(from).into_owned(), code(to).into_owned());
        self.currencies.insert(from.clone());
        self.currencies.insert(to.clone());
        let v = self.pairs.entry(from).or_default().entry(to).or_default();
        match v.binary_search_by_key(&day, |(d, _)| *d) {
            Ok(i) => v[i].1 = rate,
            Err(i) => v.insert(i, (day, rate)),
        }
    }

    fn direct(&self, from: &str, to: &str, day: i32) -> Option<i128> {
        let v = self.pairs.get(from)?.get(to)?;
        let i = v.partition_point(|(d, _)| *d <= day);
        (i > 0).then(|| v[i - 1].1)
    }

    fn one_step(&self, from: &str, to: &str, day: i32) -> Option<i128> {
        if from == to {
            return Some(RATE_ONE);
        }
        self.direct(from, to, day)
            .or_else(|| self.direct(to, from, day).and_then(|r| div_round(RATE_ONE * RATE_ONE, r)))
    }

    /// Units of `to` for one `from` on `day` (scale 12), or `None` when no rate reaches.
    pub fn rate(&self, from: &str, to: &str, day: i32) -> Option<i128> {
        self.rate_of_codes(&code(from), &code(to), day)
    }

    /// [`Self::rate`] for codes already trimmed and upper-cased.
    fn rate_of_codes(&self, from: &str, to: &str, day: i32) -> Option<i128> {
        if let Some(r) = self.one_step(from, to, day) {
            return Some(r);
        }
        // Cross through a currency that quotes both (ECB: every rate is per euro).
        self.currencies.iter().find_map(|base| {
            let a = self.one_step(from, base, day)?;
            let b = self.one_step(base, to, day)?;
            div_round(a.checked_mul(b)?, RATE_ONE)
        })
    }

    /// `amount` (scale 6) in `to`, or the missing rate.
    pub fn convert(&self, amount: i128, from: &str, to: &str, day: i32) -> Result<Option<i128>, MissingRate> {
        let (from, to) = (code(from), code(to));
        match self.rate_of_codes(&from, &to, day) {
            Some(rate) => Ok(amount.checked_mul(rate).and_then(|p| div_round(p, RATE_ONE))),
            None => Err(MissingRate { from: from.into_owned(), to: to.into_owned(), day }),
        }
    }
}

/// A currency code as rates are keyed: trimmed, upper case. Borrowed when it already is, as
/// canonical currencies are: a conversion runs for every row of a model.
fn code(currency: &str) -> Cow<'_, str> {
    let trimmed = currency.trim();
    if trimmed.bytes().any(|b| b.is_ascii_lowercase()) {
        Cow::Owned(trimmed.to_ascii_uppercase())
    } else {
        Cow::Borrowed(trimmed)
    }
}

/// `n / d` rounded half away from zero.
fn div_round(n: i128, d: i128) -> Option<i128> {
    if d == 0 {
        return None;
    }
    let q = n / d;
    let r = n % d;
    Some(if r.abs().checked_mul(2)? >= d.abs() { q + n.signum() * d.signum() } else { q })
}

/// Conversions that found no rate, collected while a query runs, for the caller to report.
pub type MissingRates = Arc<Mutex<BTreeSet<MissingRate>>>;

/// The `fx_convert(amount, from, to, date)` function over `rates`; misses go to `missing`.
pub fn fx_convert_udf(rates: Arc<FxRates>, missing: MissingRates) -> ScalarUDF {
    ScalarUDF::from(FxConvert { rates, missing, signature: Signature::any(4, Volatility::Immutable) })
}

#[derive(Debug)]
struct FxConvert {
    rates: Arc<FxRates>,
    missing: MissingRates,
    signature: Signature,
}

impl PartialEq for FxConvert {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.rates, &other.rates)
    }
}

impl Eq for FxConvert {}

impl std::hash::Hash for FxConvert {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.rates).hash(state);
    }
}

impl ScalarUDFImpl for FxConvert {
    fn name(&self) -> &str {
        "fx_convert"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Decimal128(38, DECIMAL_SCALE))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [amount, from, to, date] = arrays.as_slice() else {
            return exec_err!("fx_convert() takes four arguments: amount, from currency, to currency, date");
        };
        let amount = cast(amount, &DataType::Decimal128(38, DECIMAL_SCALE))?;
        let amount = amount.as_any().downcast_ref::<arrow::array::Decimal128Array>().expect("decimal");
        let (from, to) = (cast(from, &DataType::Utf8)?, cast(to, &DataType::Utf8)?);
        let from = from.as_any().downcast_ref::<StringArray>().expect("Utf8");
        let to = to.as_any().downcast_ref::<StringArray>().expect("Utf8");
        let date = cast(date, &DataType::Date32)?;
        let date = date.as_any().downcast_ref::<arrow::array::Date32Array>().expect("date");
        let mut out = Decimal128Builder::with_capacity(amount.len());
        let mut misses = Vec::new();
        for i in 0..amount.len() {
            if amount.is_null(i) || from.is_null(i) || to.is_null(i) || date.is_null(i) {
                out.append_null();
                continue;
            }
            match self.rates.convert(amount.value(i), from.value(i), to.value(i), date.value(i)) {
                Ok(v) => out.append_option(v),
                Err(miss) => {
                    misses.push(miss);
                    out.append_null();
                }
            }
        }
        if !misses.is_empty() {
            let mut m = self.missing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            m.extend(misses);
        }
        let out: ArrayRef = Arc::new(out.finish().with_precision_and_scale(38, DECIMAL_SCALE)?);
        Ok(ColumnarValue::Array(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> i32 {
        let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
        crate::parse::days_from_date(d)
    }

    fn r(s: &str) -> i128 {
        crate::parse::parse_decimal(s, 12).expect("rate").expect("rate")
    }

    /// ECB style: everything per euro, published on weekdays.
    fn ecb() -> FxRates {
        let mut fx = FxRates::default();
        fx.insert(day("2024-01-04"), "EUR", "USD", r("1.0944"));
        fx.insert(day("2024-01-05"), "EUR", "USD", r("1.0921"));
        fx.insert(day("2024-01-05"), "EUR", "JPY", r("158.48"));
        fx.insert(day("2024-01-05"), "EUR", "GBP", r("0.86075"));
        fx
    }

    #[test]
    fn the_rate_on_or_before_the_day_is_used() {
        let fx = ecb();
        // Saturday 6 January: Friday's rate.
        assert_eq!(fx.rate("EUR", "USD", day("2024-01-06")), Some(r("1.0921")));
        assert_eq!(fx.rate("eur", "usd", day("2024-01-04")), Some(r("1.0944")));
        // 100 EUR on Sunday is 109.21 USD.
        assert_eq!(fx.convert(100_000_000, "EUR", "USD", day("2024-01-07")), Ok(Some(109_210_000)));
    }

    #[test]
    fn inverse_and_cross_rates_go_through_the_base() {
        let fx = ecb();
        // USD→EUR is 1 / 1.0921.
        assert_eq!(fx.rate("USD", "EUR", day("2024-01-05")), Some(r("0.915667063456")));
        // USD→JPY crosses the euro: (1 / 1.0921) × 158.48, rounded at 12 places at each step.
        assert_eq!(fx.rate("USD", "JPY", day("2024-01-05")), Some(r("145.114916216507")));
        assert_eq!(fx.convert(1_000_000, "USD", "JPY", day("2024-01-05")), Ok(Some(145_114_916)));
        assert_eq!(fx.rate("GBP", "GBP", day("1999-01-01")), Some(RATE_ONE), "a currency in itself is 1");
    }

    #[test]
    fn a_missing_rate_is_null_with_its_pair_and_date_never_one() {
        let fx = ecb();
        let miss = fx.convert(5_000_000, "USD", "BRL", day("2024-01-05")).expect_err("no BRL rate");
        assert_eq!(miss.to_string(), "no USD→BRL rate on or before 2024-01-05");
        // Before the first published rate there is none either.
        assert!(fx.convert(1, "EUR", "USD", day("2024-01-03")).is_err());
    }
}
