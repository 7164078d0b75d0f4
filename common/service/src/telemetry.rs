//! Metrics out of a service: one recorder behind the `metrics` facade that feeds both a
//! Prometheus exposition (served at `/metrics` when `--metrics-addr` is set) and CloudWatch
//! embedded metric format (EMF) lines written into the JSON logs every
//! `--emf-interval-secs`, which CloudWatch Logs turns into metrics with no agent and no
//! `PutMetricData` call. The series are named in `common::metrics`.
//!
//! EMF: one JSON line per label set, its labels and `service` as the dimensions. A counter
//! is written as its increase since the previous line (CloudWatch sums them), a gauge as its
//! value, a histogram as the values recorded since (at most 100, EMF's limit: more are
//! thinned evenly over their sorted order, which keeps the percentiles).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::layers::FanoutBuilder;
use metrics_util::registry::{AtomicStorage, Registry};
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

use common::clock::{Clock, EpochMs};
use common::pipeline::Pipeline;
use common::ports::SyncState;

use crate::ServiceError;

/// A series' labels, sorted: one EMF line (and dimension set) each.
type Labels = Vec<(String, String)>;

/// EMF's limit on the values of one metric in one line.
const EMF_MAX_VALUES: usize = 100;

/// Where a service's metrics go.
#[derive(Debug, Clone, clap::Args)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics (for example 0.0.0.0:9464); off when
    /// unset.
    #[arg(long, env = "HUBSYNC_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Seconds between CloudWatch embedded-metric-format lines in the JSON logs (0: none).
    #[arg(long, env = "HUBSYNC_EMF_INTERVAL_SECS", default_value_t = 60)]
    pub emf_interval_secs: u64,
    /// CloudWatch namespace of the EMF metrics (the stack's alarms read `hubsync`).
    #[arg(long, env = "HUBSYNC_METRICS_NAMESPACE", default_value = "hubsync")]
    pub metrics_namespace: String,
}

/// The installed recorder's outputs; [`Telemetry::finish`] writes the last EMF lines.
pub struct Telemetry {
    emf: Arc<Emf>,
    emf_on: bool,
}

impl Telemetry {
    /// Installs the recorder (once per process), starts the `/metrics` listener and the EMF
    /// writer; both stop with `shutdown`.
    pub async fn start(
        service: &'static str,
        args: &MetricsArgs,
        shutdown: CancellationToken,
    ) -> Result<Telemetry, ServiceError> {
        let prometheus = PrometheusBuilder::new().build_recorder();
        let handle = prometheus.handle();
        let emf = Arc::new(Emf::new(service, &args.metrics_namespace));
        let fanout = FanoutBuilder::default()
            .add_recorder(prometheus)
            .add_recorder(EmfRecorder(emf.clone()))
            .build();
        if metrics::set_global_recorder(fanout).is_err() {
            tracing::warn!("a metrics recorder was already installed; this one is not used");
        }
        common::metrics::describe();
        if let Some(addr) = args.metrics_addr {
            serve_prometheus(addr, handle.clone(), shutdown.clone()).await?;
        }
        let upkeep = shutdown.clone();
        tokio::spawn(async move {
            // Histograms' buckets drain into the exposition only on upkeep.
            while !upkeep.is_cancelled() {
                handle.run_upkeep();
                tokio::select! {
                    _ = upkeep.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        });
        let emf_on = args.emf_interval_secs > 0;
        if emf_on {
            let (writer, every) = (emf.clone(), Duration::from_secs(args.emf_interval_secs));
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(every) => writer.write(common::clock::SystemClock.now_ms()),
                    }
                }
            });
        }
        Ok(Telemetry { emf, emf_on })
    }

    /// Writes what was recorded since the last EMF lines (call it after the workers stop).
    pub fn finish(&self) {
        if self.emf_on {
            self.emf.write(common::clock::SystemClock.now_ms());
        }
    }
}

async fn serve_prometheus(
    addr: SocketAddr,
    handle: PrometheusHandle,
    shutdown: CancellationToken,
) -> Result<(), ServiceError> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        ServiceError(format!(
            "cannot listen on {addr} for --metrics-addr (HUBSYNC_METRICS_ADDR): {e}; pick a free port"
        ))
    })?;
    let bound = listener.local_addr().unwrap_or(addr);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move {
                handle.run_upkeep();
                (
                    [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    handle.render(),
                )
            }
        }),
    );
    tracing::info!(addr = %bound, "serving Prometheus metrics at /metrics");
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    });
    Ok(())
}

/// Every `every`, until `shutdown`: how long since each table's last commit (from the sync
/// state) and how many active runs are past their lease (from the ledger), for the stack's
/// "no commit" and "stuck run" alarms. One state scan and one ledger read per table.
pub fn watch_commits(p: Pipeline, every: Duration, shutdown: CancellationToken) {
    tokio::spawn(async move {
        while !shutdown.is_cancelled() {
            if let Err(e) = observe_commits(&p).await {
                tracing::warn!(error = %e, "could not read the sync state and runs for the commit metrics");
            }
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(every) => {}
            }
        }
    });
}

async fn observe_commits(p: &Pipeline) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let states = p.state.list().await?;
    let now = p.now_ms();
    let ages = commit_ages(&states, now);
    for (table, secs) in &ages {
        metrics::gauge!(common::metrics::SECONDS_SINCE_COMMIT, "table" => table.clone()).set(*secs);
    }
    if let Some(max) = ages.iter().map(|(_, s)| *s).reduce(f64::max) {
        metrics::gauge!(common::metrics::MAX_SECONDS_SINCE_COMMIT).set(max);
    }
    let mut tables: Vec<String> = p.catalog.tables().iter().map(|t| t.name.clone()).collect();
    tables.extend(states.into_iter().map(|s| s.object_type));
    tables.sort();
    tables.dedup();
    let mut stuck = 0u32;
    for table in &tables {
        if let Some(run) = p.ledger.active_run(table).await? {
            if run.lease_expired(now) {
                tracing::warn!(run_id = %run.run_id, table, status = run.status.as_str(),
                    "run past its lease: its next message or the next sync of the table abandons it");
                stuck += 1;
            }
        }
    }
    metrics::gauge!(common::metrics::RUNS_PAST_LEASE).set(f64::from(stuck));
    Ok(())
}

/// Seconds since each synced table's last commit.
fn commit_ages(states: &[SyncState], now: EpochMs) -> Vec<(String, f64)> {
    states
        .iter()
        .map(|s| {
            (
                s.object_type.clone(),
                (now - s.last_sync_at).max(0) as f64 / 1_000.0,
            )
        })
        .collect()
}

/// The EMF side: every series in atomics, and what the last line reported of each counter.
struct Emf {
    service: &'static str,
    namespace: String,
    registry: Registry<Key, AtomicStorage>,
    units: Mutex<HashMap<String, Unit>>,
    reported: Mutex<HashMap<Key, u64>>,
}

impl Emf {
    fn new(service: &'static str, namespace: &str) -> Self {
        Emf {
            service,
            namespace: namespace.to_string(),
            registry: Registry::atomic(),
            units: Mutex::new(HashMap::new()),
            reported: Mutex::new(HashMap::new()),
        }
    }

    fn write(&self, now_ms: i64) {
        use std::io::Write;
        let lines = self.lines(now_ms);
        let mut err = std::io::stderr().lock();
        for line in lines {
            let _ = writeln!(err, "{line}");
        }
    }

    /// The EMF lines of everything recorded since the previous call.
    fn lines(&self, now_ms: i64) -> Vec<String> {
        let mut groups: BTreeMap<Labels, Vec<(String, Value)>> = BTreeMap::new();
        let labels = |key: &Key| -> Labels {
            let mut l: Labels = key
                .labels()
                .map(|l| (l.key().to_string(), l.value().to_string()))
                .collect();
            l.sort();
            l
        };
        {
            let mut reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
            self.registry.visit_counters(|key, counter| {
                let now = counter.load(std::sync::atomic::Ordering::Relaxed);
                let before = reported.insert(key.clone(), now).unwrap_or(0);
                let metric = (key.name().to_string(), json!(now.saturating_sub(before)));
                groups.entry(labels(key)).or_default().push(metric);
            });
        }
        self.registry.visit_gauges(|key, gauge| {
            let value = f64::from_bits(gauge.load(std::sync::atomic::Ordering::Relaxed));
            groups
                .entry(labels(key))
                .or_default()
                .push((key.name().to_string(), json!(value)));
        });
        self.registry.visit_histograms(|key, bucket| {
            let mut values = Vec::new();
            bucket.clear_with(|chunk| values.extend_from_slice(chunk));
            if !values.is_empty() {
                groups
                    .entry(labels(key))
                    .or_default()
                    .push((key.name().to_string(), json!(thin(values))));
            }
        });
        let units = self.units.lock().unwrap_or_else(|p| p.into_inner());
        groups
            .into_iter()
            .map(|(labels, metrics)| {
                let mut dimensions = vec![Value::from("service")];
                dimensions.extend(labels.iter().map(|(k, _)| Value::from(k.as_str())));
                let definitions: Vec<Value> = metrics
                    .iter()
                    .map(|(name, _)| json!({"Name": name, "Unit": cloudwatch_unit(units.get(name))}))
                    .collect();
                let mut line = Map::new();
                line.insert(
                    "_aws".into(),
                    json!({
                        "Timestamp": now_ms,
                        "CloudWatchMetrics": [{
                            "Namespace": self.namespace,
                            "Dimensions": [dimensions],
                            "Metrics": definitions,
                        }],
                    }),
                );
                line.insert("service".into(), Value::from(self.service));
                for (k, v) in labels {
                    line.insert(k, Value::from(v));
                }
                for (name, value) in metrics {
                    line.insert(name, value);
                }
                Value::Object(line).to_string()
            })
            .collect()
    }

    fn describe(&self, key: KeyName, unit: Option<Unit>) {
        if let Some(unit) = unit {
            let mut units = self.units.lock().unwrap_or_else(|p| p.into_inner());
            units.insert(key.as_str().to_string(), unit);
        }
    }
}

/// At most [`EMF_MAX_VALUES`] of `values`, evenly spread over their sorted order.
fn thin(mut values: Vec<f64>) -> Vec<f64> {
    if values.len() <= EMF_MAX_VALUES {
        return values;
    }
    values.sort_by(f64::total_cmp);
    let step = values.len() as f64 / EMF_MAX_VALUES as f64;
    (0..EMF_MAX_VALUES)
        .map(|i| values[(i as f64 * step) as usize])
        .collect()
}

fn cloudwatch_unit(unit: Option<&Unit>) -> &'static str {
    match unit {
        Some(Unit::Count) => "Count",
        Some(Unit::Seconds) => "Seconds",
        Some(Unit::Milliseconds) => "Milliseconds",
        Some(Unit::Bytes) => "Bytes",
        _ => "None",
    }
}

struct EmfRecorder(Arc<Emf>);

impl Recorder for EmfRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.0.describe(key, unit);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.0.describe(key, unit);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.0.describe(key, unit);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0
            .registry
            .get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0
            .registry
            .get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0
            .registry
            .get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_lines_carry_counter_increases_gauges_and_histogram_values_per_label_set() {
        let emf = Arc::new(Emf::new("consumer", "hubsync"));
        let recorder = EmfRecorder(emf.clone());
        let meta = Metadata::new("t", metrics::Level::INFO, None);
        recorder.describe_counter("records".into(), Some(Unit::Count), "".into());
        let deals = Key::from_parts("records", vec![metrics::Label::new("table", "deals")]);
        recorder.register_counter(&deals, &meta).increment(5);
        recorder
            .register_counter(
                &Key::from_parts("records", vec![metrics::Label::new("table", "contacts")]),
                &meta,
            )
            .increment(2);
        recorder.register_gauge(&Key::from_name("age"), &meta).set(7.5);
        recorder
            .register_histogram(&Key::from_name("latency"), &meta)
            .record(0.25);

        let lines: Vec<Value> = emf
            .lines(1_000)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        let line = |table: Option<&str>| {
            lines
                .iter()
                .find(|l| l.get("table").and_then(Value::as_str) == table)
                .unwrap()
        };
        let d = line(Some("deals"));
        assert_eq!(d["records"], 5);
        assert_eq!(d["service"], "consumer");
        let directive = &d["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "hubsync");
        assert_eq!(directive["Dimensions"], json!([["service", "table"]]));
        assert_eq!(
            directive["Metrics"],
            json!([{"Name": "records", "Unit": "Count"}])
        );
        assert_eq!(d["_aws"]["Timestamp"], 1_000);
        assert_eq!(line(Some("contacts"))["records"], 2);
        let plain = line(None);
        assert_eq!(plain["age"], 7.5);
        assert_eq!(plain["latency"], json!([0.25]));
        assert_eq!(
            plain["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["service"]])
        );

        // The next line reports what happened since: a counter's increase, no old samples.
        recorder.register_counter(&deals, &meta).increment(1);
        let next: Vec<Value> = emf
            .lines(2_000)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let d = next.iter().find(|l| l["table"] == "deals").unwrap();
        assert_eq!(d["records"], 1);
        let plain = next.iter().find(|l| l.get("table").is_none()).unwrap();
        assert!(plain.get("latency").is_none(), "{plain}");
    }

    #[test]
    fn commit_ages_count_from_each_tables_last_sync() {
        let state = |t: &str, at| SyncState {
            object_type: t.into(),
            last_sync_at: at,
            last_created_at: None,
            last_modified_at: None,
            records_processed: 0,
        };
        let ages = commit_ages(&[state("deals", 10_000), state("owners", 95_000)], 100_000);
        assert_eq!(ages, vec![("deals".into(), 90.0), ("owners".into(), 5.0)]);
    }

    #[test]
    fn more_values_than_emf_takes_are_thinned_over_their_order() {
        let thinned = thin((0..1_000).rev().map(f64::from).collect());
        assert_eq!(thinned.len(), EMF_MAX_VALUES);
        assert_eq!(thinned[0], 0.0);
        assert_eq!(thinned[50], 500.0);
        assert!(thinned.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(thin(vec![3.0, 1.0]), vec![3.0, 1.0]);
    }
}
