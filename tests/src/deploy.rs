//! One AWS-mode deployment on the moto emulator, under IAM: the stack of
//! `infra/cloudformation.yaml`, each service binary signing with the key of a user holding only
//! its own policy, the `hubsync` CLI with the operator's (and `infra` commands with the
//! administrator's), and an in-process pipeline (the administrator's) on the same queues and
//! tables.

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use aws::AwsNames;
use common::catalog::Catalog;
use common::clock;
use common::pipeline::{Pipeline, Settings};
use common::ports::RunStatus;

use crate::binary::{binary, hubsync_binary};

/// Services and the CLI of one AWS-mode deployment on the emulator.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// The emulator's endpoint and credentials ([`crate::moto::Moto::aws_env`]).
    pub aws: Vec<(&'static str, String)>,
    /// s3://bucket/prefix
    pub lake: String,
    pub prefix: String,
    /// HubSpot's (the simulator's) base URL.
    pub hubspot: String,
    /// Where the services' logs go (appended).
    pub log: std::path::PathBuf,
    /// Settings over the defaults below, for every process.
    pub env: Vec<(String, String)>,
    /// Every IAM user's key by name: `admin` and the roles of [`crate::iam::ROLES`].
    pub keys: std::collections::BTreeMap<String, crate::moto::AwsKeys>,
}

impl Deployment {
    /// A deployment named `prefix` (queues, tables, bucket `lake-<prefix>`) on the emulator,
    /// its services logging to `log`, with `env` over the defaults. Deploys the stack and
    /// enforces IAM (once per emulator), then points this process at the emulator as its
    /// administrator.
    pub fn on(
        moto: &crate::moto::Moto,
        hubspot: &str,
        prefix: &str,
        log: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let keys = crate::iam::enforce(moto, prefix, &format!("lake-{prefix}"), "data")?;
        moto.export_env();
        Ok(Deployment {
            aws: moto.aws_env(),
            lake: format!("s3://lake-{prefix}/data"),
            prefix: prefix.into(),
            hubspot: hubspot.into(),
            log: log.to_path_buf(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            keys,
        })
    }

    /// The environment of a process signing as IAM user `user`.
    pub fn env(&self, cmd: &mut Command, user: &str) {
        cmd.envs(self.aws.iter().map(|(k, v)| (*k, v.as_str())));
        if let Some(k) = self.keys.get(user) {
            cmd.env("AWS_ACCESS_KEY_ID", &k.access_key_id)
                .env("AWS_SECRET_ACCESS_KEY", &k.secret_access_key);
        }
        cmd.env("HUBSYNC_LAKE", &self.lake)
            .env("HUBSYNC_PREFIX", &self.prefix)
            .env("HUBSPOT_BASE_URL", &self.hubspot)
            .env("HUBSYNC_MAX_RECEIVE_COUNT", "2")
            .env("HUBSYNC_MAX_RETRY_DELAY_MS", "300")
            .env("HUBSYNC_VISIBILITY_SECS", "30")
            .env("HUBSYNC_HUBSPOT_RETRIES", "1")
            .env("HUBSYNC_RATE_LIMIT", "0")
            .env("HUBSYNC_SEARCH_RATE", "0")
            .env_remove("HUBSPOT_TOKEN")
            .env_remove(common::failpoint::ENV)
            .env_remove("AWS_PROFILE")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    }

    /// Starts a service binary (producer, consumer or merger).
    pub fn service(&self, name: &str) -> anyhow::Result<Service> {
        self.service_with(name, &[])
    }

    /// Starts a service binary with extra environment (a failpoint, say).
    pub fn service_with(&self, name: &str, extra: &[(&str, &str)]) -> anyhow::Result<Service> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = Command::new(binary(name, &format!("hubsync-{name}"))?);
        self.env(&mut cmd, name);
        Ok(Service(
            cmd.env("HUBSYNC_CONCURRENCY", "4")
                .envs(extra.iter().copied())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?,
        ))
    }

    /// Runs the CLI as the operator (`infra` commands as the administrator, who provisions).
    pub fn hubsync(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        let mut cmd = Command::new(hubsync_binary()?);
        let user = if args.first() == Some(&"infra") {
            "admin"
        } else {
            "operator"
        };
        self.env(&mut cmd, user);
        Ok(cmd.args(args).stdin(Stdio::null()).output()?)
    }

    pub fn hubsync_ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.hubsync(args)?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        anyhow::ensure!(
            out.status.success(),
            "hubsync {args:?} failed: {}\n{stdout}\n--- services ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log)
        );
        Ok(stdout)
    }

    /// Syncs `tables` at once (one `hubsync sync --wait` each) and returns their runs.
    pub async fn sync_all(&self, p: &Pipeline, tables: &[&str]) -> anyhow::Result<Vec<common::ports::Run>> {
        let mut children = Vec::new();
        for t in tables {
            let mut cmd = Command::new(hubsync_binary()?);
            self.env(&mut cmd, "operator");
            cmd.args(["sync", "--table", t, "--wait", "--wait-secs", "600"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            children.push((*t, cmd.spawn()?));
        }
        for (t, child) in children {
            let out = child.wait_with_output()?;
            anyhow::ensure!(
                out.status.success(),
                "sync of {t} failed: {}{}\n--- services ---\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                tail(&self.log)
            );
        }
        let mut runs = Vec::new();
        for t in tables {
            let run = p.ledger.list_runs(Some(t), 1).await?.remove(0);
            assert_eq!(run.status, RunStatus::Committed, "{t}");
            runs.push(run);
        }
        Ok(runs)
    }
}

/// The last 30 lines of a log, then its last 20 warnings and errors (heartbeats fill a tail).
pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let last = |lines: Vec<&str>, n: usize| lines[lines.len().saturating_sub(n)..].join("\n");
    let problems: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\""))
        .collect();
    format!(
        "{}\n--- last warnings and errors ---\n{}",
        last(text.lines().collect(), 30),
        last(problems, 20)
    )
}

/// An in-process pipeline on the deployment's queues and tables (lake under `data`).
pub async fn aws_pipeline(lake_bucket: &str, prefix: &str) -> anyhow::Result<Pipeline> {
    let names = AwsNames {
        prefix: prefix.into(),
        ..Default::default()
    };
    Ok(aws::pipeline(
        &names,
        lake_bucket,
        "data",
        Catalog::default(),
        clock::system(),
        Settings::default(),
    )
    .await?)
}

/// A service process, SIGKILLed when dropped unless it has exited: a test that fails half-way
/// must not leave services behind, polling an emulator that is gone.
#[derive(Debug)]
pub struct Service(pub Child);

impl Deref for Service {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for Service {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// SIGTERM to each service; each must finish the message in hand and exit 0.
pub fn stop(children: Vec<Service>) -> anyhow::Result<()> {
    for mut c in children {
        // SIGTERM: the services finish the message in hand and exit 0.
        let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
        let status = c.wait()?;
        assert!(status.success(), "a service did not stop cleanly: {status}");
    }
    Ok(())
}
