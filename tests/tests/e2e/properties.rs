//! The whole CRM (issue 14): every property discovered, typed columns, values that do not cast
//! kept in `_uncast`, the schema following HubSpot between runs (a property added and
//! backfilled, a property retyped, a property deleted), and every object type, custom objects
//! included. Each check compares every value of the lake with the simulator's truth.

use std::collections::BTreeMap;

use common::messages::{self, Body, RequestedMode, Slice, SyncRequest};
use common::ports::{Outgoing, RunMode};
use common::schema::{self, Change, ColumnType};
use hubsync_tests::harness::{latest_run, plan, sim_config, Harness};
use sim::{MutateRequest, NewProperty, ObjectType, PropertyName, SimConfig, TypeCount};

/// The properties HubSpot lists for `object_type`, by name.
async fn definitions(
    h: &Harness,
    object_type: &str,
) -> anyhow::Result<BTreeMap<String, wire::PropertyDefinition>> {
    Ok(h.pipeline
        .hubspot
        .properties(object_type)
        .await?
        .results
        .into_iter()
        .map(|d| (d.name.clone(), d))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_hundred_deal_properties_are_typed_columns_equal_to_the_source() -> anyhow::Result<()> {
    let h = Harness::start(SimConfig {
        custom_properties: vec![TypeCount {
            object_type: ObjectType::Deals,
            count: 600,
        }],
        uncastable_per_mille: 20,
        ..sim_config(150, &[ObjectType::Deals])
    })
    .await?;
    h.sync(&["deals"], RequestedMode::Full).await?;
    let recorded = schema::load(&h.pipeline.lake, "deals").await?.expect("a schema");
    let defs = definitions(&h, "deals").await?;
    assert!(defs.len() > 600, "{} properties", defs.len());
    // Every property but the built-in ones is a column, of the type its definition gives.
    let builtin = ["hs_object_id", "createdate", "hs_lastmodifieddate"];
    for (name, def) in &defs {
        if builtin.contains(&name.as_str()) {
            assert!(recorded.column(name).is_none(), "{name} is a built-in column");
            continue;
        }
        let col = recorded
            .column(name)
            .unwrap_or_else(|| panic!("no column {name}"));
        assert_eq!(col.ty, ColumnType::of(def, false), "{name}: {def:?}");
    }
    let types: std::collections::BTreeSet<ColumnType> = recorded.columns.iter().map(|c| c.ty).collect();
    for ty in [
        ColumnType::String,
        ColumnType::Float64,
        ColumnType::Timestamp,
        ColumnType::Date,
        ColumnType::Boolean,
        ColumnType::StringList,
    ] {
        assert!(types.contains(&ty), "no {ty:?} column among {types:?}");
    }
    // Every value equals the source's, cast by the column's type or kept raw in `_uncast`.
    let (lake, diff) = h.diff("deals").await?;
    assert!(diff.is_clean(), "{}", diff.summary());
    assert_eq!(diff.rows_compared, 150);
    let uncast = lake
        .rows
        .values()
        .flat_map(|r| r.properties.values())
        .filter(|v| v.as_deref().is_some_and(|v| v.starts_with("uncast:")))
        .count();
    assert!(
        uncast > 0,
        "the portal holds values that do not cast; _uncast keeps them"
    );
    // The run counted them, per property.
    let run = latest_run(&h.pipeline, "deals").await?;
    assert_eq!(
        run.uncast.values().sum::<i64>() as usize,
        uncast,
        "{:?}",
        run.uncast
    );
    // The list walk split its properties: none of its URLs reached HubSpot's limit.
    let stats = h.sim.stats();
    assert_eq!(stats.uri_too_long, 0, "{stats:?}");
    assert!(
        stats.by_endpoint.batch_read > 0,
        "properties past the URL budget came by batch read"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_property_added_between_runs_is_backfilled_without_a_full_sync() -> anyhow::Result<()> {
    let h = Harness::start(sim_config(300, &[ObjectType::Deals])).await?;
    h.sync(&["deals"], RequestedMode::Full).await?;
    let first_sync_ms = h.pipeline.now_ms();
    h.pipeline.flag.set("true").await?;
    h.mutate(MutateRequest {
        object_type: "deals".into(),
        add_property: Some(NewProperty {
            name: "fleet_size".into(),
            kind: "number".into(),
            field_type: Some("number".into()),
        }),
        updates: 5,
        ..Default::default()
    })
    .await?;
    h.sync(&["deals"], RequestedMode::Auto).await?;
    let run = latest_run(&h.pipeline, "deals").await?;
    assert_eq!(run.mode, RunMode::Incremental, "no full sync");
    let slices = plan(&h.pipeline, &run).await?;
    assert!(
        slices.iter().any(|s| matches!(s, Slice::Backfill { .. })),
        "{slices:?}"
    );
    // Every record has the new column's value (the audit compares every value with the
    // source), those not modified since the first run too: the backfill brought theirs.
    let (lake, diff) = h.diff("deals").await?;
    assert!(diff.is_clean(), "{}", diff.summary());
    let untouched_with_value = lake
        .rows
        .values()
        .filter(|r| r.modified_ms < first_sync_ms && r.properties["fleet_size"].is_some())
        .count();
    assert!(
        untouched_with_value > 100,
        "{untouched_with_value} of {} rows not modified since the first run have fleet_size",
        lake.rows.len()
    );
    let recorded = schema::load(&h.pipeline.lake, "deals").await?.expect("a schema");
    let col = recorded.column("fleet_size").expect("a new column");
    assert_eq!(col.ty, ColumnType::Float64);
    assert!(!col.backfill, "backfilled at the commit");
    assert!(recorded
        .changes
        .iter()
        .any(|c| c.column == "fleet_size" && c.change == Change::Backfilled));
    // The next run has nothing to backfill.
    h.sync(&["deals"], RequestedMode::Auto).await?;
    let next = latest_run(&h.pipeline, "deals").await?;
    let slices = plan(&h.pipeline, &next).await?;
    assert!(
        !slices.iter().any(|s| matches!(s, Slice::Backfill { .. })),
        "{slices:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retyped_property_widens_to_string_and_a_deleted_one_keeps_its_column() -> anyhow::Result<()> {
    let h = Harness::start(SimConfig {
        uncastable_per_mille: 50,
        custom_properties: vec![TypeCount {
            object_type: ObjectType::Deals,
            count: 30,
        }],
        ..sim_config(200, &[ObjectType::Deals])
    })
    .await?;
    h.sync(&["deals"], RequestedMode::Full).await?;
    let before = schema::load(&h.pipeline.lake, "deals").await?.expect("a schema");
    assert_eq!(before.column("amount").expect("amount").ty, ColumnType::Float64);
    h.pipeline.flag.set("true").await?;
    h.mutate(MutateRequest {
        object_type: "deals".into(),
        retype_property: Some(NewProperty {
            name: "amount".into(),
            kind: "string".into(),
            field_type: Some("text".into()),
        }),
        archive_property: Some(PropertyName {
            name: "dealtype".into(),
        }),
        updates: 4,
        ..Default::default()
    })
    .await?;
    h.sync(&["deals"], RequestedMode::Auto).await?;
    assert_eq!(latest_run(&h.pipeline, "deals").await?.mode, RunMode::Incremental);
    let after = schema::load(&h.pipeline.lake, "deals").await?.expect("a schema");
    let amount = after.column("amount").expect("amount keeps its name");
    assert_eq!(amount.ty, ColumnType::String, "E3: widened");
    assert!(after
        .changes
        .iter()
        .any(|c| c.column == "amount" && matches!(c.change, Change::Retyped { .. })));
    let dealtype = after.column("dealtype").expect("E4: the column stays");
    assert!(!dealtype.fetched, "E4: no longer fetched");
    // Every fetched value equals the source's (the retyped column read again as strings),
    // nothing lost: values that do not cast are in `_uncast`.
    let (_, diff) = h.diff("deals").await?;
    assert!(diff.is_clean(), "{}", diff.summary());
    // The deleted property's old values are still at rest.
    let kept = lake_values(&h, "deals", "dealtype").await?;
    assert!(kept > 0, "old values of the deleted property stay");
    Ok(())
}

/// Non-null values of `column` at rest.
async fn lake_values(h: &Harness, table: &str, column: &str) -> anyhow::Result<usize> {
    use datafusion::arrow::array::Array;
    use object_store::ObjectStoreExt;
    let lake = &h.pipeline.lake;
    let mut n = 0;
    for dt in lake.partitions(table).await? {
        for meta in lake.list_parquet(&lake.partition_dir(table, &dt)).await? {
            let bytes = lake.store().get(&meta.location).await?.bytes().await?;
            for batch in
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?
            {
                let batch = batch?;
                if let Some(c) = batch.column_by_name(column) {
                    n += c.len() - c.null_count();
                }
            }
        }
    }
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_and_a_custom_object_sync_end_to_end_and_duckdb_reads_their_types() -> anyhow::Result<()> {
    let config = SimConfig {
        custom_objects: vec![TypeCount {
            object_type: ObjectType::Cars,
            count: 120,
        }],
        ..sim_config(120, &[ObjectType::Tickets, ObjectType::Deals])
    };
    let portal = config.portal_id;
    let h = Harness::start(config).await?;
    // The default catalog does not list cars: asked for, it is found among the portal's custom
    // objects (GET /crm/v3/schemas), recorded as the table `cars`, and synced.
    assert!(h.pipeline.pipeline.catalog.table("cars").is_err());
    h.sync(&["tickets", "cars", "deals"], RequestedMode::Full).await?;
    let recorded = schema::custom_tables(&h.pipeline.pipeline.lake).await?;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].table, "cars");
    assert_eq!(recorded[0].fully_qualified_name, format!("p{portal}_cars"));
    let spec = recorded[0].spec();
    assert_eq!(spec.key_column, "car_id");
    let cars = schema::load(&h.pipeline.pipeline.lake, "cars")
        .await?
        .expect("cars' schema");
    let display = recorded[0]
        .primary_display_property
        .clone()
        .expect("a display property");
    assert!(
        cars.columns.iter().any(|c| c.name == display),
        "the primary display property {display} is a column"
    );
    for t in ["tickets", "cars", "deals"] {
        let (_, diff) = h.diff(t).await?;
        assert!(diff.is_clean(), "{t}: {}", diff.summary());
        assert_eq!(diff.rows_compared, 120, "{t}");
    }
    // DuckDB reads the typed columns as their types.
    let python_path = hubsync_tests::moto::duckdb_python_path()?;
    let script = "import duckdb, sys\n\
        rows = duckdb.sql(f\"DESCRIBE SELECT * FROM read_parquet('{sys.argv[1]}/deals/*/*.parquet', hive_partitioning = true)\").fetchall()\n\
        print('\\n'.join(f'{r[0]}\\t{r[1]}' for r in rows))\n\
        print('count', duckdb.sql(f\"SELECT count(*) FROM read_parquet('{sys.argv[1]}/cars/*/*.parquet')\").fetchall()[0][0])\n";
    let mut cmd = std::process::Command::new("python3");
    cmd.args(["-c", script]).arg(h.lake_dir());
    if let Some(p) = python_path {
        cmd.env("PYTHONPATH", p);
    }
    let out = cmd.output()?;
    anyhow::ensure!(
        out.status.success(),
        "duckdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    let types: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('\t')).collect();
    for (column, want) in [
        ("deal_id", "BIGINT"),
        ("amount", "DOUBLE"),
        ("closedate", "TIMESTAMP WITH TIME ZONE"),
        ("hs_is_closed", "BOOLEAN"),
        ("hs_tag_ids", "VARCHAR[]"),
        ("dealname", "VARCHAR"),
        ("_uncast", "MAP(VARCHAR, VARCHAR)"),
    ] {
        assert_eq!(types.get(column).copied(), Some(want), "{column} in {text}");
    }
    assert!(text.contains("count 120"), "{text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_and_a_custom_object_sync_in_aws_mode_under_iam() -> anyhow::Result<()> {
    use hubsync_tests::deploy::{aws_pipeline, stop, Deployment};
    let _env = hubsync_tests::moto::env_lock().await;
    let moto = hubsync_tests::moto::Moto::start()?;
    let config = SimConfig {
        custom_objects: vec![TypeCount {
            object_type: ObjectType::Cars,
            count: 60,
        }],
        custom_properties: vec![TypeCount {
            object_type: ObjectType::Tickets,
            count: 40,
        }],
        uncastable_per_mille: 20,
        ..sim_config(60, &[ObjectType::Tickets])
    };
    let portal = config.portal_id;
    let server = sim::start(config).await?;
    let dir = tempfile::tempdir()?;
    let d = Deployment::on(
        &moto,
        &server.base_url(),
        "t14",
        &dir.path().join("services.log"),
        &[],
    )?;
    d.hubsync_ok(&["infra", "up", "--max-receive-count", "2"])?;
    let services = vec![
        d.service("producer")?,
        d.service("consumer")?,
        d.service("merger")?,
    ];
    let p = aws_pipeline("lake-t14", "t14").await?;
    // Each service reads and writes the schema files its policy grants, nothing else.
    let runs = d.sync_all(&p, &["tickets"]).await?;
    assert!(runs.iter().all(|r| r.mode == RunMode::Full), "{runs:?}");
    // The operator cannot ask for a custom object no one has discovered yet...
    let refused = d.hubsync(&["sync", "--table", "cars"])?;
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("hubsync schema objects"),
        "{refused:?}"
    );
    // ...but a request for it (a schedule's, say) makes the producer look among the portal's
    // custom objects, record the table in S3 and sync it.
    let request = SyncRequest {
        request_id: "scheduled-cars".into(),
        table: "cars".into(),
        mode: RequestedMode::Auto,
        requested_at_ms: p.now_ms(),
    };
    p.requests
        .send(vec![Outgoing::standard(messages::encode(&Body::SyncRequest(
            request,
        )))])
        .await?;
    hubsync_tests::harness::wait_for(
        "the cars run committed",
        std::time::Duration::from_secs(300),
        || async {
            let runs = p.ledger.list_runs(Some("cars"), 1).await?;
            Ok(runs
                .first()
                .is_some_and(|r| r.status == common::ports::RunStatus::Committed))
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", hubsync_tests::deploy::tail(&d.log)))?;
    let listed = d.hubsync_ok(&["schema", "objects"])?;
    assert!(
        listed.contains("cars") && listed.contains(&format!("p{portal}_cars")),
        "{listed}"
    );
    // Now a known table: the operator's sync of it is incremental.
    d.hubsync_ok(&["flag", "set", "true"])?;
    let runs = d.sync_all(&p, &["cars"]).await?;
    assert_eq!(runs[0].mode, RunMode::Incremental, "{runs:?}");
    for t in ["tickets", "cars"] {
        let (_, diff) = hubsync_tests::harness::diff_lake(&server, &p, t).await?;
        assert!(diff.is_clean(), "{t}: {}", diff.summary());
        assert_eq!(diff.rows_compared, 60, "{t}");
    }
    let recorded = schema::load(&p.lake, "tickets").await?.expect("the schema in S3");
    assert!(recorded.columns.len() > 40, "{} columns", recorded.columns.len());
    let shown = d.hubsync_ok(&["schema", "show", "--table", "cars"])?;
    assert!(shown.contains("table cars (schema version 1"), "{shown}");
    assert!(shown.contains("custom object Cars"), "{shown}");
    stop(services)?;
    server.shutdown().await?;
    Ok(())
}
