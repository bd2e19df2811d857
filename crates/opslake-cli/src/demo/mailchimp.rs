//! Mailchimp: the audience export (subscribed and unsubscribed members, Mailchimp's own
//! columns after the merge fields), the connector-landed audience and the recipient activity
//! of the monthly newsletter. Leads that came from the newsletter clicked it first.

use std::fmt::Write as _;
use std::path::Path;

use md5::{Digest, Md5};

use super::{Channel, Demo, csv_text, write};
use crate::CliError;

const LIST: &str = "aud0demo01";

/// Mailchimp's member id: the MD5 of the lower-cased email.
fn subscriber_hash(email: &str) -> String {
    Md5::digest(email.to_lowercase().as_bytes()).iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

pub(super) fn write_exports(demo: &Demo, dir: &Path) -> Result<(), CliError> {
    let people: Vec<_> = demo.companies.iter().flat_map(|c| c.people.iter().map(move |p| (c, p))).collect();
    let member = |c: &super::Company, p: &super::Person, extra: Vec<String>| {
        let mut row = vec![
            p.email.clone(),
            p.first.clone(),
            p.last.clone(),
            c.name.clone(),
            "2".into(),
            format!("{} 10:00:00", p.created),
            format!("{} 10:01:00", p.created),
            c.country.into(),
            format!("{} 10:01:00", p.created),
            (90_000 + p.id).to_string(),
            format!("e{:09}", p.id),
        ];
        row.extend(extra);
        row
    };
    let header = [
        "Email Address",
        "First Name",
        "Last Name",
        "Company",
        "MEMBER_RATING",
        "OPTIN_TIME",
        "CONFIRM_TIME",
        "CC",
        "LAST_CHANGED",
        "LEID",
        "EUID",
    ];
    let subscribed = people.iter().filter(|(_, p)| p.subscribed).map(|(c, p)| member(c, p, vec![]));
    let text = csv_text(&header, subscribed).replacen("Email Address", "Email", 1);
    write(dir, "exports/mailchimp/subscribed_members_export_d3m0.csv", text)?;
    let mut header_u = header.to_vec();
    header_u.extend(["UNSUB_TIME", "UNSUB_CAMPAIGN_TITLE", "UNSUB_REASON"]);
    let unsubscribed = people.iter().filter(|(_, p)| !p.subscribed).map(|(c, p)| {
        member(
            c,
            p,
            vec![
                format!("{} 12:00:00", p.created + chrono::Days::new(30)),
                "Newsletter".into(),
                "NO_LONGER_INTERESTED".into(),
            ],
        )
    });
    let text = csv_text(&header_u, unsubscribed).replacen("Email Address", "Email", 1);
    write(dir, "exports/mailchimp/unsubscribed_members_export_d3m0.csv", text)?;

    let list = csv_text(
        &[
            "id",
            "_fivetran_deleted",
            "_fivetran_synced",
            "date_created",
            "default_from_email",
            "default_from_name",
            "list_rating",
            "name",
        ],
        [vec![
            LIST.into(),
            "false".into(),
            format!("{}-12-31 23:00:00", demo.year),
            format!("{}-01-01 09:00:00", demo.year - 1),
            "news@lumenops.example".into(),
            "Lumen Ops".into(),
            "4".into(),
            "Lumen Ops newsletter".into(),
        ]],
    );
    write(dir, "exports/mailchimp/list.csv", list)?;

    // One send a month; subscribers open it, some click, newsletter leads click the signup link.
    let mut activity = Vec::new();
    let start = chrono::NaiveDate::from_ymd_opt(demo.year, 1, 1).expect("valid date");
    for (m, month) in demo.months_from(start).into_iter().enumerate() {
        let campaign = format!("nl{}{:02}", demo.year, m + 1);
        let sent = month + chrono::Days::new(9);
        for (k, (c, p)) in people.iter().enumerate().filter(|(_, (_, p))| p.subscribed && p.created <= sent) {
            let id = subscriber_hash(&p.email);
            if (k + m) % 3 == 0 {
                continue;
            }
            activity.push(vec![
                "open".into(),
                campaign.clone(),
                id.clone(),
                format!("{sent} 09:{:02}:00", k % 60),
                LIST.into(),
                String::new(),
            ]);
            if c.channel == Channel::Newsletter || (k + m) % 5 == 0 {
                let url = "https://lumenops.example/demo?utm_source=mailchimp&utm_medium=email&utm_campaign=newsletter";
                activity.push(vec![
                    "click".into(),
                    campaign.clone(),
                    id,
                    format!("{sent} 10:{:02}:00", k % 60),
                    LIST.into(),
                    url.into(),
                ]);
            }
        }
    }
    let header = ["action", "campaign_id", "member_id", "timestamp", "list_id", "url"];
    write(dir, "exports/mailchimp/campaign_recipient_activity.csv", csv_text(&header, activity))
}
