//! Workday, where finance plans headcount: the supervisory organizations (the org chart), one
//! position per person on the staff plus the open ones, and the workers' position history, as
//! Fivetran lands the tables. Workers have Workday's own ids; the people are BambooHR's staff.

use std::path::Path;

use super::{Demo, csv_text, write};
use crate::CliError;

const SYNCED: &str = "2026-01-05 10:00:00";

fn org_id(department: &str) -> String {
    format!("org_{}", department.to_lowercase())
}

fn worker_id(staff: usize) -> String {
    format!("wk{:03}", staff + 1)
}

pub(super) fn write_exports(demo: &Demo, dir: &Path) -> Result<(), CliError> {
    let mut departments: Vec<&str> = demo.staff.iter().map(|e| e.department).collect();
    departments.sort_unstable();
    departments.dedup();
    let top = "org_lumen_ops".to_string();
    let head = |department: &str| demo.staff.iter().find(|e| e.department == department).map(|e| worker_id(e.id));
    // The company is the top of the hierarchy, managed by the executive; each department
    // reports to it, managed by its first person.
    let org = |id: String, code: String, name: &str, managed_by: &str| {
        vec![
            id,
            "false".into(),
            SYNCED.into(),
            String::new(),
            "false".into(),
            "2025-01-02 09:00:00".into(),
            "Berlin".into(),
            head(managed_by).unwrap_or_default(),
            name.to_string(),
            code,
            top.clone(),
            top.clone(),
            "SUPERVISORY".into(),
        ]
    };
    let mut orgs = vec![org(top.clone(), "SUPERVISORY_Lumen_Ops".into(), "Lumen Ops", "Executive")];
    orgs.extend(departments.iter().map(|d| org(org_id(d), format!("SUPERVISORY_{d}"), d, d)));
    let header = [
        "id",
        "_fivetran_deleted",
        "_fivetran_synced",
        "code",
        "inactive",
        "last_updated_date_time",
        "location",
        "manager_id",
        "name",
        "organization_code",
        "superior_organization_id",
        "top_level_organization_id",
        "type",
    ];
    write(dir, "exports/workday/workday_organization.csv", csv_text(&header, orgs))?;

    // Filled positions, then one open requisition per department that is hiring.
    let filled = demo.staff.iter().map(|e| (format!("pos{:03}", e.id + 1), e.title, e.department, Some(e), e.hired));
    let hiring = ["Sales", "Engineering"].into_iter().enumerate().map(|(i, d)| {
        let title = if d == "Sales" { "Account Executive" } else { "Data Engineer" };
        let opened = chrono::NaiveDate::from_ymd_opt(demo.year, 10, 1).expect("valid date");
        (format!("pos9{i:02}"), title, d, None, opened)
    });
    let positions = filled.chain(hiring).map(|(id, title, department, worker, since)| {
        vec![
            id.clone(),
            "false".into(),
            SYNCED.into(),
            since.to_string(),
            worker.is_none().to_string(),
            worker.is_none().to_string(),
            "false".into(),
            "false".into(),
            title.to_string(),
            id.replace("pos", "P-"),
            "Full_time".into(),
            format!("SUPERVISORY_{department}"),
            worker.map(|e| worker_id(e.id)).unwrap_or_default(),
        ]
    });
    let header = [
        "id",
        "_fivetran_deleted",
        "_fivetran_synced",
        "availability_date",
        "available_for_hire",
        "available_for_recruiting",
        "closed",
        "hiring_freeze",
        "job_posting_title",
        "position_code",
        "position_time_type_code",
        "supervisory_organization_id",
        "worker_for_filled_position_id",
    ];
    write(dir, "exports/workday/workday_position.csv", csv_text(&header, positions))?;

    let history = demo.staff.iter().map(|e| {
        vec![
            format!("pos{:03}", e.id + 1),
            worker_id(e.id),
            "true".into(),
            format!("{} 00:00:00", e.hired),
            "9999-12-31 23:59:59".into(),
            "false".into(),
            SYNCED.into(),
            "Berlin".into(),
            e.title.to_string(),
            e.hired.to_string(),
            "Regular".into(),
            String::new(),
            "100".into(),
            e.hired.to_string(),
        ]
    });
    let header = [
        "position_id",
        "worker_id",
        "_fivetran_active",
        "_fivetran_start",
        "_fivetran_end",
        "_fivetran_deleted",
        "_fivetran_synced",
        "business_site_summary_location",
        "business_title",
        "effective_date",
        "employee_type",
        "end_date",
        "full_time_equivalent_percentage",
        "start_date",
    ];
    write(dir, "exports/workday/workday_worker_position_history.csv", csv_text(&header, history))
}
