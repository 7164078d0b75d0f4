//! The operator commands of embedded mode: run, flag, state.

use anyhow::Context;
use common::clock::iso;
use common::flag::{parse_flag, read_decision, FlagDecision};
use common::messages::RequestedMode;

use crate::runner::{run_embedded, RunOptions, RunReport};
use crate::setup::{
    embedded_pipeline, local_lake_dir, offline_pipeline, take_over_lake, HubSpotArgs, LakeArgs,
};

/// `hubsync run`: one sync of each table; true when every run committed.
pub async fn run(
    lake: &LakeArgs,
    hubspot: &HubSpotArgs,
    tables: Vec<String>,
    mode: RequestedMode,
    consumers: usize,
) -> anyhow::Result<bool> {
    let _lock = take_over_lake(&local_lake_dir(&lake.lake)?).await?;
    let p = embedded_pipeline(lake, hubspot)?;
    let options = RunOptions {
        tables,
        mode,
        consumers,
        ..Default::default()
    };
    let reports = run_embedded(&p, &options).await?;
    print_reports(&reports);
    Ok(reports.iter().all(RunReport::committed))
}

pub fn print_reports(reports: &[RunReport]) {
    println!(
        "{:<14} {:<12} {:<11} {:<49} {:>9} {:>10}",
        "table", "mode", "status", "window", "records", "partitions"
    );
    for r in reports {
        match &r.run {
            Some(run) => {
                let window = match run.window_from_ms {
                    Some(from) => format!("{} .. {}", iso(from), iso(run.window_to_ms)),
                    None => format!("everything as of {}", iso(run.window_to_ms)),
                };
                println!(
                    "{:<14} {:<12} {:<11} {:<49} {:>9} {:>10}{}",
                    r.table,
                    run.mode.as_str(),
                    run.status.as_str(),
                    window,
                    run.records,
                    run.dts.len(),
                    if r.resumed { "  (resumed)" } else { "" }
                );
            }
            None => println!("{:<14} -", r.table),
        }
        if let Some(problem) = &r.problem {
            println!("  ! {problem}");
        }
    }
}

/// `hubsync flag get|set`.
pub async fn flag(lake: &LakeArgs, value: Option<&str>) -> anyhow::Result<()> {
    let p = offline_pipeline(lake)?;
    if let Some(v) = value {
        if let FlagDecision::Unrecognized(_) = parse_flag(v) {
            anyhow::bail!("`{v}` is not a flag value; use true/false, 1/0, yes/no or enabled/disabled");
        }
        p.flag.set(v).await.context("writing the flag")?;
    }
    let raw = p.flag.get().await.context("reading the flag")?;
    let decision = read_decision(p.flag.as_ref()).await;
    println!(
        "{} = {} ({})",
        common::flag::FLAG_PARAMETER,
        raw.as_deref()
            .map(|r| format!("{r:?}"))
            .unwrap_or_else(|| "<not set>".into()),
        if decision.incremental() {
            "incremental sync enabled"
        } else {
            "full sync"
        }
    );
    Ok(())
}

/// `hubsync state show|reset`.
pub async fn state(lake: &LakeArgs, reset: bool, table: Option<&str>) -> anyhow::Result<()> {
    let p = offline_pipeline(lake)?;
    if let Some(t) = table {
        p.catalog.table(t)?;
    }
    if reset {
        match table {
            Some(t) => {
                p.state.delete(t).await?;
                println!("state of {t} deleted: its next sync is full");
            }
            None => {
                let n = p.state.delete_all().await?;
                println!("state reset ({n} tables): every table's next sync is full");
            }
        }
        return Ok(());
    }
    println!(
        "{:<14} {:<26} {:<26} {:<26} {:>9}",
        "object_type", "last_sync_at", "last_created_at", "last_modified_at", "records"
    );
    for s in p.state.list().await? {
        if table.is_some_and(|t| t != s.object_type) {
            continue;
        }
        let opt = |v: Option<i64>| v.map(iso).unwrap_or_else(|| "-".into());
        println!(
            "{:<14} {:<26} {:<26} {:<26} {:>9}",
            s.object_type,
            iso(s.last_sync_at),
            opt(s.last_created_at),
            opt(s.last_modified_at),
            s.records_processed
        );
    }
    Ok(())
}
