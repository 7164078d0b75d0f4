//! The pools values are drawn from: names, titles, phrases and places mixing plain ASCII
//! with accents, CJK and emoji, as real portals do.

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

pub const TICKET_SUBJECTS: &[&str] = &[
    "Cannot log in",
    "Invoice shows wrong amount",
    "Feature request: CSV export",
    "Export stuck at 99%",
    "Rechnung doppelt erhalten",
    "Problème de synchronisation",
    "ログインできません",
    "Password reset link expired 🔑",
    "API returns 502 intermittently",
    "Cancel my subscription",
];

pub const PRODUCT_NAMES: &[&str] = &[
    "Professional seat",
    "Enterprise seat",
    "Onboarding package",
    "Premium support (annual)",
    "API add-on: 1M calls",
    "Schulung vor Ort",
    "Licence « Équipe »",
    "導入支援パック",
    "Hardware kit v2",
    "Data migration ⚙️",
];

pub const QUOTE_TITLES: &[&str] = &[
    "Acme Corp - 2025 renewal",
    "Globex expansion quote",
    "Initech – 50 seats",
    "Angebot Müller & Söhne",
    "Devis Société Générale",
    "東京オフィス見積",
    "Wayne Enterprises multi-year 💼",
    "Q3 upsell",
];

/// Free text of custom string properties.
pub(super) const CUSTOM_WORDS: &[&str] = &[
    "Gold",
    "Silver",
    "Partner referral",
    "Inbound – webinar",
    "Région Île-de-France",
    "EMEA North",
    "APAC 🌏",
    "legacy import",
    "See notes",
    "Kundennummer fehlt",
];

/// Options of custom enumerations that name none.
pub(super) const CUSTOM_OPTIONS: &[&str] = &["option_a", "option_b", "option_c", "option_d", "option_e"];

pub(super) const VIN_CHARS: &[u8] = b"ABCDEFGHJKLMNPRSTUVWXYZ0123456789";

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

pub(super) const SENTENCES: &[&str] = &[
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
pub(super) const FIRST_NAMES: &[(&str, &str)] = &[
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

pub(super) const LAST_NAMES: &[(&str, &str)] = &[
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

pub(super) const EMAIL_DOMAINS: &[&str] = &[
    "example.com",
    "gmail.com",
    "outlook.com",
    "acme.io",
    "firma.de",
    "example.co.jp",
];

/// (city, country)
pub(super) const PLACES: &[(&str, &str)] = &[
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
pub(super) const COMPANY_NAMES: &[(&str, &str)] = &[
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

pub(super) const TLDS: &[&str] = &["com", "io", "de", "fr", "co.jp", "com.br", "net"];
