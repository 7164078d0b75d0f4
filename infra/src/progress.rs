//! Progress a person can watch while `hubsync run` or `hubsync sync --wait` waits: one line per
//! table with the records fetched of the plan's count, the rate, the partitions merged and an
//! ETA. On a terminal the lines are live (indicatif redraws them in place, and log lines are
//! written above them, see [`crate::logging`]); otherwise a plain line is printed when a
//! table's status changes and at most every [`PLAIN_EVERY`] while it moves. Both go to stderr:
//! stdout keeps the report a script reads.

use std::collections::{BTreeMap, VecDeque};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use common::ports::{Run, RunStatus};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ProgressMode {
    /// Live lines (redrawn in place) when stderr is a terminal, plain lines otherwise.
    #[default]
    Auto,
    /// A plain line per change, never redrawn, even on a terminal.
    Plain,
    /// Nothing but the closing report.
    Off,
}

/// Plain lines are printed at most this often per table while only the counts move.
pub const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// The rate is measured over the last this much of samples.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// What one table's line says.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    /// The run's status, or what the table waits for before a run exists.
    pub status: String,
    pub records: i64,
    /// The plan's count, once planned and when the plan counted.
    pub expected: Option<u64>,
    /// Records per second over the last [`RATE_WINDOW`], once measurable.
    pub rate: Option<f64>,
    /// Until fetching ends at `rate`: only while fetching, with a count and a rate.
    pub eta: Option<Duration>,
    pub merged: i64,
    pub merges: i64,
}

impl View {
    /// The line's text after the table's name.
    pub fn line(&self) -> String {
        let mut parts = vec![format!("{:<9}", self.status)];
        parts.push(match self.expected {
            Some(n) => format!("{} of {} records", thousands(self.records), thousands(n as i64)),
            None => format!("{} records", thousands(self.records)),
        });
        if let Some(r) = self.rate {
            parts.push(format!("{}/s", thousands(r.round() as i64)));
        }
        if let Some(eta) = self.eta {
            parts.push(format!("ETA {}", clock(eta)));
        }
        if self.merges > 0 {
            parts.push(format!(
                "{} of {} partitions merged",
                thousands(self.merged),
                thousands(self.merges)
            ));
        }
        parts.join("  ")
    }
}

/// One table's samples of its record count, for the rate.
#[derive(Debug, Default)]
struct Rate {
    samples: VecDeque<(Instant, i64)>,
}

impl Rate {
    fn sample(&mut self, at: Instant, records: i64) -> Option<f64> {
        self.samples.push_back((at, records));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| at.duration_since(*t) > RATE_WINDOW)
            && self.samples.len() > 2
        {
            self.samples.pop_front();
        }
        let (t0, r0) = *self.samples.front()?;
        let secs = at.duration_since(t0).as_secs_f64();
        (secs >= 1.0).then(|| (records - r0).max(0) as f64 / secs)
    }
}

/// The view of `run` given its rate.
pub fn view(run: &Run, rate: Option<f64>) -> View {
    let fetching = matches!(run.status, RunStatus::Planning | RunStatus::Fetching);
    let eta = match (fetching, run.expected_records, rate) {
        (true, Some(n), Some(r)) if r > 0.0 => {
            let left = (n as i64 - run.records).max(0) as f64;
            Some(Duration::from_secs_f64(left / r))
        }
        _ => None,
    };
    View {
        status: run.status.as_str().to_string(),
        records: run.records,
        expected: run.expected_records,
        rate: rate.filter(|_| fetching),
        eta,
        merged: run.merges_counted - run.merges_outstanding,
        merges: run.merges_counted,
    }
}

enum Output {
    Live {
        bars: BTreeMap<String, ProgressBar>,
    },
    Plain {
        last: BTreeMap<String, (String, String, Instant)>,
    },
    Off,
}

/// The progress of a set of tables' runs.
pub struct Progress {
    output: Output,
    rates: BTreeMap<String, Rate>,
    width: usize,
}

impl Progress {
    pub fn new(tables: &[String], mode: ProgressMode) -> Progress {
        let live = match mode {
            ProgressMode::Auto => std::io::stderr().is_terminal(),
            ProgressMode::Plain => false,
            ProgressMode::Off => {
                return Progress {
                    output: Output::Off,
                    rates: BTreeMap::new(),
                    width: 0,
                }
            }
        };
        let width = tables.iter().map(String::len).max().unwrap_or(0);
        let output = if live {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4));
            let style = ProgressStyle::with_template(&format!("{{prefix:<{width}}} {{bar:24}} {{msg}}"))
                .expect("a valid template")
                .progress_chars("█▉▊▋▌▍▎▏ ");
            let bars = tables
                .iter()
                .map(|t| {
                    let bar = multi.add(ProgressBar::new(1).with_style(style.clone()));
                    bar.set_prefix(t.clone());
                    bar.set_message("waiting for the producer");
                    (t.clone(), bar)
                })
                .collect();
            crate::logging::set_live_progress(Some(multi));
            Output::Live { bars }
        } else {
            Output::Plain {
                last: BTreeMap::new(),
            }
        };
        Progress {
            output,
            rates: BTreeMap::new(),
            width,
        }
    }

    /// Shows `run`, the latest read of `table`'s run.
    pub fn update(&mut self, table: &str, run: &Run) {
        if matches!(self.output, Output::Off) {
            return;
        }
        let rate = self
            .rates
            .entry(table.to_string())
            .or_default()
            .sample(Instant::now(), run.records);
        let v = view(run, rate);
        self.show(table, run, &v, false);
    }

    /// Shows the last read of `table`'s run, or `problem` when no run was made.
    pub fn finish(&mut self, table: &str, run: Option<&Run>, problem: Option<&str>) {
        // A run that ended shows its status (why it did not commit is in the report below);
        // a request that made no run shows why.
        let v = match run {
            Some(run) => view(run, None),
            None => View {
                status: problem.unwrap_or("no run").to_string(),
                records: 0,
                expected: None,
                rate: None,
                eta: None,
                merged: 0,
                merges: 0,
            },
        };
        match run {
            Some(run) => self.show(table, run, &v, true),
            None => self.show_text(table, &v.status, true),
        }
    }

    fn show(&mut self, table: &str, run: &Run, v: &View, done: bool) {
        let line = v.line();
        if let Output::Live { bars, .. } = &mut self.output {
            if let Some(bar) = bars.get(table) {
                // The bar is the records against the plan's count; a run that read more
                // (archived records, records created meanwhile) or planned no count fills it.
                let len = match run.expected_records {
                    Some(n) => n.max(run.records.max(0) as u64),
                    None => run.records.max(1) as u64,
                };
                let fetched = !matches!(run.status, RunStatus::Planning | RunStatus::Fetching);
                bar.set_length(len.max(1));
                bar.set_position(if fetched {
                    len.max(1)
                } else {
                    run.records.max(0) as u64
                });
                bar.set_message(line);
                if done {
                    bar.finish();
                }
            }
            return;
        }
        self.show_text(table, &line, done);
    }

    fn show_text(&mut self, table: &str, line: &str, done: bool) {
        let width = self.width;
        match &mut self.output {
            Output::Live { bars, .. } => {
                if let Some(bar) = bars.get(table) {
                    bar.set_message(line.to_string());
                    if done {
                        bar.finish();
                    }
                }
            }
            Output::Plain { last } => {
                let now = Instant::now();
                let status = line.split_whitespace().next().unwrap_or_default().to_string();
                let due = match last.get(table) {
                    None => true,
                    Some((s, l, at)) => {
                        done || *s != status || (l != line && now.duration_since(*at) >= PLAIN_EVERY)
                    }
                };
                if due {
                    eprintln!("{table:<width$}  {line}");
                    last.insert(table.to_string(), (status, line.to_string(), now));
                }
            }
            Output::Off => {}
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // The lines stay on the screen as last drawn, above the report.
        if let Output::Live { bars, .. } = &self.output {
            for bar in bars.values() {
                if !bar.is_finished() {
                    bar.abandon();
                }
            }
            crate::logging::set_live_progress(None);
        }
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// A duration as `1:02:03` or `2:03`.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(status: RunStatus, records: i64, expected: Option<u64>) -> Run {
        Run {
            status,
            records,
            expected_records: expected,
            merges_counted: 40,
            merges_outstanding: 30,
            ..Run::sample("r", "deals", 0)
        }
    }

    #[test]
    fn a_fetching_line_has_the_count_of_the_plan_the_rate_the_eta_and_the_merges() {
        let v = view(&run(RunStatus::Fetching, 12_000, Some(60_000)), Some(1_200.0));
        assert_eq!(v.eta, Some(Duration::from_secs(40)));
        assert_eq!(
            v.line(),
            "fetching   12,000 of 60,000 records  1,200/s  ETA 0:40  10 of 40 partitions merged"
        );
    }

    #[test]
    fn a_merging_run_has_no_rate_or_eta_and_an_uncounted_plan_no_total() {
        let v = view(&run(RunStatus::Merging, 60_100, None), Some(900.0));
        assert_eq!((v.rate, v.eta), (None, None));
        assert_eq!(v.line(), "merging    60,100 records  10 of 40 partitions merged");
    }

    #[test]
    fn the_rate_is_measured_over_the_recent_samples_once_a_second_has_passed() {
        let mut r = Rate::default();
        let t0 = Instant::now();
        assert_eq!(r.sample(t0, 0), None);
        assert_eq!(r.sample(t0 + Duration::from_millis(500), 100), None);
        assert_eq!(r.sample(t0 + Duration::from_secs(2), 1_000), Some(500.0));
        // 20 s later only the recent samples count: 1,000 records in the last 18 s.
        let rate = r.sample(t0 + Duration::from_secs(20), 2_000).unwrap();
        assert!((rate - 1_000.0 / 18.0).abs() < 1e-9, "{rate}");
    }

    #[test]
    fn numbers_and_times_read_like_a_person_writes_them() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(-1_234_567), "-1,234,567");
        assert_eq!(clock(Duration::from_secs(59)), "0:59");
        assert_eq!(clock(Duration::from_secs(3_723)), "1:02:03");
    }
}
