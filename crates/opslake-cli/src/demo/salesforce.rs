//! Salesforce Data Export (Setup > Data Export): Account, Contact, Opportunity and User CSVs,
//! every cell quoted, 18-character ids. Sales is the CRM of record.

use std::path::Path;

use super::{Demo, csv_text, write};
use crate::CliError;

pub(super) fn account_id(company: usize) -> String {
    format!("0015g00000D{company:07}")
}

pub(super) fn user_id(rep: usize) -> String {
    format!("0055g00000U{rep:07}")
}

pub(super) fn write_exports(demo: &Demo, dir: &Path) -> Result<(), CliError> {
    let users = demo.reps.iter().enumerate().map(|(i, r)| {
        vec![
            user_id(i),
            format!("{}.{}@lumenops.example", r.first.to_lowercase(), r.last.to_lowercase()),
            r.first.into(),
            r.last.into(),
            format!("{}.{}@lumenops.example", r.first.to_lowercase(), r.last.to_lowercase()),
            "Account Executive".into(),
            "Sales".into(),
            "00E5g000000ROLE01".into(),
            "1".into(),
            "2024-01-02 09:00:00".into(),
        ]
    });
    let header = [
        "Id",
        "Username",
        "FirstName",
        "LastName",
        "Email",
        "Title",
        "Department",
        "UserRoleId",
        "IsActive",
        "CreatedDate",
    ];
    write(dir, "exports/salesforce/User.csv", csv_text(&header, users))?;

    let accounts = demo.companies.iter().map(|c| {
        vec![
            account_id(c.id),
            "0".into(),
            c.name.clone(),
            if c.deal.won() { "Customer" } else { "Prospect" }.into(),
            String::new(),
            format!("A-{:05}", c.id),
            c.country.into(),
            format!("https://www.{}", c.domain),
            c.industry.into(),
            c.employees.to_string(),
            c.currency().into(),
            user_id(c.deal.rep),
            format!("{} 09:00:00", c.people[0].created),
        ]
    });
    let header = [
        "Id",
        "IsDeleted",
        "Name",
        "Type",
        "BillingCity",
        "AccountNumber",
        "BillingCountry",
        "Website",
        "Industry",
        "NumberOfEmployees",
        "CurrencyIsoCode",
        "OwnerId",
        "CreatedDate",
    ];
    write(dir, "exports/salesforce/Account.csv", csv_text(&header, accounts))?;

    let contacts = demo.companies.iter().flat_map(|c| {
        c.people.iter().map(move |p| {
            vec![
                format!("0035g00000C{:07}", p.id),
                "0".into(),
                account_id(c.id),
                p.first.clone(),
                p.last.clone(),
                p.email.clone(),
                p.title.into(),
                String::new(),
                c.channel.lead_source().into(),
                if p.subscribed { "0" } else { "1" }.into(),
                user_id(c.deal.rep),
                format!("{} 10:00:00", p.created),
            ]
        })
    });
    let header = [
        "Id",
        "IsDeleted",
        "AccountId",
        "FirstName",
        "LastName",
        "Email",
        "Title",
        "ReportsToId",
        "LeadSource",
        "HasOptedOutOfEmail",
        "OwnerId",
        "CreatedDate",
    ];
    write(dir, "exports/salesforce/Contact.csv", csv_text(&header, contacts))?;

    let deals = demo.companies.iter().map(|c| {
        let d = &c.deal;
        let closed = d.stage.starts_with("Closed");
        vec![
            format!("0065g00000O{:07}", c.id),
            "0".into(),
            account_id(c.id),
            format!("{} - Platform", c.name),
            d.stage.into(),
            d.amount.to_string(),
            d.close.to_string(),
            "New Business".into(),
            c.channel.lead_source().into(),
            if closed { "1" } else { "0" }.into(),
            if d.won() { "1" } else { "0" }.into(),
            match d.stage {
                "Closed Won" => "Closed",
                "Closed Lost" => "Omitted",
                _ => "Pipeline",
            }
            .into(),
            c.currency().into(),
            user_id(d.rep),
            format!("0035g00000C{:07}", c.people[0].id),
            format!("{} 11:00:00", c.people[0].created),
        ]
    });
    let header = [
        "Id",
        "IsDeleted",
        "AccountId",
        "Name",
        "StageName",
        "Amount",
        "CloseDate",
        "Type",
        "LeadSource",
        "IsClosed",
        "IsWon",
        "ForecastCategoryName",
        "CurrencyIsoCode",
        "OwnerId",
        "ContactId",
        "CreatedDate",
    ];
    write(dir, "exports/salesforce/Opportunity.csv", csv_text(&header, deals))
}
