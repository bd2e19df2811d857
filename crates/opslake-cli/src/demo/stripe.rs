//! Stripe Dashboard > Payments > Export (unified_payments.csv): a card charge a month for the
//! US customers on monthly plans and for the self-serve buyers sales never met.

use std::path::Path;

use chrono::{Datelike, NaiveDate};

use super::{Biller, Demo, csv_text, money, write};
use crate::CliError;

pub(super) fn write_exports(demo: &Demo, dir: &Path) -> Result<(), CliError> {
    struct Charge {
        customer: String,
        email: String,
        description: String,
        cents: u64,
        month: NaiveDate,
    }
    let mut charges = Vec::new();
    for c in demo.companies.iter().filter(|c| c.biller == Some(Biller::Stripe)) {
        for month in demo.months_from(c.deal.close).into_iter().skip(1) {
            charges.push(Charge {
                customer: format!("cus_D{:06}", c.id),
                email: c.people[0].email.clone(),
                description: c.name.clone(),
                cents: c.deal.amount * 100 / 12,
                month,
            });
        }
    }
    for s in &demo.self_serve {
        for month in demo.months_from(s.since) {
            charges.push(Charge {
                customer: format!("cus_S{:06}", s.id),
                email: s.email.clone(),
                description: s.name.clone(),
                cents: s.monthly_cents,
                month,
            });
        }
    }
    let rows = charges.iter().enumerate().map(|(i, ch)| {
        let created = format!("{}-{:02}-{:02} 08:{:02}:00", ch.month.year(), ch.month.month(), 1 + i % 27, i % 60);
        // Stripe's fee: 2.9% + 30 cents.
        let fee = ch.cents * 29 / 1000 + 30;
        vec![
            format!("ch_demo{i:06}"),
            created,
            money(ch.cents),
            "0.00".into(),
            "usd".into(),
            "true".into(),
            money(ch.cents),
            "0.00".into(),
            "usd".into(),
            String::new(),
            "Subscription".into(),
            money(fee),
            String::new(),
            "LUMENOPS".into(),
            "Paid".into(),
            "Payment complete.".into(),
            "0.00".into(),
            format!("pm_demo{i:06}"),
            ch.customer.clone(),
            ch.description.clone(),
            ch.email.clone(),
            String::new(),
            String::new(),
        ]
    });
    let header = [
        "id",
        "Created date (UTC)",
        "Amount",
        "Amount Refunded",
        "Currency",
        "Captured",
        "Converted Amount",
        "Converted Amount Refunded",
        "Converted Currency",
        "Decline Reason",
        "Description",
        "Fee",
        "Refunded date (UTC)",
        "Statement Descriptor",
        "Status",
        "Seller Message",
        "Taxes On Fee",
        "Card ID",
        "Customer ID",
        "Customer Description",
        "Customer Email",
        "Invoice ID",
        "Transfer",
    ];
    write(dir, "exports/stripe/unified_payments.csv", csv_text(&header, rows))
}
