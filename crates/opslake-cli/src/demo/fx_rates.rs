//! Exchange rates for the year, as a treasury export (date,from,to,rate): EUR and GBP in USD on
//! the first day of each month, so every amount of the year has a rate on or before its day.

use std::path::Path;

use super::{Demo, csv_text, write};
use crate::CliError;

pub(super) fn write_exports(demo: &Demo, dir: &Path) -> Result<(), CliError> {
    let start = chrono::NaiveDate::from_ymd_opt(demo.year, 1, 1).expect("valid date");
    let rows = demo.months_from(start).into_iter().enumerate().flat_map(|(i, month)| {
        // A gentle drift, in ten-thousandths.
        let eur = 10_800 + (i as u64 * 37) % 400;
        let gbp = 12_600 + (i as u64 * 53) % 500;
        [("EUR", eur), ("GBP", gbp)].map(|(from, rate)| {
            vec![
                month.to_string(),
                from.to_string(),
                "USD".to_string(),
                format!("{}.{:04}", rate / 10_000, rate % 10_000),
            ]
        })
    });
    write(dir, "exports/fx_rates/rates.csv", csv_text(&["date", "from", "to", "rate"], rows))
}
