//! Producers: who wrote a tool's records into a file (the tool's API, its UI export, a loader
//! such as Fivetran or Airbyte) and how each names an object's fields. Declared once for every
//! tool in `schemas/producers.yaml`; a tool file's objects (`objects:`) are written in the
//! tool's own vocabulary and each producer's layout is derived from them ([`crate::objects`]).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::landed::Loader;

/// How a producer lays out records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// The API's response: JSON or XML, records under the object's records path.
    Document,
    /// One row per record, one column per field.
    Table,
}

/// How a field's path becomes a column name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Case {
    /// Each segment as the tool spells it.
    AsIs,
    /// Each segment in snake_case (`CreatedDate` is `created_date`, `InvoiceID` `invoice_id`).
    Snake,
    /// The field's labels in the tool's own exports.
    Label,
}

/// A producer's naming rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Naming {
    /// How segments are spelled.
    pub case: Case,
    /// What joins the segments of a nested field.
    #[serde(default = "dot")]
    pub nesting: String,
    /// Added to a reference field (`customer` is `customer_id`).
    #[serde(default)]
    pub reference_suffix: Option<String>,
    /// Before every column: where the record sits inside an envelope (`data.`).
    #[serde(default)]
    pub prefix: String,
}

fn dot() -> String {
    ".".to_string()
}

/// One producer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Producer {
    /// Its name: `api`, `ui`, `fivetran`, ...; filled from its key.
    #[serde(skip)]
    pub name: String,
    /// Who it is, as messages name it.
    pub description: String,
    /// How it lays records out.
    pub layout: Layout,
    /// How it names fields.
    pub naming: Naming,
    /// Metadata columns only it writes.
    #[serde(default)]
    pub evidence: Vec<String>,
}

/// A tool's quirks inside a shared producer: a nested object the producer writes with a
/// prefix of its own (HubSpot's `properties.firstname` is Fivetran's `property_firstname`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerOptions {
    /// Leading path segment to the prefix that replaces it (with its joiner).
    #[serde(default)]
    pub prefixes: BTreeMap<String, String>,
}

/// The one field of an object a producer names.
#[derive(Debug, Clone, Copy)]
pub struct FieldName<'a> {
    /// Its path in the API: `id`, `properties.email`, `Contact.ContactID`.
    pub path: &'a str,
    /// A reference the API returns as an id (or expands).
    pub reference: bool,
    /// Its labels in the tool's UI exports.
    pub labels: &'a [String],
    /// The producer's own name for it, where its rule would give another.
    pub own: Option<&'a str>,
}

impl Producer {
    /// The columns that may hold `field` in this producer's files, the most common first;
    /// none when the producer does not write it (a UI export of a field with no label).
    pub fn columns(&self, field: FieldName<'_>, options: Option<&ProducerOptions>) -> Vec<String> {
        if let Some(own) = field.own {
            return vec![format!("{}{own}", self.naming.prefix)];
        }
        if self.naming.case == Case::Label {
            return field.labels.to_vec();
        }
        let mut segments: Vec<&str> = field.path.split('.').collect();
        let mut head = String::new();
        if let Some(prefix) = options.and_then(|o| o.prefixes.get(segments[0]))
            && segments.len() > 1
        {
            segments.remove(0);
            head = prefix.clone();
        }
        let spelled: Vec<String> = segments
            .iter()
            .map(|s| match self.naming.case {
                Case::Snake => snake_case(s),
                Case::AsIs | Case::Label => (*s).to_string(),
            })
            .collect();
        let mut name = format!("{head}{}", spelled.join(&self.naming.nesting));
        if let Some(suffix) = &self.naming.reference_suffix
            && field.reference
            && !name.to_lowercase().ends_with("id")
        {
            name.push_str(suffix);
        }
        vec![format!("{}{name}", self.naming.prefix)]
    }

    /// Whether `columns` (or the loader the input found) show this producer wrote the file.
    fn shown_by(&self, columns: &[String], loader: Option<Loader>) -> bool {
        loader.is_some_and(|l| l.name().eq_ignore_ascii_case(&self.name))
            || columns.iter().any(|c| self.evidence.iter().any(|e| e == c))
    }
}

/// `CreatedDate` is `created_date`, `InvoiceID` `invoice_id`, `hs_object_id` stays: the
/// snake_case loaders write (a capital starts a word after a small letter or a digit, or
/// before a small letter after capitals; anything not a letter or digit is one `_`).
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1);
            let starts_word = prev.is_some_and(|p| {
                p.is_lowercase() || p.is_ascii_digit() || (p.is_uppercase() && next.is_some_and(|n| n.is_lowercase()))
            });
            if starts_word && !out.ends_with('_') {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else if c.is_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_string()
}

#[derive(Deserialize)]
#[serde(transparent)]
struct RawProducers(BTreeMap<String, Producer>);

/// Every producer, in `schemas/producers.yaml` order of names.
pub fn all() -> &'static [Producer] {
    static PRODUCERS: OnceLock<Vec<Producer>> = OnceLock::new();
    PRODUCERS.get_or_init(|| {
        let text = opslake_schema::embedded::files()
            .find(|(path, _)| *path == "producers.yaml")
            .map(|(_, text)| text)
            .expect("schemas/producers.yaml is compiled in");
        // The file is part of the binary and checked by its tests: a bad one is a bug.
        let raw: RawProducers = opslake_schema::diag::parse_yaml("schemas/producers.yaml", text)
            .unwrap_or_else(|p| panic!("schemas/producers.yaml: {p}"));
        raw.0
            .into_iter()
            .map(|(name, mut p)| {
                p.name = name;
                p
            })
            .collect()
    })
}

/// The producer named `name`.
pub fn named(name: &str) -> Option<&'static Producer> {
    all().iter().find(|p| p.name == name)
}

/// The producer whose metadata columns a file shows, if any does.
pub fn shown(columns: &[String], loader: Option<Loader>) -> Option<&'static Producer> {
    all().iter().find(|p| p.shown_by(columns, loader))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_is_what_loaders_write() {
        for (api, snake) in [
            ("CreatedDate", "created_date"),
            ("InvoiceID", "invoice_id"),
            ("hs_object_id", "hs_object_id"),
            ("Id", "id"),
            ("URLName", "url_name"),
            ("Address2", "address2"),
            ("Amount spent (USD)", "amount_spent_usd"),
        ] {
            assert_eq!(snake_case(api), snake, "{api}");
        }
    }

    #[test]
    fn each_producer_names_a_field_its_own_way() {
        let field = |path, reference| FieldName { path, reference, labels: &[], own: None };
        let col = |p: &str, f| named(p).expect(p).columns(f, None);
        assert_eq!(col("api", field("Contact.ContactID", false)), ["Contact.ContactID"]);
        assert_eq!(col("fivetran", field("Contact.ContactID", false)), ["contact_contact_id"]);
        assert_eq!(col("fivetran", field("customer", true)), ["customer_id"]);
        assert_eq!(col("fivetran", field("OpportunityId", true)), ["opportunity_id"]);
        assert_eq!(col("singer", field("location.name", false)), ["location__name"]);
        assert_eq!(col("dlt", field("location.Name", false)), ["location.name"]);
        assert_eq!(col("airbyte", field("location.name", false)), ["data.location.name"]);
        let labels = ["Record ID".to_string()];
        assert_eq!(col("ui", FieldName { path: "id", reference: false, labels: &labels, own: None }), ["Record ID"]);
        assert!(col("ui", field("id", false)).is_empty(), "no label, not in a UI export");
        let options = ProducerOptions { prefixes: [("properties".to_string(), "property_".to_string())].into() };
        assert_eq!(
            named("fivetran").expect("fivetran").columns(field("properties.firstname", false), Some(&options)),
            ["property_firstname"]
        );
    }

    #[test]
    fn metadata_columns_tell_the_producer() {
        let cols = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(shown(&cols(&["id", "_sdc_batched_at"]), None).map(|p| p.name.as_str()), Some("singer"));
        assert_eq!(shown(&cols(&["id"]), Some(Loader::Dlt)).map(|p| p.name.as_str()), Some("dlt"));
        assert!(shown(&cols(&["id", "name"]), None).is_none());
    }
}
