//! HubSpot, the marketing team's CRM: Contacts > Export (display-name headers, M/D/YY times),
//! with every lead's lifecycle stage and first traffic source; and its marketing email, as the
//! connector lands it: a product update each quarter and every recipient's events.

use std::path::Path;

use super::{Demo, csv_text, write};
use crate::CliError;

pub(super) fn write_exports(demo: &Demo, dir: &Path) -> Result<(), CliError> {
    let rows = demo.companies.iter().flat_map(|c| {
        c.people.iter().map(move |p| {
            let stage = if c.deal.won() {
                "customer"
            } else if c.deal.stage == "Closed Lost" {
                "other"
            } else {
                "salesqualifiedlead"
            };
            let source = match c.channel.utm_source() {
                Some("google") => "Paid Search",
                Some("facebook") | Some("linkedin") => "Paid Social",
                Some(_) => "Email Marketing",
                None => "Referrals",
            };
            vec![
                (7000 + p.id).to_string(),
                p.first.clone(),
                p.last.clone(),
                p.email.clone(),
                p.created.format("%-m/%-d/%y 9:30").to_string(),
                stage.into(),
                source.into(),
                c.name.clone(),
            ]
        })
    });
    let header = [
        "Record ID",
        "First Name",
        "Last Name",
        "Email",
        "Create Date",
        "Lifecycle Stage",
        "Original Traffic Source",
        "Company Name",
    ];
    write(dir, "exports/hubspot/hubspot-crm-exports-all-contacts.csv", csv_text(&header, rows))?;

    let quarters = [1u32, 4, 7, 10];
    let campaigns = quarters.iter().enumerate().map(|(q, month)| {
        vec![
            (81_000 + q).to_string(),
            format!("{}-{month:02}-01 08:00:00.000", demo.year),
            "2286".into(),
            (91_000 + q).to_string(),
            String::new(),
            String::new(),
            String::new(),
            "BATCH_EMAIL".into(),
            "Batch".into(),
            format!("Product update Q{}", q + 1),
            format!("What is new in Lumen Ops, Q{} {}", q + 1, demo.year),
        ]
    });
    let header = [
        "id",
        "_fivetran_synced",
        "app_id",
        "content_id",
        "num_included",
        "num_queued",
        "sub_type",
        "type",
        "app_name",
        "name",
        "subject",
    ];
    write(dir, "exports/hubspot/email_campaign.csv", csv_text(&header, campaigns))?;

    let mut events = Vec::new();
    for (q, month) in quarters.iter().enumerate() {
        let Some(sent) = chrono::NaiveDate::from_ymd_opt(demo.year, *month, 15) else { continue };
        let people = demo.companies.iter().flat_map(|c| c.people.iter()).filter(|p| p.created <= sent);
        for (k, p) in people.enumerate() {
            let mut event = |kind: &str, minute: usize| {
                events.push(vec![
                    format!("ev{q}-{}-{kind}", p.id),
                    format!("{sent} 23:00:00.000"),
                    (81_000 + q).to_string(),
                    format!("{sent} 10:{minute:02}:00.000"),
                    p.email.clone(),
                    if kind == "SENT" { String::new() } else { format!("ev{q}-{}-SENT", p.id) },
                    kind.to_string(),
                ]);
            };
            event("SENT", 0);
            event("DELIVERED", 1);
            if (k + q) % 5 < 3 {
                event("OPEN", 10 + k % 40);
            }
            if (k + q) % 5 == 0 {
                event("CLICK", 12 + k % 40);
            }
        }
    }
    let header = ["id", "_fivetran_synced", "email_campaign_id", "created", "recipient", "sent_by_id", "type"];
    write(dir, "exports/hubspot/email_event.csv", csv_text(&header, events))
}
