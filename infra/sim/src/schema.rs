//! A portal's property tables: per type, the built-in properties plus the portal's own
//! (seeded custom properties, `add_property`), as changed by `retype_property` and
//! `archive_property`. `GET /crm/v3/properties/{type}` and every rendering read it.
//!
//! - PS1: a name appears once per type; a retype or archive replaces the entry in place (its
//!   position, name and value key stay), so a record's values stay derived from the same draws.
//! - PS2: changing a property never touches a record: no modified time moves (a backfill of a
//!   new column, not an incremental window, must find its values).
//!
//! Properties created at run time are leaked (`Box::leak`): a simulator lives for one test or
//! one run, and `&'static PropSpec` keeps renders and compiled searches free of locks.

use std::collections::{HashMap, HashSet};

use wire::PropertyDefinition;

use super::catalog::{Gen, Kind, ObjectType, PropSpec};
use super::rng::{below, hash, tag};

/// One type's property table.
#[derive(Debug, Clone, Default)]
pub struct TypeSchema {
    /// Every property, archived ones included: built-ins first, then the portal's (PS1).
    props: Vec<&'static PropSpec>,
    /// Position of each name in `props`.
    by_name: HashMap<&'static str, usize>,
}

/// Why a property change was refused (the 400's message).
pub type SchemaError = String;

impl TypeSchema {
    /// The built-in properties of `t`.
    pub fn builtin(t: ObjectType) -> Self {
        let mut schema = TypeSchema::default();
        for spec in t.properties() {
            schema.push(spec);
        }
        schema
    }

    fn push(&mut self, spec: &'static PropSpec) {
        self.by_name.insert(spec.name, self.props.len());
        self.props.push(spec);
    }

    /// A property by name, archived or not.
    pub fn get(&self, name: &str) -> Option<&'static PropSpec> {
        self.by_name.get(name).map(|i| self.props[*i])
    }

    /// The properties not archived, in table order.
    pub fn live(&self) -> impl Iterator<Item = &'static PropSpec> + '_ {
        self.props.iter().copied().filter(|p| !p.archived)
    }

    /// `GET /crm/v3/properties/{type}`: the live properties, or with `archived` the archived ones.
    pub fn definitions(&self, t: ObjectType, archived: bool) -> Vec<PropertyDefinition> {
        self.props
            .iter()
            .filter(|p| p.archived == archived)
            .map(|p| p.definition(t))
            .collect()
    }

    /// Adds `n` seeded custom properties of mixed kinds (deterministic in `seed`).
    pub fn add_seeded(&mut self, t: ObjectType, seed: u64, n: u64) {
        let mut taken: HashSet<&str> = self.by_name.keys().copied().collect();
        let specs: Vec<&'static PropSpec> = (0..n)
            .map(|i| {
                let spec = seeded_custom(t, seed, i, &taken);
                taken.insert(spec.name);
                spec
            })
            .collect();
        for spec in specs {
            self.push(spec);
        }
    }

    /// `add_property`: a new custom property; every record has a value for it at once (PS2).
    pub fn add(&mut self, name: &str, kind: &str, field_type: Option<&str>) -> Result<(), SchemaError> {
        if self.get(name).is_some() {
            return Err(format!("Property {name} already exists"));
        }
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(format!("Property name '{name}' must be lower-case snake_case"));
        }
        let (kind, field_type) = kind_and_field(kind, field_type)?;
        let name: &'static str = Box::leak(name.to_string().into_boxed_str());
        self.push(leak(custom_spec(name, name, kind, field_type, 300)));
        Ok(())
    }

    /// `retype_property`: the definition changes type; values render per the new one (PS1, PS2).
    pub fn retype(&mut self, name: &str, kind: &str, field_type: Option<&str>) -> Result<(), SchemaError> {
        let (kind, field_type) = kind_and_field(kind, field_type)?;
        self.replace(name, |old| PropSpec {
            kind,
            field_type,
            calculated: field_type == "calculation_equation",
            // Values follow the kind from now on, a built-in's generator included.
            gen: Gen::Custom,
            ..*old
        })
    }

    /// `archive_property`: it leaves the listing (but for `?archived=true`); records render it
    /// null (PS1, PS2).
    pub fn archive(&mut self, name: &str) -> Result<(), SchemaError> {
        self.replace(name, |old| PropSpec {
            archived: true,
            ..*old
        })
    }

    fn replace(&mut self, name: &str, f: impl FnOnce(&PropSpec) -> PropSpec) -> Result<(), SchemaError> {
        let i = *self
            .by_name
            .get(name)
            .ok_or_else(|| format!("Property {name} does not exist"))?;
        if self.props[i].archived {
            return Err(format!("Property {name} is archived"));
        }
        if matches!(self.props[i].gen, Gen::ObjectId | Gen::Created | Gen::Modified) {
            return Err(format!("Property {name} is read-only"));
        }
        self.props[i] = leak(f(self.props[i]));
        Ok(())
    }
}

fn leak(spec: PropSpec) -> &'static PropSpec {
    Box::leak(Box::new(spec))
}

/// The field types HubSpot allows for each kind; the first is the default.
fn field_types(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::String => &["text", "textarea", "html", "phonenumber", "file"],
        Kind::Number => &["number", "calculation_equation"],
        Kind::Date | Kind::DateTime => &["date"],
        Kind::Enumeration => &["select", "radio", "checkbox", "booleancheckbox"],
        Kind::Bool => &["booleancheckbox", "calculation_equation"],
    }
}

fn kind_and_field(kind: &str, field_type: Option<&str>) -> Result<(Kind, &'static str), SchemaError> {
    let kind = Kind::parse(kind).ok_or_else(|| format!("Unknown property type '{kind}'"))?;
    let allowed = field_types(kind);
    match field_type {
        None | Some("") => Ok((kind, allowed[0])),
        Some(f) => allowed
            .iter()
            .find(|a| **a == f)
            .map(|a| (kind, *a))
            .ok_or_else(|| {
                format!(
                    "fieldType '{f}' is not valid for type {} (allowed: {})",
                    kind.type_name(),
                    allowed.join(", ")
                )
            }),
    }
}

fn custom_spec(
    name: &'static str,
    label: &'static str,
    kind: Kind,
    field_type: &'static str,
    null_per_mille: u16,
) -> PropSpec {
    PropSpec {
        name,
        label,
        kind,
        gen: Gen::Custom,
        key: name,
        null_per_mille,
        stable: false,
        field_type,
        options: match kind {
            Kind::Enumeration => OPTION_POOLS[below(tag(name), OPTION_POOLS.len() as u64) as usize],
            _ => &[],
        },
        calculated: field_type == "calculation_equation",
        hubspot_defined: false,
        archived: false,
    }
}

/// The `i`th seeded custom property of `t`: kind drawn from realistic proportions, a
/// snake_case name from word pools (suffixed `_2`, `_3`... when taken), a null rate up to 90%.
fn seeded_custom(t: ObjectType, seed: u64, i: u64, taken: &HashSet<&str>) -> &'static PropSpec {
    let h = hash(&[seed, tag(t.name()), tag("custom-property"), i]);
    let (kind, field_type, suffix) = match below(h, 100) {
        0..=24 => (
            Kind::String,
            "text",
            pick(&["notes", "code", "name", "reference"], h >> 8),
        ),
        25..=39 => (
            Kind::Number,
            "number",
            pick(&["count", "score", "amount", "pct"], h >> 8),
        ),
        40..=44 => (Kind::Number, "calculation_equation", "calc"),
        45..=54 => (Kind::DateTime, "date", pick(&["at", "time"], h >> 8)),
        55..=64 => (Kind::Date, "date", "date"),
        65..=76 => (
            Kind::Bool,
            "booleancheckbox",
            pick(&["flag", "opt_in", "verified"], h >> 8),
        ),
        77..=89 => (
            Kind::Enumeration,
            "select",
            pick(&["status", "tier", "type"], h >> 8),
        ),
        _ => (
            Kind::Enumeration,
            "checkbox",
            pick(&["tags", "channels", "regions"], h >> 8),
        ),
    };
    let stem = format!(
        "{}_{}_{suffix}",
        pick(TOPICS, i),
        pick(SUBJECTS, i / TOPICS.len() as u64)
    );
    let mut name = stem.clone();
    let mut n = 2;
    while taken.contains(name.as_str()) {
        name = format!("{stem}_{n}");
        n += 1;
    }
    let label = name.replace('_', " ");
    let name: &'static str = Box::leak(name.into_boxed_str());
    let label: &'static str = Box::leak(label.into_boxed_str());
    let nulls = below(h >> 32, 900) as u16;
    leak(custom_spec(name, label, kind, field_type, nulls))
}

fn pick(options: &[&'static str], h: u64) -> &'static str {
    options[below(h, options.len() as u64) as usize]
}

const TOPICS: &[&str] = &[
    "renewal",
    "contract",
    "onboarding",
    "billing",
    "partner",
    "churn",
    "nps",
    "lead",
    "support",
    "campaign",
    "territory",
    "procurement",
    "legal",
    "expansion",
    "trial",
    "webinar",
    "event",
    "integration",
    "security",
    "finance",
];

const SUBJECTS: &[&str] = &[
    "review", "owner", "source", "stage", "region", "risk", "budget", "channel", "segment", "priority",
    "health", "plan", "account", "contact", "tier",
];

const OPTION_POOLS: &[&[&str]] = &[
    &["bronze", "silver", "gold", "platinum"],
    &["north", "south", "east", "west", "central"],
    &["low", "medium", "high"],
    &["web", "email", "phone", "partner", "event", "social"],
    &["yes", "no", "maybe"],
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_custom_properties_are_unique_mixed_and_deterministic() {
        let t = ObjectType::Deals;
        let mut a = TypeSchema::builtin(t);
        a.add_seeded(t, 7, 600);
        let mut b = TypeSchema::builtin(t);
        b.add_seeded(t, 7, 600);
        assert_eq!(a.live().count(), t.properties().len() + 600);
        let names = |s: &TypeSchema| s.live().map(|p| p.name).collect::<Vec<_>>();
        assert_eq!(names(&a), names(&b), "deterministic");
        let unique: HashSet<_> = names(&a).into_iter().collect();
        assert_eq!(unique.len(), a.live().count(), "PS1: one entry per name");
        let defs = a.definitions(t, false);
        let custom: Vec<_> = defs.iter().filter(|d| !d.hubspot_defined).collect();
        assert_eq!(custom.len(), 600);
        for (kind, field) in [
            ("string", "text"),
            ("number", "number"),
            ("number", "calculation_equation"),
            ("datetime", "date"),
            ("date", "date"),
            ("bool", "booleancheckbox"),
            ("enumeration", "select"),
            ("enumeration", "checkbox"),
        ] {
            assert!(
                custom.iter().any(|d| d.kind == kind && d.field_type == field),
                "{kind}/{field}"
            );
        }
        assert!(custom
            .iter()
            .all(|d| d.calculated == (d.field_type == "calculation_equation")));
    }

    #[test]
    fn add_retype_archive_change_definitions_ps1() {
        let t = ObjectType::Contacts;
        let mut s = TypeSchema::builtin(t);
        s.add("fleet_size", "number", None).unwrap();
        assert!(s.add("fleet_size", "number", None).is_err(), "exists");
        assert!(s.add("Bad Name", "number", None).is_err());
        assert!(s.add("x", "number", Some("checkbox")).is_err());
        assert!(s.add("y", "widget", None).is_err());
        let def = |s: &TypeSchema| s.get("fleet_size").map(|p| p.definition(t));
        assert_eq!(
            def(&s).map(|d| (d.kind, d.field_type)),
            Some(("number".into(), "number".into()))
        );
        s.retype("fleet_size", "string", Some("text")).unwrap();
        assert_eq!(def(&s).map(|d| d.kind), Some("string".into()));
        assert!(s.retype("hs_object_id", "string", None).is_err(), "read-only");
        s.archive("fleet_size").unwrap();
        assert!(s.definitions(t, false).iter().all(|d| d.name != "fleet_size"));
        let archived = s.definitions(t, true);
        assert!(archived.len() == 1 && archived[0].archived && archived[0].name == "fleet_size");
        assert!(s.archive("fleet_size").is_err(), "already archived");
    }

    use crate::mutate::{MutateRequest, NewProperty, PropertyName};
    use crate::portal::{portal_for_test, render, Portal};
    use crate::rng::SplitMix64;

    fn change(p: &mut Portal, req: MutateRequest) -> Result<(), SchemaError> {
        let t = ObjectType::parse(&req.object_type).unwrap_or(ObjectType::Deals);
        p.mutate(t, &req, 1_800_000_000_000, 0, &mut SplitMix64::new(1))
            .map(|_| ())
    }

    fn values_of(p: &Portal, t: ObjectType, name: &str) -> Vec<Option<String>> {
        let props = p.select(t, Some(&[name.to_string()]));
        let ctx = p.value_ctx(t);
        p.store(t)
            .records
            .iter()
            .map(|r| render(&ctx, r, &props).properties.get(name).cloned().flatten())
            .collect()
    }

    #[test]
    fn property_changes_move_no_modified_time_ps2_u7() {
        let t = ObjectType::Deals;
        let mut p = portal_for_test(4, 200, &[t]);
        let before = p.store(t).records.clone();
        let add = |name: &str, kind: &str| MutateRequest {
            object_type: "deals".into(),
            add_property: Some(NewProperty {
                name: name.into(),
                kind: kind.into(),
                field_type: None,
            }),
            ..Default::default()
        };
        change(&mut p, add("fleet_size", "number")).unwrap();
        assert_eq!(p.store(t).records, before, "PS2: records untouched");
        let numbers = values_of(&p, t, "fleet_size");
        let present: Vec<&String> = numbers.iter().flatten().collect();
        assert!(present.len() > 100, "existing records have values at once");
        assert!(present.iter().all(|v| v.parse::<f64>().is_ok()), "{present:?}");
        assert_eq!(numbers, values_of(&p, t, "fleet_size"), "deterministic");
        let retype = MutateRequest {
            object_type: "deals".into(),
            retype_property: Some(NewProperty {
                name: "fleet_size".into(),
                kind: "string".into(),
                field_type: Some("text".into()),
            }),
            ..Default::default()
        };
        change(&mut p, retype).unwrap();
        assert_eq!(p.store(t).records, before, "PS2");
        let strings = values_of(&p, t, "fleet_size");
        assert!(
            strings.iter().flatten().any(|v| v.contains(';')),
            "number-like ids joined"
        );
        assert!(strings.iter().flatten().any(|v| v.parse::<f64>().is_err()));
        let defs = p.schema(t).definitions(t, false);
        let def = defs.iter().find(|d| d.name == "fleet_size");
        assert_eq!(
            def.map(|d| (d.kind.as_str(), d.hubspot_defined)),
            Some(("string", false))
        );
        let archive = MutateRequest {
            object_type: "deals".into(),
            archive_property: Some(PropertyName {
                name: "fleet_size".into(),
            }),
            ..Default::default()
        };
        change(&mut p, archive).unwrap();
        assert_eq!(p.store(t).records, before, "PS2");
        assert!(
            values_of(&p, t, "fleet_size").iter().all(Option::is_none),
            "null once archived"
        );
        assert!(p
            .schema(t)
            .definitions(t, false)
            .iter()
            .all(|d| d.name != "fleet_size"));
        // U7: all or none: a refused change leaves the add beside it undone.
        let mut bad = add("second", "number");
        bad.retype_property = Some(NewProperty {
            name: "missing".into(),
            kind: "string".into(),
            field_type: None,
        });
        assert!(change(&mut p, bad).is_err());
        assert!(p.schema(t).get("second").is_none());
    }

    #[test]
    fn seeded_portal_has_custom_properties_with_values() {
        let t = ObjectType::Contacts;
        let p = Portal::generate(&crate::portal::PortalSpec {
            seed: 3,
            records_per_type: 100,
            object_types: vec![t],
            custom_properties: vec![crate::config::TypeCount {
                object_type: t,
                count: 50,
            }],
            ..Default::default()
        });
        let custom: Vec<&PropSpec> = p.schema(t).live().filter(|s| !s.hubspot_defined).collect();
        assert_eq!(custom.len(), 50);
        let filled = custom
            .iter()
            .filter(|s| values_of(&p, t, s.name).iter().any(Option::is_some))
            .count();
        assert!(filled > 40, "most custom properties hold values: {filled}");
    }
}
