//! Google Ads: the connector-landed (Fivetran) campaign history and daily campaign stats (money
//! in micros), and the year's Campaigns report downloaded from the UI (a range total with its
//! title, date range and Total rows).

use std::path::Path;

use super::{Channel, Demo, csv_text, money, write};
use crate::CliError;

const CUSTOMER: &str = "5550001111";

/// A day's spend, clicks and impressions: the campaign's budget with a weekly rhythm.
pub(super) fn day_stats(daily_cents: u64, day: u64) -> (u64, u64, u64) {
    let weekday = [100, 110, 115, 112, 104, 70, 62][(day % 7) as usize];
    let cents = daily_cents * weekday / 100 + (day * 37) % 300;
    let clicks = cents / 250 + day % 5;
    let impressions = clicks * 28 + (day * 13) % 200;
    (cents, clicks, impressions)
}

pub(super) fn write_exports(demo: &Demo, dir: &Path) -> Result<(), CliError> {
    let campaigns: Vec<_> = demo.campaigns.iter().filter(|c| c.channel == Channel::Google).collect();
    let history = campaigns.iter().map(|c| {
        vec![
            c.id.clone(),
            format!("{}-01-01T09:00:00.000", demo.year),
            c.name.clone(),
            CUSTOMER.into(),
            "SEARCH".into(),
            "UNSPECIFIED".into(),
            format!("{}-01-01", demo.year),
            String::new(),
            "SERVING".into(),
            "ENABLED".into(),
            format!("{{lpurl}}?utm_source=google&utm_medium=cpc&utm_campaign={}", c.utm_campaign),
        ]
    });
    let header = [
        "id",
        "updated_at",
        "name",
        "customer_id",
        "advertising_channel_type",
        "advertising_channel_subtype",
        "start_date",
        "end_date",
        "serving_status",
        "status",
        "tracking_url_template",
    ];
    write(dir, "exports/google_ads/campaign_history.csv", csv_text(&header, history))?;

    let mut stats = Vec::new();
    let mut totals = Vec::new();
    for c in &campaigns {
        let (mut cents_sum, mut clicks_sum, mut impr_sum) = (0, 0, 0);
        for (i, day) in demo.days().enumerate() {
            let (cents, clicks, impressions) = day_stats(c.daily_cents, i as u64);
            let conversions = clicks / 40;
            (cents_sum, clicks_sum, impr_sum) = (cents_sum + cents, clicks_sum + clicks, impr_sum + impressions);
            stats.push(vec![
                format!("{}-{i}", c.id),
                CUSTOMER.into(),
                day.to_string(),
                format!("{day} 23:00:00"),
                "SEARCH".into(),
                format!("customers/{CUSTOMER}/campaigns/{}", c.id),
                clicks.to_string(),
                conversions.to_string(),
                "0".into(),
                (cents * 10_000).to_string(),
                "DESKTOP".into(),
                c.id.clone(),
                impressions.to_string(),
            ]);
        }
        totals.push((c, cents_sum, clicks_sum, impr_sum));
    }
    let header = [
        "_fivetran_id",
        "customer_id",
        "date",
        "_fivetran_synced",
        "ad_network_type",
        "base_campaign",
        "clicks",
        "conversions",
        "conversions_value",
        "cost_micros",
        "device",
        "id",
        "impressions",
    ];
    write(dir, "exports/google_ads/campaign_stats.csv", csv_text(&header, stats))?;

    // The UI report: a preamble, the campaigns, then the report's own totals.
    let mut report = format!("Campaign report\n\"January 1, {y} - December 31, {y}\"\n", y = demo.year);
    let rows = totals.iter().map(|(c, cents, clicks, impr)| {
        vec![
            "Enabled".into(),
            c.name.clone(),
            money(c.daily_cents),
            "Daily".into(),
            "Search".into(),
            impr.to_string(),
            "USD".into(),
            money(*cents),
            clicks.to_string(),
        ]
    });
    let (cents, clicks, impr) = totals.iter().fold((0, 0, 0), |(a, b, c), (_, x, y, z)| (a + x, b + y, c + z));
    let total = |label: &str| {
        vec![
            label.into(),
            " --".into(),
            " --".into(),
            " --".into(),
            " --".into(),
            impr.to_string(),
            "USD".into(),
            money(cents),
            clicks.to_string(),
        ]
    };
    let header = [
        "Campaign status",
        "Campaign",
        "Budget",
        "Budget type",
        "Campaign type",
        "Impr.",
        "Currency code",
        "Cost",
        "Clicks",
    ];
    report.push_str(&csv_text(&header, rows.chain([total("Total: Campaigns"), total("Total: Account")])));
    write(dir, "exports/google_ads/Campaign report.csv", report)
}
