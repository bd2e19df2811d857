//! BambooHR, the people team's record of who works here: the employee directory as the API
//! returns it ({fields, employees}), with BambooHR's field names and pay rates like
//! "72000.00 USD". The sales reps are employees, with the work emails the CRM knows them by.

use std::path::Path;

use serde_json::json;

use super::{Demo, money, write};
use crate::CliError;

pub(super) fn employee_id(staff: usize) -> String {
    (100 + staff).to_string()
}

pub(super) fn write_exports(demo: &Demo, dir: &Path) -> Result<(), CliError> {
    let employees: Vec<_> = demo
        .staff
        .iter()
        .map(|e| {
            json!({
                "id": employee_id(e.id),
                "employeeNumber": format!("E-{:03}", e.id + 1),
                "displayName": format!("{} {}", e.first, e.last),
                "firstName": e.first,
                "lastName": e.last,
                "workEmail": e.email(),
                "jobTitle": e.title,
                "department": e.department,
                "location": "Berlin",
                "status": "Active",
                "employmentHistoryStatus": "Full-Time",
                "hireDate": e.hired.to_string(),
                "terminationDate": "0000-00-00",
                "payRate": format!("{} USD", money(e.salary_cents)),
                "paidPer": "Year",
                "supervisorEId": if e.id == demo.reps.len() { None } else { Some(employee_id(demo.reps.len())) },
            })
        })
        .collect();
    let fields = json!([
        {"id": "displayName", "type": "text", "name": "Display Name"},
        {"id": "workEmail", "type": "email", "name": "Work Email"},
        {"id": "payRate", "type": "currency", "name": "Pay rate"}
    ]);
    let body = json!({"fields": fields, "employees": employees});
    write(dir, "exports/bamboohr/employees.json", serde_json::to_string_pretty(&body).expect("JSON"))
}
