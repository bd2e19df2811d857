//! XML documents (QuickBooks Online and Xero API responses) read as the JSON tree they stand
//! for, so one set of rules (records path, explode, flattening) serves both formats.
//!
//! The tree: the root element is the one top-level key; an element with only text is that
//! text; an element with attributes or children is an object whose attributes are `@name`
//! and whose text, when it has children or attributes too, is `#text`; children that repeat
//! become an array. Namespace prefixes are dropped: exports use one namespace throughout.
//!
//! A plural wrapper, an element without attributes or text whose children all carry its name
//! in the singular (`<LineItems><LineItem/>...</LineItems>`, `<Addresses><Address/>`), is the
//! array itself, even with one child: Xero's XML and JSON then give the same tree
//! (`LineItems: [...]`), and a list of one stays a list.

use serde_json::{Map, Value};

use crate::{Error, Result};

/// Parses `text` into the JSON tree described in the module docs.
pub fn parse_document(file: &str, text: &str) -> Result<Value> {
    let doc = roxmltree::Document::parse(text).map_err(|e| {
        let pos = e.pos();
        Error::BadInput {
            file: file.to_string(),
            line: u64::from(pos.row),
            message: format!("invalid XML at column {}: {e}", pos.col),
        }
    })?;
    let root = doc.root_element();
    let mut top = Map::new();
    top.insert(root.tag_name().name().to_string(), element(root));
    Ok(Value::Object(top))
}

fn element(node: roxmltree::Node<'_, '_>) -> Value {
    let children: Vec<roxmltree::Node<'_, '_>> = node.children().filter(|c| c.is_element()).collect();
    let text: String = node.children().filter(|c| c.is_text()).filter_map(|c| c.text()).collect();
    let attributes = node.attributes();
    if children.is_empty() && attributes.len() == 0 {
        return if text.is_empty() { Value::Null } else { Value::String(text) };
    }
    if attributes.len() == 0 && text.trim().is_empty() && is_plural_of_children(node, &children) {
        return Value::Array(children.into_iter().map(element).collect());
    }
    let mut map = Map::new();
    for a in attributes {
        map.insert(format!("@{}", a.name()), Value::String(a.value().to_string()));
    }
    let trimmed = text.trim();
    if !trimmed.is_empty() {
        map.insert("#text".to_string(), Value::String(if children.is_empty() { text } else { trimmed.to_string() }));
    }
    for child in children {
        let name = child.tag_name().name().to_string();
        let value = element(child);
        match map.get_mut(&name) {
            Some(Value::Array(items)) => items.push(value),
            Some(first) => {
                let first = first.take();
                map.insert(name, Value::Array(vec![first, value]));
            }
            None => {
                map.insert(name, value);
            }
        }
    }
    Value::Object(map)
}

fn is_plural_of_children(node: roxmltree::Node<'_, '_>, children: &[roxmltree::Node<'_, '_>]) -> bool {
    let plural = node.tag_name().name();
    let Some(first) = children.first() else { return false };
    let one = first.tag_name().name();
    let named = plural.strip_prefix(one).is_some_and(|rest| rest == "s" || rest == "es")
        || one.strip_suffix('y').is_some_and(|stem| plural.strip_prefix(stem) == Some("ies"));
    named && children.iter().all(|c| c.tag_name().name() == one)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_attributes_and_repeats_become_a_json_tree() {
        let xml = r#"<?xml version="1.0"?>
<IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="2013-04-23T08:30:33.426-07:00">
  <QueryResponse startPosition="1">
    <Invoice domain="QBO">
      <Id>1</Id>
      <CustomerRef name="Amy's Bird Sanctuary">3</CustomerRef>
      <Line><Amount>10.00</Amount></Line>
      <Line><Amount>5.50</Amount></Line>
      <PrivateNote/>
    </Invoice>
  </QueryResponse>
</IntuitResponse>"#;
        let v = parse_document("i.xml", xml).expect("parses");
        let inv = &v["IntuitResponse"]["QueryResponse"]["Invoice"];
        assert_eq!(inv["Id"], "1");
        assert_eq!(inv["@domain"], "QBO");
        assert_eq!(inv["CustomerRef"]["@name"], "Amy's Bird Sanctuary");
        assert_eq!(inv["CustomerRef"]["#text"], "3");
        assert_eq!(inv["Line"][1]["Amount"], "5.50");
        assert!(inv["PrivateNote"].is_null());
        assert_eq!(v["IntuitResponse"]["@time"], "2013-04-23T08:30:33.426-07:00");
    }

    #[test]
    fn plural_wrappers_are_arrays_even_with_one_child() {
        let xml = "<Response><Invoices><Invoice><LineItems><LineItem><A>1</A></LineItem></LineItems>\
                   <Addresses><Address><City>X</City></Address><Address/></Addresses>\
                   <Categories><Category>c</Category></Categories>\
                   <Contact><ContactID>7</ContactID></Contact>\
                   <Lines kind=\"x\"><Line>1</Line></Lines><Payments/></Invoice></Invoices></Response>";
        let v = parse_document("x.xml", xml).expect("parses");
        let inv = &v["Response"]["Invoices"][0];
        assert_eq!(inv["LineItems"][0]["A"], "1");
        assert_eq!(inv["Addresses"][1], Value::Null);
        assert_eq!(inv["Categories"][0], "c");
        // Not plural wrappers: a single child of another name, and an element with attributes.
        assert_eq!(inv["Contact"]["ContactID"], "7");
        assert_eq!(inv["Lines"]["Line"], "1");
        assert!(inv["Payments"].is_null());
    }

    #[test]
    fn text_is_kept_exactly_and_entities_are_decoded() {
        let v = parse_document("a.xml", "<a><b> x &amp; y </b></a>").expect("parses");
        assert_eq!(v["a"]["b"], " x & y ");
    }

    #[test]
    fn malformed_xml_names_line_and_column() {
        let err = parse_document("bad.xml", "<a>\n  <b></c>\n</a>").expect_err("fails");
        let msg = err.to_string();
        assert!(msg.starts_with("bad.xml:2:"), "{msg}");
        assert!(msg.contains("column"), "{msg}");
    }
}
