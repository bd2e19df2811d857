//! `opslake demo`: a fictional company's exports from every tool opslake maps, in each tool's
//! own export format, with the same companies and people across tools; then the whole pipeline
//! on a local lake and the cross-department marts printed.
//!
//! The company is generated from a seed (the same seed gives the same files), so the printed
//! numbers are reproducible. One module per tool writes that tool's files: a tool added to
//! opslake adds a module here.

mod bamboohr;
mod fx_rates;
mod google_ads;
mod greenhouse;
mod gusto;
mod hubspot;
mod linkedin_ads;
mod mailchimp;
mod meta_ads;
mod pipedrive;
mod quickbooks;
mod salesforce;
mod stripe;
mod workday;
mod xero;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{Datelike, Days, NaiveDate};
use clap::Args;

use opslake_schema::ErrorClass;

use crate::CliError;

/// Arguments of `opslake demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory of the demo project (exports, opslake.yml, pipelines, lake); replaced if it
    /// holds an earlier demo.
    #[arg(long, default_value = "demo")]
    pub dir: PathBuf,
    /// Seed of the fictional company: the same seed writes the same exports.
    #[arg(long, default_value_t = 2025)]
    pub seed: u64,
    /// Customer companies to invent.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(5..=5000))]
    pub companies: u64,
    /// Only write the exports and the project; do not run the pipeline.
    #[arg(long)]
    pub no_run: bool,
}

/// A small deterministic generator (SplitMix64): reproducible without a dependency.
pub(crate) struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// How a customer first came: the channel its lead arrived through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Channel {
    Google,
    Meta,
    LinkedIn,
    Newsletter,
    Referral,
}

impl Channel {
    /// As the sales team records it (Salesforce LeadSource).
    pub(crate) fn lead_source(self) -> &'static str {
        match self {
            Self::Google => "Google Ads",
            Self::Meta => "Meta Ads",
            Self::LinkedIn => "LinkedIn Ads",
            Self::Newsletter => "Newsletter",
            Self::Referral => "Referral",
        }
    }

    /// The utm_source of the lead's landing URL.
    pub(crate) fn utm_source(self) -> Option<&'static str> {
        match self {
            Self::Google => Some("google"),
            Self::Meta => Some("facebook"),
            Self::LinkedIn => Some("linkedin"),
            Self::Newsletter => Some("mailchimp"),
            Self::Referral => None,
        }
    }
}

/// Where a customer is billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Biller {
    /// Card payments every month (self-serve and most US customers).
    Stripe,
    /// Invoices from the US entity's books.
    QuickBooks,
    /// Invoices from the UK and EU entity's books.
    Xero,
}

pub(crate) struct Person {
    pub(crate) id: usize,
    pub(crate) first: String,
    pub(crate) last: String,
    pub(crate) email: String,
    pub(crate) title: &'static str,
    pub(crate) created: NaiveDate,
    pub(crate) subscribed: bool,
}

pub(crate) struct Deal {
    pub(crate) amount: u64,
    /// "Closed Won", "Closed Lost" or an open stage.
    pub(crate) stage: &'static str,
    pub(crate) close: NaiveDate,
    pub(crate) rep: usize,
}

impl Deal {
    pub(crate) fn won(&self) -> bool {
        self.stage == "Closed Won"
    }
}

pub(crate) struct Company {
    pub(crate) id: usize,
    pub(crate) name: String,
    pub(crate) domain: String,
    /// ISO 3166 alpha-2.
    pub(crate) country: &'static str,
    pub(crate) industry: &'static str,
    pub(crate) employees: u64,
    pub(crate) channel: Channel,
    pub(crate) people: Vec<Person>,
    pub(crate) deal: Deal,
    /// Set when the deal was won: who bills it.
    pub(crate) biller: Option<Biller>,
}

impl Company {
    /// The currency it is billed in.
    pub(crate) fn currency(&self) -> &'static str {
        match self.country {
            "GB" => "GBP",
            "DE" | "FR" | "NL" => "EUR",
            _ => "USD",
        }
    }
}

pub(crate) struct Rep {
    pub(crate) first: &'static str,
    pub(crate) last: &'static str,
}

pub(crate) struct Campaign {
    pub(crate) channel: Channel,
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) utm_campaign: String,
    /// Daily spend in the account's currency (USD), in cents.
    pub(crate) daily_cents: u64,
}

/// A customer who signed up by card without ever talking to sales: billed, not in the CRM.
pub(crate) struct SelfServe {
    pub(crate) id: usize,
    pub(crate) name: String,
    pub(crate) email: String,
    pub(crate) since: NaiveDate,
    pub(crate) monthly_cents: u64,
}

/// The fictional company's year: its customers, sales team, campaigns and self-serve buyers.
pub(crate) struct Demo {
    pub(crate) year: i32,
    pub(crate) companies: Vec<Company>,
    pub(crate) reps: Vec<Rep>,
    pub(crate) campaigns: Vec<Campaign>,
    pub(crate) self_serve: Vec<SelfServe>,
    /// The company's own staff; the sales reps are the first of them.
    pub(crate) staff: Vec<Employee>,
}

/// Someone the company employs.
pub(crate) struct Employee {
    pub(crate) id: usize,
    pub(crate) first: &'static str,
    pub(crate) last: &'static str,
    pub(crate) title: &'static str,
    pub(crate) department: &'static str,
    /// Yearly salary in USD cents.
    pub(crate) salary_cents: u64,
    pub(crate) hired: NaiveDate,
}

impl Employee {
    /// Work email, the same in the CRM (for reps), HR and payroll.
    pub(crate) fn email(&self) -> String {
        format!("{}.{}@lumenops.example", self.first.to_lowercase(), self.last.to_lowercase())
    }
}

/// Staff besides the sales reps: (first, last, title, department, salary in dollars).
const STAFF: &[(&str, &str, &str, &str, u64)] = &[
    ("Lena", "Fischer", "CEO", "Executive", 180_000),
    ("Omar", "Haddad", "Head of Marketing", "Marketing", 140_000),
    ("Priya", "Nakamura", "Growth Marketer", "Marketing", 95_000),
    ("Sven", "Eriksen", "Controller", "Finance", 120_000),
    ("Rosa", "Lopez", "Data Engineer", "Engineering", 135_000),
    ("Kofi", "Okafor", "Backend Engineer", "Engineering", 130_000),
    ("Hana", "Ito", "People Partner", "People", 90_000),
    ("Quinn", "Varga", "Customer Success Manager", "Customer Success", 85_000),
];

const PREFIXES: &[&str] = &[
    "Alder",
    "Beacon",
    "Cinder",
    "Delta",
    "Ember",
    "Fjord",
    "Granite",
    "Harbor",
    "Iris",
    "Juniper",
    "Kestrel",
    "Lumen",
    "Meridian",
    "Nimbus",
    "Orchard",
    "Pioneer",
    "Quarry",
    "Riverside",
    "Summit",
    "Tundra",
    "Umber",
    "Vertex",
    "Willow",
    "Yarrow",
    "Zephyr",
];
const SUFFIXES: &[&str] = &["Analytics", "Logistics", "Foods", "Health", "Robotics", "Studios", "Energy", "Labs"];
const INDUSTRIES: &[&str] =
    &["Software", "Logistics", "Food", "Healthcare", "Manufacturing", "Media", "Energy", "Retail"];
const FIRST: &[&str] = &[
    "Ana", "Ben", "Chloe", "Dev", "Elif", "Farah", "Gus", "Hana", "Ivan", "Jade", "Kofi", "Lena", "Mateo", "Nora",
    "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara", "Uma", "Viktor", "Wen", "Yusuf", "Zoe",
];
const LAST: &[&str] = &[
    "Abbott", "Baker", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito", "Jensen", "Kowalski",
    "Lopez", "Moreau", "Nakamura", "Okafor", "Petrov", "Quint", "Rossi", "Schmidt", "Tanaka", "Ueda", "Varga",
];
const TITLES: &[&str] = &["CFO", "Head of Operations", "VP Sales", "Data Lead", "COO", "Controller"];
const COUNTRIES: &[&str] = &["US", "US", "US", "US", "GB", "GB", "DE", "FR", "NL"];
const OPEN_STAGES: &[&str] = &["Qualification", "Proposal", "Negotiation"];

impl Demo {
    /// The company of `seed` with `n` customer companies.
    pub(crate) fn generate(seed: u64, n: usize) -> Self {
        let mut rng = Rng(seed);
        let year = 2025;
        let reps = vec![
            Rep { first: "Maya", last: "Chen" },
            Rep { first: "Tom", last: "Okoro" },
            Rep { first: "Ines", last: "Vidal" },
            Rep { first: "Paul", last: "Brandt" },
        ];
        let campaigns = vec![
            Campaign::new(Channel::Google, "20001", "Search - Brand", "brand_search", 9_000),
            Campaign::new(Channel::Google, "20002", "Search - Ops reporting", "ops_reporting", 14_000),
            Campaign::new(Channel::Meta, "30001", "Lookalike - Finance teams", "finance_lookalike", 8_000),
            Campaign::new(Channel::LinkedIn, "40001", "Sponsored - COO guide", "coo_guide", 11_000),
        ];
        let start = NaiveDate::from_ymd_opt(year, 1, 1).expect("valid date");
        let mut companies = Vec::with_capacity(n);
        let mut person_id = 0;
        for id in 0..n {
            let name = format!(
                "{} {}{}",
                PREFIXES[id % PREFIXES.len()],
                SUFFIXES[(id / PREFIXES.len() + id) % SUFFIXES.len()],
                if id >= PREFIXES.len() * SUFFIXES.len() { format!(" {}", id) } else { String::new() }
            );
            let slug: String = name.to_lowercase().chars().filter(char::is_ascii_alphanumeric).collect();
            let domain = format!("{slug}.example");
            let channel = rng.pick(&[
                Channel::Google,
                Channel::Google,
                Channel::Meta,
                Channel::LinkedIn,
                Channel::Newsletter,
                Channel::Referral,
            ]);
            let created = start + Days::new(rng.below(240));
            let mut people = Vec::new();
            for k in 0..(1 + rng.below(3)) {
                let (first, last) = (rng.pick(FIRST), rng.pick(LAST));
                people.push(Person {
                    id: person_id,
                    first: first.to_string(),
                    last: last.to_string(),
                    email: format!("{}.{}@{domain}", first.to_lowercase(), last.to_lowercase()),
                    title: rng.pick(TITLES),
                    created: created + Days::new(k * 3),
                    subscribed: rng.chance(0.7),
                });
                person_id += 1;
            }
            let close = created + Days::new(20 + rng.below(100));
            let stage = match rng.below(10) {
                0..=5 => "Closed Won",
                6 | 7 => "Closed Lost",
                _ => rng.pick(OPEN_STAGES),
            };
            let stage = if stage == "Closed Won" || close.year() == year { stage } else { "Negotiation" };
            let country = rng.pick(COUNTRIES);
            let deal =
                Deal { amount: (6 + rng.below(55)) * 1_000, stage, close, rep: rng.below(reps.len() as u64) as usize };
            let biller = deal.won().then(|| match country {
                "US" if rng.chance(0.4) => Biller::QuickBooks,
                "US" => Biller::Stripe,
                _ => Biller::Xero,
            });
            companies.push(Company {
                id,
                name,
                domain,
                country,
                industry: rng.pick(INDUSTRIES),
                employees: 10 + rng.below(2_000),
                channel,
                people,
                deal,
                biller,
            });
        }
        let self_serve = (0..n / 10)
            .map(|i| SelfServe {
                id: i,
                name: format!("{} {}", rng.pick(FIRST), rng.pick(LAST)),
                email: format!("buyer{i}@mailbox.example"),
                since: start + Days::new(rng.below(300)),
                monthly_cents: (49 + rng.below(200)) * 100,
            })
            .collect();
        let mut staff: Vec<Employee> = reps
            .iter()
            .enumerate()
            .map(|(i, r)| Employee {
                id: i,
                first: r.first,
                last: r.last,
                title: "Account Executive",
                department: "Sales",
                salary_cents: (70_000 + 5_000 * i as u64) * 100,
                hired: NaiveDate::from_ymd_opt(year - 1 + i as i32 / 2, 1 + (i as u32 * 4) % 12, 1)
                    .expect("valid date"),
            })
            .collect();
        for (k, (first, last, title, department, salary)) in STAFF.iter().enumerate() {
            staff.push(Employee {
                id: staff.len(),
                first,
                last,
                title,
                department,
                salary_cents: salary * 100,
                hired: NaiveDate::from_ymd_opt(year - 2 + (k % 3) as i32, 1 + (k as u32 * 5) % 12, 1)
                    .expect("valid date"),
            });
        }
        Self { year, companies, reps, campaigns, self_serve, staff }
    }

    /// Days of the demo's year.
    pub(crate) fn days(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        let first = NaiveDate::from_ymd_opt(self.year, 1, 1).expect("valid date");
        first.iter_days().take_while(|d| d.year() == self.year)
    }

    /// First days of the months from `from`'s month to the year's end.
    pub(crate) fn months_from(&self, from: NaiveDate) -> Vec<NaiveDate> {
        (from.month()..=12).filter_map(|m| NaiveDate::from_ymd_opt(self.year, m, 1)).collect()
    }
}

impl Campaign {
    fn new(channel: Channel, id: &str, name: &str, utm: &str, daily_cents: u64) -> Self {
        Self { channel, id: id.into(), name: name.into(), utm_campaign: utm.into(), daily_cents }
    }
}

/// Cents as a decimal amount: 123456 is "1234.56".
pub(crate) fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// A CSV file from a header and rows, quoted where needed.
pub(crate) fn csv_text(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header).expect("in-memory write");
    for row in rows {
        w.write_record(&row).expect("in-memory write");
    }
    String::from_utf8(w.into_inner().expect("in-memory flush")).expect("UTF-8 cells")
}

/// Writes `text` to `dir/rel`, creating folders.
pub(crate) fn write(dir: &Path, rel: &str, text: impl AsRef<[u8]>) -> Result<(), CliError> {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| CliError::io(parent, e))?;
    }
    std::fs::write(&path, text).map_err(|e| CliError::io(&path, e))
}

// The demo project's pipelines: this repository's own, compiled in so the demo runs anywhere
// (listed by build.rs).
include!(concat!(env!("OUT_DIR"), "/demo_pipelines.rs"));

/// Connections whose account is not in US dollars: a Xero organisation in the UK.
const CURRENCIES: &[(&str, &str)] = &[("xero", "GBP")];

/// Every tool opslake maps (built in, from schemas/tools), with its connection's currency.
fn connections() -> Vec<(String, &'static str)> {
    let tools: Vec<String> = opslake_schema::embedded::files()
        .filter_map(|(path, _)| path.strip_prefix("tools/")?.strip_suffix(".yaml").map(str::to_string))
        .collect();
    tools
        .into_iter()
        .map(|tool| {
            let currency = CURRENCIES.iter().find(|(t, _)| *t == tool).map_or("USD", |(_, c)| c);
            (tool, currency)
        })
        .collect()
}

/// Writes the exports of `tool`: each tool's module writes its own formats. `None` for a tool
/// the demo has no module for.
fn write_tool(tool: &str, demo: &Demo, dir: &Path) -> Option<Result<(), CliError>> {
    let write = match tool {
        "salesforce" => salesforce::write_exports,
        "hubspot" => hubspot::write_exports,
        "pipedrive" => pipedrive::write_exports,
        "stripe" => stripe::write_exports,
        "quickbooks" => quickbooks::write_exports,
        "xero" => xero::write_exports,
        "fx_rates" => fx_rates::write_exports,
        "google_ads" => google_ads::write_exports,
        "meta_ads" => meta_ads::write_exports,
        "linkedin_ads" => linkedin_ads::write_exports,
        "mailchimp" => mailchimp::write_exports,
        "bamboohr" => bamboohr::write_exports,
        "workday" => workday::write_exports,
        "gusto" => gusto::write_exports,
        "greenhouse" => greenhouse::write_exports,
        _ => return None,
    };
    Some(write(demo, dir))
}

fn config() -> String {
    let mut text = String::from(
        "# The demo company, written by `opslake demo`: every export under exports/ is generated.\n\
         lake: ./lake\nreporting_currency: USD\nreporting_timezone: UTC\nfiscal_year_start_month: 1\n\nconnections:\n",
    );
    for (tool, currency) in connections() {
        let _ = write!(
            text,
            "  - name: demo_{tool}\n    tool: {tool}\n    path: \"exports/{tool}/*\"\n    options: {{currency: {currency}}}\n"
        );
    }
    text
}

/// Writes the demo project: `opslake.yml`, `pipelines/` and every tool's exports.
pub(crate) fn write_project(demo: &Demo, dir: &Path) -> Result<(), CliError> {
    write(dir, "opslake.yml", config())?;
    for (rel, text) in PIPELINES {
        write(dir, &format!("pipelines/{rel}"), text)?;
    }
    for (tool, _) in connections() {
        write_tool(&tool, demo, dir).ok_or_else(|| {
            CliError::new(ErrorClass::Internal, anyhow::anyhow!("the demo has no exports for {tool}"))
        })??;
    }
    Ok(())
}

/// A directory the demo may write into: missing, empty, or an earlier demo (its opslake.yml
/// says so). Anything else is a user's folder and is left alone.
fn prepare(dir: &Path) -> Result<(), CliError> {
    if !dir.exists() {
        return Ok(());
    }
    let config = dir.join("opslake.yml");
    let earlier = std::fs::read_to_string(&config).is_ok_and(|t| t.contains("written by `opslake demo`"));
    let empty = std::fs::read_dir(dir).map_err(|e| CliError::io(dir, e))?.next().is_none();
    if earlier {
        for sub in ["exports", "lake", "pipelines", "target"] {
            let p = dir.join(sub);
            if p.exists() {
                std::fs::remove_dir_all(&p).map_err(|e| CliError::io(&p, e))?;
            }
        }
        Ok(())
    } else if empty {
        Ok(())
    } else {
        Err(CliError::user(format!("{} exists and is not an earlier demo; choose another --dir", dir.display())))
    }
}

pub(crate) async fn run(args: &DemoArgs) -> Result<(), CliError> {
    prepare(&args.dir)?;
    let demo = Demo::generate(args.seed, args.companies as usize);
    write_project(&demo, &args.dir)?;
    let won = demo.companies.iter().filter(|c| c.deal.won()).count();
    println!(
        "demo company written to {}: {} customer companies ({won} won), {} self-serve buyers, {} campaigns, exports from {} tools",
        args.dir.display(),
        demo.companies.len(),
        demo.self_serve.len(),
        demo.campaigns.len(),
        connections().len()
    );
    if args.no_run {
        return Ok(());
    }
    let dir = args.dir.to_string_lossy().into_owned();
    println!("\n==> opslake run {dir}");
    let cli = crate::Cli::try_parse_from_steps(&["run", dir.as_str()])?;
    Box::pin(crate::execute(cli)).await?;
    let views = [
        (
            "Customers across billing, CRM and marketing (top 15 by bookings)",
            "SELECT customer_name, billing_system, crm_organization, first_touch, bookings, billed, collected \
             FROM customer_360 ORDER BY bookings DESC NULLS LAST, customer_name LIMIT 15",
        ),
        (
            "Marketing CAC and ROAS by channel",
            "SELECT * FROM fct_marketing_cac ORDER BY spend DESC NULLS LAST, channel",
        ),
        (
            "Billing customers that resolve to a CRM organization",
            "SELECT count(crm_organization) AS resolved, count(*) AS billing_customers, \
             round(100.0 * count(crm_organization) / count(*), 1) AS resolved_pct FROM customer_360",
        ),
    ];
    for (title, sql) in views {
        println!("\n==> {title}");
        let cli = crate::Cli::try_parse_from_steps(&["query", sql, "--project", dir.as_str()])?;
        Box::pin(crate::execute(cli)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo writes exports for every tool opslake maps: a tool added to schemas/tools
    /// needs a module here, and each module writes into its own folder.
    #[test]
    fn the_demo_writes_exports_for_every_tool() {
        let contract = opslake_schema::Contract::embedded().expect("contract");
        let (registry, problems) = opslake_tools::ToolRegistry::load(None, &contract).expect("tools");
        assert!(problems.is_empty(), "{problems:?}");
        let tools: Vec<String> = registry.names().map(str::to_string).collect();
        assert_eq!(connections().into_iter().map(|(t, _)| t).collect::<Vec<_>>(), tools);
        let demo = Demo::generate(3, 12);
        for tool in &tools {
            let dir = tempfile::tempdir().expect("tempdir");
            write_tool(tool, &demo, dir.path()).unwrap_or_else(|| panic!("no demo module for {tool}")).expect("writes");
            let folder = dir.path().join("exports").join(tool);
            assert!(
                std::fs::read_dir(&folder).is_ok_and(|mut e| e.next().is_some()),
                "{tool} wrote nothing in exports/{tool}"
            );
        }
    }

    /// The demo runs this repository's pipelines, listed by build.rs.
    #[test]
    fn the_demo_carries_the_pipelines_models_and_tests() {
        let names: Vec<&str> = PIPELINES.iter().map(|(p, _)| *p).collect();
        for needed in
            ["sources.yml", "models/marts/customer/customer_360.sql", "tests/assert_bookings_match_won_deals.sql"]
        {
            assert!(names.contains(&needed), "{needed} is not carried: {names:?}");
        }
    }

    #[test]
    fn the_same_seed_invents_the_same_company() {
        let (a, b) = (Demo::generate(7, 40), Demo::generate(7, 40));
        let names =
            |d: &Demo| d.companies.iter().map(|c| (c.name.clone(), c.deal.amount, c.deal.stage)).collect::<Vec<_>>();
        assert_eq!(names(&a), names(&b));
        assert_ne!(names(&a), names(&Demo::generate(8, 40)));
        // Every biller and channel appears, so every tool has rows.
        for biller in [Biller::Stripe, Biller::QuickBooks, Biller::Xero] {
            assert!(a.companies.iter().any(|c| c.biller == Some(biller)), "{biller:?}");
        }
    }
}
