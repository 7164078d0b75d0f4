//! Lake paths, defined once: every role names files through these functions and nothing else.
//!
//! ```text
//! <root>/<table>/dt=YYYY-MM-DD/part-<run_id>-g<gen>-<uuid>.parquet     live data (G1)
//! <root>/_staging/<table>/run=<run_id>/dt=YYYY-MM-DD/<job>.<attempt>.parquet   (S1)
//! <root>/_rejected/<table>/run=<run_id>/<job>.<attempt>.jsonl          quarantine (Q1)
//! <root>/_hubsync/index/<table>/<run_id>.parquet                        key index (K1)
//! <root>/_hubsync/schema/<table>.json                                   the table's schema
//! <root>/_hubsync/schema/<table>/run=<run_id>.json                      as a run began
//! ```
//! `<root>` is a local directory (embedded mode) or `s3://bucket/prefix` (AWS mode), both
//! through `object_store`. Readers point at `<root>/<table>/` and never see the `_` folders.

use std::path::PathBuf;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

/// Directory of staged files, beside the tables.
pub const STAGING_DIR: &str = "_staging";
/// Directory of quarantined records (Q1), beside the tables.
pub const REJECTED_DIR: &str = "_rejected";
/// Directory of hubsync's own files (the embedded database, the key indexes), beside the
/// tables.
pub const EMBEDDED_DIR: &str = "_hubsync";

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("lake location `{0}` is not usable: {1}")]
    Location(String, String),
    #[error("lake storage error: {0}")]
    Store(#[from] object_store::Error),
}

/// Where the lake lives, parsed from the user's `--lake` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LakeLocation {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl LakeLocation {
    /// `s3://bucket/prefix` is AWS mode; anything else is a local directory (embedded mode).
    pub fn parse(raw: &str) -> Result<Self, LakeError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(LakeError::Location(
                raw.into(),
                "empty; pass --lake DIR or --lake s3://bucket/prefix".into(),
            ));
        }
        if let Some(rest) = raw.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(LakeError::Location(raw.into(), "no bucket name".into()));
            }
            return Ok(LakeLocation::S3 {
                bucket: bucket.into(),
                prefix: prefix.trim_matches('/').into(),
            });
        }
        if raw.contains("://") {
            return Err(LakeError::Location(
                raw.into(),
                "only local directories and s3:// are supported".into(),
            ));
        }
        Ok(LakeLocation::Local(PathBuf::from(raw)))
    }
}

/// The lake: an object store plus the path rules.
#[derive(Debug, Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    root: Path,
    uri: String,
    /// The directory of a local lake: a file system keeps the folders its objects emptied,
    /// which an object store does not have.
    local_dir: Option<std::path::PathBuf>,
}

impl Lake {
    /// A lake in a local directory, created if missing.
    pub fn local(dir: &std::path::Path) -> Result<Self, LakeError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| LakeError::Location(dir.display().to_string(), e.to_string()))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| LakeError::Location(dir.display().to_string(), e.to_string()))?;
        let store = LocalFileSystem::new_with_prefix(&dir)?;
        Ok(Lake {
            store: Arc::new(store),
            root: Path::default(),
            uri: dir.display().to_string(),
            local_dir: Some(dir),
        })
    }

    /// A lake on any object store under `root` (AWS mode passes S3).
    pub fn new(store: Arc<dyn ObjectStore>, root: &str, uri: String) -> Self {
        Lake {
            store,
            root: Path::from(root),
            uri,
            local_dir: None,
        }
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The lake's root: its tables' folders and the `_` folders are its children.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn child(&self, parts: &[&str]) -> Path {
        let mut p = self.root.clone();
        for part in parts {
            p = p.join(*part);
        }
        p
    }

    pub fn table_dir(&self, table: &str) -> Path {
        self.child(&[table])
    }

    pub fn partition_dir(&self, table: &str, dt: &str) -> Path {
        self.child(&[table, &format!("dt={dt}")])
    }

    /// A new live file of `run_id` in a partition, to be published as generation `gen` (G1).
    pub fn new_live_file(&self, table: &str, dt: &str, run_id: &str, gen: u64) -> Path {
        let name = format!("part-{run_id}-g{gen}-{}.parquet", uuid::Uuid::new_v4().simple());
        self.partition_dir(table, dt).join(name)
    }

    /// The live file `name` (as a partition's generation record holds it) of a partition.
    pub fn live_file(&self, table: &str, dt: &str, name: &str) -> Path {
        self.partition_dir(table, dt).join(name)
    }

    /// Every staged run of a table (`run=<id>` folders).
    pub fn staging_table_dir(&self, table: &str) -> Path {
        self.child(&[STAGING_DIR, table])
    }

    pub fn staging_run_dir(&self, table: &str, run_id: &str) -> Path {
        self.child(&[STAGING_DIR, table, &format!("run={run_id}")])
    }

    pub fn staging_dir(&self, table: &str, run_id: &str, dt: &str) -> Path {
        self.staging_run_dir(table, run_id).join(format!("dt={dt}"))
    }

    /// The staged file of one attempt at a page job in one partition (S1): no other attempt
    /// writes it, and the page's done-marker names the attempt that counts.
    pub fn staged_file(&self, table: &str, run_id: &str, dt: &str, job_id: &str, attempt: &str) -> Path {
        self.staging_dir(table, run_id, dt)
            .join(format!("{job_id}.{attempt}.parquet"))
    }

    /// The quarantine file of one attempt at a page job (Q1).
    pub fn rejected_file(&self, table: &str, run_id: &str, job_id: &str, attempt: &str) -> Path {
        self.child(&[REJECTED_DIR, table, &format!("run={run_id}")])
            .join(format!("{job_id}.{attempt}.jsonl"))
    }

    /// Every quarantine file of a table.
    pub fn rejected_dir(&self, table: &str) -> Path {
        self.child(&[REJECTED_DIR, table])
    }

    /// The key index of a table as the commit of `run_id` wrote it (K1).
    pub fn index_file(&self, table: &str, run_id: &str) -> Path {
        self.child(&[EMBEDDED_DIR, "index", table])
            .join(format!("{run_id}.parquet"))
    }

    /// Where the tables' recorded schemas live.
    pub fn schema_dir(&self) -> Path {
        self.child(&[EMBEDDED_DIR, "schema"])
    }

    /// The table's recorded schema (`schema`).
    pub fn schema_file(&self, table: &str) -> Path {
        self.schema_dir().join(format!("{table}.json"))
    }

    /// The schema `run_id` began with.
    pub fn run_schema_file(&self, table: &str, run_id: &str) -> Path {
        self.child(&[EMBEDDED_DIR, "schema", table])
            .join(format!("run={run_id}.json"))
    }

    /// Where a table's key index versions live.
    pub fn index_dir(&self, table: &str) -> Path {
        self.child(&[EMBEDDED_DIR, "index", table])
    }

    /// Parquet files directly under `dir`, sorted by path.
    pub async fn list_parquet(&self, dir: &Path) -> Result<Vec<ObjectMeta>, LakeError> {
        let mut files: Vec<ObjectMeta> = self
            .store
            .list(Some(dir))
            .try_filter(|m| {
                futures::future::ready(
                    m.location.filename().is_some_and(|f| f.ends_with(".parquet"))
                        && m.location
                            .prefix_match(dir)
                            .is_some_and(|mut r| r.next().is_some() && r.next().is_none()),
                )
            })
            .try_collect()
            .await?;
        files.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(files)
    }

    /// The `dt` values of a table's live partitions.
    pub async fn partitions(&self, table: &str) -> Result<Vec<String>, LakeError> {
        let listing = self
            .store
            .list_with_delimiter(Some(&self.table_dir(table)))
            .await?;
        let mut dts: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename()?.strip_prefix("dt=").map(str::to_string))
            .collect();
        dts.sort();
        Ok(dts)
    }

    /// Deletes every object under `dir` (a missing directory is fine: deletes are idempotent).
    pub async fn delete_dir(&self, dir: &Path) -> Result<usize, LakeError> {
        let metas: Vec<ObjectMeta> = self.store.list(Some(dir)).try_collect().await?;
        for m in &metas {
            self.delete(&m.location).await?;
        }
        if let Some(local) = &self.local_dir {
            // Else each run leaves a folder per partition it staged, and every later sweep of
            // the table's staging walks them all: 2,343 after a 1M-record backfill, growing
            // with each run.
            let folder = dir.parts().fold(local.clone(), |p, part| p.join(part.as_ref()));
            tokio::task::spawn_blocking(move || remove_empty_folders(&folder))
                .await
                .map_err(|e| LakeError::Location(dir.to_string(), e.to_string()))?;
        }
        Ok(metas.len())
    }

    /// Deletes one object; already gone is success (a redelivered task deletes twice).
    pub async fn delete(&self, path: &Path) -> Result<(), LakeError> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Removes `folder` and the folders under it that hold no file, deepest first. A folder a
/// late writer put a file in meanwhile stays (removing a non-empty folder fails, and any
/// failure only leaves a folder behind).
fn remove_empty_folders(folder: &std::path::Path) -> bool {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return false;
    };
    let mut empty = true;
    for entry in entries.flatten() {
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        empty &= is_dir && remove_empty_folders(&entry.path());
    }
    empty && std::fs::remove_dir(folder).is_ok()
}

/// A live file's name parsed: `part-<run_id>-g<gen>-<uuid>.parquet`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveName<'a> {
    pub run_id: &'a str,
    /// The generation it was written to be published as (G1).
    pub gen: u64,
}

pub fn parse_live_name(name: &str) -> Option<LiveName<'_>> {
    let stem = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    let (rest, _uuid) = stem.rsplit_once('-')?;
    let (run_id, gen) = rest.rsplit_once("-g")?;
    Some(LiveName {
        run_id,
        gen: gen.parse().ok()?,
    })
}

/// The run that wrote a live file.
pub fn writer_run_id(file: &Path) -> Option<&str> {
    parse_live_name(file.filename()?).map(|n| n.run_id)
}

/// A staged file's name parsed: `<job>.<attempt>.parquet` (S1).
pub fn parse_staged_name(name: &str) -> Option<(&str, &str)> {
    let stem = name.strip_suffix(".parquet")?;
    stem.rsplit_once('.')
        .filter(|(job, attempt)| !job.is_empty() && !attempt.is_empty())
}

/// A fresh attempt id: 12 hexadecimal digits, unique enough that two attempts at one page
/// never share a name.
pub fn new_attempt() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn locations_parse() {
        assert_eq!(
            LakeLocation::parse("s3://b/p/q/").unwrap(),
            LakeLocation::S3 {
                bucket: "b".into(),
                prefix: "p/q".into()
            }
        );
        assert_eq!(
            LakeLocation::parse("./lake").unwrap(),
            LakeLocation::Local("./lake".into())
        );
        assert!(LakeLocation::parse("gs://x").is_err());
        assert!(LakeLocation::parse("s3://").is_err());
        assert!(LakeLocation::parse("  ").is_err());
    }

    #[tokio::test]
    async fn deleting_a_local_folder_leaves_no_empty_folders_behind() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::local(dir.path()).unwrap();
        let run = lake.staging_run_dir("deals", "r1");
        for dt in ["2024-01-01", "2024-01-02"] {
            let f = lake.staged_file("deals", "r1", dt, "s00000-p000000", "a");
            lake.store()
                .put(&f, Bytes::from_static(b"x").into())
                .await
                .unwrap();
        }
        let other = lake.staged_file("deals", "r2", "2024-01-01", "s00000-p000000", "a");
        lake.store()
            .put(&other, Bytes::from_static(b"x").into())
            .await
            .unwrap();
        assert_eq!(lake.delete_dir(&run).await.unwrap(), 2);
        let staging = dir.path().join(lake.staging_table_dir("deals").as_ref());
        let left: Vec<_> = std::fs::read_dir(&staging)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(
            left,
            ["run=r2"],
            "the emptied run's folders are gone, the other run's stay"
        );
        // A folder that is missing already is fine (deletes are idempotent).
        assert_eq!(lake.delete_dir(&run).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn paths_and_listing() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::local(dir.path()).unwrap();
        let live = lake.new_live_file("deals", "2024-01-02", "deals-20240102T000000Z-ab", 7);
        assert!(live
            .as_ref()
            .starts_with("deals/dt=2024-01-02/part-deals-20240102T000000Z-ab-g7-"));
        assert_eq!(writer_run_id(&live), Some("deals-20240102T000000Z-ab"));
        assert_eq!(parse_live_name(live.filename().unwrap()).map(|n| n.gen), Some(7));
        assert_eq!(
            parse_live_name("part-deals-r-0123abcd.parquet"),
            None,
            "a name without a generation"
        );
        let staged = lake.staged_file("deals", "r1", "2024-01-02", "s00000-p000000", "a1b2");
        assert_eq!(
            staged.as_ref(),
            "_staging/deals/run=r1/dt=2024-01-02/s00000-p000000.a1b2.parquet"
        );
        assert_eq!(
            parse_staged_name(staged.filename().unwrap()),
            Some(("s00000-p000000", "a1b2"))
        );
        assert_eq!(parse_staged_name("s00000-p000000.parquet"), None, "no attempt");
        for p in [&live, &staged] {
            lake.store()
                .put(p, Bytes::from_static(b"x").into())
                .await
                .unwrap();
        }
        assert_eq!(lake.partitions("deals").await.unwrap(), ["2024-01-02"]);
        let files = lake
            .list_parquet(&lake.partition_dir("deals", "2024-01-02"))
            .await
            .unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(
            lake.delete_dir(&lake.staging_run_dir("deals", "r1"))
                .await
                .unwrap(),
            1
        );
        lake.delete(&staged).await.unwrap();
        assert!(lake.partitions("contacts").await.unwrap().is_empty());
    }
}
