//! HubSpot, the marketing team's CRM: Contacts > Export, display-name headers, M/D/YY times.
//! Every lead is here with its lifecycle stage and first traffic source.

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
    write(dir, "exports/hubspot/hubspot-crm-exports-all-contacts.csv", csv_text(&header, rows))
}
