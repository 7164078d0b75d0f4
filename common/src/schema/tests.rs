use super::*;
use crate::catalog::Catalog;

fn def(name: &str, kind: &str, field_type: &str) -> PropertyDefinition {
    PropertyDefinition {
        name: name.into(),
        label: name.into(),
        kind: kind.into(),
        field_type: field_type.into(),
        ..Default::default()
    }
}

fn deals(props: Vec<PropertyDefinition>) -> Vec<Discovered> {
    vec![Discovered {
        object_type: "deals".into(),
        properties: props,
    }]
}

fn all_deals() -> TableSpec {
    Catalog::from_toml(
        "[[tables]]\nname='deals'\nkey_column='deal_id'\n[[tables.sources]]\nobject_type='deals'\nexclude=['secret']\ndecimal=['amount']",
    )
    .unwrap()
    .tables()[0]
    .clone()
}

#[test]
fn types_follow_hubspot_e1() {
    let cases = [
        (("number", "number"), ColumnType::Float64),
        (("number", "calculation_equation"), ColumnType::Float64),
        (("datetime", "date"), ColumnType::Timestamp),
        (("date", "date"), ColumnType::Date),
        (("bool", "booleancheckbox"), ColumnType::Boolean),
        (("enumeration", "booleancheckbox"), ColumnType::Boolean),
        (("enumeration", "checkbox"), ColumnType::StringList),
        (("enumeration", "select"), ColumnType::String),
        (("string", "textarea"), ColumnType::String),
        (("phone_number", "phonenumber"), ColumnType::String),
    ];
    for ((kind, field), want) in cases {
        assert_eq!(
            ColumnType::of(&def("x", kind, field), false),
            want,
            "{kind}/{field}"
        );
    }
    assert_eq!(
        ColumnType::of(&def("x", "number", "number"), true),
        ColumnType::Decimal
    );
}

#[test]
fn first_run_takes_every_property_but_built_ins_and_exclusions() {
    let t = all_deals();
    let e = evolve(
        None,
        &t,
        &deals(vec![
            def("hs_object_id", "number", "number"),
            def("createdate", "datetime", "date"),
            def("hs_lastmodifieddate", "datetime", "date"),
            def("dealname", "string", "text"),
            def("amount", "number", "number"),
            def("secret", "string", "text"),
            def("tags", "enumeration", "checkbox"),
            PropertyDefinition {
                archived: true,
                ..def("old", "string", "text")
            },
            def("archived", "bool", "booleancheckbox"),
        ]),
        "r1",
        10,
    );
    let names: Vec<&str> = e.schema.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["dealname", "amount", "tags"]);
    assert_eq!(e.schema.column("amount").unwrap().ty, ColumnType::Decimal);
    assert!(
        e.schema.columns.iter().all(|c| !c.backfill),
        "nothing to backfill on a first run"
    );
    assert!(e
        .changes
        .iter()
        .any(|c| c.column == "archived" && matches!(c.change, Change::Skipped { .. })));
    assert_eq!(e.schema.version, 1);
    let arrow = e.schema.arrow_schema(&t);
    assert_eq!(
        arrow.field_with_name("tags").unwrap().data_type(),
        &ColumnType::StringList.arrow()
    );
    assert!(arrow.field_with_name(columns::UNCAST).is_ok());
}

#[test]
fn added_retyped_deleted_and_restored_e2_e3_e4() {
    let t = all_deals();
    let one = evolve(
        None,
        &t,
        &deals(vec![
            def("dealname", "string", "text"),
            def("score", "number", "number"),
        ]),
        "r1",
        10,
    )
    .schema;
    // Nothing changed: same version, no change logged (a redelivered request evolves the same).
    let same = evolve(
        Some(&one),
        &t,
        &deals(vec![
            def("dealname", "string", "text"),
            def("score", "number", "number"),
        ]),
        "r2",
        20,
    );
    assert!(same.changes.is_empty());
    assert_eq!(same.schema, one);

    let two = evolve(
        Some(&one),
        &t,
        &deals(vec![
            def("score", "string", "text"),
            def("region", "enumeration", "select"),
        ]),
        "r3",
        30,
    );
    let s = &two.schema;
    assert_eq!(s.version, 2);
    assert_eq!(s.column("score").unwrap().ty, ColumnType::String, "E3 widens");
    assert!(!s.column("dealname").unwrap().fetched, "E4 stops fetching");
    assert!(s.column("region").unwrap().backfill, "E2 marks for backfill");
    assert_eq!(
        s.backfill_columns(),
        ["score", "region"],
        "E3 reads a widened column again"
    );
    assert_eq!(two.changes.len(), 3, "{:?}", two.changes);

    // A string column stays a string; a deleted property that comes back is fetched again.
    let three = evolve(
        Some(s),
        &t,
        &deals(vec![
            def("score", "number", "number"),
            def("region", "enumeration", "select"),
            def("dealname", "string", "text"),
        ]),
        "r4",
        40,
    );
    assert_eq!(three.schema.column("score").unwrap().ty, ColumnType::String);
    assert!(three.schema.column("dealname").unwrap().fetched);
    assert!(matches!(
        three.changes[..],
        [ColumnChange {
            change: Change::Restored,
            ..
        }]
    ));
    let mut four = three.schema.clone();
    assert!(mark_backfilled(
        &mut four,
        &["score".to_string(), "region".to_string()],
        "r4",
        50
    ));
    assert!(four.backfill_columns().is_empty());
}

#[test]
fn a_listed_property_the_portal_lacks_is_skipped_once() {
    let t = Catalog::from_toml(
        "[[tables]]\nname='deals'\nkey_column='deal_id'\n[[tables.sources]]\nobject_type='deals'\nproperties=['dealname','dael_stage']",
    )
    .unwrap()
    .tables()[0]
    .clone();
    let d = deals(vec![
        def("dealname", "string", "text"),
        def("amount", "number", "number"),
    ]);
    let one = evolve(None, &t, &d, "r1", 1);
    assert_eq!(one.schema.columns.len(), 1);
    assert!(one.changes.iter().any(|c| c.column == "dael_stage"));
    let two = evolve(Some(&one.schema), &t, &d, "r2", 2);
    assert!(two.changes.is_empty(), "{:?}", two.changes);
}
