//! Property values, derived on demand from `(seed, type, id, version)` so a record costs a
//! few words of memory whatever its width. The pools mix plain ASCII with accents, CJK and
//! emoji, as real portals do.

use wire::format_ms;

use super::catalog::{Gen, Kind, ObjectType, PropSpec};
use super::pools::*;
use super::portal::{core_id, Rec};
use super::rng::{below, hash, mix, tag};

/// What a value depends on besides the record itself.
#[derive(Debug, Clone, Copy)]
pub struct ValueCtx {
    pub seed: u64,
    pub object_type: ObjectType,
    /// How many records of each type were seeded, so `associatedcompanyid` and
    /// `hs_product_id` name one of them.
    pub company_count: u64,
    /// Chance in 1000 that a typed custom value (number, date, datetime, bool) is a string that
    /// does not parse as its type (`SimConfig::uncastable_per_mille`).
    pub uncastable_per_mille: u16,
    /// The ids merged into each record of the type, with when (A4 in `relations.rs`).
    pub merged: Option<&'static MergedIds>,
}

/// Per survivor, the ids merged into it and when.
pub type MergedIds = std::collections::HashMap<u64, Vec<(u64, i64)>>;

const DAY_MS: i64 = 86_400_000;
const NULL_SALT: u64 = 0x6e75_6c6c;
const UNCASTABLE_SALT: u64 = 0x7562_6361;

/// The value of one property of one record, as HubSpot sends it (a string or null).
pub fn value(ctx: &ValueCtx, spec: &PropSpec, rec: &Rec) -> Option<String> {
    if spec.archived {
        return None;
    }
    match spec.gen {
        Gen::ObjectId => return Some(rec.id.to_string()),
        Gen::Created => return Some(format_ms(rec.created_ms)),
        Gen::Modified => return Some(format_ms(rec.modified_ms)),
        Gen::MergedIds | Gen::MergedVids => {
            let ids = ctx.merged?.get(&rec.id)?;
            return Some(super::relations::render_merged(ids, spec.gen == Gen::MergedVids));
        }
        _ => {}
    }
    let version = effective_version(ctx, spec.key, spec.stable, rec);
    let base = [ctx.seed, tag(ctx.object_type.name()), rec.id, u64::from(version)];
    let null_draw = hash(&[base[0], base[1], base[2], base[3], tag(spec.name), NULL_SALT]);
    if below(null_draw, 1000) < u64::from(spec.null_per_mille) {
        return None;
    }
    let h = hash(&[base[0], base[1], base[2], base[3], tag(spec.key)]);
    if spec.gen == Gen::Custom {
        let draw = hash(&[
            base[0],
            base[1],
            base[2],
            base[3],
            tag(spec.name),
            UNCASTABLE_SALT,
        ]);
        let typed = matches!(spec.kind, Kind::Number | Kind::Date | Kind::DateTime | Kind::Bool);
        if typed && below(draw, 1000) < u64::from(ctx.uncastable_per_mille) {
            return Some(uncastable(mix(draw)));
        }
        return Some(custom(spec, rec, h));
    }
    Some(match spec.gen {
        Gen::Pick(options) | Gen::Title(options) => pick(options, h).to_string(),
        Gen::Body => body(h),
        Gen::FirstName => pick(FIRST_NAMES, h).0.to_string(),
        Gen::LastName => pick(LAST_NAMES, mix(h)).0.to_string(),
        Gen::Email => {
            let first = pick(FIRST_NAMES, h).1;
            let last = pick(LAST_NAMES, mix(h)).1;
            let domain = pick(EMAIL_DOMAINS, mix(mix(h)));
            match below(h >> 7, 4) {
                0 => format!("{first}@{domain}"),
                1 => format!("{first}{}@{domain}", below(h >> 17, 100)),
                _ => format!("{first}.{last}@{domain}"),
            }
        }
        Gen::Phone => phone(h),
        Gen::City => pick(PLACES, h).0.to_string(),
        Gen::Country => pick(PLACES, h).1.to_string(),
        Gen::CompanyName => pick(COMPANY_NAMES, h).0.to_string(),
        Gen::Domain => {
            let stem = pick(COMPANY_NAMES, h).1;
            format!("{stem}{}.{}", suffix(h), pick(TLDS, mix(h)))
        }
        Gen::Owner => owner_id(ctx.seed, below(h, OWNER_COUNT)).to_string(),
        Gen::CompanyRef => {
            let k = below(h, ctx.company_count.max(1));
            core_id(ctx.seed, ObjectType::Companies, k).to_string()
        }
        Gen::Amount => amount(h),
        Gen::Int { min, max } => (min + below(h, max - min + 1)).to_string(),
        Gen::AfterCreated { max_days } => {
            let ms = rec.created_ms + below(h, max_days * DAY_MS as u64) as i64;
            let formatted = format_ms(ms);
            match (spec.kind, formatted.get(..10)) {
                (Kind::Date, Some(date)) => date.to_string(),
                _ => formatted,
            }
        }
        Gen::ActivityTime => format_ms(activity_ms(rec, h)),
        Gen::MeetingEnd => {
            let minutes = 15 + 15 * below(mix(h), 8) as i64;
            format_ms(activity_ms(rec, h) + minutes * 60_000)
        }
        Gen::Flag { true_per_mille } => (below(h, 1000) < u64::from(true_per_mille)).to_string(),
        Gen::InSet { options, set } => set.contains(&pick(options, h)).to_string(),
        Gen::Multi(options) => multi(options, h),
        Gen::Day { max_days } => day(rec, h, max_days),
        Gen::LineAmount => {
            let quantity = 1 + below(keyed_hash(ctx, rec, "quantity"), 50);
            let price: f64 = amount(keyed_hash(ctx, rec, "price")).parse().unwrap_or(0.0);
            format!("{:.2}", quantity as f64 * price)
        }
        Gen::ProductRef => {
            let k = below(h, ctx.company_count.max(1));
            core_id(ctx.seed, ObjectType::Products, k).to_string()
        }
        Gen::Sku => format!("SKU-{:06}", below(h, 1_000_000)),
        Gen::Vin => (0..17)
            .map(|i| VIN_CHARS[below(mix(h ^ i), VIN_CHARS.len() as u64) as usize] as char)
            .collect(),
        Gen::ObjectId | Gen::Created | Gen::Modified | Gen::MergedIds | Gen::MergedVids | Gen::Custom => {
            return None
        }
    })
}

/// The hash a volatile property keyed `key` draws its value from (to read a sibling's value).
fn keyed_hash(ctx: &ValueCtx, rec: &Rec, key: &str) -> u64 {
    let v = effective_version(ctx, key, false, rec);
    hash(&[
        ctx.seed,
        tag(ctx.object_type.name()),
        rec.id,
        u64::from(v),
        tag(key),
    ])
}

/// A custom property's value, by its current kind and field type.
fn custom(spec: &PropSpec, rec: &Rec, h: u64) -> String {
    match spec.kind {
        Kind::String if below(h >> 3, 3) == 0 => id_list(h),
        Kind::String => pick(CUSTOM_WORDS, h).to_string(),
        Kind::Number if spec.calculated || below(h >> 3, 2) == 0 => {
            format!("{}.{:02}", below(h, 100_000), below(h >> 20, 100))
        }
        Kind::Number => below(h, 10_000).to_string(),
        Kind::DateTime => format_ms(rec.created_ms + below(h, 365 * DAY_MS as u64) as i64),
        Kind::Date => day(rec, h, 365),
        Kind::Bool => (below(h, 2) == 0).to_string(),
        Kind::Enumeration => {
            let options = if spec.options.is_empty() {
                CUSTOM_OPTIONS
            } else {
                spec.options
            };
            if spec.is_multi() {
                multi(options, h)
            } else {
                pick(options, h).to_string()
            }
        }
    }
}

/// Values HubSpot holds in typed properties that do not parse as their type (a number
/// property holding `"id;id"`, free text in a date).
fn uncastable(h: u64) -> String {
    match below(h, 6) {
        0 | 1 => id_list(h >> 8),
        2 => "n/a".to_string(),
        3 => "TBD".to_string(),
        4 => "1.234,56".to_string(),
        _ => "unknown".to_string(),
    }
}

/// Two record ids `;`-joined, as multi-valued reference properties carry them.
fn id_list(h: u64) -> String {
    format!(
        "{};{}",
        1_000 + below(h >> 5, 90_000),
        1_000 + below(h >> 29, 90_000)
    )
}

/// A `;`-joined subset of `options`, in their order: empty one time in ten, often one.
fn multi(options: &[&str], h: u64) -> String {
    let n = options.len() as u64;
    let count = match below(h, 20) {
        0 | 1 => 0,
        2..=10 => 1,
        _ => 2 + below(h >> 7, n.saturating_sub(1).max(1)),
    };
    let mut chosen: Vec<usize> = (0..count).map(|i| below(mix(h ^ (i + 1)), n) as usize).collect();
    chosen.sort_unstable();
    chosen.dedup();
    chosen.iter().map(|i| options[*i]).collect::<Vec<_>>().join(";")
}

/// A date-only value up to `max_days` after creation: `YYYY-MM-DD`, one in five as epoch ms.
fn day(rec: &Rec, h: u64, max_days: u64) -> String {
    let ms = rec.created_ms + below(h, max_days.max(1) * DAY_MS as u64) as i64;
    let midnight = ms.div_euclid(DAY_MS) * DAY_MS;
    if below(h >> 11, 5) == 0 {
        midnight.to_string()
    } else {
        format_ms(midnight).get(..10).unwrap_or_default().to_string()
    }
}

/// The version a property last changed at: an update changes about a third of the
/// volatile properties, like a person editing a few fields.
fn effective_version(ctx: &ValueCtx, key: &str, stable: bool, rec: &Rec) -> u32 {
    if stable {
        return 0;
    }
    let key = tag(key);
    let floor = rec.version.saturating_sub(64);
    (floor + 1..=rec.version)
        .rev()
        .find(|v| {
            let h = hash(&[ctx.seed, tag(ctx.object_type.name()), rec.id, u64::from(*v), key]);
            below(h, 3) == 0
        })
        .unwrap_or(0)
}

fn activity_ms(rec: &Rec, h: u64) -> i64 {
    rec.created_ms - below(h, 14 * DAY_MS as u64) as i64
}

fn pick<T: Copy>(options: &[T], h: u64) -> T {
    options[below(h, options.len() as u64) as usize]
}

pub(crate) const OWNER_COUNT: u64 = 17;

pub(crate) fn owner_id(seed: u64, index: u64) -> u64 {
    10_000_000 + below(hash(&[seed, tag("owner"), index]), 890_000_000)
}

fn amount(h: u64) -> String {
    let magnitude = [500u64, 2_000, 10_000, 50_000, 250_000, 1_000_000][below(h, 6) as usize];
    let whole = magnitude + below(mix(h), magnitude * 3);
    match below(h >> 9, 5) {
        0 => format!("{whole}.00"),
        1 => format!("{whole}.{}", below(h >> 21, 100)),
        _ => whole.to_string(),
    }
}

fn phone(h: u64) -> String {
    let n = below(h >> 5, 10_000);
    match below(h, 5) {
        0 => format!("+1 (555) 01{:02}-{n:04}", below(h >> 20, 100)),
        1 => format!("+44 20 7946 {n:04}"),
        2 => format!("+49 30 {:03} {n:04}", below(h >> 20, 1000)),
        3 => format!("+81 3-{:04}-{n:04}", below(h >> 20, 10_000)),
        _ => format!("555{:03}{n:04}", below(h >> 20, 1000)),
    }
}

fn suffix(h: u64) -> String {
    if below(h >> 13, 4) == 0 {
        format!("-{}", below(h >> 23, 90) + 10)
    } else {
        String::new()
    }
}

fn body(h: u64) -> String {
    let sentences = 1 + below(h, 3);
    let mut out = String::new();
    let html = below(h >> 40, 3) == 0;
    for i in 0..sentences {
        let s = pick(SENTENCES, mix(h ^ i));
        if html {
            out.push_str("<p>");
            out.push_str(s);
            out.push_str("</p>");
        } else {
            if i > 0 {
                out.push_str(if below(h >> (20 + i), 2) == 0 { " " } else { "\n" });
            }
            out.push_str(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ValueCtx {
        ValueCtx {
            seed: 1,
            object_type: ObjectType::Contacts,
            company_count: 10,
            uncastable_per_mille: 0,
            merged: None,
        }
    }

    fn rec(version: u32) -> Rec {
        Rec {
            id: 42,
            created_ms: 1_600_000_000_000,
            modified_ms: 1_600_000_000_001,
            archived_at_ms: None,
            version,
        }
    }

    #[test]
    fn values_are_deterministic_and_updates_change_some() {
        let t = ObjectType::Contacts;
        let all = |v| {
            t.properties()
                .iter()
                .map(|s| value(&ctx(), s, &rec(v)))
                .collect::<Vec<_>>()
        };
        assert_eq!(all(1), all(1));
        let changed = (1..10).any(|v| all(v) != all(v + 1));
        assert!(changed, "updates never change a value");
        let email = t.property("email").map(|s| value(&ctx(), s, &rec(0)));
        assert_eq!(email, t.property("email").map(|s| value(&ctx(), s, &rec(9))));
    }

    fn values(t: ObjectType, name: &str, c: &ValueCtx) -> Vec<Option<String>> {
        let spec = t.property(name).expect("property");
        (0..400u64)
            .map(|i| {
                let r = Rec {
                    id: 1_000 + i,
                    ..rec((i % 7) as u32)
                };
                value(c, spec, &r)
            })
            .collect()
    }

    #[test]
    fn bools_checkboxes_and_calculated_flags_render_as_hubspot_does() {
        let c = ValueCtx {
            object_type: ObjectType::Deals,
            ..ctx()
        };
        let closed = values(ObjectType::Deals, "hs_is_closed", &c);
        let stages = values(ObjectType::Deals, "dealstage", &c);
        for (flag, stage) in closed.iter().zip(&stages) {
            let is_closed = stage.as_deref().is_some_and(|s| s.starts_with("closed"));
            assert_eq!(flag.as_deref(), Some(if is_closed { "true" } else { "false" }));
        }
        let tags = values(ObjectType::Deals, "hs_tag_ids", &c);
        let present: Vec<&String> = tags.iter().flatten().collect();
        assert!(present.iter().any(|v| v.contains(';')), "several options");
        assert!(
            present.iter().any(|v| !v.is_empty() && !v.contains(';')),
            "one option"
        );
        assert!(present.iter().any(|v| v.is_empty()), "cleared");
        assert!(tags.iter().any(Option::is_none), "null");
        let optout = values(ObjectType::Contacts, "hs_email_optout", &ctx());
        assert!(optout.iter().flatten().all(|v| v == "true" || v == "false"));
        let dates = values(ObjectType::Quotes, "hs_expiration_date", &ctx());
        let dates: Vec<&String> = dates.iter().flatten().collect();
        assert!(dates.iter().any(|d| d.len() == 10 && d.as_bytes()[4] == b'-'));
        assert!(
            dates.iter().any(|d| d.bytes().all(|b| b.is_ascii_digit())),
            "epoch-ms dates"
        );
        assert!(dates.iter().all(|d| wire::parse_ms(d).is_some()));
        let items = ValueCtx {
            object_type: ObjectType::LineItems,
            ..ctx()
        };
        let amounts = values(ObjectType::LineItems, "amount", &items);
        let prices = values(ObjectType::LineItems, "price", &items);
        let quantities = values(ObjectType::LineItems, "quantity", &items);
        for ((a, p), q) in amounts.iter().zip(&prices).zip(&quantities) {
            let num = |v: &Option<String>| v.as_deref().and_then(|s| s.parse::<f64>().ok());
            let (a, p, q) = (num(a), num(p), num(q));
            assert!(matches!((a, p, q), (Some(a), Some(p), Some(q)) if (a - p * q).abs() < 0.01));
        }
    }

    #[test]
    fn uncastable_values_are_deterministic_and_only_in_typed_custom_properties() {
        let mut schema = crate::schema::TypeSchema::builtin(ObjectType::Contacts);
        for (name, kind) in [("n", "number"), ("d", "date"), ("b", "bool"), ("s", "string")] {
            schema.add(name, kind, None).unwrap();
        }
        let c = ValueCtx {
            uncastable_per_mille: 200,
            ..ctx()
        };
        let draw = |name: &str, c: &ValueCtx| -> Vec<Option<String>> {
            let spec = schema.get(name).unwrap();
            (0..300u64)
                .map(|i| {
                    value(
                        c,
                        spec,
                        &Rec {
                            id: 5_000 + i,
                            ..rec(1)
                        },
                    )
                })
                .collect()
        };
        for name in ["n", "d", "b"] {
            let vals = draw(name, &c);
            assert_eq!(vals, draw(name, &c), "deterministic");
            let bad = vals
                .iter()
                .flatten()
                .filter(|v| match name {
                    "n" => v.parse::<f64>().is_err(),
                    "d" => wire::parse_ms(v).is_none(),
                    _ => *v != "true" && *v != "false",
                })
                .count();
            assert!((20..=120).contains(&bad), "{name}: {bad} uncastable");
            let clean = ValueCtx {
                uncastable_per_mille: 0,
                ..c
            };
            assert!(draw(name, &clean)
                .iter()
                .flatten()
                .all(|v| v != "n/a" && v != "TBD"));
        }
        let none_in_builtin = values(ObjectType::Contacts, "associatedcompanyid", &c);
        assert!(none_in_builtin.iter().flatten().all(|v| v.parse::<u64>().is_ok()));
    }

    #[test]
    fn date_only_values_are_dates() {
        let c = ValueCtx {
            object_type: ObjectType::Tasks,
            ..ctx()
        };
        let spec = ObjectType::Tasks.property("hs_task_due_date");
        let found = (0..50u32).find_map(|v| spec.and_then(|s| value(&c, s, &rec(v))));
        assert!(found.is_some_and(|d| d.len() == 10 && d.as_bytes()[4] == b'-'));
    }
}
