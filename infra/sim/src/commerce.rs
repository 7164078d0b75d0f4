//! The property tables of tickets, products, line items and quotes, with HubSpot's internal
//! names and types (see `catalog.rs` for the vocabulary, `values.rs` for the pools).

use super::catalog::{p, Gen, Kind, PropSpec};
use super::properties::{CREATEDATE, HS_CREATEDATE, HS_MODIFIED, ID, OWNER};
use Gen::*;
use Kind::{Bool, Date, DateTime, Enumeration, Number};

pub(super) static TICKETS: &[PropSpec] = &[
    ID,
    super::properties::MERGED_IDS,
    CREATEDATE,
    HS_MODIFIED,
    p(
        "subject",
        "Ticket name",
        Kind::String,
        Title(crate::pools::TICKET_SUBJECTS),
    )
    .stable(),
    p("content", "Ticket description", Kind::String, Body).nulls(200),
    p(
        "hs_pipeline",
        "Pipeline",
        Enumeration,
        Pick(&["0", "0", "0", "1284077"]),
    ),
    p(
        "hs_pipeline_stage",
        "Ticket status",
        Enumeration,
        Pick(&["1", "2", "3", "4"]),
    ),
    p(
        "hs_ticket_priority",
        "Priority",
        Enumeration,
        Pick(&["LOW", "MEDIUM", "MEDIUM", "HIGH", "URGENT"]),
    )
    .nulls(150),
    p(
        "hs_ticket_category",
        "Category",
        Enumeration,
        Multi(TICKET_CATEGORIES),
    )
    .field("checkbox")
    .nulls(250),
    p(
        "source_type",
        "Source",
        Enumeration,
        Pick(&["EMAIL", "CHAT", "PHONE", "FORM"]),
    )
    .stable(),
    p(
        "closed_date",
        "Close date",
        DateTime,
        AfterCreated { max_days: 30 },
    )
    .nulls(400),
    p(
        "time_to_close",
        "Time to close",
        Number,
        Int {
            min: 60_000,
            max: 2_592_000_000,
        },
    )
    .field("calculation_equation")
    .calculated()
    .nulls(400),
    OWNER,
];

const TICKET_CATEGORIES: &[&str] = &[
    "PRODUCT_ISSUE",
    "BILLING_ISSUE",
    "FEATURE_REQUEST",
    "GENERAL_INQUIRY",
];

pub(super) static PRODUCTS: &[PropSpec] = &[
    ID,
    CREATEDATE,
    HS_MODIFIED,
    p("name", "Name", Kind::String, Title(crate::pools::PRODUCT_NAMES))
        .key("product")
        .stable(),
    p("description", "Description", Kind::String, Body).nulls(300),
    p("price", "Unit price", Number, Amount),
    p("hs_sku", "SKU", Kind::String, Sku).stable().nulls(100),
    p("hs_cost_of_goods_sold", "Unit cost", Number, Amount).nulls(350),
    p(
        "hs_recurring_billing_period",
        "Term",
        Kind::String,
        Pick(BILLING_PERIODS),
    )
    .nulls(450),
    p(
        "hs_product_type",
        "Product type",
        Enumeration,
        Pick(&["inventory", "non_inventory", "service"]),
    )
    .nulls(200),
];

const BILLING_PERIODS: &[&str] = &["P1M", "P3M", "P6M", "P12M", "P24M", "P36M"];

pub(super) static LINE_ITEMS: &[PropSpec] = &[
    ID,
    CREATEDATE,
    HS_MODIFIED,
    p("name", "Name", Kind::String, Title(crate::pools::PRODUCT_NAMES))
        .key("product")
        .stable(),
    p("quantity", "Quantity", Number, Int { min: 1, max: 50 }),
    p("price", "Unit price", Number, Amount),
    p("amount", "Net price", Number, LineAmount)
        .field("calculation_equation")
        .calculated(),
    p("hs_product_id", "Product ID", Number, ProductRef)
        .stable()
        .nulls(150),
    p("hs_sku", "SKU", Kind::String, Sku).stable().nulls(200),
    p(
        "hs_recurring_billing_period",
        "Term",
        Kind::String,
        Pick(BILLING_PERIODS),
    )
    .nulls(450),
    p(
        "recurringbillingfrequency",
        "Billing frequency",
        Enumeration,
        Pick(&["monthly", "quarterly", "annually"]),
    )
    .nulls(450),
    p(
        "hs_discount_percentage",
        "Discount percentage",
        Number,
        Int { min: 0, max: 40 },
    )
    .nulls(700),
];

pub(super) static QUOTES: &[PropSpec] = &[
    ID,
    HS_CREATEDATE,
    HS_MODIFIED,
    p(
        "hs_title",
        "Quote name",
        Kind::String,
        Title(crate::pools::QUOTE_TITLES),
    )
    .stable(),
    p(
        "hs_expiration_date",
        "Expiration date",
        Date,
        Day { max_days: 90 },
    ),
    p(
        "hs_status",
        "Quote approval status",
        Enumeration,
        Pick(QUOTE_STATUS),
    ),
    p("hs_quote_amount", "Quote amount", Number, Amount)
        .calculated()
        .nulls(50),
    p(
        "hs_currency",
        "Currency",
        Enumeration,
        Pick(&["USD", "USD", "EUR", "GBP", "JPY"]),
    ),
    p(
        "hs_esign_enabled",
        "E-signature enabled",
        Bool,
        Flag { true_per_mille: 300 },
    )
    .nulls(200),
    OWNER,
];

const QUOTE_STATUS: &[&str] = &[
    "DRAFT",
    "APPROVAL_NOT_NEEDED",
    "APPROVAL_NOT_NEEDED",
    "PENDING_APPROVAL",
    "APPROVED",
    "REJECTED",
];
