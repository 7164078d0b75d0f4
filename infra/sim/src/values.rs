//! Property values, derived on demand from `(seed, type, id, version)` so a record costs a
//! few words of memory whatever its width. The pools mix plain ASCII with accents, CJK and
//! emoji, as real portals do.

use wire::format_ms;

use super::catalog::{Gen, Kind, ObjectType, PropSpec};
use super::portal::{core_id, Rec};
use super::rng::{below, hash, mix, tag};

/// What a value depends on besides the record itself.
#[derive(Debug, Clone, Copy)]
pub struct ValueCtx {
    pub seed: u64,
    pub object_type: ObjectType,
    /// How many companies were seeded, so `associatedcompanyid` names one of them.
    pub company_count: u64,
}

const DAY_MS: i64 = 86_400_000;
const NULL_SALT: u64 = 0x6e75_6c6c;

/// The value of one property of one record, as HubSpot sends it (a string or null).
pub fn value(ctx: &ValueCtx, spec: &PropSpec, rec: &Rec) -> Option<String> {
    match spec.gen {
        Gen::ObjectId => return Some(rec.id.to_string()),
        Gen::Created => return Some(format_ms(rec.created_ms)),
        Gen::Modified => return Some(format_ms(rec.modified_ms)),
        _ => {}
    }
    let version = effective_version(ctx, spec, rec);
    let base = [ctx.seed, tag(ctx.object_type.name()), rec.id, u64::from(version)];
    let null_draw = hash(&[base[0], base[1], base[2], base[3], tag(spec.name), NULL_SALT]);
    if below(null_draw, 1000) < u64::from(spec.null_per_mille) {
        return None;
    }
    let h = hash(&[base[0], base[1], base[2], base[3], tag(spec.key)]);
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
        Gen::ObjectId | Gen::Created | Gen::Modified => return None,
    })
}

/// The version a property last changed at: an update changes about a third of the
/// volatile properties, like a person editing a few fields.
fn effective_version(ctx: &ValueCtx, spec: &PropSpec, rec: &Rec) -> u32 {
    if spec.stable {
        return 0;
    }
    let key = tag(spec.key);
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

const OWNER_COUNT: u64 = 17;

fn owner_id(seed: u64, index: u64) -> u64 {
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

pub const DEAL_NAMES: &[&str] = &[
    "Acme Corp - Enterprise renewal",
    "Globex expansion Q3",
    "Initech new business",
    "Müller & Söhne – Rahmenvertrag",
    "Société Générale pilot",
    "東京オフィス導入",
    "São Paulo rollout",
    "🚀 Rocket upsell",
    "Umbrella annual plan",
    "Stark Industries 500 seats",
    "Zürich Versicherung POC",
    "Café Olé franchise",
    "Nordlys AS – fase 2",
    "北京合作项目",
    "Wayne Enterprises 💼 multi-year",
    "Tyrell \"Nexus\" licence",
];

pub const JOB_TITLES: &[&str] = &[
    "CEO",
    "VP Sales",
    "Head of Marketing",
    "Software Engineer",
    "Directrice générale",
    "Geschäftsführer",
    "営業部長",
    "Procurement Manager",
    "CFO",
    "Office Manager",
    "Jefa de Compras",
    "Data Analyst 📊",
];

pub const CALL_TITLES: &[&str] = &[
    "Discovery call",
    "Follow-up call",
    "Demo walkthrough",
    "Pricing discussion",
    "Rückruf wegen Angebot",
    "初回ヒアリング",
    "Renewal check-in ☎️",
    "Left voicemail",
];

pub const EMAIL_SUBJECTS: &[&str] = &[
    "Re: Proposal",
    "Your quote #4471",
    "Following up on our call",
    "Invitation: Quarterly review",
    "Angebot für Ihr Team",
    "Réunion de lancement",
    "見積書の送付",
    "🎉 Welcome aboard!",
    "Fwd: Contract (signed)",
    "Out of office: Re: Invoice",
];

pub const MEETING_TITLES: &[&str] = &[
    "Kick-off",
    "Quarterly business review",
    "Product demo",
    "Onboarding session",
    "Réunion stratégique",
    "定例ミーティング",
    "Lunch & learn 🍕",
    "Contract negotiation",
];

pub const TASK_SUBJECTS: &[&str] = &[
    "Send proposal",
    "Call back",
    "Prepare contract",
    "Update CRM fields",
    "Envoyer la facture",
    "資料を送る",
    "Follow up ✅",
    "Book next meeting",
];

const SENTENCES: &[&str] = &[
    "Spoke with the buyer about next quarter's budget.",
    "Left a voicemail, will try again Thursday.",
    "Customer asked for a discount of 15%; escalated to \"Deal Desk\".",
    "Kunde möchte ein Angebot bis Freitag.",
    "Le client souhaite une démo complète.",
    "先方は来月に導入を検討しています。",
    "Great call! 🎉 They're ready to sign.",
    "Path: C:\\Users\\shared\\contracts\t(see tab-separated notes)",
    "Needs security review before procurement.",
    "Asked about SSO, SCIM & audit logs.",
];

/// (display name, ASCII form for email addresses)
const FIRST_NAMES: &[(&str, &str)] = &[
    ("James", "james"),
    ("Maria", "maria"),
    ("José", "jose"),
    ("Zoë", "zoe"),
    ("Søren", "soren"),
    ("François", "francois"),
    ("Łukasz", "lukasz"),
    ("Aiko", "aiko"),
    ("翔太", "shota"),
    ("Priya", "priya"),
    ("Mohammed", "mohammed"),
    ("Ümit", "umit"),
    ("Olga", "olga"),
    ("Chloé", "chloe"),
    ("Wei", "wei"),
    ("Emily", "emily"),
];

const LAST_NAMES: &[(&str, &str)] = &[
    ("Smith", "smith"),
    ("García", "garcia"),
    ("Müller", "mueller"),
    ("Nguyễn", "nguyen"),
    ("O'Brien", "obrien"),
    ("Ødegård", "odegard"),
    ("山田", "yamada"),
    ("Kowalski", "kowalski"),
    ("Dubois", "dubois"),
    ("Rossi", "rossi"),
    ("Patel", "patel"),
    ("李", "li"),
    ("Johnson", "johnson"),
    ("Björk", "bjork"),
];

const EMAIL_DOMAINS: &[&str] = &[
    "example.com",
    "gmail.com",
    "outlook.com",
    "acme.io",
    "firma.de",
    "example.co.jp",
];

/// (city, country)
const PLACES: &[(&str, &str)] = &[
    ("New York", "United States"),
    ("San Francisco", "United States"),
    ("Berlin", "Germany"),
    ("München", "Germany"),
    ("Zürich", "Switzerland"),
    ("Paris", "France"),
    ("Montréal", "Canada"),
    ("São Paulo", "Brazil"),
    ("東京", "Japan"),
    ("Kraków", "Poland"),
    ("Reykjavík", "Iceland"),
    ("London", "United Kingdom"),
    ("Bengaluru", "India"),
    ("Sydney", "Australia"),
];

/// (display name, ASCII stem for the domain)
const COMPANY_NAMES: &[(&str, &str)] = &[
    ("Acme Corp", "acme"),
    ("Globex", "globex"),
    ("Initech", "initech"),
    ("Müller & Söhne GmbH", "mueller-soehne"),
    ("株式会社サクラ", "sakura"),
    ("Café Olé SARL", "cafeole"),
    ("Nordlys AS", "nordlys"),
    ("Umbrella Corporation", "umbrella"),
    ("Stark Industries", "stark"),
    ("Tyrell Corp.", "tyrell"),
    ("Ünal Lojistik A.Ş.", "unal"),
    ("Blue Sky Labs ☁️", "bluesky"),
];

const TLDS: &[&str] = &["com", "io", "de", "fr", "co.jp", "com.br", "net"];

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ValueCtx {
        ValueCtx {
            seed: 1,
            object_type: ObjectType::Contacts,
            company_count: 10,
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
