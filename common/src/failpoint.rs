//! Failpoints: the places between two durable steps where a test makes the process die, to
//! prove the crash-safety protocol by killing real processes.
//!
//! Off unless the process starts with `HUBSYNC_FAILPOINTS` set (or a test calls
//! [`configure`]); when off, [`hit`] is one atomic load. The variable lists
//! `name[@N][=action]` items separated by commas:
//!
//! - `name` is one of [`ALL`]; an unknown name is a configuration error, reported on stderr
//!   and ignored (a test that expects a crash then sees none and fails).
//! - `@N` fires on the N-th time the process reaches the point (default: the first).
//! - `action` is `abort` (default: SIGABRT, no destructor runs, nothing is flushed: a crash),
//!   `exit` (exit code [`EXIT_CODE`] without unwinding) or `stop` (the process sends itself
//!   SIGSTOP, as a GC or VM pause freezes it, and goes on where it was once a test sends
//!   SIGCONT: a worker that stalled past its message's visibility, then woke up).
//!
//! Before dying, a failpoint writes `failpoint <name> fired` to stderr, so a test can prove
//! the process died exactly there.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

/// The environment variable that switches failpoints on.
pub const ENV: &str = "HUBSYNC_FAILPOINTS";
/// Exit code of the `exit` action.
pub const EXIT_CODE: i32 = 86;

/// Producer: the run is in the ledger (planning), nothing planned yet.
pub const PRODUCER_AFTER_BEGIN_RUN: &str = "producer.after_begin_run";
/// Producer: the plan is recorded (fetching), no page job sent yet.
pub const PRODUCER_AFTER_PLAN: &str = "producer.after_plan";
/// Producer: the first page of every slice is sent, the request not yet acked.
pub const PRODUCER_AFTER_FIRST_PAGES: &str = "producer.after_first_pages";
/// Consumer: a page's staged files are written, its done-marker not yet.
pub const CONSUMER_AFTER_STAGE: &str = "consumer.after_stage";
/// Consumer: the page's done-marker, next cursor and counters are written (the ledger
/// update), the next page not yet sent.
pub const CONSUMER_AFTER_PAGE_DONE: &str = "consumer.after_page_done";
/// Consumer: the next page job is sent (also when a redelivery re-sends it).
pub const CONSUMER_AFTER_NEXT_PAGE: &str = "consumer.after_next_page";
/// Consumer: the slices a finished slice started are sent (L5), the partition merges it made
/// due (P1) not yet.
pub const CONSUMER_AFTER_LAUNCH: &str = "consumer.after_launch";
/// Consumer: the partition merges a finished slice made due are sent (P1), fetching may go on.
pub const CONSUMER_AFTER_PARTITION_MERGES: &str = "consumer.after_partition_merges";
/// Consumer: the run moved to merging, its merge tasks not yet sent.
pub const CONSUMER_AFTER_BEGIN_MERGING: &str = "consumer.after_begin_merging";
/// Consumer: the merge tasks are sent, the last page job not yet acked.
pub const CONSUMER_AFTER_MERGE_TASKS: &str = "consumer.after_merge_tasks";
/// Merger: the merged file is written, nothing deleted yet.
pub const MERGER_AFTER_WRITE: &str = "merger.after_write";
/// Merger: the old live files are deleted, the staged ones not yet.
pub const MERGER_AFTER_DELETE_OLD: &str = "merger.after_delete_old";
/// Merger: the staged files are deleted, the task's done-marker not yet written.
pub const MERGER_AFTER_DELETE_STAGED: &str = "merger.after_delete_staged";
/// Merger: the task's done-marker and counter are written (the ledger update).
pub const MERGER_AFTER_MERGE_DONE: &str = "merger.after_merge_done";
/// Merger: the last merge is done and the commit about to start.
pub const MERGER_BEFORE_COMMIT: &str = "merger.before_commit";
/// Merger: the sync state (watermark) is written, the run not yet marked committed.
pub const MERGER_AFTER_STATE: &str = "merger.after_state";
/// Merger: the run is committed, the task not yet acked.
pub const MERGER_AFTER_COMMIT: &str = "merger.after_commit";

/// Consumer, a backfill on both paths: a list walk's page is staged, its done-marker not yet
/// (as [`CONSUMER_AFTER_STAGE`], which fires as well).
pub const CONSUMER_WALK_AFTER_STAGE: &str = "consumer.walk_after_stage";
/// Consumer, a backfill on both paths: a search lane's page is staged, its done-marker not yet.
pub const CONSUMER_LANE_AFTER_STAGE: &str = "consumer.lane_after_stage";

/// The failpoints only a backfill on both read paths reaches (J1-J4): outside [`ALL`], whose
/// every-failpoint tests run syncs that read one path; the stall test freezes them.
pub const BOTH_PATHS: &[&str] = &[CONSUMER_WALK_AFTER_STAGE, CONSUMER_LANE_AFTER_STAGE];

/// Every failpoint every run reaches, in the order a run reaches them.
pub const ALL: &[&str] = &[
    PRODUCER_AFTER_BEGIN_RUN,
    PRODUCER_AFTER_PLAN,
    PRODUCER_AFTER_FIRST_PAGES,
    CONSUMER_AFTER_STAGE,
    CONSUMER_AFTER_PAGE_DONE,
    CONSUMER_AFTER_NEXT_PAGE,
    CONSUMER_AFTER_LAUNCH,
    CONSUMER_AFTER_PARTITION_MERGES,
    CONSUMER_AFTER_BEGIN_MERGING,
    CONSUMER_AFTER_MERGE_TASKS,
    MERGER_AFTER_WRITE,
    MERGER_AFTER_DELETE_OLD,
    MERGER_AFTER_DELETE_STAGED,
    MERGER_AFTER_MERGE_DONE,
    MERGER_BEFORE_COMMIT,
    MERGER_AFTER_STATE,
    MERGER_AFTER_COMMIT,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `std::process::abort`: SIGABRT, as abrupt as a crash.
    Abort,
    /// `std::process::exit(EXIT_CODE)`: no unwinding, no destructors of live values.
    Exit,
    /// SIGSTOP to the process itself; it resumes on SIGCONT.
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub name: &'static str,
    /// Fires on this hit (1 = the first).
    pub on_hit: u64,
    pub action: Action,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{ENV}: {0}")]
pub struct SpecError(String);

/// Parses a `HUBSYNC_FAILPOINTS` value.
pub fn parse(spec: &str) -> Result<Vec<Point>, SpecError> {
    let mut out = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (point, action) = match item.split_once('=') {
            Some((p, a)) => (p.trim(), a.trim()),
            None => (item, "abort"),
        };
        let (name, on_hit) =
            match point.split_once('@') {
                Some((n, h)) => (
                    n.trim(),
                    h.trim().parse::<u64>().ok().filter(|h| *h >= 1).ok_or_else(|| {
                        SpecError(format!("`{item}`: the hit after @ must be a number ≥ 1"))
                    })?,
                ),
                None => (point, 1),
            };
        let name = ALL
            .iter()
            .chain(BOTH_PATHS)
            .find(|n| **n == name)
            .ok_or_else(|| {
                SpecError(format!(
                    "unknown failpoint `{name}`; known: {}, {}",
                    ALL.join(", "),
                    BOTH_PATHS.join(", ")
                ))
            })?;
        let action = match action {
            "abort" => Action::Abort,
            "exit" => Action::Exit,
            "stop" => Action::Stop,
            other => {
                return Err(SpecError(format!(
                    "`{item}`: unknown action `{other}` (use abort, exit or stop)"
                )))
            }
        };
        out.push(Point { name, on_hit, action });
    }
    Ok(out)
}

struct Registry {
    points: Vec<Point>,
    hits: Mutex<HashMap<&'static str, u64>>,
}

static REGISTRY: OnceLock<Mutex<Option<Registry>>> = OnceLock::new();
static ENABLED: AtomicBool = AtomicBool::new(false);
static FROM_ENV: OnceLock<()> = OnceLock::new();

fn registry() -> &'static Mutex<Option<Registry>> {
    REGISTRY.get_or_init(|| Mutex::new(None))
}

/// Switches failpoints on as `spec` says (replacing any earlier configuration); an empty
/// spec switches them off.
pub fn configure(spec: &str) -> Result<(), SpecError> {
    let points = parse(spec)?;
    let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
    ENABLED.store(!points.is_empty(), Ordering::SeqCst);
    *reg = (!points.is_empty()).then(|| Registry {
        points,
        hits: Mutex::new(HashMap::new()),
    });
    Ok(())
}

fn init_from_env() {
    FROM_ENV.get_or_init(|| {
        if let Ok(spec) = std::env::var(ENV) {
            if let Err(e) = configure(&spec) {
                eprintln!("{e}; failpoints stay off");
            }
        }
    });
}

/// What reaching `name` should do now, counting the hit. `None` when it should not fire.
fn fires(name: &'static str) -> Option<Action> {
    let reg = registry().lock().unwrap_or_else(|e| e.into_inner());
    let reg = reg.as_ref()?;
    let point = reg.points.iter().find(|p| p.name == name)?;
    let mut hits = reg.hits.lock().unwrap_or_else(|e| e.into_inner());
    let n = hits.entry(name).or_default();
    *n += 1;
    (*n == point.on_hit).then_some(point.action)
}

/// Marks a step boundary. Dies here when this failpoint is configured to fire on this hit.
pub fn hit(name: &'static str) {
    init_from_env();
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    if let Some(action) = fires(name) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "failpoint {name} fired ({action:?})");
        let _ = err.flush();
        match action {
            Action::Abort => std::process::abort(),
            Action::Exit => std::process::exit(EXIT_CODE),
            Action::Stop => {
                drop(err);
                // `kill` is the one way std has to signal a process: it stops this one, and
                // returns when someone continues it.
                let _ = std::process::Command::new("kill")
                    .args(["-STOP", &std::process::id().to_string()])
                    .status();
                let _ = writeln!(std::io::stderr(), "failpoint {name} resumed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_hits_and_actions() {
        assert_eq!(parse("merger.after_write=stop").unwrap()[0].action, Action::Stop);
        let p = parse(" merger.after_write@3=exit, consumer.after_stage ").unwrap();
        assert_eq!(
            p,
            [
                Point {
                    name: MERGER_AFTER_WRITE,
                    on_hit: 3,
                    action: Action::Exit
                },
                Point {
                    name: CONSUMER_AFTER_STAGE,
                    on_hit: 1,
                    action: Action::Abort
                },
            ]
        );
        assert!(parse("").unwrap().is_empty());
        assert_eq!(
            parse("consumer.lane_after_stage@2=stop").unwrap()[0].name,
            CONSUMER_LANE_AFTER_STAGE
        );
        for bad in [
            "nope",
            "merger.after_write@0",
            "merger.after_write@x",
            "merger.after_write=panic",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse("nope")
            .unwrap_err()
            .to_string()
            .contains("known: producer.after_begin_run"));
    }

    #[test]
    fn counts_hits_per_point() {
        configure("merger.after_commit@2").unwrap();
        assert_eq!(fires(MERGER_AFTER_COMMIT), None);
        assert_eq!(fires(MERGER_AFTER_WRITE), None);
        assert_eq!(fires(MERGER_AFTER_COMMIT), Some(Action::Abort));
        assert_eq!(fires(MERGER_AFTER_COMMIT), None, "fires once");
        configure("").unwrap();
        assert!(!ENABLED.load(Ordering::SeqCst));
        hit(MERGER_AFTER_COMMIT);
    }
}
