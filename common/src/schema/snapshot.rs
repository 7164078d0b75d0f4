//! The fixed columns of the snapshot tables (owners, pipeline stages) and their rows from
//! HubSpot's answers. Every snapshot row carries `created_at`, `last_modified_at` (HubSpot's
//! `createdAt` and `updatedAt`), `archived`, `_synced_at` and `_run_id` like every table.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, ListBuilder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use wire::{Owner, Pipeline};

use crate::catalog::{columns, SnapshotKind};

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// The Arrow schema of a snapshot table.
pub fn arrow_schema(kind: SnapshotKind) -> SchemaRef {
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    let mut fields = match kind {
        SnapshotKind::Owners => vec![
            Field::new("owner_id", DataType::Int64, false),
            Field::new(columns::CREATED_AT, ts(), true),
            Field::new(columns::LAST_MODIFIED_AT, ts(), false),
            Field::new(columns::ARCHIVED, DataType::Boolean, false),
            s("email"),
            s("first_name"),
            s("last_name"),
            s("owner_type"),
            Field::new("user_id", DataType::Int64, true),
            Field::new("user_id_including_inactive", DataType::Int64, true),
            s("primary_team_id"),
            s("primary_team_name"),
            Field::new("team_names", DataType::List(Arc::new(super::list_item())), true),
        ],
        SnapshotKind::Pipelines => vec![
            Field::new("stage_id", DataType::Utf8, false),
            Field::new(columns::CREATED_AT, ts(), true),
            Field::new(columns::LAST_MODIFIED_AT, ts(), false),
            Field::new(columns::ARCHIVED, DataType::Boolean, false),
            s("object_type"),
            s("stage_label"),
            Field::new("stage_display_order", DataType::Int64, true),
            Field::new("probability", DataType::Float64, true),
            Field::new("is_closed", DataType::Boolean, true),
            s("ticket_state"),
            s("pipeline_id"),
            s("pipeline_label"),
            Field::new("pipeline_display_order", DataType::Int64, true),
            Field::new("pipeline_archived", DataType::Boolean, true),
        ],
    };
    fields.push(Field::new(columns::SYNCED_AT, ts(), false));
    fields.push(Field::new(columns::RUN_ID, DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

/// The object types whose pipelines the pipeline-stages snapshot reads.
pub const PIPELINE_OBJECT_TYPES: [&str; 2] = ["deals", "tickets"];

/// Builds one timestamp column (UTC ms) from HubSpot's ISO strings; unreadable ones are null
/// (`required`: the epoch instead, for `last_modified_at`, which may not be null).
fn times(values: impl Iterator<Item = Option<i64>>, required: bool) -> ArrayRef {
    let mut b = TimestampMillisecondBuilder::new().with_timezone("UTC");
    for v in values {
        match (v, required) {
            (Some(ms), _) => b.append_value(ms),
            (None, true) => b.append_value(0),
            (None, false) => b.append_null(),
        }
    }
    Arc::new(b.finish())
}

fn strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    let mut b = StringBuilder::new();
    for v in values {
        b.append_option(v);
    }
    Arc::new(b.finish())
}

fn tail(n: usize, run_id: &str, synced_at: i64) -> [ArrayRef; 2] {
    [
        times(std::iter::repeat_n(Some(synced_at), n), true),
        strings(std::iter::repeat_n(Some(run_id), n)),
    ]
}

/// An owner's primary team (its first when none is marked).
fn primary(o: &Owner) -> Option<&wire::OwnerTeam> {
    o.teams.iter().find(|t| t.primary).or(o.teams.first())
}

/// The owners snapshot: one row per owner (active and archived). An owner whose id is not a
/// number is an error: the table's key is the id records name in `hubspot_owner_id`.
pub fn owners_batch(owners: &[Owner], run_id: &str, synced_at: i64) -> Result<RecordBatch, ArrowError> {
    let mut ids = Int64Builder::new();
    for o in owners {
        let id =
            o.id.trim().parse::<i64>().map_err(|_| {
                ArrowError::InvalidArgumentError(format!("owner id `{}` is not a number", o.id))
            })?;
        ids.append_value(id);
    }
    let mut archived = BooleanBuilder::new();
    let (mut user, mut user_any) = (Int64Builder::new(), Int64Builder::new());
    let mut teams = ListBuilder::new(StringBuilder::new()).with_field(Arc::new(super::list_item()));
    for o in owners {
        archived.append_value(o.archived);
        user.append_option(o.user_id);
        user_any.append_option(o.user_id_including_inactive);
        for t in &o.teams {
            teams.values().append_value(&t.name);
        }
        teams.append(true);
    }
    let mut arrays: Vec<ArrayRef> = vec![
        Arc::new(ids.finish()),
        times(owners.iter().map(|o| wire::parse_ms(&o.created_at)), false),
        times(owners.iter().map(|o| wire::parse_ms(&o.updated_at)), true),
        Arc::new(archived.finish()),
        strings(owners.iter().map(|o| o.email.as_deref())),
        strings(owners.iter().map(|o| o.first_name.as_deref())),
        strings(owners.iter().map(|o| o.last_name.as_deref())),
        strings(owners.iter().map(|o| o.kind.as_deref())),
        Arc::new(user.finish()),
        Arc::new(user_any.finish()),
        strings(owners.iter().map(|o| primary(o).map(|t| t.id.as_str()))),
        strings(owners.iter().map(|o| primary(o).map(|t| t.name.as_str()))),
        Arc::new(teams.finish()),
    ];
    arrays.extend(tail(owners.len(), run_id, synced_at));
    RecordBatch::try_new(arrow_schema(SnapshotKind::Owners), arrays)
}

/// The pipeline-stages snapshot: one row per stage of each object type's pipelines. Metadata
/// is HubSpot's strings: deals' `probability` becomes a number, `isClosed` a boolean, tickets'
/// `ticketState` stays text.
pub fn stages_batch(
    pipelines: &[(String, Vec<Pipeline>)],
    run_id: &str,
    synced_at: i64,
) -> Result<RecordBatch, ArrowError> {
    let rows: Vec<(&str, &Pipeline, &wire::PipelineStage)> = pipelines
        .iter()
        .flat_map(|(t, ps)| {
            ps.iter()
                .flat_map(move |p| p.stages.iter().map(move |s| (t.as_str(), p, s)))
        })
        .collect();
    let (mut archived, mut closed, mut p_archived) = (
        BooleanBuilder::new(),
        BooleanBuilder::new(),
        BooleanBuilder::new(),
    );
    let (mut order, mut p_order) = (Int64Builder::new(), Int64Builder::new());
    let mut probability = Float64Builder::new();
    for (_, p, s) in &rows {
        archived.append_value(s.archived);
        closed.append_option(s.metadata.get("isClosed").and_then(|v| super::parse_bool(v)));
        p_archived.append_value(p.archived);
        order.append_value(s.display_order);
        p_order.append_value(p.display_order);
        probability.append_option(s.metadata.get("probability").and_then(|v| super::parse_f64(v)));
    }
    let mut arrays: Vec<ArrayRef> = vec![
        strings(rows.iter().map(|(_, _, s)| Some(s.id.as_str()))),
        times(rows.iter().map(|(_, _, s)| wire::parse_ms(&s.created_at)), false),
        times(rows.iter().map(|(_, _, s)| wire::parse_ms(&s.updated_at)), true),
        Arc::new(archived.finish()),
        strings(rows.iter().map(|(t, _, _)| Some(*t))),
        strings(rows.iter().map(|(_, _, s)| Some(s.label.as_str()))),
        Arc::new(order.finish()),
        Arc::new(probability.finish()),
        Arc::new(closed.finish()),
        strings(
            rows.iter()
                .map(|(_, _, s)| s.metadata.get("ticketState").map(String::as_str)),
        ),
        strings(rows.iter().map(|(_, p, _)| Some(p.id.as_str()))),
        strings(rows.iter().map(|(_, p, _)| Some(p.label.as_str()))),
        Arc::new(p_order.finish()),
        Arc::new(p_archived.finish()),
    ];
    arrays.extend(tail(rows.len(), run_id, synced_at));
    RecordBatch::try_new(arrow_schema(SnapshotKind::Pipelines), arrays)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn owners_and_stages_become_rows_of_their_fixed_schemas() {
        let owner = Owner {
            id: "41629779".into(),
            email: Some("a@b.c".into()),
            kind: Some("PERSON".into()),
            first_name: Some("Ann".into()),
            last_name: None,
            user_id: None,
            user_id_including_inactive: Some(9),
            created_at: "2019-12-25T13:01:35.228Z".into(),
            updated_at: "2020-01-01T00:00:00Z".into(),
            archived: true,
            teams: vec![wire::OwnerTeam {
                id: "1".into(),
                name: "West".into(),
                primary: true,
            }],
        };
        let b = owners_batch(std::slice::from_ref(&owner), "r", 5).unwrap();
        assert_eq!((b.num_rows(), b.num_columns()), (1, 15));
        let bad = Owner {
            id: "x".into(),
            ..owner
        };
        assert!(owners_batch(&[bad], "r", 5)
            .unwrap_err()
            .to_string()
            .contains("`x`"));
        let stage = wire::PipelineStage {
            id: "closedwon".into(),
            label: "Closed Won".into(),
            display_order: 5,
            metadata: BTreeMap::from([
                ("probability".into(), "1.0".into()),
                ("isClosed".into(), "true".into()),
            ]),
            created_at: "2019-01-01T00:00:00Z".into(),
            updated_at: "2019-01-01T00:00:00Z".into(),
            archived: false,
        };
        let p = Pipeline {
            id: "default".into(),
            label: "Sales".into(),
            display_order: 0,
            stages: vec![stage],
            created_at: "2019-01-01T00:00:00Z".into(),
            updated_at: "2019-01-01T00:00:00Z".into(),
            archived: false,
        };
        let b = stages_batch(&[("deals".into(), vec![p])], "r", 5).unwrap();
        assert_eq!(b.num_rows(), 1);
    }
}
