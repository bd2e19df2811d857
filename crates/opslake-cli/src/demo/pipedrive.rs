//! Pipedrive, where account managers work expansions: every won customer gets an organization,
//! its champion as a person, an upsell deal (won for some, open for the rest) and the business
//! review that started it, as Airbyte lands the streams ({stream, data, emitted_at} lines).
//! The account managers are the sales reps, with the work emails the other tools know.

use std::fmt::Write as _;
use std::path::Path;

use chrono::Days;
use serde_json::{Value, json};

use super::{Demo, write};
use crate::CliError;

fn user_id(rep: usize) -> u64 {
    11_884_360 + rep as u64
}

pub(super) fn write_exports(demo: &Demo, dir: &Path) -> Result<(), CliError> {
    let emitted = 1_767_225_600_000u64; // 2026-01-01, when the connector last synced
    let mut lines = String::new();
    let mut emit = |stream: &str, data: Value| {
        let _ = writeln!(lines, "{}", json!({"stream": stream, "data": data, "emitted_at": emitted}));
    };
    for (i, r) in demo.reps.iter().enumerate() {
        emit(
            "users",
            json!({
                "id": user_id(i),
                "name": format!("{} {}", r.first, r.last),
                "email": format!("{}.{}@lumenops.example", r.first.to_lowercase(), r.last.to_lowercase()),
                "active_flag": true,
                "created": "2025-01-06 09:00:00",
                "modified": "2025-01-06 09:00:00",
                "timezone_name": "Europe/Berlin",
            }),
        );
    }
    for c in demo.companies.iter().filter(|c| c.deal.won()) {
        let (org, person, deal) = (500 + c.id as u64, 9_000 + c.id as u64, 3_000 + c.id as u64);
        let owner = user_id(c.deal.rep);
        let opened = c.deal.close + Days::new(45);
        let since = format!("{opened} 10:00:00");
        emit(
            "organizations",
            json!({"id": org, "name": c.name, "owner_id": owner, "add_time": since, "update_time": since,
                   "active_flag": true, "address": null, "address_country": c.country}),
        );
        let champion = &c.people[0];
        emit(
            "persons",
            json!({"id": person, "name": format!("{} {}", champion.first, champion.last),
                   "first_name": champion.first, "last_name": champion.last, "primary_email": champion.email,
                   "org_id": org, "owner_id": owner, "add_time": since, "update_time": since, "active_flag": true}),
        );
        let expected = opened + Days::new(60);
        let won = c.id % 2 == 0 && expected.to_string() < format!("{}-12-31", demo.year);
        emit(
            "deals",
            json!({"id": deal, "user_id": owner, "person_id": person, "org_id": org, "stage_id": if won { 5 } else { 2 },
                   "title": format!("{} - expansion", c.name), "value": c.deal.amount / 4, "currency": c.currency(),
                   "add_time": since, "update_time": if won { format!("{expected} 16:00:00") } else { since.clone() },
                   "deleted": false, "status": if won { "won" } else { "open" },
                   "close_time": won.then(|| format!("{expected} 16:00:00")), "pipeline_id": 2,
                   "expected_close_date": expected.to_string(), "origin": "Expansion", "probability": if won { 100 } else { 40 }}),
        );
        emit(
            "activities",
            json!({"id": 7_000 + c.id, "user_id": owner, "done": true, "type": "meeting",
                   "due_date": opened.to_string(), "due_time": "10:00", "duration": "01:00", "add_time": since,
                   "subject": format!("Business review with {}", c.name), "org_id": org, "person_id": person,
                   "deal_id": deal, "active_flag": true, "update_time": since}),
        );
    }
    write(dir, "exports/pipedrive/airbyte_records.jsonl", lines)
}
