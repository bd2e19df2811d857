//! Gusto, the US payroll: its employee records and a payroll for each half month of the year,
//! as the API returns them with taxes, benefits and deductions. Every paycheck adds up: gross =
//! net + employee taxes + deductions.

use std::path::Path;

use chrono::{Datelike, NaiveDate};
use serde_json::json;

use super::{Demo, money, write};
use crate::CliError;

fn uuid(staff: usize) -> String {
    format!("9a5d0000-0000-4000-8000-{staff:012}")
}

pub(super) fn write_exports(demo: &Demo, dir: &Path) -> Result<(), CliError> {
    let employees: Vec<_> = demo
        .staff
        .iter()
        .map(|e| {
            json!({
                "uuid": uuid(e.id), "first_name": e.first, "last_name": e.last, "work_email": e.email(),
                "company_uuid": "co-lumen", "department": e.department, "terminated": false, "onboarded": true,
                "onboarding_status": "onboarding_completed",
                "jobs": [{"uuid": format!("job-{}", e.id), "title": e.title, "rate": money(e.salary_cents),
                          "payment_unit": "Year", "hire_date": e.hired.to_string()}],
            })
        })
        .collect();
    write(dir, "exports/gusto/employees.json", serde_json::to_string_pretty(&json!(employees)).expect("JSON"))?;

    for month in 1..=12u32 {
        for half in 0..2u32 {
            let start = NaiveDate::from_ymd_opt(demo.year, month, 1 + half * 15).expect("valid date");
            let end = if half == 0 {
                NaiveDate::from_ymd_opt(demo.year, month, 15).expect("valid date")
            } else {
                start.with_day(1).and_then(|d| d.checked_add_months(chrono::Months::new(1))).expect("next month")
                    - chrono::Days::new(1)
            };
            let id = format!("pr-{}-{month:02}-{}", demo.year, half + 1);
            let comps: Vec<_> = demo
                .staff
                .iter()
                .filter(|e| e.hired <= end)
                .map(|e| {
                    // Cents throughout: taxes and deductions round down, net takes the rest.
                    let gross = e.salary_cents / 24;
                    let (federal, social, medicare) = (gross * 15 / 100, gross * 62 / 1000, gross * 145 / 10_000);
                    let (k401, medical) = (gross * 4 / 100, 12_000);
                    let net = gross - federal - social - medicare - k401 - medical;
                    json!({
                        "employee_uuid": uuid(e.id), "excluded": false, "payment_method": "Direct Deposit",
                        "gross_pay": money(gross), "net_pay": money(net), "check_amount": money(net),
                        "fixed_compensations": [{"name": "Salary", "amount": money(gross), "job_uuid": format!("job-{}", e.id)}],
                        "taxes": [
                            {"name": "Federal Income Tax", "employer": false, "amount": money(federal)},
                            {"name": "Social Security", "employer": false, "amount": money(social)},
                            {"name": "Social Security", "employer": true, "amount": money(social)},
                            {"name": "Medicare", "employer": false, "amount": money(medicare)},
                            {"name": "Medicare", "employer": true, "amount": money(medicare)}
                        ],
                        "benefits": [{"name": "Medical", "employee_deduction": money(medical), "company_contribution": money(45_000)}],
                        "deductions": [{"name": "401(k)", "amount": money(k401)}],
                    })
                })
                .collect();
            let payroll = json!({
                "uuid": id, "payroll_uuid": id, "company_uuid": "co-lumen", "processed": true,
                "pay_period": {"start_date": start.to_string(), "end_date": end.to_string()},
                "check_date": (end + chrono::Days::new(3)).to_string(),
                "employee_compensations": comps,
            });
            write(
                dir,
                &format!("exports/gusto/payroll-{id}.json"),
                serde_json::to_string_pretty(&payroll).expect("JSON"),
            )?;
        }
    }
    Ok(())
}
