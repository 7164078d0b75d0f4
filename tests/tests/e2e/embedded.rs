//! Embedded mode end to end, over real HTTP to the simulator, by the seed's rules.

use std::collections::BTreeSet;
use std::sync::Arc;

use common::clock::dt_of;
use common::messages::RequestedMode;
use common::ports::{RunMode, RunStatus};
use hubsync_tests::harness::{live_files, sim_config, FailingWrites, Harness};
use sim::{MutateRequest, ObjectType};
use wire::parse_ms;

fn mutate(
    object_type: &str,
    updates: u64,
    creates: u64,
    archives: u64,
    same_timestamp: bool,
) -> MutateRequest {
    MutateRequest {
        object_type: object_type.into(),
        updates,
        creates,
        archives,
        same_timestamp,
        ..Default::default()
    }
}

/// A full sync of all five tables equals truth, every value compared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_sync_of_every_table_equals_truth() -> anyhow::Result<()> {
    let h = Harness::start(sim_config(400, &[])).await?;
    let reports = h.sync(&[], RequestedMode::Auto).await?;
    // Nine record tables, ten link tables, owners and pipeline stages.
    assert_eq!(reports.len(), 21);
    for r in &reports {
        let run = r.run.as_ref().unwrap();
        assert_eq!(run.mode, RunMode::Full, "{}: no flag, no state: full", r.table);
        assert_eq!(run.status, RunStatus::Committed);
    }
    let record_tables = [
        "deals",
        "contacts",
        "companies",
        "activities",
        "contacts_dim",
        "tickets",
        "line_items",
        "products",
        "quotes",
    ];
    let compared = h.assert_equals_truth(&record_tables).await?;
    // 400 deals, contacts, companies, contacts_dim, tickets, line items, products, quotes;
    // 5 × 400 activities.
    assert_eq!(compared, 400 * 8 + 2000);
    // Every table the sync made, relations included, equals the source.
    let all = h.assert_equals_truth(&[]).await?;
    assert!(all > compared, "the link and snapshot tables were compared too");
    // The seed's state items.
    for t in record_tables {
        let s = h.pipeline.state.get(t).await?.expect("state written");
        assert_eq!(s.records_processed, if t == "activities" { 2000 } else { 400 });
        assert!(s.last_modified_at.is_some() && s.last_created_at.is_some());
    }
    Ok(())
}

/// After updates, creates, archives and a same-millisecond bulk update of more than 10,000
/// records, an incremental sync equals truth and rewrote only the affected partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_sync_after_bulk_edit_equals_truth_and_touches_only_affected_partitions(
) -> anyhow::Result<()> {
    let h = Harness::start(sim_config(12_000, &[ObjectType::Deals])).await?;
    h.sync(&["deals"], RequestedMode::Auto).await?;
    h.assert_equals_truth(&["deals"]).await?;
    let before = live_files(&h.pipeline, "deals").await?;

    let bulk = h.mutate(mutate("deals", 10_500, 0, 0, true)).await?;
    let edits = h.mutate(mutate("deals", 40, 25, 10, false)).await?;
    let changed: BTreeSet<String> = bulk
        .updated
        .iter()
        .chain(&edits.updated)
        .chain(&edits.created)
        .chain(&edits.archived)
        .cloned()
        .collect();
    h.pipeline.flag.set(" Yes ").await?;
    let reports = h.sync(&["deals"], RequestedMode::Auto).await?;
    let run = reports[0].run.as_ref().unwrap();
    assert_eq!(run.mode, RunMode::Incremental);
    assert!(
        run.slices >= 3,
        "a >10k millisecond is split by id: {:?}",
        run.slices
    );
    let run_dts = hubsync_tests::harness::touched(&h.pipeline, &run.run_id).await?;
    let compared = h.assert_equals_truth(&["deals"]).await?;
    assert_eq!(compared, 12_000 + 25 - 10);

    // Only partitions holding a changed record were rewritten.
    let truth: std::collections::BTreeMap<String, String> = h
        .sim
        .truth("deals")?
        .into_iter()
        .map(|r| (r.id, r.created_at))
        .collect();
    let created_dt = |id: &String| dt_of(parse_ms(truth.get(id)?)?);
    let mut affected: BTreeSet<String> = changed.iter().filter_map(created_dt).collect();
    // Archived records are gone from truth; their partitions come from the run itself.
    affected.extend(run_dts.iter().cloned());
    let after = live_files(&h.pipeline, "deals").await?;
    let mut untouched = 0;
    for (dt, files) in &before {
        if !affected.contains(dt) {
            assert_eq!(
                after.get(dt),
                Some(files),
                "partition {dt} was rewritten without a change"
            );
            untouched += 1;
        }
    }
    for dt in &run_dts {
        assert_ne!(
            before.get(dt),
            after.get(dt),
            "affected partition {dt} not rewritten"
        );
    }
    assert!(untouched > 0, "the test must leave some partitions alone");
    Ok(())
}

/// The flag's vocabulary decides the mode, end to end (table-driven, bad values included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flag_vocabulary_decides_the_mode() -> anyhow::Result<()> {
    let h = Harness::start(sim_config(60, &[ObjectType::Companies])).await?;
    h.sync(&["companies"], RequestedMode::Auto).await?;
    let cases = [
        ("true", RunMode::Incremental),
        (" Yes ", RunMode::Incremental),
        ("ENABLED", RunMode::Incremental),
        ("1", RunMode::Incremental),
        ("false", RunMode::Full),
        ("No", RunMode::Full),
        ("0", RunMode::Full),
        ("disabled", RunMode::Full),
        ("maybe", RunMode::Full),
        ("", RunMode::Full),
    ];
    for (value, want) in cases {
        h.pipeline.flag.set(value).await?;
        let reports = h.sync(&["companies"], RequestedMode::Auto).await?;
        assert_eq!(reports[0].run.as_ref().unwrap().mode, want, "flag {value:?}");
        h.assert_equals_truth(&["companies"]).await?;
    }
    Ok(())
}

/// A failed state write logs a warning and the run still commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_state_write_does_not_fail_the_run() -> anyhow::Result<()> {
    let mut h = Harness::start(sim_config(50, &[ObjectType::Deals])).await?;
    h.pipeline.state = Arc::new(FailingWrites(h.pipeline.state.clone()));
    let reports = h.sync(&["deals"], RequestedMode::Auto).await?;
    assert_eq!(reports[0].run.as_ref().unwrap().status, RunStatus::Committed);
    assert_eq!(h.pipeline.state.get("deals").await?, None, "the write failed");
    h.assert_equals_truth(&["deals"]).await?;
    Ok(())
}

/// A sync of a table with an active run is refused with a clear message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_of_an_active_table_is_refused() -> anyhow::Result<()> {
    let h = Harness::start(sim_config(20, &[ObjectType::Deals])).await?;
    let first = common::messages::SyncRequest {
        request_id: "one".into(),
        table: "deals".into(),
        mode: RequestedMode::Full,
        requested_at_ms: 0,
    };
    let started = producer::handle_request(&h.pipeline, &h.pipeline.hubspot, &first).await?;
    assert!(matches!(started, producer::RequestOutcome::Started { .. }));
    let second = common::messages::SyncRequest {
        request_id: "two".into(),
        ..first.clone()
    };
    match producer::handle_request(&h.pipeline, &h.pipeline.hubspot, &second).await? {
        producer::RequestOutcome::Refused { active_run_id, .. } => assert_eq!(active_run_id, "deals-one"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // The redelivered first request continues its own run instead.
    assert!(matches!(
        producer::handle_request(&h.pipeline, &h.pipeline.hubspot, &first).await?,
        producer::RequestOutcome::Started { .. }
    ));
    Ok(())
}

/// A CLI command piped into a reader that stops early (`hubsync flag get | head -0`) ends
/// quietly, killed by SIGPIPE as a Unix tool is, not with a panic about a broken pipe.
#[test]
fn output_into_a_closed_pipe_ends_the_cli_quietly() -> anyhow::Result<()> {
    use std::os::unix::process::ExitStatusExt;
    let lake = tempfile::tempdir()?;
    let mut child = std::process::Command::new(hubsync_tests::binary::hubsync_binary()?)
        .args(["flag", "get", "--lake"])
        .arg(lake.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    // The reader goes away before the first line is written.
    drop(child.stdout.take());
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        // 13: SIGPIPE on Linux.
        out.status.signal() == Some(13) || out.status.success(),
        "{:?}: {stderr}",
        out.status
    );
    Ok(())
}
