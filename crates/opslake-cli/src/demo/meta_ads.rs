//! Meta Ads: the Marketing API's /insights response, campaign level, one row a day, every
//! metric a string and the leads in the `actions` array.

use std::path::Path;

use serde_json::json;

use super::{Channel, Demo, google_ads::day_stats, money, write};
use crate::CliError;

pub(super) fn write_exports(demo: &Demo, dir: &Path) -> Result<(), CliError> {
    let mut rows = Vec::new();
    for c in demo.campaigns.iter().filter(|c| c.channel == Channel::Meta) {
        for (i, day) in demo.days().enumerate() {
            let (cents, clicks, impressions) = day_stats(c.daily_cents, i as u64 + 3);
            let leads = clicks / 30;
            let mut row = json!({
                "account_id": "7001001", "account_name": "Lumen Ops", "account_currency": "USD",
                "campaign_id": c.id, "campaign_name": c.name, "objective": "OUTCOME_LEADS",
                "spend": money(cents), "impressions": impressions.to_string(), "clicks": clicks.to_string(),
                "date_start": day.to_string(), "date_stop": day.to_string(),
            });
            if leads > 0 {
                row["actions"] = json!([{"action_type": "lead", "value": leads.to_string()},
                                        {"action_type": "link_click", "value": clicks.to_string()}]);
            }
            rows.push(row);
        }
    }
    let body = json!({"data": rows, "paging": {"cursors": {"before": "MAZDZD", "after": "MjQZD"}}});
    write(dir, "exports/meta_ads/insights.json", serde_json::to_string_pretty(&body).expect("JSON"))
}
