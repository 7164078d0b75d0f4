//! Chaos in AWS mode, under IAM: a backfill and three incremental runs of two tables while the
//! simulator changes records (a bounded number of rounds during each of the first three) and
//! answers 10 % of requests with 5xx or 429 and 1 % with malformed pages, and consumers and
//! the merger are killed with SIGKILL at random (at least 20 times), each restarted at once,
//! or frozen with SIGSTOP past their messages' visibility, then woken with SIGCONT (at least
//! 5 times) while another process took their messages. `hubsync audit` then compares the lake
//! with HubSpot: no difference.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hubsync_tests::deploy::{aws_pipeline, stop, tail, Deployment, Service};
use hubsync_tests::harness::sim_config;
use hubsync_tests::moto::Moto;
use sim::{ConfigPatch, FaultKind, MutateRequest, ObjectType};

const TABLES: [&str; 2] = ["deals", "contacts"];
const MIN_KILLS: u64 = 20;
const MIN_PAUSES: u64 = 5;
/// The services' visibility timeout, in seconds: a pause lasts longer.
const VISIBILITY_SECS: u64 = 4;
/// Receives before a message is dead-lettered. A kill takes more receives than the message
/// the victim was working on: its long polls (up to 10 s) outlive it in the emulator, and each
/// still takes a message that becomes visible, counts a receive and hides it for the
/// visibility timeout, answering a process that is gone. With a kill every 2.75 s on
/// average, a page that takes the emulator a few seconds (a backfill's closing page queues a
/// merge per partition) was seen received 12 times before one copy finished; the 12 this
/// test used then dead-lettered it about one run in two. 40 leaves the retries to the kills
/// and still dead-letters a message that truly fails (none does here: HubSpot's faults are
/// retried inside the client).
const MAX_RECEIVE_COUNT: &str = "40";
/// Rounds of changes (2 updates, 1 create, 1 archive per table, 400 ms apart) during each of
/// the first three syncs, at most.
const ROUNDS_PER_SYNC: usize = 40;

/// A seeded generator for kill times and victims (reproducible given the same timings).
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The processes the killer may kill: two consumers and the merger.
type Victims = Arc<Mutex<Vec<(&'static str, Service)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_kills_faults_and_changes_end_with_a_lake_equal_to_hubspot() -> anyhow::Result<()> {
    let _env = hubsync_tests::moto::env_lock().await;
    let moto = Moto::start()?;
    moto.export_env();
    let server = Arc::new(sim::start(sim_config(100, &[ObjectType::Deals, ObjectType::Contacts])).await?);
    let dir = tempfile::tempdir()?;
    let d = Deployment::on(
        &moto,
        &server.base_url(),
        "chaos",
        &dir.path().join("services.log"),
        &[
            ("HUBSYNC_PAGE_SIZE", "10"),
            ("HUBSYNC_VISIBILITY_SECS", &VISIBILITY_SECS.to_string()),
            ("HUBSYNC_MAX_RECEIVE_COUNT", MAX_RECEIVE_COUNT),
            ("HUBSYNC_HUBSPOT_RETRIES", "4"),
            ("HUBSYNC_MAX_RETRY_DELAY_MS", "500"),
        ],
    )?;
    d.hubsync_ok(&["infra", "up", "--max-receive-count", MAX_RECEIVE_COUNT])?;
    let p = aws_pipeline("lake-chaos", "chaos").await?;
    server.configure(&ConfigPatch {
        fault_rate: Some(0.10),
        fault_kinds: Some(vec![FaultKind::ServerError, FaultKind::RateLimited]),
        malformed_rate: Some(0.01),
        ..Default::default()
    })?;

    let producer = d.service("producer")?;
    let victims: Victims = Arc::new(Mutex::new(vec![
        ("consumer", d.service("consumer")?),
        ("consumer", d.service("consumer")?),
        ("merger", d.service("merger")?),
    ]));

    // The killer: every 1.5-4 s (6-8.5 s once the minimums are met) one consumer or the merger
    // dies by SIGKILL and restarts, or (one time in four) freezes past its visibility and
    // wakes up.
    let kills = Arc::new(AtomicU64::new(0));
    let pauses = Arc::new(AtomicU64::new(0));
    let stop_killing = Arc::new(AtomicBool::new(false));
    let killer = {
        let (victims, kills, pauses, stop_killing) = (
            victims.clone(),
            kills.clone(),
            pauses.clone(),
            stop_killing.clone(),
        );
        let spawner = d.clone();
        std::thread::spawn(move || -> anyhow::Result<()> {
            let mut dice = Dice(2026);
            while !stop_killing.load(Ordering::SeqCst) {
                // Once the minimums are met the chaos goes on more slowly: on a loaded machine
                // a merger killed every few seconds finishes almost nothing (see the README).
                let met =
                    kills.load(Ordering::SeqCst) >= MIN_KILLS && pauses.load(Ordering::SeqCst) >= MIN_PAUSES;
                let spacing = if met { 6000 } else { 1500 };
                std::thread::sleep(Duration::from_millis(spacing + dice.below(2500)));
                let mut v = victims.lock().expect("victims");
                let i = dice.below(v.len() as u64) as usize;
                let (role, child) = &mut v[i];
                if dice.below(4) == 0 {
                    let pid = child.id().to_string();
                    let signal = |s: &str| std::process::Command::new("kill").args([s, &pid]).status();
                    signal("-STOP")?;
                    std::thread::sleep(Duration::from_millis(
                        VISIBILITY_SECS * 1000 + 1000 + dice.below(2000),
                    ));
                    signal("-CONT")?;
                    pauses.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                child.kill()?; // SIGKILL
                child.wait()?;
                let role: &'static str = role;
                v[i] = (role, spawner.service(role)?);
                kills.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        })
    };

    // The portal keeps changing while the first three syncs run, a bounded number of rounds
    // each: changing it for as long as the syncs took let a slow machine's table grow faster
    // than the killed services synced it (1,210 deals by the last incremental, which then did
    // not finish in 300 s).
    let mutating = Arc::new(AtomicBool::new(true));
    let allowed_rounds = Arc::new(AtomicUsize::new(0));
    let mutator = {
        let (server, mutating, allowed) = (server.clone(), mutating.clone(), allowed_rounds.clone());
        tokio::spawn(async move {
            let (mut changes, mut rounds) = (0u64, 0usize);
            while mutating.load(Ordering::SeqCst) {
                if rounds >= allowed.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                rounds += 1;
                for object_type in TABLES {
                    server
                        .mutate(&MutateRequest {
                            object_type: object_type.into(),
                            updates: 2,
                            creates: 1,
                            archives: 1,
                            same_timestamp: false,
                            ..Default::default()
                        })
                        .await?;
                    changes += 4;
                }
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            anyhow::Ok(changes)
        })
    };

    let mut syncs = 0;
    let result: anyhow::Result<()> = async {
        allowed_rounds.fetch_add(ROUNDS_PER_SYNC, Ordering::SeqCst);
        d.sync_all(&p, &TABLES).await?; // the backfill (the flag is off: full)
        syncs += 1;
        d.hubsync_ok(&["flag", "set", "true"])?;
        for _ in 0..2 {
            allowed_rounds.fetch_add(ROUNDS_PER_SYNC, Ordering::SeqCst);
            d.sync_all(&p, &TABLES).await?;
            syncs += 1;
        }
        mutating.store(false, Ordering::SeqCst);
        // A round in progress ends first: the last incremental must start after every change.
        while !mutator.is_finished() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The last incremental sees every change; more follow only until 20 kills happened.
        loop {
            d.sync_all(&p, &TABLES).await?;
            syncs += 1;
            let enough =
                kills.load(Ordering::SeqCst) >= MIN_KILLS && pauses.load(Ordering::SeqCst) >= MIN_PAUSES;
            if enough || syncs >= 8 {
                break;
            }
        }
        Ok(())
    }
    .await;
    mutating.store(false, Ordering::SeqCst);
    stop_killing.store(true, Ordering::SeqCst);
    let killed = killer
        .join()
        .map_err(|_| anyhow::anyhow!("the killer panicked"))?;
    let changes = mutator.await??;
    if let Err(e) = result {
        // What is stuck where, before the services are reaped (on drop) and the emulator goes.
        let status = d
            .hubsync(&["status"])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        anyhow::bail!(
            "chaos sync {syncs} failed after {} kills: {e:#}\n--- hubsync status ---\n{}\n--- services ---\n{}",
            kills.load(Ordering::SeqCst),
            status.unwrap_or_else(|e| e.to_string()),
            tail(&d.log)
        );
    }
    killed?;
    // The victims end as they lived (one may still be starting, before its SIGTERM handler).
    for (_, mut child) in std::mem::take(&mut *victims.lock().expect("victims")) {
        child.kill()?;
        child.wait()?;
    }
    stop(vec![producer])?;

    // The audit, through HubSpot's API (faults still on: the client retries).
    let audit = d.hubsync(&["audit", "--tables", "deals,contacts", "--hubspot-url", &d.hubspot])?;
    let out = String::from_utf8_lossy(&audit.stdout);
    let stats = server.stats();
    let line = out.lines().find(|l| l.starts_with("audit:")).ok_or_else(|| {
        anyhow::anyhow!(
            "no audit line in:\n{out}{}",
            String::from_utf8_lossy(&audit.stderr)
        )
    })?;
    let number_before = |word: &str| -> Option<u64> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let i = words.iter().position(|w| w.trim_end_matches(',') == word)?;
        words.get(i.checked_sub(1)?)?.parse().ok()
    };
    let kills = kills.load(Ordering::SeqCst);
    let pauses = pauses.load(Ordering::SeqCst);
    println!(
        "chaos: {kills} kills and {pauses} pauses past the visibility survived, {} faults injected \
         ({} 5xx, {} 429, {} malformed), {changes} record changes, {syncs} syncs, {} rows compared, \
         {} differences found",
        stats.faults.total,
        stats.faults.server_error,
        stats.faults.rate_limited,
        stats.faults.malformed,
        number_before("rows").unwrap_or(0),
        number_before("differences").map_or("?".to_string(), |n| n.to_string()),
    );
    println!("{out}");
    assert!(kills >= MIN_KILLS, "only {kills} kills");
    assert!(pauses >= MIN_PAUSES, "only {pauses} pauses");
    assert!(stats.faults.malformed > 0 && stats.faults.rate_limited > 0 && stats.faults.server_error > 0);
    assert!(audit.status.success(), "the audit found differences:\n{out}");
    assert_eq!(number_before("differences"), Some(0), "{line}");
    assert!(number_before("rows").unwrap_or(0) > 150, "{line}");
    Ok(())
}
