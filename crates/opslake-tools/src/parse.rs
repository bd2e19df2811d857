//! Parsing of the values real exports contain, shared by the mapping UDFs and by the cast of
//! mapped strings to contract types. Each function returns `Ok(None)` for a value that means
//! "no value" (a null marker) and `Err` for a value it cannot read, so callers can tell a
//! legitimately empty cell from a broken one.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use sha2::{Digest, Sha256};

/// Why a value could not be read; the text names the expected shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type Parsed<T> = Result<Option<T>, ParseError>;

fn err<T>(what: &str, s: &str) -> Parsed<T> {
    Err(ParseError(format!("cannot read '{s}' as {what}")))
}

/// Day order of all-numeric dates such as `2/5/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DateOrder {
    /// Month first (US tools: HubSpot, Salesforce in en_US): 2/5/24 is February 5.
    #[default]
    Mdy,
    /// Day first: 2/5/24 is 2 May.
    Dmy,
}

/// How a locale writes numbers: the decimal mark and the thousands separator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NumberFormat {
    /// The decimal mark: `.` (default) or `,` (most of continental Europe, Latin America).
    pub decimal: char,
    /// The one thousands separator, when declared; otherwise any of `,` `.` `'` `_`, a space,
    /// a no-break or a narrow no-break space that is not the decimal mark.
    pub thousands: Option<char>,
}

impl Default for NumberFormat {
    fn default() -> Self {
        Self { decimal: '.', thousands: None }
    }
}

impl NumberFormat {
    /// The format a tool file or a connection declares (see
    /// [`opslake_config::config::number_separators`]).
    pub fn declared(decimal: Option<&str>, thousands: Option<&str>) -> Result<Self, String> {
        let (decimal, thousands) = opslake_config::config::number_separators(decimal, thousands)?;
        Ok(Self { decimal, thousands })
    }

    fn groups(&self, c: char) -> bool {
        match self.thousands {
            Some(t) => c == t,
            None => c != self.decimal && matches!(c, ',' | '.' | '_' | ' ' | '\u{a0}' | '\u{202f}' | '\''),
        }
    }
}

/// Strips what surrounds a number in exports: currency codes (`11.00 USD`, `USD 11.00`),
/// symbols (`$`, `€`), spaces, thousands separators; `(12.50)` and trailing `-` mean negative.
/// Returns the sign and the bare number text, with `.` as its decimal mark.
fn clean_number(s: &str, format: NumberFormat) -> Option<(bool, String)> {
    let mut t = s.trim();
    let mut negative = false;
    if let Some(inner) = t.strip_prefix('(').and_then(|x| x.strip_suffix(')')) {
        negative = true;
        t = inner.trim();
    }
    // A three-letter currency code before or after the amount.
    let is_code = |w: &str| w.len() == 3 && w.chars().all(|c| c.is_ascii_uppercase());
    if let Some((a, b)) = t.split_once(' ') {
        if is_code(b.trim()) {
            t = a.trim();
        } else if is_code(a.trim()) {
            t = b.trim();
        }
    }
    let t = t.trim_start_matches(['$', '€', '£', '¥', '₹']).trim();
    let t = t.trim_end_matches(['$', '€', '£', '¥', '₹']).trim();
    let (t, trailing_minus) = match t.strip_suffix('-') {
        Some(rest) if !rest.is_empty() => (rest, true),
        _ => (t, false),
    };
    let mut out = String::with_capacity(t.len());
    let mut chars = t.chars().peekable();
    if let Some(&c) = chars.peek()
        && (c == '-' || c == '+')
    {
        negative ^= c == '-';
        chars.next();
    }
    // After an explicit sign, a currency symbol may still follow: -$12.50.
    while chars.peek().is_some_and(|c| matches!(c, '$' | '€' | '£' | '¥' | '₹')) {
        chars.next();
    }
    // Digits since the last thousands separator, until the decimal mark or the exponent: a
    // group is three digits, so `1,5` is a decimal comma misread, not fifteen, and `1.234,56`
    // under a decimal point is no number at all.
    let mut group: Option<usize> = None;
    let mut fraction = false;
    let grouped = |group: Option<usize>| group.is_none_or(|n| n == 3);
    for c in chars {
        match c {
            c if c == format.decimal && !fraction => {
                if !grouped(group) {
                    return None;
                }
                fraction = true;
                group = None;
                out.push('.');
            }
            c if format.groups(c) && !fraction => {
                if out.is_empty() || group.is_some_and(|n| n == 0) {
                    return None;
                }
                group = Some(0);
            }
            '0'..='9' => {
                group = group.map(|n| n + 1);
                out.push(c);
            }
            'e' | 'E' | '+' | '-' => {
                if !grouped(group) {
                    return None;
                }
                fraction = true;
                group = None;
                out.push(c);
            }
            _ => return None,
        }
    }
    if !grouped(group) {
        return None;
    }
    if out.is_empty() || !out.chars().next().is_some_and(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    Some((negative ^ trailing_minus, out))
}

/// An exact decimal scaled to `scale` digits (`1,234.50` at scale 2 is 123450). Rounds half
/// away from zero past `scale` digits; fails on overflow of 38 digits.
pub fn parse_decimal(s: &str, scale: i8) -> Parsed<i128> {
    parse_decimal_in(s, scale, NumberFormat::default())
}

/// [`parse_decimal`] of a number written in `format` (`1.234,56` with a decimal comma).
pub fn parse_decimal_in(s: &str, scale: i8, format: NumberFormat) -> Parsed<i128> {
    if s.trim().is_empty() {
        return Ok(None);
    }
    let Some((negative, text)) = clean_number(s, format) else { return err("a number", s) };
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => match text[i + 1..].parse::<i32>() {
            Ok(e) => (&text[..i], e),
            Err(_) => return err("a number", s),
        },
        None => (text.as_str(), 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if !int_part.chars().chain(frac_part.chars()).all(|c| c.is_ascii_digit())
        || (int_part.is_empty() && frac_part.is_empty())
    {
        return err("a number", s);
    }
    let digits: String = format!("{int_part}{frac_part}");
    // value = digits * 10^(exponent - frac_len); we want value * 10^scale.
    let shift = i32::from(scale) + exponent - i32::try_from(frac_part.len()).unwrap_or(i32::MAX);
    let digits = digits.trim_start_matches('0');
    let mut value: i128 = 0;
    let overflow = || Err(ParseError(format!("'{s}' does not fit in 38 digits")));
    if shift >= 0 {
        for c in digits.chars() {
            value = match value.checked_mul(10).and_then(|v| v.checked_add(i128::from(c as u8 - b'0'))) {
                Some(v) => v,
                None => return overflow(),
            };
        }
        for _ in 0..shift {
            value = match value.checked_mul(10) {
                Some(v) => v,
                None => return overflow(),
            };
        }
    } else {
        let cut = usize::try_from(-shift).unwrap_or(usize::MAX);
        let keep = digits.len().saturating_sub(cut);
        for c in digits[..keep].chars() {
            value = match value.checked_mul(10).and_then(|v| v.checked_add(i128::from(c as u8 - b'0'))) {
                Some(v) => v,
                None => return overflow(),
            };
        }
        let first_dropped = if cut <= digits.len() { digits[keep..].chars().next() } else { None };
        if first_dropped.is_some_and(|c| c >= '5') {
            value += 1;
        }
    }
    if value > 10i128.pow(38) - 1 {
        return overflow();
    }
    Ok(Some(if negative { -value } else { value }))
}

/// A whole number; `1.0` is accepted (spreadsheets write integers so), `1.5` is not.
pub fn parse_int(s: &str) -> Parsed<i64> {
    parse_int_in(s, NumberFormat::default())
}

/// [`parse_int`] of a number written in `format`.
pub fn parse_int_in(s: &str, format: NumberFormat) -> Parsed<i64> {
    let Some(v) = parse_decimal_in(s, 6, format)? else { return Ok(None) };
    if v % 1_000_000 != 0 {
        return err("a whole number", s);
    }
    i64::try_from(v / 1_000_000).map(Some).map_err(|_| ParseError(format!("'{s}' does not fit in 64 bits")))
}

/// A float, for ratios.
pub fn parse_float(s: &str) -> Parsed<f64> {
    parse_float_in(s, NumberFormat::default())
}

/// [`parse_float`] of a number written in `format`.
pub fn parse_float_in(s: &str, format: NumberFormat) -> Parsed<f64> {
    if s.trim().is_empty() {
        return Ok(None);
    }
    match clean_number(s, format) {
        Some((neg, text)) => match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Some(if neg { -v } else { v })),
            _ => err("a number", s),
        },
        None => err("a number", s),
    }
}

/// true/false, t/f, yes/no, y/n, 1/0, on/off, any case; `1.0`/`0.0` too.
pub fn parse_bool(s: &str) -> Parsed<bool> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(None);
    }
    match t.to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "1" | "1.0" | "on" | "checked" => Ok(Some(true)),
        "false" | "f" | "no" | "n" | "0" | "0.0" | "off" | "unchecked" => Ok(Some(false)),
        _ => err("a boolean", s),
    }
}

const EXCEL_EPOCH: NaiveDate = NaiveDate::from_ymd_opt(1899, 12, 30).expect("a valid date");

/// Excel serial days read as dates: 1940-01-01 to 2100-12-31, the years business records
/// (birth dates included) fall in.
pub const EXCEL_SERIALS: std::ops::RangeInclusive<i64> = 14_611..=73_415;

/// `/Date(1439434356790+0000)/` (Microsoft JSON, Xero): milliseconds since the epoch, UTC.
fn ms_json_date(s: &str) -> Option<Result<i64, ()>> {
    let inner = s.strip_prefix("/Date(")?.strip_suffix(")/")?;
    let digits_end = inner.char_indices().skip(1).find(|(_, c)| *c == '+' || *c == '-').map_or(inner.len(), |(i, _)| i);
    Some(inner[..digits_end].parse::<i64>().map_err(|_| ()))
}

/// Days since 1970-01-01 of a calendar date.
pub fn days_from_date(d: NaiveDate) -> i32 {
    d.num_days_from_ce() - 719_163
}

/// A calendar date: ISO (`2024-01-05`, also with a time after it), `2/5/24` and `2/5/2024` in
/// `order`, `Jan 5, 2024`, `5 Jan 2024`, Excel serial days (`45296`), `/Date(ms)/`, and epoch
/// milliseconds. `0000-00-00` and friends mean no date.
pub fn parse_date(s: &str, order: DateOrder) -> Parsed<NaiveDate> {
    let t = s.trim();
    if t.is_empty() || t.starts_with("0000-00-00") || t == "00/00/0000" {
        return Ok(None);
    }
    if let Some(ms) = ms_json_date(t) {
        return match ms.ok().and_then(DateTime::from_timestamp_millis) {
            Some(dt) => Ok(Some(dt.date_naive())),
            None => err("a date", s),
        };
    }
    if let Some(d) = numeric_date(t) {
        return d.map(Some).ok_or_else(|| ParseError(format!("cannot read '{s}' as a date")));
    }
    let head = t.split(['T', ' ']).next().unwrap_or(t);
    if let Some(d) = iso_date(head.as_bytes()) {
        return Ok(Some(d));
    }
    if let Ok(d) = NaiveDate::parse_from_str(head, "%Y-%m-%d") {
        return Ok(Some(d));
    }
    if let Some(d) = slash_date(head, order) {
        return Ok(Some(d));
    }
    for fmt in ["%b %d, %Y", "%B %d, %Y", "%d %b %Y", "%d %B %Y", "%Y/%m/%d", "%d.%m.%Y", "%Y%m%d"] {
        if let Ok(d) = NaiveDate::parse_from_str(t, fmt) {
            return Ok(Some(d));
        }
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(Some(dt.date_naive()));
    }
    err("a date", s)
}

/// Excel serial days or epoch milliseconds, when `t` is all digits (with an optional fraction).
fn numeric_date(t: &str) -> Option<Option<NaiveDate>> {
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty() || !int.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if int.len() == 13 && frac.is_empty() {
        return Some(int.parse::<i64>().ok().and_then(DateTime::from_timestamp_millis).map(|d| d.date_naive()));
    }
    // Excel serials (1 is 1900-01-01, with Lotus' 1900 leap bug folded into the 1899-12-30
    // epoch), but only where a business date can be: `2024` or `12` in a date column is a
    // year or a typo, not 1905-07-16. Eight-digit values are YYYYMMDD, handled by the caller.
    if int.len() > 7 {
        return None;
    }
    let days: i64 = int.parse().ok()?;
    if !EXCEL_SERIALS.contains(&days) {
        return Some(None);
    }
    Some(EXCEL_EPOCH.checked_add_signed(chrono::Duration::days(days)))
}

fn slash_date(t: &str, order: DateOrder) -> Option<NaiveDate> {
    let parts: Vec<&str> = t.split(['/', '-', '.']).collect();
    let [a, b, y] = parts.as_slice() else { return None };
    let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
    let mut year: i32 = y.parse().ok()?;
    if y.len() == 2 {
        // Two-digit years: 00-69 are 2000s, 70-99 are 1900s (the POSIX pivot).
        year += if year < 70 { 2000 } else { 1900 };
    } else if y.len() != 4 {
        return None;
    }
    let (month, day) = match order {
        DateOrder::Mdy => (a, b),
        DateOrder::Dmy => (b, a),
    };
    NaiveDate::from_ymd_opt(year, month, day)
}

/// Microseconds since the epoch (UTC) of an instant. Text with an offset or `Z` is taken as
/// written; text without is local time in `tz`. Also `/Date(ms+0000)/`, epoch seconds (10
/// digits), milliseconds (13) and microseconds (16), and Excel serials with a fraction.
pub fn parse_timestamp(s: &str, tz: Tz, order: DateOrder) -> Parsed<i64> {
    let t = s.trim();
    if t.is_empty() || t.starts_with("0000-00-00") {
        return Ok(None);
    }
    if let Some((naive, utc)) = iso_datetime(t) {
        let tz = if utc { Tz::UTC } else { tz };
        return local_to_utc_micros(naive, tz)
            .map(Some)
            .ok_or_else(|| ParseError(format!("'{s}' does not exist in {tz}")));
    }
    if let Some(ms) = ms_json_date(t) {
        return match ms {
            Ok(ms) => Ok(Some(ms * 1000)),
            Err(()) => err("a timestamp", s),
        };
    }
    if let Some(v) = numeric_timestamp(t, tz) {
        return v.map(Some).ok_or_else(|| ParseError(format!("cannot read '{s}' as a timestamp")));
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(Some(dt.timestamp_micros()));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f %z", "%Y-%m-%dT%H:%M%z"] {
        if let Ok(dt) = DateTime::parse_from_str(t, fmt) {
            return Ok(Some(dt.timestamp_micros()));
        }
    }
    if let Some(t) = t.strip_suffix(" UTC").or_else(|| t.strip_suffix(" GMT")) {
        return parse_timestamp(t, Tz::UTC, order);
    }
    let Some(naive) = naive_datetime(t, order) else { return err("a timestamp", s) };
    local_to_utc_micros(naive, tz).map(Some).ok_or_else(|| ParseError(format!("'{s}' does not exist in {tz}")))
}

/// The value of `b` as decimal digits, all of them ASCII digits.
fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |n, c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
}

/// `YYYY-MM-DD` exactly: the common case, read without a format parser (chrono's `%Y-%m-%d`
/// interprets its format string on every call, which was a tenth of an ingest's time).
fn iso_date(b: &[u8]) -> Option<NaiveDate> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    NaiveDate::from_ymd_opt(digits(&b[..4])? as i32, digits(&b[5..7])?, digits(&b[8..10])?)
}

/// `YYYY-MM-DD`, then optionally `T` or a space and `HH:MM`, `:SS`, `.fraction`, and a `Z`
/// after the seconds (then `true`: UTC). Anything else (offsets, AM/PM, slashes, a leap
/// second) is `None` and left to the general parsers, which give the same instant for what
/// this reads.
fn iso_datetime(t: &str) -> Option<(NaiveDateTime, bool)> {
    let b = t.as_bytes();
    let date = iso_date(b.get(..10)?)?;
    let rest = &b[10..];
    if rest.is_empty() {
        return date.and_hms_opt(0, 0, 0).map(|d| (d, false));
    }
    if !matches!(rest[0], b'T' | b' ') || rest.len() < 6 || rest[3] != b':' {
        return None;
    }
    let (hour, minute) = (digits(&rest[1..3])?, digits(&rest[4..6])?);
    let mut rest = &rest[6..];
    let (mut second, mut nanos, mut utc) = (0, 0, false);
    if let Some(after) = rest.strip_prefix(b":") {
        second = digits(after.get(..2)?)?;
        rest = &after[2..];
        if let Some(after) = rest.strip_prefix(b".") {
            let n = after.iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 || n > 9 {
                return None;
            }
            nanos = digits(&after[..n])? * 10u32.pow(9 - n as u32);
            rest = &after[n..];
        }
        if rest == b"Z" {
            utc = true;
            rest = &[];
        }
    }
    if !rest.is_empty() {
        return None;
    }
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?;
    Some((date.and_time(time), utc))
}

fn numeric_timestamp(t: &str, tz: Tz) -> Option<Option<i64>> {
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty() || !int.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let v: i64 = int.parse().ok()?;
    Some(match int.len() {
        10 => v.checked_mul(1_000_000),
        13 => v.checked_mul(1_000),
        16 => Some(v),
        1..=7 if !EXCEL_SERIALS.contains(&v) => None,
        1..=7 => {
            let fraction: f64 = format!("0.{}", if frac.is_empty() { "0" } else { frac }).parse().ok()?;
            let day = EXCEL_EPOCH.checked_add_signed(chrono::Duration::days(v))?;
            let secs = (fraction * 86_400.0).round() as i64;
            let naive = day.and_hms_opt(0, 0, 0)?.checked_add_signed(chrono::Duration::seconds(secs))?;
            local_to_utc_micros(naive, tz)
        }
        _ => return None,
    })
}

fn naive_datetime(t: &str, order: DateOrder) -> Option<NaiveDateTime> {
    let t = t.trim_end_matches('Z');
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M:%S"]
    {
        if let Ok(dt) = NaiveDateTime::parse_from_str(t, fmt) {
            return Some(dt);
        }
    }
    // "2/5/24 1:51", "2/5/2024 13:05:00", "2/5/2024 1:05 PM"
    let (date_part, time_part) = t.split_once(' ').map_or((t, ""), |(d, rest)| (d, rest.trim()));
    let date = slash_date(date_part, order).or_else(|| NaiveDate::parse_from_str(date_part, "%Y-%m-%d").ok())?;
    if time_part.is_empty() {
        return date.and_hms_opt(0, 0, 0);
    }
    let upper = time_part.to_ascii_uppercase();
    for fmt in ["%H:%M:%S%.f", "%H:%M", "%I:%M:%S %p", "%I:%M %p"] {
        if let Ok(time) = NaiveTime::parse_from_str(&upper, fmt) {
            return Some(date.and_time(time));
        }
    }
    None
}

/// Local wall time in `tz` to UTC microseconds. An ambiguous time (DST fall-back) takes the
/// earlier instant; a time in a DST gap is moved forward by the gap, as clocks do.
pub fn local_to_utc_micros(naive: NaiveDateTime, tz: Tz) -> Option<i64> {
    if let Some(dt) = tz.from_local_datetime(&naive).earliest() {
        return Some(dt.with_timezone(&Utc).timestamp_micros());
    }
    let shifted = naive.checked_add_signed(chrono::Duration::hours(1))?;
    tz.from_local_datetime(&shifted).earliest().map(|dt| dt.with_timezone(&Utc).timestamp_micros())
}

/// Digits of the minor unit Stripe's API counts amounts in for `currency`: 0 for Stripe's
/// zero-decimal currencies, 3 for its three-decimal ones, 2 for every other ISO 4217 code.
/// Stripe's list is not ISO 4217's exponents: ISK and HUF are counted in hundredths although
/// ISO gives ISK none, and MGA has no minor unit at Stripe although ISO gives it two.
pub fn stripe_minor_digits(currency: &str) -> Option<u32> {
    const ZERO: [&str; 16] = [
        "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF",
    ];
    const THREE: [&str; 5] = ["BHD", "JOD", "KWD", "OMR", "TND"];
    let code = currency.trim().to_ascii_uppercase();
    iso_currency::Currency::from_code(&code)?;
    Some(if ZERO.contains(&code.as_str()) {
        0
    } else if THREE.contains(&code.as_str()) {
        3
    } else {
        2
    })
}

/// A Stripe API amount (an integer count of the currency's minor unit, see
/// [`stripe_minor_digits`]) as an exact decimal scaled to `scale` digits: `1234` USD is 12.34,
/// `1234` JPY is 1234. An unknown currency is an error, never a guess (but zero is zero).
pub fn parse_minor_units(s: &str, currency: &str, scale: i8) -> Parsed<i128> {
    if s.trim().is_empty() {
        return Ok(None);
    }
    match parse_int(s) {
        Err(_) => return err("a whole number of minor units", s),
        // Zero is zero in any unit: a zero balance needs no currency.
        Ok(Some(0)) => return Ok(Some(0)),
        Ok(_) => {}
    }
    let Some(digits) = stripe_minor_digits(currency) else { return err("an ISO 4217 currency", currency) };
    parse_decimal(s, scale - i8::try_from(digits).unwrap_or(0))
}

/// A trimmed, lower-cased email, or an error when `s` is not one address.
pub fn normalize_email(s: &str) -> Parsed<String> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let t = t.strip_prefix("mailto:").unwrap_or(t);
    let t = t.trim_matches(['<', '>']);
    let lower = t.to_lowercase();
    match lower.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && domain.contains('.')
                && !domain.contains('@')
                && !lower.contains(char::is_whitespace) =>
        {
            Ok(Some(lower))
        }
        _ => err("an email address", s),
    }
}

/// The domain of an email address.
pub fn email_domain(s: &str) -> Parsed<String> {
    Ok(normalize_email(s)?.and_then(|e| e.split_once('@').map(|(_, d)| d.to_string())))
}

/// The host of a URL or bare domain, lower-cased, without `www.`: `https://www.Acme.com/x` is
/// `acme.com`.
pub fn url_domain(s: &str) -> Parsed<String> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let rest = t.split_once("://").map_or(t, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = host.split(':').next().unwrap_or(host).trim_end_matches('.').to_lowercase();
    let host = host.strip_prefix("www.").unwrap_or(&host).to_string();
    if host.is_empty() || !host.contains('.') || host.contains(char::is_whitespace) {
        return err("a domain or URL", s);
    }
    Ok(Some(host))
}

/// The value of query parameter `name` in a URL (`utm_source` in a landing URL), decoded;
/// `None` when the URL has no such parameter or it is empty. Tracking templates keep their
/// placeholders (`{campaignid}`): they are what the export says.
pub fn url_param(url: &str, name: &str) -> Option<String> {
    let query = url.trim().split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The value at `path` (dot-separated keys, 0-based array positions and `[key=value]`
/// selectors) of JSON text `json`:
/// strings as they are, other scalars as written, objects and arrays as compact JSON; `None`
/// when the text is not JSON or the path is not there.
pub fn json_path(json: &str, path: &str) -> Option<String> {
    let doc: serde_json::Value = serde_json::from_str(json).ok()?;
    let mut v = &doc;
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        // `[key=value]` picks the first element of an array whose `key` is `value`: key-value
        // lists like BambooHR's `<field id="date">` rows.
        if let Some((key, want)) =
            seg.strip_prefix('[').and_then(|s| s.strip_suffix(']')).and_then(|s| s.split_once('='))
        {
            let serde_json::Value::Array(items) = v else { return None };
            v = items.iter().find(|item| item.get(key).and_then(serde_json::Value::as_str) == Some(want))?;
            continue;
        }
        v = match v {
            serde_json::Value::Array(items) => items.get(seg.parse::<usize>().ok()?)?,
            serde_json::Value::Object(map) => map.get(seg)?,
            _ => return None,
        };
    }
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The stable key of a record: SHA-256 over the parts joined by the unit separator, first
/// 16 bytes as 32 hex digits. Stable across versions and machines: keys in a lake never change.
pub fn stable_key<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut hasher = Sha256::new();
    for (i, part) in parts.into_iter().enumerate() {
        if i > 0 {
            hasher.update([0x1f]);
        }
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut out = String::with_capacity(32);
    for b in &digest[..16] {
        out.push(char::from_digit(u32::from(b >> 4), 16).expect("nibble"));
        out.push(char::from_digit(u32::from(b & 0xf), 16).expect("nibble"));
    }
    out
}

/// Microseconds of a UTC instant, for tests and writers.
pub fn micros(dt: NaiveDateTime) -> i64 {
    dt.and_utc().timestamp_micros()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).expect("valid")
    }
    fn ts(y: i32, m: u32, day: u32, h: u32, mi: u32, s: u32) -> i64 {
        micros(d(y, m, day).and_hms_opt(h, mi, s).expect("valid"))
    }

    #[test]
    fn stripe_amounts_follow_the_currency_minor_unit() {
        assert_eq!(parse_minor_units("123450", "usd", 2), Ok(Some(123450)));
        assert_eq!(parse_minor_units("5000", "JPY", 2), Ok(Some(500000)));
        assert_eq!(parse_minor_units("1500", "kwd", 3), Ok(Some(1500)));
        assert_eq!(parse_minor_units("-250", "eur", 6), Ok(Some(-2_500_000)));
        assert_eq!(parse_minor_units("10000", "isk", 0), Ok(Some(100)), "Stripe counts ISK in hundredths");
        assert_eq!(parse_minor_units("", "usd", 2), Ok(None));
        assert!(parse_minor_units("12.5", "usd", 2).is_err(), "minor units are whole");
        assert!(parse_minor_units("100", "XYZ", 2).is_err(), "an unknown currency is not guessed");
        assert_eq!(parse_minor_units("0", "", 2), Ok(Some(0)));
    }

    #[test]
    fn numbers_in_a_locale_with_a_decimal_comma() {
        let de = NumberFormat { decimal: ',', thousands: Some('.') };
        assert_eq!(parse_decimal_in("1.234,56", 2, de), Ok(Some(123_456)));
        assert_eq!(parse_decimal_in("-0,5", 2, de), Ok(Some(-50)));
        assert_eq!(parse_decimal_in("1.234.567", 0, de), Ok(Some(1_234_567)));
        // Declared separators are the only ones: a stray space or comma is not a number.
        assert!(parse_decimal_in("1 234,56", 2, de).is_err());
        assert!(parse_decimal_in("1,2,3", 2, de).is_err());
        // French and Swiss groupings, when only the decimal mark is declared.
        let fr = NumberFormat { decimal: ',', thousands: None };
        assert_eq!(parse_decimal_in("1\u{202f}234,56 €", 2, fr), Ok(Some(123_456)));
        assert_eq!(parse_decimal_in("1.234,56", 2, fr), Ok(Some(123_456)));
        let ch = NumberFormat { decimal: '.', thousands: Some('\'') };
        assert_eq!(parse_decimal_in("1'234.56", 2, ch), Ok(Some(123_456)));
        assert_eq!(parse_int_in("12.000", de), Ok(Some(12_000)));
        assert_eq!(parse_float_in("0,25", de), Ok(Some(0.25)));
        // Without the option a decimal comma is refused, never read as a grouping it cannot be.
        assert!(parse_decimal("1,5", 2).is_err());
        assert_eq!(parse_decimal("12,34,567", 0), Ok(Some(1_234_567))); // lakh grouping
        assert_eq!(parse_decimal("1.234,56", 2), Err(ParseError("cannot read '1.234,56' as a number".into())));
    }

    #[test]
    fn money_and_decimals_as_exports_write_them() {
        assert_eq!(parse_decimal("1,234.50", 2), Ok(Some(123_450)));
        assert_eq!(parse_decimal("11.00 USD", 2), Ok(Some(1_100))); // BambooHR pay rate
        assert_eq!(parse_decimal("USD 11", 2), Ok(Some(1_100)));
        assert_eq!(parse_decimal("$3,000", 0), Ok(Some(3_000))); // Pipedrive sum_formatted
        assert_eq!(parse_decimal("(12.5)", 2), Ok(Some(-1_250)));
        assert_eq!(parse_decimal("-$7.25", 2), Ok(Some(-725)));
        assert_eq!(parse_decimal("7.25-", 2), Ok(Some(-725)));
        assert_eq!(parse_decimal("1.5E+3", 0), Ok(Some(1_500)));
        assert_eq!(parse_decimal("0.125", 2), Ok(Some(13)));
        assert_eq!(parse_decimal(".5", 1), Ok(Some(5)));
        assert_eq!(parse_decimal("24120000", 6), Ok(Some(24_120_000_000_000)));
        assert_eq!(parse_decimal("", 2), Ok(None));
        assert!(parse_decimal("abc", 2).is_err());
        assert!(parse_decimal("1.2.3", 2).is_err());
        assert!(parse_decimal("9".repeat(40).as_str(), 0).is_err());
    }

    #[test]
    fn integers_and_floats() {
        assert_eq!(parse_int("1.0"), Ok(Some(1))); // HubSpot writes counts as 1.0
        assert_eq!(parse_int("1,200"), Ok(Some(1_200)));
        assert!(parse_int("1.5").is_err());
        assert_eq!(parse_float("30"), Ok(Some(30.0)));
        assert!(parse_float("thirty").is_err());
    }

    #[test]
    fn booleans_in_every_spelling() {
        for t in ["1", "true", "TRUE", "Yes", "y", "t"] {
            assert_eq!(parse_bool(t), Ok(Some(true)), "{t}");
        }
        for f in ["0", "false", "No", "n", "F"] {
            assert_eq!(parse_bool(f), Ok(Some(false)), "{f}");
        }
        assert_eq!(parse_bool(""), Ok(None));
        assert!(parse_bool("maybe").is_err());
    }

    #[test]
    fn dates_in_the_shapes_exports_use() {
        let o = DateOrder::Mdy;
        assert_eq!(parse_date("2018-06-27", o), Ok(Some(d(2018, 6, 27))));
        assert_eq!(parse_date("2023-03-01 00:00:00", o), Ok(Some(d(2023, 3, 1)))); // Salesforce CloseDate
        assert_eq!(parse_date("2/5/24", o), Ok(Some(d(2024, 2, 5))));
        assert_eq!(parse_date("2/5/24", DateOrder::Dmy), Ok(Some(d(2024, 5, 2))));
        assert_eq!(parse_date("45296", o), Ok(Some(d(2024, 1, 5)))); // Excel serial
        // A year, or any small number, is not taken for an Excel serial (2024 is 1905-07-16).
        assert!(parse_date("2024", o).is_err());
        assert!(parse_date("12", o).is_err());
        assert!(parse_date("99999", o).is_err());
        assert_eq!(parse_date("/Date(1439434356790+0000)/", o), Ok(Some(d(2015, 8, 13)))); // Xero
        assert_eq!(parse_date("Jan 5, 2024", o), Ok(Some(d(2024, 1, 5))));
        assert_eq!(parse_date("20240105", o), Ok(Some(d(2024, 1, 5))));
        assert_eq!(parse_date("0000-00-00", o), Ok(None)); // BambooHR
        assert!(parse_date("13/45/2024", o).is_err());
        assert!(parse_date("soon", o).is_err());
    }

    #[test]
    fn the_iso_fast_path_reads_what_chrono_reads() {
        let chrono = |t: &str| {
            if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
                return Some((dt.naive_utc(), true));
            }
            naive_datetime(t, DateOrder::Mdy).map(|n| (n, false))
        };
        for t in [
            "2024-03-05",
            "2024-03-05 14:22",
            "2024-03-05T14:22",
            "2024-03-05 14:22:11",
            "2024-03-05T14:22:11.000Z",
            "2025-06-21T19:13:31.018Z",
            "2024-03-05 14:22:11.123456789",
            "2024-03-05T14:22:11.5",
            "2024-02-29 00:00:00",
        ] {
            assert_eq!(iso_datetime(t), chrono(t), "{t}");
        }
        // Left to the general parsers: not dates, offsets, single digits, a minute with Z.
        for t in [
            "2023-02-30",
            "2024-13-01",
            "2024-03-05 25:00",
            "2024-03-05T14:22:11+02:00",
            "2020-12-30 3:15:52",
            "2024-3-5",
            "2024-03-05T14:22Z",
            "2024-03-05 14:22:11 UTC",
            "2024-03-05x",
        ] {
            assert_eq!(iso_datetime(t), None, "{t}");
        }
        assert_eq!(iso_date(b"2024-04-16"), NaiveDate::from_ymd_opt(2024, 4, 16));
        assert_eq!(iso_date(b"2024-04-31"), None);
    }

    #[test]
    fn timestamps_with_offsets_zones_and_epochs() {
        let o = DateOrder::Mdy;
        let utc = Tz::UTC;
        assert_eq!(
            parse_timestamp("2020-12-10T07:58:09.554000+00:00", utc, o),
            Ok(Some(ts(2020, 12, 10, 7, 58, 9) + 554_000))
        );
        assert_eq!(parse_timestamp("2023-02-07 20:47:49", utc, o), Ok(Some(ts(2023, 2, 7, 20, 47, 49))));
        assert_eq!(parse_timestamp("2020-12-30 3:15:52", utc, o), Ok(Some(ts(2020, 12, 30, 3, 15, 52)))); // Fivetran HubSpot
        assert_eq!(parse_timestamp("2/5/24 1:51", utc, o), Ok(Some(ts(2024, 2, 5, 1, 51, 0)))); // HubSpot UI export
        assert_eq!(parse_timestamp("/Date(1439434356790+0000)/", utc, o), Ok(Some(1_439_434_356_790_000)));
        assert_eq!(parse_timestamp("1675121674226", utc, o), Ok(Some(1_675_121_674_226_000))); // epoch ms
        assert_eq!(parse_timestamp("1530689875", utc, o), Ok(Some(1_530_689_875_000_000))); // epoch s
        let ny: Tz = "America/New_York".parse().expect("tz");
        assert_eq!(parse_timestamp("2024-01-05 09:00:00", ny, o), Ok(Some(ts(2024, 1, 5, 14, 0, 0))));
        assert_eq!(parse_timestamp("2024-01-05T09:00:00Z", ny, o), Ok(Some(ts(2024, 1, 5, 9, 0, 0))));
        // 02:30 does not exist on 2024-03-10 in New York: clocks move to 03:30 (07:30 UTC).
        assert_eq!(parse_timestamp("2024-03-10 02:30", ny, o), Ok(Some(ts(2024, 3, 10, 7, 30, 0))));
        assert_eq!(parse_timestamp("45296.5", utc, o), Ok(Some(ts(2024, 1, 5, 12, 0, 0)))); // Excel
        assert!(parse_timestamp("2024", utc, o).is_err());
        assert!(parse_timestamp("yesterday", utc, o).is_err());
    }

    #[test]
    fn emails_and_domains() {
        assert_eq!(normalize_email(" Amy@Demo.NET "), Ok(Some("amy@demo.net".into())));
        assert_eq!(normalize_email("mailto:a@b.co"), Ok(Some("a@b.co".into())));
        assert!(normalize_email("not an email").is_err());
        assert!(normalize_email("a@b").is_err());
        assert_eq!(email_domain("Jo@Forix.com"), Ok(Some("forix.com".into())));
        assert_eq!(url_domain("https://www.Acme.com/about?x=1"), Ok(Some("acme.com".into())));
        assert_eq!(url_domain("airbyte.io"), Ok(Some("airbyte.io".into())));
        assert_eq!(url_domain("http://user@shop.example.org:8080"), Ok(Some("shop.example.org".into())));
        assert!(url_domain("n/a").is_err());
    }

    #[test]
    fn stable_keys_are_stable() {
        let k = stable_key(["salesforce", "sf_prod", "0018a00001"]);
        assert_eq!(k.len(), 32);
        assert_eq!(k, stable_key(["salesforce", "sf_prod", "0018a00001"]));
        assert_ne!(k, stable_key(["salesforce", "sf_prod2", "0018a00001"]));
        // The separator keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(stable_key(["ab", "c"]), stable_key(["a", "bc"]));
        // Pinned: changing the hash would change every key in every lake.
        assert_eq!(stable_key(["a", "b", "c"]), "e0dee694aed26d323b0d8b861c343f25");
    }
}
