//! The progress a person watches: `hubsync run` on a terminal draws one live line per table
//! (tmux gives it a pseudo-terminal and `capture-pane` reads the screen as a person sees it);
//! with stderr not a terminal it prints plain lines instead.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hubsync_tests::binary::hubsync_binary;
use hubsync_tests::harness::sim_config;
use sim::ObjectType;

/// tmux, installed with apt-get when the machine lacks it (as the AWS tests install moto).
fn tmux() -> anyhow::Result<&'static str> {
    let found = |c: &str| {
        Command::new(c)
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !found("tmux") {
        let status = Command::new("sh")
            .args([
                "-c",
                "DEBIAN_FRONTEND=noninteractive apt-get install -y -q tmux >&2 || \
                 (apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q tmux >&2)",
            ])
            .status()?;
        anyhow::ensure!(
            status.success() && found("tmux"),
            "tmux is missing and apt-get could not install it"
        );
    }
    Ok("tmux")
}

/// A tmux session running one command on a terminal of 140 × 30; killed when dropped.
struct Session {
    name: String,
}

impl Session {
    fn start(command: &str) -> anyhow::Result<Session> {
        let name = format!("hubsync-progress-{}", std::process::id());
        let status = Command::new(tmux()?)
            .args(["new-session", "-d", "-s", &name, "-x", "140", "-y", "30", command])
            .env("TERM", "xterm-256color")
            .status()?;
        anyhow::ensure!(status.success(), "tmux new-session failed");
        Ok(Session { name })
    }

    /// The screen as it is now.
    fn frame(&self) -> anyhow::Result<String> {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()?;
        anyhow::ensure!(out.status.success(), "tmux capture-pane failed");
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status();
    }
}

/// The line of `frame` drawn for `table`, if any.
fn line_of<'a>(frame: &'a str, table: &str) -> Option<&'a str> {
    frame
        .lines()
        .find(|l| l.split_whitespace().next() == Some(table) && l.contains(" records"))
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubsync_run_on_a_terminal_draws_one_live_line_per_table_and_plain_lines_elsewhere(
) -> anyhow::Result<()> {
    let mut config = sim_config(3000, &[ObjectType::Deals, ObjectType::Contacts]);
    // 30 list pages a table at 150 ms each: a few seconds of fetching to watch.
    config.runtime.latency_ms = 150;
    let server = sim::start(config).await?;
    let base = server.base_url();
    let dir = tempfile::tempdir()?;
    let bin = hubsync_binary()?;

    // On a terminal: live lines, redrawn in place.
    let lake = dir.path().join("live");
    let command = format!(
        "env -u HUBSPOT_TOKEN RUST_LOG=warn {} run --lake {} --hubspot-url {base} --tables deals,contacts \
         --consumers 2; echo EXIT=$?; sleep 600",
        shell_quote(&bin),
        shell_quote(&lake)
    );
    let session = Session::start(&command)?;
    let started = Instant::now();
    let mut frames: Vec<String> = Vec::new();
    let last = loop {
        let frame = session.frame()?;
        if frame.contains("EXIT=") {
            break frame;
        }
        if frames.last() != Some(&frame) {
            frames.push(frame);
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(180),
            "hubsync run did not end in 180 s; screen:\n{}",
            frames.last().cloned().unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(last.contains("EXIT=0"), "hubsync run failed; screen:\n{last}");

    // A frame mid-fetch: a line per table with the count of the plan, a rate and an ETA,
    // each on one screen line (redrawn, not scrolled), never two lines for one table.
    let live = frames
        .iter()
        .find(|f| {
            line_of(f, "deals")
                .is_some_and(|l| l.contains("fetching") && l.contains("/s") && l.contains("ETA"))
        })
        .unwrap_or_else(|| {
            panic!(
                "no frame showed deals fetching with a rate and an ETA; frames:\n{}",
                frames.join("\n----\n")
            )
        });
    println!("a live frame:\n{live}");
    for t in ["deals", "contacts"] {
        let l = line_of(live, t).unwrap_or_else(|| panic!("no line for {t} in:\n{live}"));
        assert!(
            l.contains(" of 3,000 records"),
            "{t}: the plan's count is shown: {l}"
        );
        // The bar's cells: full blocks and eighths (a bar under one cell is a partial block).
        assert!(
            l.contains(|c| "█▉▊▋▌▍▎▏".contains(c)) || l.contains(" 0 of"),
            "{t}: a bar: {l}"
        );
    }
    for f in &frames {
        for t in ["deals", "contacts"] {
            let n = f
                .lines()
                .filter(|l| l.split_whitespace().next() == Some(t) && l.contains(" records"))
                .count();
            assert!(
                n <= 1,
                "{t} drawn {n} times in one frame (scrolled, not redrawn):\n{f}"
            );
        }
    }
    // The last frame: each table committed with all it fetched, then the report.
    for t in ["deals", "contacts"] {
        let l = line_of(&last, t).unwrap_or_else(|| panic!("no line for {t} at the end:\n{last}"));
        assert!(
            l.contains("committed") && l.contains("3,000 of 3,000 records"),
            "{t}: {l}"
        );
        assert!(l.contains("partitions merged"), "{t}: {l}");
    }
    assert!(
        last.contains("table ") && last.contains("partitions"),
        "the report follows:\n{last}"
    );
    println!("the last frame:\n{}", last.trim_end());
    drop(session);

    // Not a terminal: plain lines on stderr, one per change of status at least.
    let out = Command::new(&bin)
        .args(["run", "--lake"])
        .arg(dir.path().join("plain"))
        .args(["--hubspot-url", &base, "--tables", "deals,contacts"])
        .env_remove("HUBSPOT_TOKEN")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains('\x1b') && !stderr.contains('\r'),
        "no terminal codes when not a terminal:\n{stderr}"
    );
    for t in ["deals", "contacts"] {
        let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with(t)).collect();
        assert!(
            lines
                .iter()
                .any(|l| l.contains("fetching") && l.contains("of 3,000 records")),
            "{t}: a fetching line:\n{stderr}"
        );
        assert!(
            lines
                .last()
                .is_some_and(|l| l.contains("committed") && l.contains("3,000 of 3,000 records")),
            "{t}: ends committed:\n{stderr}"
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("table "),
        "stdout keeps only the report:\n{stdout}"
    );
    server.shutdown().await?;
    Ok(())
}
