//! The property tables of the CRM and activity types: names, labels, HubSpot types, and how
//! each value is generated (see `catalog.rs` for the vocabulary, `values.rs` for the pools).
//! Tickets, products, line items and quotes are in `commerce.rs`, custom objects in
//! `custom_objects.rs`.

use super::catalog::{p, Gen, Kind, PropSpec};
use Gen::*;
use Kind::{Bool, Date, DateTime, Enumeration, Number};

pub(super) const ID: PropSpec = p("hs_object_id", "Record ID", Number, ObjectId).stable();
/// The survivor of a merge lists the merged-away ids (A4 in `relations.rs`).
pub(super) const MERGED_IDS: PropSpec = p(
    "hs_merged_object_ids",
    "Merged record IDs",
    Enumeration,
    MergedIds,
)
.field("checkbox")
.calculated();
const MERGED_VIDS: PropSpec = p(
    "hs_calculated_merged_vids",
    "Merged Contact IDs",
    Kind::String,
    MergedVids,
)
.calculated();
pub(super) const OWNER: PropSpec = p("hubspot_owner_id", "Owner", Enumeration, Owner).nulls(120);
pub(super) const CREATEDATE: PropSpec = p("createdate", "Create Date", DateTime, Created).stable();
pub(super) const HS_CREATEDATE: PropSpec = p("hs_createdate", "Create Date", DateTime, Created).stable();
pub(super) const HS_MODIFIED: PropSpec = p("hs_lastmodifieddate", "Last Modified Date", DateTime, Modified);
const HS_TIMESTAMP: PropSpec = p("hs_timestamp", "Activity date", DateTime, ActivityTime).stable();
const CITY: PropSpec = p("city", "City", Kind::String, City)
    .key("place")
    .nulls(150)
    .stable();
const COUNTRY: PropSpec = p("country", "Country/Region", Kind::String, Country)
    .key("place")
    .nulls(100)
    .stable();

pub(super) static DEALS: &[PropSpec] = &[
    ID,
    MERGED_IDS,
    CREATEDATE,
    HS_MODIFIED,
    p(
        "dealname",
        "Deal Name",
        Kind::String,
        Title(crate::pools::DEAL_NAMES),
    )
    .stable(),
    p("amount", "Amount", Number, Amount).nulls(80),
    p("dealstage", "Deal Stage", Enumeration, Pick(DEAL_STAGES)),
    p(
        "pipeline",
        "Pipeline",
        Enumeration,
        Pick(&["default", "default", "default", "75e28846"]),
    ),
    p(
        "closedate",
        "Close Date",
        DateTime,
        AfterCreated { max_days: 240 },
    )
    .nulls(200),
    OWNER,
    p(
        "dealtype",
        "Deal Type",
        Enumeration,
        Pick(&["newbusiness", "existingbusiness"]),
    )
    .nulls(300),
    p(
        "hs_is_closed",
        "Is Deal Closed?",
        Bool,
        InSet {
            options: DEAL_STAGES,
            set: &["closedwon", "closedlost"],
        },
    )
    .key("dealstage")
    .calculated(),
    p(
        "hs_is_closed_won",
        "Is Closed Won",
        Bool,
        InSet {
            options: DEAL_STAGES,
            set: &["closedwon"],
        },
    )
    .key("dealstage")
    .calculated(),
    p(
        "hs_priority",
        "Priority",
        Enumeration,
        Pick(&["low", "medium", "high"]),
    )
    .nulls(500),
    p("hs_tag_ids", "Deal Tags", Enumeration, Multi(DEAL_TAGS))
        .field("checkbox")
        .nulls(600),
    p("hs_projected_amount", "Weighted amount", Number, Amount)
        .field("calculation_equation")
        .calculated()
        .nulls(80),
];

const DEAL_TAGS: &[&str] = &["1028427", "1028428", "1029554", "1031210", "1031977"];

const DEAL_STAGES: &[&str] = &[
    "appointmentscheduled",
    "qualifiedtobuy",
    "presentationscheduled",
    "decisionmakerboughtin",
    "contractsent",
    "closedwon",
    "closedlost",
];

pub(super) static CONTACTS: &[PropSpec] = &[
    ID,
    MERGED_IDS,
    MERGED_VIDS,
    CREATEDATE,
    p("lastmodifieddate", "Last Modified Date", DateTime, Modified),
    p("email", "Email", Kind::String, Email)
        .key("person")
        .nulls(40)
        .stable(),
    p("firstname", "First Name", Kind::String, FirstName)
        .key("person")
        .nulls(30)
        .stable(),
    p("lastname", "Last Name", Kind::String, LastName)
        .key("person")
        .nulls(50)
        .stable(),
    p("phone", "Phone Number", Kind::String, Phone).nulls(350),
    p(
        "jobtitle",
        "Job Title",
        Kind::String,
        Pick(crate::pools::JOB_TITLES),
    )
    .nulls(250),
    p("lifecyclestage", "Lifecycle Stage", Enumeration, Pick(LIFECYCLE)).nulls(20),
    OWNER,
    p(
        "associatedcompanyid",
        "Primary Associated Company ID",
        Number,
        CompanyRef,
    )
    .nulls(200),
    CITY,
    COUNTRY,
    p(
        "hs_email_optout",
        "Unsubscribed from all email",
        Bool,
        Flag { true_per_mille: 80 },
    )
    .nulls(300),
    p("hs_buying_role", "Buying Role", Enumeration, Multi(BUYING_ROLES))
        .field("checkbox")
        .nulls(500),
    p(
        "hs_marketable_until_renewal",
        "Marketing contact until next update",
        Bool,
        Flag { true_per_mille: 350 },
    )
    .calculated()
    .nulls(100),
];

const BUYING_ROLES: &[&str] = &[
    "BLOCKER",
    "BUDGET_HOLDER",
    "CHAMPION",
    "DECISION_MAKER",
    "END_USER",
    "EXECUTIVE_SPONSOR",
    "INFLUENCER",
    "LEGAL_AND_COMPLIANCE",
];

const LIFECYCLE: &[&str] = &[
    "subscriber",
    "lead",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "customer",
    "evangelist",
    "other",
];

pub(super) static COMPANIES: &[PropSpec] = &[
    ID,
    MERGED_IDS,
    CREATEDATE,
    HS_MODIFIED,
    p("name", "Company name", Kind::String, CompanyName)
        .key("org")
        .nulls(10)
        .stable(),
    p("domain", "Company Domain Name", Kind::String, Domain)
        .key("org")
        .nulls(120)
        .stable(),
    p("industry", "Industry", Enumeration, Pick(INDUSTRIES)).nulls(300),
    CITY,
    COUNTRY,
    p(
        "numberofemployees",
        "Number of Employees",
        Number,
        Int { min: 1, max: 25_000 },
    )
    .nulls(250),
    p("annualrevenue", "Annual Revenue", Number, Amount).nulls(400),
    OWNER,
    p("is_public", "Is Public", Bool, Flag { true_per_mille: 150 }).nulls(400),
    p(
        "hs_is_target_account",
        "Target Account",
        Bool,
        Flag { true_per_mille: 200 },
    )
    .nulls(100),
    p(
        "hs_num_child_companies",
        "Number of child companies",
        Number,
        Int { min: 0, max: 12 },
    )
    .calculated(),
];

const INDUSTRIES: &[&str] = &[
    "COMPUTER_SOFTWARE",
    "INFORMATION_TECHNOLOGY_AND_SERVICES",
    "FINANCIAL_SERVICES",
    "HOSPITAL_HEALTH_CARE",
    "RETAIL",
    "MARKETING_AND_ADVERTISING",
    "CONSTRUCTION",
    "FOOD_BEVERAGES",
    "HIGHER_EDUCATION",
    "LOGISTICS_AND_SUPPLY_CHAIN",
];

pub(super) static CALLS: &[PropSpec] = &[
    ID,
    HS_CREATEDATE,
    HS_MODIFIED,
    p(
        "hs_call_title",
        "Call Title",
        Kind::String,
        Title(crate::pools::CALL_TITLES),
    )
    .nulls(150),
    p("hs_call_body", "Call notes", Kind::String, Body).nulls(250),
    p(
        "hs_call_direction",
        "Call direction",
        Enumeration,
        Pick(&["OUTBOUND", "INBOUND"]),
    ),
    p(
        "hs_call_duration",
        "Call duration",
        Number,
        Int {
            min: 0,
            max: 3_600_000,
        },
    )
    .nulls(100),
    p("hs_call_status", "Call status", Enumeration, Pick(CALL_STATUS)),
    HS_TIMESTAMP,
    OWNER,
];

const CALL_STATUS: &[&str] = &[
    "COMPLETED",
    "COMPLETED",
    "COMPLETED",
    "BUSY",
    "NO_ANSWER",
    "FAILED",
    "CANCELED",
];

pub(super) static EMAILS: &[PropSpec] = &[
    ID,
    HS_CREATEDATE,
    HS_MODIFIED,
    p(
        "hs_email_subject",
        "Email subject",
        Kind::String,
        Title(crate::pools::EMAIL_SUBJECTS),
    )
    .nulls(40)
    .stable(),
    p("hs_email_text", "Email body", Kind::String, Body)
        .nulls(100)
        .stable(),
    p(
        "hs_email_direction",
        "Email direction",
        Enumeration,
        Pick(EMAIL_DIRECTION),
    )
    .stable(),
    p(
        "hs_email_status",
        "Email send status",
        Enumeration,
        Pick(EMAIL_STATUS),
    )
    .nulls(150),
    HS_TIMESTAMP,
    OWNER,
];

const EMAIL_DIRECTION: &[&str] = &["EMAIL", "EMAIL", "INCOMING_EMAIL", "FORWARDED_EMAIL"];
const EMAIL_STATUS: &[&str] = &["SENT", "SENT", "SENT", "BOUNCED", "FAILED", "SCHEDULED"];

pub(super) static MEETINGS: &[PropSpec] = &[
    ID,
    HS_CREATEDATE,
    HS_MODIFIED,
    p(
        "hs_meeting_title",
        "Meeting name",
        Kind::String,
        Title(crate::pools::MEETING_TITLES),
    )
    .nulls(50),
    p("hs_meeting_body", "Meeting description", Kind::String, Body).nulls(300),
    p(
        "hs_meeting_outcome",
        "Meeting outcome",
        Enumeration,
        Pick(MEETING_OUTCOME),
    )
    .nulls(100),
    p("hs_meeting_start_time", "Start time", DateTime, ActivityTime)
        .key("hs_timestamp")
        .stable(),
    p("hs_meeting_end_time", "End time", DateTime, MeetingEnd)
        .key("hs_timestamp")
        .stable(),
    HS_TIMESTAMP,
    OWNER,
];

const MEETING_OUTCOME: &[&str] = &[
    "SCHEDULED",
    "COMPLETED",
    "COMPLETED",
    "RESCHEDULED",
    "NO_SHOW",
    "CANCELED",
];

pub(super) static NOTES: &[PropSpec] = &[
    ID,
    HS_CREATEDATE,
    HS_MODIFIED,
    p("hs_note_body", "Note body", Kind::String, Body).nulls(20),
    HS_TIMESTAMP,
    OWNER,
];

pub(super) static TASKS: &[PropSpec] = &[
    ID,
    HS_CREATEDATE,
    HS_MODIFIED,
    p(
        "hs_task_subject",
        "Task Title",
        Kind::String,
        Title(crate::pools::TASK_SUBJECTS),
    ),
    p("hs_task_body", "Task notes", Kind::String, Body).nulls(400),
    p("hs_task_status", "Task status", Enumeration, Pick(TASK_STATUS)),
    p(
        "hs_task_priority",
        "Priority",
        Enumeration,
        Pick(&["NONE", "LOW", "MEDIUM", "HIGH"]),
    )
    .nulls(100),
    p(
        "hs_task_type",
        "Task type",
        Enumeration,
        Pick(&["TODO", "CALL", "EMAIL"]),
    ),
    p(
        "hs_task_due_date",
        "Due date",
        Date,
        AfterCreated { max_days: 30 },
    )
    .nulls(200),
    HS_TIMESTAMP,
    OWNER,
];

const TASK_STATUS: &[&str] = &["NOT_STARTED", "IN_PROGRESS", "WAITING", "COMPLETED", "DEFERRED"];
