//! Logging: human-readable for the CLI, JSON lines for services (`--log-format json`).
//! `RUST_LOG` filters as usual; the default is `info`. While live progress lines are drawn
//! ([`crate::progress`]), each log line is written above them, not through them.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

use indicatif::MultiProgress;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| Stderr);
    let _ = match format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn live() -> &'static Mutex<Option<MultiProgress>> {
    static LIVE: OnceLock<Mutex<Option<MultiProgress>>> = OnceLock::new();
    LIVE.get_or_init(|| Mutex::new(None))
}

/// Routes log lines around `progress` while it is drawn (`None` when it is gone).
pub fn set_live_progress(progress: Option<MultiProgress>) {
    *live().lock().unwrap_or_else(|e| e.into_inner()) = progress;
}

/// stderr, with the live progress lines (if any) lifted while a log line is written. The fmt
/// layer writes each event in one `write_all`, so a line is never split around a redraw.
struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let progress = live().lock().unwrap_or_else(|e| e.into_inner()).clone();
        match progress {
            Some(multi) => multi
                .suspend(|| std::io::stderr().write_all(buf))
                .map(|_| buf.len()),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
