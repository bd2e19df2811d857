//! LinkedIn Ads: the connector-landed campaign history and the Marketing API's /adAnalytics
//! response (pivot CAMPAIGN, daily, campaigns as URNs, dates as {year, month, day}).

use std::path::Path;

use chrono::Datelike;
use serde_json::json;

use super::{Channel, Demo, csv_text, google_ads::day_stats, money, write};
use crate::CliError;

pub(super) fn write_exports(demo: &Demo, dir: &Path) -> Result<(), CliError> {
    let campaigns: Vec<_> = demo.campaigns.iter().filter(|c| c.channel == Channel::LinkedIn).collect();
    let history = campaigns.iter().map(|c| {
        vec![
            c.id.clone(),
            format!("{}-01-01 09:00:00.000", demo.year),
            "508001".into(),
            "609001".into(),
            format!("{}-01-01 09:00:00", demo.year),
            c.name.clone(),
            "1".into(),
        ]
    });
    let header = ["id", "last_modified_time", "account_id", "campaign_group_id", "created_time", "name", "version_tag"];
    write(dir, "exports/linkedin_ads/campaign_history.csv", csv_text(&header, history))?;
    let mut elements = Vec::new();
    for c in &campaigns {
        for (i, day) in demo.days().enumerate() {
            let (cents, clicks, impressions) = day_stats(c.daily_cents, i as u64 + 5);
            let date = json!({"year": day.year(), "month": day.month(), "day": day.day()});
            elements.push(json!({
                "pivotValues": [format!("urn:li:sponsoredCampaign:{}", c.id)],
                "impressions": impressions / 3, "clicks": clicks / 2,
                "costInLocalCurrency": money(cents), "externalWebsiteConversions": clicks / 60,
                "dateRange": {"start": date, "end": date},
            }));
        }
    }
    let body = json!({"paging": {"start": 0, "count": elements.len(), "links": []}, "elements": elements});
    write(dir, "exports/linkedin_ads/adAnalytics.json", serde_json::to_string_pretty(&body).expect("JSON"))
}
