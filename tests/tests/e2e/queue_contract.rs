//! The queue port's contract, one scenario against both adapters: SQLite (embedded mode) and
//! SQS on the moto emulator, each as a standard queue with a dead-letter queue and as a FIFO
//! queue. Visibilities are one second, so a lapse costs a second, not minutes.
//!
//! The SQS queues are the ones `hubsync infra up` creates (redrive policy, FIFO flags), and
//! the adapter is the one `aws::pipeline` builds (`SqsQueue` with its receive visibility):
//! this crate has no SQS client of its own to call `SqsQueue::connect` with.
//!
//! Where the trait leaves room ("StaleReceipt where the service tells", FIFO batches), the
//! scenario asserts what the trait promises and says which backend does what.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::ensure;
use aws::AwsNames;
use common::catalog::Catalog;
use common::clock;
use common::pipeline::{Pipeline, Settings};
use common::ports::queue::{Outgoing, Queue, QueueDepth, QueueError, Received};
use embedded::{Db, EmbeddedQueue, QueueOptions};
use hubsync_tests::moto::Moto;
use tokio::time::{sleep, Instant};

/// How long a received message stays invisible (SQS counts whole seconds).
const VISIBILITY: Duration = Duration::from_secs(1);
/// Receives after which a message is dead-lettered (the redrive policy on SQS).
const MAX_RECEIVES: u32 = 2;
/// Longest wait for a message that should come.
const PATIENCE: Duration = Duration::from_secs(5);
/// A pause after a release, so "visible from now" is in the past for the next call: moto
/// shows a message again only once the clock passed its visibility, in whole milliseconds.
const SETTLE: Duration = Duration::from_millis(50);

/// What the scenario must know about the queue under test.
#[derive(Debug, Clone, Copy)]
struct Backend {
    fifo: bool,
    /// Whether a receipt from before a redelivery (or of a deleted message) is refused with
    /// `StaleReceipt`. The trait promises it only "where the service tells": the embedded queue
    /// tells; SQS takes an old receipt handle (moto even acts on it: it deletes the message, or
    /// changes the new holder's visibility), so on SQS only what every backend does is checked.
    stale_receipts_told: bool,
    /// Whether a FIFO deduplication id is remembered for its five minutes after its message
    /// was deleted (the trait, and real SQS). moto dedups only against messages still queued.
    dedup_outlives_ack: bool,
}

impl Backend {
    const EMBEDDED: Backend = Backend {
        fifo: false,
        stale_receipts_told: true,
        dedup_outlives_ack: true,
    };
    const MOTO: Backend = Backend {
        fifo: false,
        stale_receipts_told: false,
        dedup_outlives_ack: false,
    };

    fn fifo(self) -> Backend {
        Backend { fifo: true, ..self }
    }

    /// A message of its own (on FIFO queues: its own group, its body as deduplication id).
    fn message(self, body: &str) -> Outgoing {
        if self.fifo {
            Outgoing::fifo(body.into(), format!("g-{body}"), body.into())
        } else {
            Outgoing::standard(body.into())
        }
    }

    fn messages(self, bodies: &[&str]) -> Vec<Outgoing> {
        bodies.iter().map(|b| self.message(b)).collect()
    }
}

/// Receives until `n` messages came (asking for no more than are missing) or `within` passed.
async fn receive_n(q: &dyn Queue, n: usize, within: Duration) -> Result<Vec<Received>, QueueError> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < n {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let wait = (deadline - now).min(Duration::from_secs(1));
        got.extend(q.receive(n - got.len(), wait).await?);
    }
    Ok(got)
}

/// Exactly `n` messages within [`PATIENCE`], in the order they came.
async fn expect_n(q: &dyn Queue, n: usize, what: &str) -> anyhow::Result<Vec<Received>> {
    let got = receive_n(q, n, PATIENCE).await?;
    ensure!(
        got.len() == n,
        "{what}: {} of {n} messages came within {PATIENCE:?}: {:?}",
        got.len(),
        bodies(&got)
    );
    Ok(got)
}

/// Nothing deliverable right now.
async fn expect_none(q: &dyn Queue, what: &str) -> anyhow::Result<()> {
    let got = q.receive(10, Duration::ZERO).await?;
    ensure!(got.is_empty(), "{what}: received {:?}", bodies(&got));
    Ok(())
}

fn bodies(got: &[Received]) -> Vec<&str> {
    got.iter().map(|r| r.body.as_str()).collect()
}

fn body_set(got: &[Received]) -> BTreeSet<&str> {
    got.iter().map(|r| r.body.as_str()).collect()
}

fn depth(visible: u64, in_flight: u64, dead: u64) -> QueueDepth {
    QueueDepth {
        visible,
        in_flight,
        dead,
    }
}

fn is_stale<T: std::fmt::Debug>(r: &Result<T, QueueError>) -> bool {
    matches!(r, Err(QueueError::StaleReceipt { .. }))
}

/// The whole contract on one empty queue (visibility [`VISIBILITY`], dead letters after
/// [`MAX_RECEIVES`] receives). Every section leaves the queue empty, and checks it.
async fn scenario(q: &dyn Queue, b: Backend) -> anyhow::Result<()> {
    let started = Instant::now();
    assert_eq!(q.depth().await?, QueueDepth::default(), "a new queue is empty");
    send_receive_ack(q, b).await?;
    ack_in_batches(q, b).await?;
    visibility_and_stale_receipts(q, b).await?;
    release_at_once(q, b).await?;
    retries_then_dead_letters(q, b).await?;
    replay(q, b).await?;
    if b.fifo {
        fifo_groups_and_dedup(q, b).await?;
    }
    println!(
        "queue {} ({b:?}): contract kept in {:.1?}",
        q.name(),
        started.elapsed()
    );
    Ok(())
}

/// Sent messages are delivered once each, counted as first receives, held while in hand, and
/// gone once acknowledged.
async fn send_receive_ack(q: &dyn Queue, b: Backend) -> anyhow::Result<()> {
    q.send(b.messages(&["m1", "m2", "m3"])).await?;
    q.send(Vec::new()).await?;
    assert_eq!(q.depth().await?, depth(3, 0, 0), "three sent, none received");
    let got = expect_n(q, 3, "first delivery").await?;
    assert_eq!(body_set(&got), BTreeSet::from(["m1", "m2", "m3"]));
    for r in &got {
        assert_eq!(r.receive_count, 1, "{}: a first delivery", r.body);
        assert!(!r.receipt.is_empty() && !r.message_id.is_empty(), "{r:?}");
        let group = b.fifo.then(|| format!("g-{}", r.body));
        assert_eq!(r.group_id, group, "{}: its group (FIFO only)", r.body);
    }
    let ids: BTreeSet<&str> = got.iter().map(|r| r.message_id.as_str()).collect();
    assert_eq!(ids.len(), 3, "a message id each");
    assert_eq!(q.depth().await?, depth(0, 3, 0), "all three in hand");
    expect_none(q, "messages in hand are invisible").await?;
    for r in &got {
        q.ack(&r.receipt).await?;
    }
    assert_eq!(
        q.depth().await?,
        QueueDepth::default(),
        "acknowledged messages are gone"
    );
    expect_none(q, "after the acks").await
}

/// `ack_many` deletes what it is given, in batches the service takes (twelve receipts are two
/// SQS requests), and answers each receipt as `ack` would: a deleted message's receipt does
/// not spoil the others.
async fn ack_in_batches(q: &dyn Queue, b: Backend) -> anyhow::Result<()> {
    let names: Vec<String> = (0..12).map(|i| format!("k{i:02}")).collect();
    q.send(b.messages(&names.iter().map(String::as_str).collect::<Vec<_>>()))
        .await?;
    let got = expect_n(q, 12, "twelve to ack in batches").await?;
    let (first, rest) = got.split_first().expect("twelve");
    q.ack(&first.receipt).await?;
    let receipts: Vec<String> = got.iter().map(|r| r.receipt.clone()).collect();
    let results = q.ack_many(&receipts).await;
    assert_eq!(results.len(), 12, "a result per receipt: {results:?}");
    if b.stale_receipts_told {
        assert!(
            is_stale(&results[0]),
            "the receipt of a deleted message: {:?}",
            results[0]
        );
    } else {
        assert!(
            results[0].is_ok() || is_stale(&results[0]),
            "a deleted message: {:?}",
            results[0]
        );
    }
    for (r, result) in rest.iter().zip(&results[1..]) {
        assert!(result.is_ok(), "{}: {result:?}", r.body);
    }
    assert_eq!(q.depth().await?, QueueDepth::default(), "all twelve are gone");
    expect_none(q, "after the batched acks").await
}

/// A message in hand stays invisible until its visibility lapses, then comes again with
/// receive count 2; a heartbeat keeps another one in hand meanwhile. Receipts from before the
/// redelivery, and of deleted messages, are stale where the backend tells.
async fn visibility_and_stale_receipts(q: &dyn Queue, b: Backend) -> anyhow::Result<()> {
    q.send(b.messages(&["a", "b"])).await?;
    let mut got = expect_n(q, 2, "a and b").await?;
    let received_at = Instant::now();
    got.sort_by(|x, y| x.body.cmp(&y.body));
    let (a1, held) = (got[0].clone(), got[1].clone());
    assert_eq!((a1.body.as_str(), held.body.as_str()), ("a", "b"));
    // A heartbeat: b's visibility now outlasts a's.
    q.set_visibility(&held.receipt, 4 * VISIBILITY).await?;
    expect_none(q, "within their visibility").await?;
    assert_eq!(q.depth().await?, depth(0, 2, 0));

    let a2 = expect_one(q, "a, once its visibility lapsed").await?;
    let lapsed = received_at.elapsed();
    assert_eq!(a2.body, "a", "b's heartbeat keeps it in hand");
    assert_eq!(a2.receive_count, 2, "the redelivery is the second receive");
    assert_eq!(a2.message_id, a1.message_id, "the same message");
    assert_ne!(a2.receipt, a1.receipt, "a new receipt per receive");
    assert!(
        lapsed >= VISIBILITY.mul_f64(0.7),
        "a came back after {lapsed:?}, before its visibility of {VISIBILITY:?} lapsed"
    );
    expect_none(q, "b is still in hand, a in hand again").await?;

    // The receipt of the first delivery.
    if b.stale_receipts_told {
        assert!(
            is_stale(&q.set_visibility(&a1.receipt, Duration::ZERO).await),
            "a heartbeat on a receipt from before the redelivery"
        );
        assert!(
            is_stale(&q.ack(&a1.receipt).await),
            "an ack on a receipt from before the redelivery"
        );
        assert!(
            is_stale(&q.retry_later(&a1.receipt, Duration::ZERO).await),
            "a retry on a receipt from before the redelivery: the retry is the new holder's"
        );
        expect_none(q, "the stale calls changed nothing").await?;
    } else {
        // SQS takes an old receipt handle ("the request succeeds, but the message might not be
        // deleted"); moto deletes the message. Either way: no backend error, and the current
        // holder's ack below still succeeds.
        let r = q.ack(&a1.receipt).await;
        assert!(r.is_ok() || is_stale(&r), "an old receipt: {r:?}");
    }
    q.ack(&a2.receipt).await?;
    q.ack(&held.receipt)
        .await
        .map_err(|e| anyhow::anyhow!("the heartbeat kept b in hand: {e}"))?;
    assert_eq!(q.depth().await?, QueueDepth::default());

    // The message is gone: nothing can change its visibility (both backends tell this one).
    assert!(
        is_stale(&q.set_visibility(&a2.receipt, VISIBILITY).await),
        "a heartbeat on a deleted message"
    );
    if b.stale_receipts_told {
        assert!(is_stale(&q.ack(&a2.receipt).await), "a second ack");
    } else {
        // SQS answers a repeated DeleteMessage with success.
        let r = q.ack(&a2.receipt).await;
        assert!(r.is_ok() || is_stale(&r), "a second ack: {r:?}");
    }
    expect_none(q, "after the acks").await
}

/// `set_visibility(ZERO)` gives a message back for immediate redelivery.
async fn release_at_once(q: &dyn Queue, b: Backend) -> anyhow::Result<()> {
    q.send(vec![b.message("r")]).await?;
    let first = expect_one(q, "r").await?;
    q.set_visibility(&first.receipt, Duration::ZERO).await?;
    let released_at = Instant::now();
    sleep(SETTLE).await;
    assert_eq!(q.depth().await?, depth(1, 0, 0), "released: visible again");
    let again = expect_one(q, "r, released").await?;
    let took = released_at.elapsed();
    assert_eq!((again.body.as_str(), again.receive_count), ("r", 2));
    assert!(
        took < VISIBILITY.mul_f64(0.7),
        "a released message came back after {took:?}, as late as its visibility"
    );
    q.ack(&again.receipt).await?;
    assert_eq!(q.depth().await?, QueueDepth::default());
    Ok(())
}

/// `retry_later` counts the receive and gives the message back after its delay; after
/// [`MAX_RECEIVES`] receives the next receive dead-letters it instead. `dead_letter` moves a
/// message in hand at once. Leaves three dead letters, d1 (the oldest) to d3.
async fn retries_then_dead_letters(q: &dyn Queue, b: Backend) -> anyhow::Result<()> {
    q.send(vec![b.message("d1")]).await?;
    let first = expect_one(q, "d1").await?;
    assert_eq!(first.receive_count, 1);
    q.retry_later(&first.receipt, Duration::ZERO).await?;
    sleep(SETTLE).await;
    let second = expect_one(q, "d1, retried").await?;
    assert_eq!(
        (second.body.as_str(), second.receive_count),
        ("d1", 2),
        "retry_later counted the receive"
    );
    q.retry_later(&second.receipt, VISIBILITY).await?;
    expect_none(q, "within the retry's delay").await?;
    assert_eq!(q.depth().await?, depth(0, 1, 0), "retried, not yet due");
    if b.stale_receipts_told {
        // "The message is no longer in hand."
        assert!(
            is_stale(&q.ack(&second.receipt).await),
            "an ack after retry_later"
        );
    }
    sleep(VISIBILITY + Duration::from_millis(200)).await;
    expect_none(q, "a third receive of d1 dead-letters it").await?;
    assert_eq!(q.depth().await?, depth(0, 0, 1), "d1 is a dead letter");
    expect_none(q, "a dead letter is never delivered").await?;

    q.send(b.messages(&["d2", "d3"])).await?;
    let mut got = expect_n(q, 2, "d2 and d3").await?;
    got.sort_by(|x, y| x.body.cmp(&y.body));
    for m in &got {
        assert_eq!(m.receive_count, 1);
        q.dead_letter(m, "contract test: no retry can fix it").await?;
    }
    assert_eq!(q.depth().await?, depth(0, 0, 3), "dead_letter moved both at once");
    expect_none(q, "dead letters are never delivered").await?;
    if b.stale_receipts_told {
        assert!(
            is_stale(&q.ack(&got[0].receipt).await),
            "an ack after dead_letter"
        );
        assert!(
            is_stale(&q.dead_letter(&got[0], "again").await),
            "dead-lettering a dead letter"
        );
        assert_eq!(q.depth().await?, depth(0, 0, 3));
    }
    Ok(())
}

/// A dry run lists the dead letters and moves nothing; a replay moves up to `max`, oldest
/// first, each delivered again as a first receive.
async fn replay(q: &dyn Queue, b: Backend) -> anyhow::Result<()> {
    let listed = q.replay_dead_letters(None, true).await?;
    assert_eq!(listed, ["d1", "d2", "d3"], "a dry run lists them, oldest first");
    assert_eq!(
        q.replay_dead_letters(Some(1), true).await?,
        ["d1"],
        "a dry run honours max"
    );
    sleep(SETTLE).await;
    assert_eq!(q.depth().await?, depth(0, 0, 3), "a dry run moves nothing");
    expect_none(q, "after a dry run").await?;

    let moved = q.replay_dead_letters(Some(2), false).await?;
    assert_eq!(moved, ["d1", "d2"], "max 2: the two oldest");
    sleep(SETTLE).await;
    assert_eq!(q.depth().await?, depth(2, 0, 1), "two back, one still dead");
    let back = expect_n(q, 2, "the replayed d1 and d2").await?;
    // A standard queue does not promise an order of delivery; the replay's order is above.
    assert_eq!(body_set(&back), BTreeSet::from(["d1", "d2"]));
    for r in &back {
        assert_eq!(
            r.receive_count, 1,
            "{}: a replay starts a fresh receive count",
            r.body
        );
        if b.fifo {
            assert_eq!(
                r.group_id.as_deref(),
                Some(format!("g-{}", r.body).as_str()),
                "its own group"
            );
        }
        q.ack(&r.receipt).await?;
    }
    assert_eq!(q.replay_dead_letters(None, false).await?, ["d3"], "the rest");
    let last = expect_one(q, "the replayed d3").await?;
    assert_eq!((last.body.as_str(), last.receive_count), ("d3", 1));
    q.ack(&last.receipt).await?;
    assert!(q.replay_dead_letters(None, false).await?.is_empty(), "none left");
    assert_eq!(q.depth().await?, QueueDepth::default());
    Ok(())
}

/// FIFO: within a group the next message waits while one is in hand, also after a release
/// (order kept); other groups proceed; a second send with a deduplication id already sent is
/// dropped; a message without a group is refused.
async fn fifo_groups_and_dedup(q: &dyn Queue, b: Backend) -> anyhow::Result<()> {
    let m = |body: &str, group: &str, dedup: &str| Outgoing::fifo(body.into(), group.into(), dedup.into());
    q.send(vec![
        m("a1", "a", "a1"),
        m("b1", "b", "b1"),
        m("a2", "a", "a2"),
        m("a1-again", "a", "a1"),
    ])
    .await?;
    assert_eq!(
        q.depth().await?,
        depth(3, 0, 0),
        "the second send of dedup id a1 was dropped"
    );

    // One at a time (max 1): SQS may hand out several messages of one group in a single
    // receive, in order; the embedded queue hands out a group's head only. Both keep a group's
    // next message back while an earlier one is in hand, which is what is checked.
    let a1 = expect_one(q, "the oldest message").await?;
    assert_eq!((a1.body.as_str(), a1.group_id.as_deref()), ("a1", Some("a")));
    let b1 = expect_one(q, "group b proceeds while a1 is in hand").await?;
    assert_eq!((b1.body.as_str(), b1.group_id.as_deref()), ("b1", Some("b")));
    expect_none(q, "a2 waits behind a1 in hand").await?;

    q.set_visibility(&a1.receipt, Duration::ZERO).await?;
    sleep(SETTLE).await;
    let a1_again = expect_one(q, "a1, released").await?;
    assert_eq!(
        (a1_again.body.as_str(), a1_again.receive_count),
        ("a1", 2),
        "a release gives the group's head back, not the next message"
    );
    expect_none(q, "a2 still waits").await?;

    q.ack(&a1_again.receipt).await?;
    sleep(SETTLE).await;
    let a2 = expect_one(q, "a2, once a1 is done").await?;
    assert_eq!((a2.body.as_str(), a2.receive_count), ("a2", 1));
    expect_none(q, "the duplicate of a1 was never queued").await?;
    q.ack(&a2.receipt).await?;
    q.ack(&b1.receipt).await?;
    assert_eq!(q.depth().await?, QueueDepth::default());

    if b.dedup_outlives_ack {
        // Within five minutes of the first send, also once that message is gone.
        q.send(vec![m("a1-late", "a", "a1")]).await?;
        assert_eq!(
            q.depth().await?,
            QueueDepth::default(),
            "dedup id a1 is still remembered"
        );
    }
    // (moto forgets a deduplication id with its deleted message; SQS and the trait do not.)

    let refused = q.send(vec![Outgoing::standard("no-group".into())]).await;
    assert!(refused.is_err(), "a FIFO message needs a group: {refused:?}");
    assert_eq!(
        q.depth().await?,
        QueueDepth::default(),
        "nothing of the refused send"
    );
    Ok(())
}

/// One message, asked for alone.
async fn expect_one(q: &dyn Queue, what: &str) -> anyhow::Result<Received> {
    Ok(expect_n(q, 1, what).await?.remove(0))
}

fn embedded_queue(dir: &tempfile::TempDir, fifo: bool) -> anyhow::Result<EmbeddedQueue> {
    let db = Db::open(&dir.path().join("queues.db"))?;
    let options = QueueOptions {
        visibility_timeout: VISIBILITY,
        max_receive_count: MAX_RECEIVES,
        fifo,
    };
    let name = if fifo { "contract.fifo" } else { "contract" };
    Ok(EmbeddedQueue::new(db, name, options, clock::system()))
}

#[tokio::test]
async fn the_embedded_standard_queue_keeps_the_contract() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    scenario(&embedded_queue(&dir, false)?, Backend::EMBEDDED).await
}

#[tokio::test]
async fn the_embedded_fifo_queue_keeps_the_contract() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    scenario(&embedded_queue(&dir, true)?, Backend::EMBEDDED.fifo()).await
}

/// The queues of `hubsync infra up` on `moto` (dead letters after [`MAX_RECEIVES`]
/// receives), behind the SQS adapter with a receive visibility of [`VISIBILITY`].
async fn sqs_on(moto: &Moto, prefix: &str) -> anyhow::Result<Pipeline> {
    moto.export_env();
    let names = AwsNames {
        prefix: prefix.into(),
        ..Default::default()
    };
    let bucket = format!("lake-{prefix}");
    infra::provision::up(&names, &bucket, "data", MAX_RECEIVES).await?;
    let settings = Settings {
        visibility_timeout: VISIBILITY,
        max_receive_count: MAX_RECEIVES,
        ..Default::default()
    };
    let p = aws::pipeline(
        &names,
        &bucket,
        "data",
        Catalog::default(),
        clock::system(),
        settings,
    )
    .await?;
    assert_eq!(p.pages.name(), names.pages());
    assert_eq!(p.merges.name(), names.merges());
    Ok(p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqs_standard_queue_keeps_the_contract() -> anyhow::Result<()> {
    let _env = hubsync_tests::moto::env_lock().await;
    let moto = Moto::start()?;
    let p = sqs_on(&moto, "qcontract").await?;
    scenario(&*p.pages, Backend::MOTO).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqs_fifo_queue_keeps_the_contract() -> anyhow::Result<()> {
    let _env = hubsync_tests::moto::env_lock().await;
    let moto = Moto::start()?;
    let p = sqs_on(&moto, "qcontract").await?;
    scenario(&*p.merges, Backend::MOTO.fifo()).await
}
