//! Greenhouse, where the company hires: the Harvest API's jobs, candidates and applications.
//! Everyone hired during the year came through it; each opening also had rejected applicants.

use std::path::Path;

use chrono::Days;
use serde_json::json;

use super::{Demo, write};
use crate::CliError;

pub(super) fn write_exports(demo: &Demo, dir: &Path) -> Result<(), CliError> {
    let start = chrono::NaiveDate::from_ymd_opt(demo.year - 2, 1, 1).expect("valid date");
    let hires: Vec<_> = demo.staff.iter().filter(|e| e.hired >= start).collect();
    let (mut jobs, mut candidates, mut applications) = (Vec::new(), Vec::new(), Vec::new());
    for e in &hires {
        let job = 4000 + e.id;
        let opened = e.hired - Days::new(75);
        jobs.push(json!({
            "id": job, "name": e.title, "requisition_id": format!("REQ-{job}"), "status": "closed",
            "employment_type": "Full-time", "created_at": format!("{opened}T09:00:00Z"), "opened_at": format!("{opened}T09:00:00Z"),
            "closed_at": format!("{}T09:00:00Z", e.hired - Days::new(20)),
            "departments": [{"id": 300, "name": e.department}], "offices": [{"id": 200, "name": "Berlin", "location": {"name": "Berlin, Germany"}}],
        }));
        // The hire and two candidates turned down at different stages.
        for (k, (first, last, status, stage)) in [
            (e.first, e.last, "hired", "Offer"),
            ("Alex", "Moreau", "rejected", "Phone Screen"),
            ("Sam", "Petrov", "rejected", "Onsite Interview"),
        ]
        .into_iter()
        .enumerate()
        {
            let candidate = 70_000 + e.id * 10 + k;
            let applied = opened + Days::new(10 + 7 * k as u64);
            let email = if k == 0 {
                format!("{}.{}@example.org", first.to_lowercase(), last.to_lowercase())
            } else {
                format!("cand{candidate}@example.org")
            };
            candidates.push(json!({
                "id": candidate, "first_name": first, "last_name": last, "company": null, "title": null,
                "created_at": format!("{applied}T08:00:00Z"), "last_activity": format!("{}T08:00:00Z", applied + Days::new(20)),
                "is_private": false, "phone_numbers": [], "email_addresses": [{"value": email, "type": "personal"}],
            }));
            applications.push(json!({
                "id": 90_000 + e.id * 10 + k, "candidate_id": candidate, "prospect": false,
                "applied_at": format!("{applied}T08:00:00Z"),
                "rejected_at": if status == "rejected" { Some(format!("{}T08:00:00Z", applied + Days::new(14))) } else { None },
                "last_activity_at": format!("{}T08:00:00Z", applied + Days::new(20)),
                "source": {"id": 2, "public_name": if k == 0 { "Referral" } else { "Jobs page on your website" }},
                "rejection_reason": if status == "rejected" { Some(json!({"id": 8, "name": "Lacking skill(s)/qualification(s)"})) } else { None },
                "jobs": [{"id": job, "name": e.title}], "status": status, "current_stage": {"id": 30 + k, "name": stage},
            }));
        }
    }
    let pretty = |v: serde_json::Value| serde_json::to_string_pretty(&v).expect("JSON");
    write(dir, "exports/greenhouse/jobs.json", pretty(json!(jobs)))?;
    write(dir, "exports/greenhouse/candidates.json", pretty(json!(candidates)))?;
    write(dir, "exports/greenhouse/applications.json", pretty(json!(applications)))
}
