//! Xero, the UK and EU entity's books: API JSON of invoices (ACCREC, one a quarter, in the
//! customer's currency, `/Date(ms+0000)/` dates) and of the payments of every invoice but the
//! latest.

use std::path::Path;

use chrono::{Datelike, NaiveDate};
use serde_json::json;

use super::{Biller, Demo, write};
use crate::CliError;

/// A date as Xero's JSON writes it.
fn ms_date(d: NaiveDate) -> String {
    let ms = d.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_millis();
    format!("/Date({ms}+0000)/")
}

pub(super) fn write_exports(demo: &Demo, dir: &Path) -> Result<(), CliError> {
    let (mut invoices, mut payments) = (Vec::new(), Vec::new());
    for c in demo.companies.iter().filter(|c| c.biller == Some(Biller::Xero)) {
        let contact = json!({
            "ContactID": format!("c0de0000-0000-4000-8000-{:012}", c.id),
            "Name": c.name,
            "EmailAddress": format!("accounts@{}", c.domain),
            "ContactStatus": "ACTIVE",
            "DefaultCurrency": c.currency(),
        });
        let quarters: Vec<NaiveDate> =
            demo.months_from(c.deal.close).into_iter().skip(1).filter(|m| m.month() % 3 == 1).collect();
        // Whole currency units: a quarter of the contract.
        let amount = (c.deal.amount / 4) as f64;
        for (k, date) in quarters.iter().enumerate() {
            let id = format!("1e000000-0000-4000-8000-{:09}{k:03}", c.id);
            let number = format!("INV-{:04}{k}", c.id);
            let paid = k + 1 < quarters.len();
            invoices.push(json!({
                "Type": "ACCREC", "InvoiceID": id, "InvoiceNumber": number, "Contact": contact,
                "Date": ms_date(*date), "DueDate": ms_date(*date + chrono::Days::new(30)),
                "Status": if paid { "PAID" } else { "AUTHORISED" }, "LineAmountTypes": "Exclusive",
                "LineItems": [{"LineItemID": format!("{id}-1"), "Description": "Platform subscription, one quarter",
                               "Quantity": 1.0, "UnitAmount": amount, "LineAmount": amount, "TaxAmount": 0.0, "AccountCode": "200"}],
                "SubTotal": amount, "TotalTax": 0.0, "Total": amount,
                "AmountDue": if paid { 0.0 } else { amount }, "AmountPaid": if paid { amount } else { 0.0 },
                "CurrencyCode": c.currency(), "UpdatedDateUTC": ms_date(*date),
            }));
            if paid {
                payments.push(json!({
                    "PaymentID": format!("9a000000-0000-4000-8000-{:09}{k:03}", c.id),
                    "Date": ms_date(*date + chrono::Days::new(25)), "Amount": amount, "Reference": number,
                    "PaymentType": "ACCRECPAYMENT", "Status": "AUTHORISED", "UpdatedDateUTC": ms_date(*date + chrono::Days::new(25)),
                    "Invoice": {"Type": "ACCREC", "InvoiceID": id, "InvoiceNumber": number, "Contact": contact,
                                "CurrencyCode": c.currency()},
                }));
            }
        }
    }
    let envelope = |key: &str, items: Vec<serde_json::Value>| {
        serde_json::to_string_pretty(&json!({"Id": "demo", "Status": "OK", key: items})).expect("JSON")
    };
    write(dir, "exports/xero/invoices.json", envelope("Invoices", invoices))?;
    write(dir, "exports/xero/payments.json", envelope("Payments", payments))
}
