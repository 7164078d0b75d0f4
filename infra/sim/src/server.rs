//! Wiring: the shared state, the router, and the running server ([`start`], [`SimServer`]).

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::Router;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wire::ObjectRecord;

use super::catalog::ObjectType;
use super::catalog::PropSpec;
use super::config::{ConfigPatch, RuntimeConfig, Secret, SimConfig, SimError};
use super::faults::FaultDice;
use super::limits::Limits;
use super::mutate::{MutateRequest, MutateResponse};
use super::portal::{render, Portal, PortalSpec, Rec};
use super::rng::SplitMix64;
use super::stats::{SimStats, Stats};
use super::values::ValueCtx;
use super::{admin, crm, gate};

/// Where the CRM API is served; every CRM route is built from it.
pub const CRM_BASE_PATH: &str = "/crm/v3";
/// Where the v4 associations API is served.
pub const CRM_V4_BASE_PATH: &str = "/crm/v4";
/// The simulator's own endpoints (no auth, no limits, no faults).
pub const SIM_BASE_PATH: &str = "/_sim";

/// The wall clock in epoch milliseconds: the "now" of mutations and search lag.
pub fn wall_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct AppState {
    portal: RwLock<Portal>,
    runtime: RwLock<RuntimeConfig>,
    pub token: Option<Secret>,
    pub limits: Limits,
    pub faults: FaultDice,
    jitter: Mutex<SplitMix64>,
    /// Serialises mutations and holds their generator, so a sequence of mutations picks
    /// the same records on every run with the same seed.
    mutations: tokio::sync::Mutex<SplitMix64>,
    pub stats: Stats,
    /// Ordinary requests accepted, for `X-HubSpot-RateLimit-Daily-Remaining`.
    pub daily_used: AtomicU64,
}

impl AppState {
    pub fn new(config: &SimConfig, portal: Portal) -> Self {
        AppState {
            portal: RwLock::new(portal),
            runtime: RwLock::new(config.runtime),
            token: config.token.clone(),
            limits: Limits::default(),
            faults: FaultDice::new(config.seed),
            jitter: Mutex::new(SplitMix64::new(config.seed ^ 0x7177)),
            mutations: tokio::sync::Mutex::new(SplitMix64::new(config.seed ^ 0x3077)),
            stats: Stats::default(),
            daily_used: AtomicU64::new(0),
        }
    }

    // A panic while a lock is held cannot leave a record half-written (records are Copy
    // and written whole), so a poisoned lock is still safe to use.
    pub fn read_portal(&self) -> RwLockReadGuard<'_, Portal> {
        self.portal.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_portal(&self) -> RwLockWriteGuard<'_, Portal> {
        self.portal.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn runtime(&self) -> RuntimeConfig {
        *self.runtime.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn configure(&self, patch: &ConfigPatch) -> Result<RuntimeConfig, SimError> {
        let mut current = self.runtime.write().unwrap_or_else(|e| e.into_inner());
        *current = current.patched(patch)?;
        Ok(*current)
    }

    /// `base` with uniform ±25% jitter.
    pub fn jittered(&self, base: Duration) -> Duration {
        let u = self.jitter.lock().unwrap_or_else(|e| e.into_inner()).unit();
        base.mul_f64(0.75 + 0.5 * u)
    }

    /// Resolves a `/_sim/*` type name (a bare custom object name too) the portal serves.
    pub fn admin_type(&self, raw: &str) -> Result<ObjectType, SimError> {
        self.read_portal()
            .resolve_admin(raw)
            .ok_or_else(|| SimError::UnknownObjectType(raw.to_string()))
    }

    pub async fn mutate(&self, req: &MutateRequest) -> Result<MutateResponse, SimError> {
        let t = self.admin_type(&req.object_type)?;
        let mut rng = self.mutations.lock().await;
        // U1 wants each stamp after the previous mutation's: wait for the clock to move
        // past it (a millisecond at most) rather than stamp in the future.
        let last = self.read_portal().last_stamp_ms;
        for _ in 0..50 {
            if wall_ms() > last {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let lag = self.runtime().search_lag_ms;
        self.write_portal()
            .mutate(t, req, wall_ms(), lag, &mut rng)
            .map_err(|reason| SimError::InvalidConfig {
                field: "property",
                reason,
            })
    }

    /// Every live record of a type with every property the properties endpoint lists (archived
    /// properties left out), in id order, and those properties.
    pub fn truth_parts(&self, t: ObjectType) -> (Vec<Rec>, ValueCtx, Vec<&'static PropSpec>) {
        let portal = self.read_portal();
        let props = portal.schema(t).live().collect();
        (portal.live_records(t), portal.value_ctx(t), props)
    }

    /// Every link between live records of `from` and `to` as a batch read from `from` answers.
    pub fn links_truth(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Vec<(u64, Vec<wire::AssociationTo>)>, SimError> {
        let (from, to) = (self.admin_type(from)?, self.admin_type(to)?);
        Ok(self.read_portal().links_truth(from, to))
    }

    /// Every owner, archived ones too.
    pub fn owners_truth(&self) -> Vec<wire::Owner> {
        self.read_portal().owners.clone()
    }

    /// The pipelines of deals or tickets.
    pub fn pipelines_truth(&self, object_type: &str) -> Result<Vec<wire::Pipeline>, SimError> {
        let t = self.admin_type(object_type)?;
        Ok(self.read_portal().pipelines(t).cloned().unwrap_or_default())
    }

    /// Every live record of a type with all its (unarchived) properties, in id order.
    pub fn truth(&self, object_type: &str) -> Result<Vec<ObjectRecord>, SimError> {
        let t = self.admin_type(object_type)?;
        let (records, ctx, props) = self.truth_parts(t);
        Ok(records.iter().map(|r| render(&ctx, r, &props)).collect())
    }
}

/// The HTTP routes: the CRM API behind the gate, `/_sim` beside it.
pub fn router(state: Arc<AppState>) -> Router {
    let crm = Router::new()
        .route(
            &format!("{CRM_BASE_PATH}/objects/{{object_type}}"),
            get(crm::list),
        )
        .route(
            &format!("{CRM_BASE_PATH}/objects/{{object_type}}/search"),
            post(crm::search),
        )
        .route(
            &format!("{CRM_BASE_PATH}/objects/{{object_type}}/batch/read"),
            post(crm::batch_read),
        )
        .route(
            &format!("{CRM_BASE_PATH}/properties/{{object_type}}"),
            get(crm::properties),
        )
        .route(&format!("{CRM_BASE_PATH}/schemas"), get(crm::schemas))
        .route(
            &format!("{CRM_V4_BASE_PATH}/associations/{{from}}/{{to}}/batch/read"),
            post(crm::associations),
        )
        .route(&format!("{CRM_BASE_PATH}/owners"), get(crm::owners))
        .route(
            &format!("{CRM_BASE_PATH}/pipelines/{{object_type}}"),
            get(crm::pipelines),
        )
        .route(
            &format!("{CRM_BASE_PATH}/schemas/{{object_type}}"),
            get(crm::schema),
        )
        .fallback(crm::not_found)
        .layer(from_fn_with_state(state.clone(), gate::gate))
        .with_state(state.clone());
    Router::new().nest(SIM_BASE_PATH, admin::router(state)).merge(crm)
}

/// A running simulator. Dropping it stops the server; [`SimServer::shutdown`] also waits.
#[derive(Debug)]
pub struct SimServer {
    addr: SocketAddr,
    state: Arc<AppState>,
    cancel: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// Generates the portal and starts serving it.
pub async fn start(config: SimConfig) -> Result<SimServer, SimError> {
    config.validate()?;
    let spec = PortalSpec {
        seed: config.seed,
        records_per_type: config.records_per_type,
        object_types: config.object_types.clone(),
        portal_id: config.portal_id,
        custom_properties: config.custom_properties.clone(),
        custom_objects: config.custom_objects.clone(),
        uncastable_per_mille: config.uncastable_per_mille,
    };
    let portal = tokio::task::spawn_blocking(move || Portal::generate(&spec))
        .await
        .map_err(|e| SimError::Server(format!("generating the portal: {e}")))?;
    let addr = SocketAddr::new(config.host, config.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| SimError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| SimError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    let state = Arc::new(AppState::new(&config, portal));
    let cancel = CancellationToken::new();
    let app = router(state.clone());
    let stop = cancel.clone().cancelled_owned();
    let task = tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(stop).await });
    tracing::info!(%addr, seed = config.seed, records = config.records_per_type, "simulator listening");
    Ok(SimServer {
        addr,
        state,
        cancel,
        task: Some(task),
    })
}

/// A handle on a running simulator's portal, for tasks that change it while the test holds the
/// server (cheap to clone).
#[derive(Clone)]
pub struct SimHandle {
    state: Arc<AppState>,
}

impl SimHandle {
    /// Changes records now, as `POST /_sim/mutate` does.
    pub async fn mutate(&self, req: &MutateRequest) -> Result<MutateResponse, SimError> {
        self.state.mutate(req).await
    }
}

impl SimServer {
    /// A handle on the portal.
    pub fn handle(&self) -> SimHandle {
        SimHandle {
            state: self.state.clone(),
        }
    }

    /// `http://HOST:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stats(&self) -> SimStats {
        self.state.stats.snapshot()
    }

    pub fn reset_stats(&self) {
        self.state.stats.reset()
    }

    pub fn runtime_config(&self) -> RuntimeConfig {
        self.state.runtime()
    }

    /// Changes limits, latency, faults or search lag, as `POST /_sim/config` does.
    pub fn configure(&self, patch: &ConfigPatch) -> Result<RuntimeConfig, SimError> {
        self.state.configure(patch)
    }

    /// Changes records now, as `POST /_sim/mutate` does.
    pub async fn mutate(&self, req: &MutateRequest) -> Result<MutateResponse, SimError> {
        self.state.mutate(req).await
    }

    /// Every live record of a type with all its unarchived properties, in id order. The type
    /// is a name or type id; a custom object's schema name, type id or fully qualified name.
    pub fn truth(&self, object_type: &str) -> Result<Vec<ObjectRecord>, SimError> {
        self.state.truth(object_type)
    }

    /// Every link between live records of `from` and `to` (names or type ids), by `from` id.
    pub fn links_truth(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Vec<(u64, Vec<wire::AssociationTo>)>, SimError> {
        self.state.links_truth(from, to)
    }

    /// Every owner of the portal, archived ones too.
    pub fn owners_truth(&self) -> Vec<wire::Owner> {
        self.state.owners_truth()
    }

    /// The pipelines of `deals` or `tickets`, stages in display order.
    pub fn pipelines_truth(&self, object_type: &str) -> Result<Vec<wire::Pipeline>, SimError> {
        self.state.pipelines_truth(object_type)
    }

    /// Stops accepting, lets in-flight requests finish, and waits for the server task.
    pub async fn shutdown(mut self) -> Result<(), SimError> {
        self.cancel.cancel();
        match self.task.take() {
            Some(task) => match task.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(SimError::Server(e.to_string())),
                Err(e) => Err(SimError::Server(e.to_string())),
            },
            None => Ok(()),
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
