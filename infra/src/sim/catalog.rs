//! The simulated portal's schema: the eight object types and, per type, its properties with
//! how each value is generated. `GET /crm/v3/properties/{type}` is rendered from this table.

use common::hubspot::wire::{self, PropertyDefinition};

/// The object types the simulator serves. Activities share one engagement id space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectType {
    Deals,
    Contacts,
    Companies,
    Calls,
    Emails,
    Meetings,
    Notes,
    Tasks,
}

impl ObjectType {
    pub const ALL: [ObjectType; 8] = [
        ObjectType::Deals,
        ObjectType::Contacts,
        ObjectType::Companies,
        ObjectType::Calls,
        ObjectType::Emails,
        ObjectType::Meetings,
        ObjectType::Notes,
        ObjectType::Tasks,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ObjectType::Deals => "deals",
            ObjectType::Contacts => "contacts",
            ObjectType::Companies => "companies",
            ObjectType::Calls => "calls",
            ObjectType::Emails => "emails",
            ObjectType::Meetings => "meetings",
            ObjectType::Notes => "notes",
            ObjectType::Tasks => "tasks",
        }
    }

    /// Resolves a name (`deals`) or a type id (`0-3`), as HubSpot accepts both.
    pub fn parse(type_or_id: &str) -> Option<Self> {
        let name = wire::object_type_name(type_or_id)?;
        ObjectType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Position in [`ObjectType::ALL`], for per-type arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn is_activity(self) -> bool {
        !matches!(
            self,
            ObjectType::Deals | ObjectType::Contacts | ObjectType::Companies
        )
    }

    pub fn modified_property(self) -> &'static str {
        wire::modified_property(self.name())
    }

    pub fn created_property(self) -> &'static str {
        wire::created_property(self.name())
    }

    /// The properties HubSpot returns when a request names none.
    pub fn default_properties(self) -> &'static [&'static str] {
        match self {
            ObjectType::Deals => &[
                "amount",
                "closedate",
                "createdate",
                "dealname",
                "dealstage",
                "hs_lastmodifieddate",
                "hs_object_id",
                "pipeline",
            ],
            ObjectType::Contacts => &[
                "createdate",
                "email",
                "firstname",
                "hs_object_id",
                "lastmodifieddate",
                "lastname",
            ],
            ObjectType::Companies => &[
                "createdate",
                "domain",
                "hs_lastmodifieddate",
                "hs_object_id",
                "name",
            ],
            _ => &["hs_createdate", "hs_lastmodifieddate", "hs_object_id"],
        }
    }

    /// Every property of the type, in a stable order.
    pub fn properties(self) -> &'static [PropSpec] {
        match self {
            ObjectType::Deals => DEALS,
            ObjectType::Contacts => CONTACTS,
            ObjectType::Companies => COMPANIES,
            ObjectType::Calls => CALLS,
            ObjectType::Emails => EMAILS,
            ObjectType::Meetings => MEETINGS,
            ObjectType::Notes => NOTES,
            ObjectType::Tasks => TASKS,
        }
    }

    pub fn property(self, name: &str) -> Option<&'static PropSpec> {
        self.properties().iter().find(|p| p.name == name)
    }

    pub fn property_definitions(self) -> Vec<PropertyDefinition> {
        self.properties()
            .iter()
            .map(|p| PropertyDefinition {
                name: p.name.to_string(),
                label: p.label.to_string(),
                kind: p.kind.type_name().to_string(),
                field_type: p.kind.field_type().to_string(),
                group_name: format!("{}information", self.name().trim_end_matches('s')),
                description: String::new(),
            })
            .collect()
    }
}

/// HubSpot's property types (the `type` of a property definition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Number,
    DateTime,
    Date,
    Enumeration,
}

impl Kind {
    fn type_name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Number => "number",
            Kind::DateTime => "datetime",
            Kind::Date => "date",
            Kind::Enumeration => "enumeration",
        }
    }

    fn field_type(self) -> &'static str {
        match self {
            Kind::String => "text",
            Kind::Number => "number",
            Kind::DateTime | Kind::Date => "date",
            Kind::Enumeration => "select",
        }
    }
}

/// How a property's value is derived (see `values.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gen {
    ObjectId,
    Created,
    Modified,
    /// One of fixed options (enumerations, and free text drawn from a pool).
    Pick(&'static [&'static str]),
    /// Free text built from a phrase pool, sometimes with HTML, quotes and newlines.
    Body,
    Title(&'static [&'static str]),
    FirstName,
    LastName,
    Email,
    Phone,
    City,
    Country,
    CompanyName,
    Domain,
    Owner,
    CompanyRef,
    Amount,
    Int {
        min: u64,
        max: u64,
    },
    /// A date-time up to `max_days` after creation.
    AfterCreated {
        max_days: u64,
    },
    /// When an activity happened: up to two weeks before it was logged.
    ActivityTime,
    /// A meeting's end: 15 to 120 minutes after its start (`ActivityTime`).
    MeetingEnd,
}

/// One property of an object type.
#[derive(Debug, Clone, Copy)]
pub struct PropSpec {
    pub name: &'static str,
    pub label: &'static str,
    pub kind: Kind,
    pub gen: Gen,
    /// Values with the same key are drawn from the same hash (city with country, first
    /// name with email, meeting start with `hs_timestamp`), so they stay consistent.
    pub key: &'static str,
    /// Chance in 1000 that the value is null.
    pub null_per_mille: u16,
    /// Stable properties keep their first value through updates (names, ids, places).
    pub stable: bool,
}

const fn p(name: &'static str, label: &'static str, kind: Kind, gen: Gen) -> PropSpec {
    PropSpec {
        name,
        label,
        kind,
        gen,
        key: name,
        null_per_mille: 0,
        stable: false,
    }
}

impl PropSpec {
    const fn nulls(mut self, per_mille: u16) -> Self {
        self.null_per_mille = per_mille;
        self
    }
    const fn stable(mut self) -> Self {
        self.stable = true;
        self
    }
    const fn key(mut self, key: &'static str) -> Self {
        self.key = key;
        self
    }
}

use Gen::*;
use Kind::{Date, DateTime, Enumeration, Number};

const ID: PropSpec = p("hs_object_id", "Record ID", Number, ObjectId).stable();
const OWNER: PropSpec = p("hubspot_owner_id", "Owner", Enumeration, Owner).nulls(120);
const CREATEDATE: PropSpec = p("createdate", "Create Date", DateTime, Created).stable();
const HS_CREATEDATE: PropSpec = p("hs_createdate", "Create Date", DateTime, Created).stable();
const HS_MODIFIED: PropSpec = p("hs_lastmodifieddate", "Last Modified Date", DateTime, Modified);
const HS_TIMESTAMP: PropSpec = p("hs_timestamp", "Activity date", DateTime, ActivityTime).stable();
const CITY: PropSpec = p("city", "City", Kind::String, City)
    .key("place")
    .nulls(150)
    .stable();
const COUNTRY: PropSpec = p("country", "Country/Region", Kind::String, Country)
    .key("place")
    .nulls(100)
    .stable();

static DEALS: &[PropSpec] = &[
    ID,
    CREATEDATE,
    HS_MODIFIED,
    p(
        "dealname",
        "Deal Name",
        Kind::String,
        Title(super::values::DEAL_NAMES),
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
];

const DEAL_STAGES: &[&str] = &[
    "appointmentscheduled",
    "qualifiedtobuy",
    "presentationscheduled",
    "decisionmakerboughtin",
    "contractsent",
    "closedwon",
    "closedlost",
];

static CONTACTS: &[PropSpec] = &[
    ID,
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
        Pick(super::values::JOB_TITLES),
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

static COMPANIES: &[PropSpec] = &[
    ID,
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

static CALLS: &[PropSpec] = &[
    ID,
    HS_CREATEDATE,
    HS_MODIFIED,
    p(
        "hs_call_title",
        "Call Title",
        Kind::String,
        Title(super::values::CALL_TITLES),
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

static EMAILS: &[PropSpec] = &[
    ID,
    HS_CREATEDATE,
    HS_MODIFIED,
    p(
        "hs_email_subject",
        "Email subject",
        Kind::String,
        Title(super::values::EMAIL_SUBJECTS),
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

static MEETINGS: &[PropSpec] = &[
    ID,
    HS_CREATEDATE,
    HS_MODIFIED,
    p(
        "hs_meeting_title",
        "Meeting name",
        Kind::String,
        Title(super::values::MEETING_TITLES),
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

static NOTES: &[PropSpec] = &[
    ID,
    HS_CREATEDATE,
    HS_MODIFIED,
    p("hs_note_body", "Note body", Kind::String, Body).nulls(20),
    HS_TIMESTAMP,
    OWNER,
];

static TASKS: &[PropSpec] = &[
    ID,
    HS_CREATEDATE,
    HS_MODIFIED,
    p(
        "hs_task_subject",
        "Task Title",
        Kind::String,
        Title(super::values::TASK_SUBJECTS),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_has_id_created_and_modified_properties() {
        for t in ObjectType::ALL {
            for name in ["hs_object_id", t.created_property(), t.modified_property()] {
                assert!(t.property(name).is_some(), "{} lacks {name}", t.name());
            }
            for name in t.default_properties() {
                assert!(
                    t.property(name).is_some(),
                    "{} default {name} undefined",
                    t.name()
                );
            }
            assert_eq!(ObjectType::parse(t.name()), Some(t));
        }
        assert_eq!(ObjectType::parse("0-3"), Some(ObjectType::Deals));
        assert_eq!(ObjectType::parse("widgets"), None);
    }
}
