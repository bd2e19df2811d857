//! QuickBooks Online, the US entity's books: the API's XML query responses for customers,
//! invoices (a quarter of the contract each, from the quarter after the deal closed) and the
//! payments of every invoice but the latest.

use std::fmt::Write as _;
use std::path::Path;

use chrono::Datelike;

use super::{Biller, Demo, money, write};
use crate::CliError;

fn response(body: &str) -> String {
    format!(
        "<IntuitResponse xmlns=\"http://schema.intuit.com/finance/v3\" time=\"2026-01-02T09:00:00-08:00\">\n  <QueryResponse startPosition=\"1\" maxResults=\"1000\">\n{body}  </QueryResponse>\n</IntuitResponse>\n"
    )
}

/// XML text with its five special characters escaped.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

pub(super) fn write_exports(demo: &Demo, dir: &Path) -> Result<(), CliError> {
    let (mut customers, mut invoices, mut payments) = (String::new(), String::new(), String::new());
    for c in demo.companies.iter().filter(|c| c.biller == Some(Biller::QuickBooks)) {
        let id = 100 + c.id;
        let _ = write!(
            customers,
            "    <Customer domain=\"QBO\" sparse=\"false\">\n      <Id>{id}</Id>\n      <SyncToken>0</SyncToken>\n      <MetaData><CreateTime>{close}T10:00:00-08:00</CreateTime><LastUpdatedTime>{close}T10:00:00-08:00</LastUpdatedTime></MetaData>\n      <DisplayName>{name}</DisplayName>\n      <Active>true</Active>\n      <PrimaryEmailAddr><Address>billing@{domain}</Address></PrimaryEmailAddr>\n      <CurrencyRef>USD</CurrencyRef>\n      <Balance>0</Balance>\n      <BalanceWithJobs>0</BalanceWithJobs>\n    </Customer>\n",
            close = c.deal.close,
            name = esc(&c.name),
            domain = c.domain,
        );
        let quarters: Vec<_> =
            demo.months_from(c.deal.close).into_iter().skip(1).filter(|m| m.month() % 3 == 1).collect();
        let cents = c.deal.amount * 100 / 4;
        for (k, date) in quarters.iter().enumerate() {
            let invoice_id = id * 10 + k;
            let paid = k + 1 < quarters.len();
            let _ = write!(
                invoices,
                "    <Invoice domain=\"QBO\" sparse=\"false\">\n      <Id>{invoice_id}</Id>\n      <DocNumber>{invoice_id}</DocNumber>\n      <TxnDate>{date}</TxnDate>\n      <Line><Id>1</Id><LineNum>1</LineNum><Amount>{amount}</Amount><DetailType>SalesItemLineDetail</DetailType>\n        <SalesItemLineDetail><ItemRef>1</ItemRef><Qty>1</Qty><UnitPrice>{amount}</UnitPrice></SalesItemLineDetail></Line>\n      <CustomerRef>{id}</CustomerRef>\n      <CurrencyRef>USD</CurrencyRef>\n      <TotalAmt>{amount}</TotalAmt>\n      <Balance>{balance}</Balance>\n    </Invoice>\n",
                amount = money(cents),
                balance = if paid { "0".to_string() } else { money(cents) },
            );
            if paid {
                let _ = write!(
                    payments,
                    "    <Payment domain=\"QBO\" sparse=\"false\">\n      <Id>{invoice_id}</Id>\n      <TxnDate>{pay}</TxnDate>\n      <CustomerRef>{id}</CustomerRef>\n      <CurrencyRef>USD</CurrencyRef>\n      <TotalAmt>{amount}</TotalAmt>\n      <Line><Amount>{amount}</Amount><LinkedTxn><TxnId>{invoice_id}</TxnId><TxnType>Invoice</TxnType></LinkedTxn></Line>\n    </Payment>\n",
                    pay = *date + chrono::Days::new(20),
                    amount = money(cents),
                );
            }
        }
    }
    write(dir, "exports/quickbooks/customers.xml", response(&customers))?;
    write(dir, "exports/quickbooks/invoices.xml", response(&invoices))?;
    write(dir, "exports/quickbooks/payments.xml", response(&payments))
}
