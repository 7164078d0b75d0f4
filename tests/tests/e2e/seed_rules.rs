//! The seed's decision rules, with its log lines checked verbatim.

use std::io::Write;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::clock::iso;
use common::messages::RequestedMode;
use common::ports::flag::{FlagError, FlagSource};
use common::ports::{RunMode, StateError, StateStore, SyncState};
use hubsync_tests::harness::{sim_config, Harness};
use producer::decide::decide;
use sim::ObjectType;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let c = Captured::default();
    let writer = c.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (c, tracing::subscriber::set_default(subscriber))
}

struct BrokenFlag;

#[async_trait]
impl FlagSource for BrokenFlag {
    async fn get(&self) -> Result<Option<String>, FlagError> {
        Err(FlagError(
            "AccessDeniedException: not authorized to perform ssm:GetParameter".into(),
        ))
    }
    async fn set(&self, _: &str) -> Result<(), FlagError> {
        Err(FlagError("read-only".into()))
    }
}

struct BrokenState;

#[async_trait]
impl StateStore for BrokenState {
    async fn get(&self, _: &str) -> Result<Option<SyncState>, StateError> {
        Err(StateError("ProvisionedThroughputExceededException".into()))
    }
    async fn list(&self) -> Result<Vec<SyncState>, StateError> {
        Err(StateError("down".into()))
    }
    async fn put_forward(&self, _: &SyncState) -> Result<bool, StateError> {
        Err(StateError("down".into()))
    }
    async fn delete(&self, _: &str) -> Result<(), StateError> {
        Err(StateError("down".into()))
    }
    async fn delete_all(&self) -> Result<usize, StateError> {
        Err(StateError("down".into()))
    }
}

const HOUR: i64 = 3_600_000;

#[tokio::test]
async fn the_seed_decides_and_logs_verbatim() -> anyhow::Result<()> {
    let mut h = Harness::start(sim_config(1, &[ObjectType::Deals])).await?;
    let now = 1_750_000_000_000;
    let state = SyncState {
        object_type: "deals".into(),
        last_sync_at: now - 5 * HOUR,
        last_created_at: Some(now - 7 * HOUR),
        last_modified_at: Some(now - 6 * HOUR),
        records_processed: 3,
    };
    h.pipeline.state.put_forward(&state).await?;

    // Table-driven: flag value (None = missing) → mode, and what the log must say.
    let cases: [(Option<&str>, RunMode, &str); 9] = [
        (None, RunMode::Full, "Performing full sync"),
        (
            Some("true"),
            RunMode::Incremental,
            "Performing incremental sync from",
        ),
        (
            Some(" Yes "),
            RunMode::Incremental,
            "Performing incremental sync from",
        ),
        (
            Some("Enabled"),
            RunMode::Incremental,
            "Performing incremental sync from",
        ),
        (
            Some("1"),
            RunMode::Incremental,
            "Performing incremental sync from",
        ),
        (Some("no"), RunMode::Full, "Performing full sync"),
        (Some("DISABLED"), RunMode::Full, "Performing full sync"),
        (Some("sometimes"), RunMode::Full, "unrecognized value"),
        (Some("tru"), RunMode::Full, "unrecognized value"),
    ];
    for (value, want, line) in cases {
        if let Some(v) = value {
            h.pipeline.flag.set(v).await?;
        }
        let (logs, guard) = capture();
        let d = decide(&h.pipeline, "deals", RequestedMode::Auto, now).await;
        drop(guard);
        assert_eq!(d.mode, want, "flag {value:?}");
        assert!(logs.text().contains(line), "flag {value:?}: {}", logs.text());
        if want == RunMode::Incremental {
            // max(created, modified) - 2 h, up to the run's start.
            let from = now - 6 * HOUR - 2 * HOUR;
            assert_eq!((d.window_from_ms, d.window_to_ms), (Some(from), now));
            let verbatim = format!("Performing incremental sync from {} to {}", iso(from), iso(now));
            assert!(logs.text().contains(&verbatim), "{}", logs.text());
        } else {
            assert!(logs.text().contains("Performing full sync"), "{}", logs.text());
        }
    }

    // A flag that cannot be read: full sync, with a warning saying why.
    let flag = h.pipeline.flag.clone();
    h.pipeline.flag = Arc::new(BrokenFlag);
    let (logs, guard) = capture();
    let d = decide(&h.pipeline, "deals", RequestedMode::Auto, now).await;
    drop(guard);
    assert_eq!(d.mode, RunMode::Full);
    assert!(
        logs.text().contains("could not read the incremental-sync flag"),
        "{}",
        logs.text()
    );
    assert!(logs.text().contains("AccessDeniedException"), "{}", logs.text());

    // State that cannot be read: full sync, with a warning.
    h.pipeline.flag = flag;
    h.pipeline.flag.set("true").await?;
    let state_store = h.pipeline.state.clone();
    h.pipeline.state = Arc::new(BrokenState);
    let (logs, guard) = capture();
    let d = decide(&h.pipeline, "deals", RequestedMode::Auto, now).await;
    drop(guard);
    assert_eq!(d.mode, RunMode::Full);
    assert!(
        logs.text().contains("could not read the sync state"),
        "{}",
        logs.text()
    );

    // No item for the table: full sync.
    h.pipeline.state = state_store;
    h.pipeline.state.delete("deals").await?;
    assert_eq!(
        decide(&h.pipeline, "deals", RequestedMode::Auto, now).await.mode,
        RunMode::Full
    );
    // A configured buffer is honoured.
    h.pipeline.state.put_forward(&state).await?;
    h.pipeline.settings.overlap_buffer_ms = HOUR / 2;
    let d = decide(&h.pipeline, "deals", RequestedMode::Auto, now).await;
    assert_eq!(d.window_from_ms, Some(now - 6 * HOUR - HOUR / 2));
    // Forcing full ignores an enabled flag.
    assert_eq!(
        decide(&h.pipeline, "deals", RequestedMode::Full, now).await.mode,
        RunMode::Full
    );
    Ok(())
}
