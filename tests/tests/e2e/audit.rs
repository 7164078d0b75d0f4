//! `hubsync audit`: exit 0 on a lake equal to HubSpot, 1 with the differences named when it is
//! not (records changed since the sync are stale, a lost file's records missing, a copied file's
//! keys duplicated), 2 when it cannot run.

use std::process::{Command, Output};

use common::messages::RequestedMode;
use hubsync_tests::binary::hubsync_binary;
use hubsync_tests::harness::{sim_config, Harness};
use infra::audit::AUDIT_COLUMNS;
use object_store::ObjectStoreExt;
use sim::{MutateRequest, ObjectType};

fn audit(lake: &std::path::Path, base_url: &str) -> anyhow::Result<(i32, String)> {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(hubsync_binary()?)
        .args(["audit", "--tables", "deals", "--hubspot-url", base_url, "--lake"])
        .arg(lake)
        .env_remove("HUBSPOT_TOKEN")
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    Ok((status.code().unwrap_or(-1), text))
}

/// The number in `column` of the audit table's `deals` row.
fn cell(out: &str, column: &str) -> Option<u64> {
    let row: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("deals"))?
        .split_whitespace()
        .collect();
    row.get(AUDIT_COLUMNS.iter().position(|c| *c == column)?)?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_exits_zero_on_an_equal_lake_and_one_naming_each_difference() -> anyhow::Result<()> {
    let h = Harness::start(sim_config(120, &[ObjectType::Deals])).await?;
    let base = h.sim.base_url();
    h.sync(&["deals"], RequestedMode::Full).await?;
    let (code, out) = audit(h.lake_dir(), &base)?;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("audit: 1 tables, 120 rows compared, 0 differences"),
        "{out}"
    );

    // Changed in HubSpot since the sync: stale; archived: unexpected; created: missing.
    h.mutate(MutateRequest {
        object_type: "deals".into(),
        updates: 5,
        creates: 2,
        archives: 3,
        same_timestamp: false,
        ..Default::default()
    })
    .await?;
    // A live file copied under another name: its keys are duplicated.
    let p = &h.pipeline;
    let dt = p.lake.partitions("deals").await?.remove(0);
    let file = p
        .lake
        .list_parquet(&p.lake.partition_dir("deals", &dt))
        .await?
        .remove(0)
        .location;
    let copy = p.lake.new_live_file("deals", &dt, "copied", 0);
    p.lake.store().copy(&file, &copy).await?;
    let (code, out) = audit(h.lake_dir(), &base)?;
    assert_eq!(code, 1, "{out}");
    assert_eq!(cell(&out, "stale"), Some(5), "{out}");
    assert_eq!(cell(&out, "missing"), Some(2), "{out}");
    assert_eq!(cell(&out, "unexpected"), Some(3), "{out}");
    assert!(cell(&out, "duplicate").is_some_and(|n| n >= 1), "{out}");
    assert!(cell(&out, "partitions").is_some_and(|n| n >= 1), "{out}");

    // After an incremental sync and without the copy, equal again.
    p.lake.store().delete(&copy).await?;
    h.sync(&["deals"], RequestedMode::Incremental).await?;
    let (code, out) = audit(h.lake_dir(), &base)?;
    assert_eq!(code, 0, "{out}");

    // It cannot run: exit 2 with the reason.
    let (code, out) = audit(&h.lake_dir().join("no-such-lake"), &base)?;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("does not exist"), "{out}");
    Ok(())
}
