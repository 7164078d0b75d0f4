//! The sync-state port's contract, one scenario against both adapters: SQLite (embedded mode)
//! and DynamoDB on the moto emulator, on the seed's `hubspot-sync-state` table as
//! `hubsync infra up` creates it. W2: a table's watermark (`max(last_created_at,
//! last_modified_at)`) only moves forwards; a write is kept unless the stored watermark is
//! later, so a write at the same watermark replaces the item.

use aws::{AwsNames, DynamoState};
use common::clock::{iso, EpochMs};
use common::ports::state::{StateStore, SyncState, STATE_TABLE};
use embedded::{Db, EmbeddedState};
use hubsync_tests::moto::Moto;

/// 2024-05-01T12:00:00Z.
const BASE_MS: EpochMs = 1_714_564_800_000;

/// `minutes` after [`BASE_MS`], and a millisecond more (so millisecond precision is kept).
fn at(minutes: i64) -> EpochMs {
    BASE_MS + minutes * 60_000 + 1
}

fn state(table: &str, synced: i64, created: Option<i64>, modified: Option<i64>, records: i64) -> SyncState {
    SyncState {
        object_type: table.into(),
        last_sync_at: at(synced),
        last_created_at: created.map(at),
        last_modified_at: modified.map(at),
        records_processed: records,
    }
}

async fn scenario(s: &dyn StateStore) -> anyhow::Result<()> {
    // No item: a full sync.
    assert_eq!(s.get("deals").await?, None, "an unknown table");
    assert!(s.list().await?.is_empty());

    let first = state("deals", 10, Some(5), Some(9), 100);
    assert_eq!(first.watermark(), Some(at(9)));
    assert!(s.put_forward(&first).await?, "the first write");
    assert_eq!(
        s.get("deals").await?,
        Some(first.clone()),
        "every attribute round-trips"
    );
    assert_eq!(s.list().await?, std::slice::from_ref(&first));

    // W2: an older watermark is refused and the stored item kept, whatever else is newer.
    let older = state("deals", 20, Some(6), Some(8), 999);
    assert!(!s.put_forward(&older).await?, "a watermark before the stored one");
    assert_eq!(
        s.get("deals").await?,
        Some(first.clone()),
        "the stored item is kept"
    );
    let unwatermarked = state("deals", 21, None, None, 1);
    assert!(
        !s.put_forward(&unwatermarked).await?,
        "no watermark at all is before any stored one"
    );
    assert_eq!(s.get("deals").await?, Some(first.clone()));

    // The same watermark is not "later": the write goes through and replaces the item (a
    // redelivered commit writes the same state again), attributes it lacks included.
    let same = state("deals", 30, Some(9), None, 7);
    assert_eq!(same.watermark(), first.watermark());
    assert!(s.put_forward(&same).await?, "an equal watermark is written");
    assert_eq!(s.get("deals").await?, Some(same.clone()), "the item was replaced");
    assert!(s.put_forward(&same).await?, "the same state again");
    assert_eq!(s.get("deals").await?, Some(same.clone()));

    // Forwards, by either attribute; the stored watermark is the later of the two.
    let newer = state("deals", 40, Some(5), Some(30), 250);
    assert!(s.put_forward(&newer).await?, "a later modification");
    assert_eq!(s.get("deals").await?, Some(newer.clone()));
    let created_later = state("deals", 41, Some(60), Some(10), 260);
    assert!(s.put_forward(&created_later).await?, "a later creation");
    let behind_created = state("deals", 42, None, Some(50), 270);
    assert!(
        !s.put_forward(&behind_created).await?,
        "past the stored modification but before the stored creation"
    );
    assert_eq!(s.get("deals").await?, Some(created_later.clone()));

    // Tables are independent: an earlier watermark on another table is its first write.
    let contacts = state("contacts", 1, Some(1), Some(2), 3);
    assert!(s.put_forward(&contacts).await?, "another table's first write");
    let companies = state("companies", 2, None, None, 0);
    assert!(
        s.put_forward(&companies).await?,
        "a first write without a watermark"
    );
    assert_eq!(s.get("companies").await?, Some(companies.clone()));
    assert_eq!(s.get("deals").await?, Some(created_later.clone()), "untouched");
    assert_eq!(
        s.list().await?,
        [companies.clone(), contacts.clone(), created_later.clone()],
        "one item per table, by name"
    );

    // Reset: the next sync of that table is full, and its next write starts afresh.
    s.delete("deals").await?;
    assert_eq!(s.get("deals").await?, None, "deleted");
    s.delete("deals").await?;
    s.delete("never-synced").await?;
    assert_eq!(
        s.get("contacts").await?,
        Some(contacts.clone()),
        "other tables stay"
    );
    let restart = state("deals", 50, Some(1), Some(1), 10);
    assert!(
        s.put_forward(&restart).await?,
        "after a reset any watermark is taken"
    );
    assert_eq!(s.get("deals").await?, Some(restart.clone()));

    assert_eq!(s.delete_all().await?, 3, "contacts, companies, deals");
    assert!(s.list().await?.is_empty());
    assert_eq!(s.get("contacts").await?, None);
    assert_eq!(s.delete_all().await?, 0);
    Ok(())
}

#[tokio::test]
async fn the_embedded_state_keeps_the_contract() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("state.db");
    scenario(&EmbeddedState::new(Db::open(&path)?)).await?;

    // The file is the state: a process started again on it sees the last write.
    let kept = state("deals", 70, Some(60), Some(65), 5);
    assert!(EmbeddedState::new(Db::open(&path)?).put_forward(&kept).await?);
    let reopened = EmbeddedState::new(Db::open(&path)?);
    assert_eq!(reopened.get("deals").await?, Some(kept));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dynamodb_state_keeps_the_contract() -> anyhow::Result<()> {
    let _env = hubsync_tests::moto::env_lock().await;
    let moto = Moto::start()?;
    moto.export_env();
    let names = AwsNames {
        prefix: "scontract".into(),
        ..Default::default()
    };
    assert_eq!(names.state_table, STATE_TABLE);
    assert_eq!(STATE_TABLE, "hubspot-sync-state", "the seed's table");
    infra::provision::up(&names, "lake-scontract", "data", 2).await?;
    let client = aws_sdk_dynamodb::Client::new(&aws::sdk_config().await);
    // Scan pages of two items: the scenario's three tables list (and delete) across pages.
    let store = DynamoState::new(client.clone(), &names.state_table).with_page_limit(2);
    scenario(&store).await?;

    // The seed's item: its attributes by name, timestamps as ISO-8601 UTC strings.
    let kept = state("deals", 70, Some(60), Some(65), 5);
    assert!(store.put_forward(&kept).await?);
    let item = client
        .get_item()
        .table_name(STATE_TABLE)
        .key(
            "object_type",
            aws_sdk_dynamodb::types::AttributeValue::S("deals".into()),
        )
        .consistent_read(true)
        .send()
        .await?
        .item
        .expect("the deals item");
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    assert_eq!(text("last_sync_at"), Some(iso(at(70))));
    assert_eq!(text("last_created_at"), Some(iso(at(60))));
    assert_eq!(text("last_modified_at"), Some(iso(at(65))));
    assert_eq!(
        item.get("records_processed")
            .and_then(|v| v.as_n().ok())
            .map(String::as_str),
        Some("5")
    );
    Ok(())
}
