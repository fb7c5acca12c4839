//! The webhook dispatcher: delivers each webhook's events from the
//! PostgreSQL archive, in version order, at least once.
//!
//! Work is found two ways. The writer lanes say which boards a committed
//! batch advanced ([`Wakeups`]); boards known to have webhooks are then
//! looked at at once. And every `webhooks.reconcile_interval_ms` one
//! indexed query looks at every webhook with work due: boards another
//! instance folded, retries that came due, webhooks just created.
//!
//! A webhook is claimed under a lease in PostgreSQL (see
//! `crate::queue`), delivered by one task until it has no
//! more work or an attempt fails, then released. At most
//! `webhooks.concurrency` deliveries run at once, each bounded by the
//! connect and request timeouts, on a connection pool of their own and
//! without holding a connection over a request: a slow receiver costs its
//! own webhook's progress, never the fold's.

pub mod delivery;
pub mod metric_names;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::queue::{self, Attempt, Claimed, Next};
use crate::{is_forbidden, target};
use deadpool_postgres::Pool;
use streamboard_core::domain::BoardEvent;
use streamboard_core::postgres;
use streamboard_core::settings::WebhookSettings;
use tokio::sync::{watch, Notify, Semaphore};
use uuid::Uuid;

use self::delivery::{AfterFailure, Outcome, RetrySchedule};
use self::metric_names::{
    WEBHOOKS_DISABLED, WEBHOOK_BACKLOG_EVENTS, WEBHOOK_DELIVERIES_TOTAL,
    WEBHOOK_DELIVERY_DURATION_SECONDS,
};

/// Boards whose projected version moved, as the writer lanes report them.
/// Holds each board once until the dispatcher takes them.
#[derive(Default)]
pub struct Wakeups {
    boards: Mutex<HashSet<Uuid>>,
    notify: Notify,
}

impl Wakeups {
    /// Called after a batch commits, with the boards it advanced.
    pub fn boards_advanced(&self, boards: impl IntoIterator<Item = Uuid>) {
        let mut pending = self.boards.lock().expect("wakeups lock");
        let before = pending.len();
        pending.extend(boards);
        if pending.len() > before {
            self.notify.notify_one();
        }
    }

    async fn next(&self) -> HashSet<Uuid> {
        loop {
            let taken = std::mem::take(&mut *self.boards.lock().expect("wakeups lock"));
            if !taken.is_empty() {
                return taken;
            }
            self.notify.notified().await;
        }
    }
}

pub struct Dispatcher {
    pool: Pool,
    settings: WebhookSettings,
    schedule: RetrySchedule,
    /// The lease owner's name: this instance's consumer name.
    owner: String,
    http: reqwest::Client,
    wakeups: Arc<Wakeups>,
    stopping: AtomicBool,
}

impl Dispatcher {
    /// `pool` should be the dispatcher's own, apart from the writers'.
    pub fn new(pool: Pool, settings: WebhookSettings, owner: String) -> anyhow::Result<Dispatcher> {
        // rustls without aws-lc: ring is the provider (a second install is
        // a no-op error).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
            .timeout(Duration::from_millis(settings.timeout_ms))
            // A redirect is an answer, not a new target: it could lead
            // anywhere, including where targets may not go.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("Streamboard-Webhooks/", env!("CARGO_PKG_VERSION")));
        if !settings.allow_private_targets {
            http = http.dns_resolver(Arc::new(PublicAddresses));
        }
        Ok(Dispatcher {
            pool,
            schedule: RetrySchedule::from_settings(&settings),
            settings,
            owner,
            http: http.build()?,
            wakeups: Arc::default(),
            stopping: AtomicBool::new(false),
        })
    }

    /// Where the writer lanes report the boards they advanced.
    pub fn wakeups(&self) -> Arc<Wakeups> {
        Arc::clone(&self.wakeups)
    }

    fn lease(&self) -> Duration {
        Duration::from_millis(self.settings.lease_ms)
    }

    /// Runs until `stop`; then lets the deliveries in flight finish (each
    /// is bounded by the request timeout) and returns.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        tracing::info!(
            owner = %self.owner,
            concurrency = self.settings.concurrency,
            max_attempts = self.schedule.max_attempts,
            retries_span_hours = (self.schedule.span().as_secs_f64() / 360.0).round() / 10.0,
            "webhook dispatcher running"
        );
        let this = Arc::new(self);
        let permits = Arc::new(Semaphore::new(this.settings.concurrency));
        let mut tick =
            tokio::time::interval(Duration::from_millis(this.settings.reconcile_interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Boards with an active webhook, as of the last reconcile: wake-ups
        // for other boards cost no query.
        let mut hooked: HashSet<Uuid> = HashSet::new();
        loop {
            let woken = tokio::select! {
                _ = tick.tick() => None,
                advanced = this.wakeups.next() => Some(advanced),
                () = stopped(&mut stop) => break,
            };
            let boards = match woken {
                None => {
                    hooked = this.reconcile().await.unwrap_or(hooked);
                    None
                }
                Some(advanced) => {
                    let boards: Vec<Uuid> = advanced
                        .into_iter()
                        .filter(|b| hooked.contains(b))
                        .collect();
                    if boards.is_empty() {
                        continue;
                    }
                    Some(boards)
                }
            };
            this.claim_all(boards.as_deref(), &permits).await;
        }
        this.stopping.store(true, Ordering::SeqCst);
        let all = this.settings.concurrency as u32;
        let _ = tokio::time::timeout(this.lease(), permits.acquire_many(all)).await;
    }

    /// Refreshes the gauges and the boards with webhooks.
    async fn reconcile(&self) -> Option<HashSet<Uuid>> {
        let result = async {
            let client = postgres::client(&self.pool).await?;
            let totals = queue::totals(&**client).await?;
            metrics::gauge!(WEBHOOK_BACKLOG_EVENTS).set(totals.backlog_events as f64);
            metrics::gauge!(WEBHOOKS_DISABLED).set(totals.disabled as f64);
            let boards = queue::active_boards(&**client).await?;
            anyhow::Ok(boards.into_iter().collect::<HashSet<Uuid>>())
        }
        .await;
        match result {
            Ok(boards) => Some(boards),
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "webhooks: looking for work failed"
                );
                None
            }
        }
    }

    /// Claims webhooks with work due (of `boards`, or any) while permits
    /// last, each delivered by a task of its own.
    async fn claim_all(self: &Arc<Self>, boards: Option<&[Uuid]>, permits: &Arc<Semaphore>) {
        if boards.is_none() {
            // The reconcile round also takes everything woken meanwhile.
            let _ = std::mem::take(&mut *self.wakeups.boards.lock().expect("wakeups lock"));
        }
        loop {
            let Ok(permit) = Arc::clone(permits).acquire_owned().await else {
                return;
            };
            let claimed = async {
                let client = postgres::client(&self.pool).await?;
                anyhow::Ok(queue::claim(&**client, &self.owner, self.lease(), boards).await?)
            }
            .await;
            match claimed {
                Ok(Some(hook)) => {
                    let this = Arc::clone(self);
                    tokio::spawn(async move {
                        this.deliver(hook).await;
                        drop(permit);
                    });
                }
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), "webhooks: claiming failed");
                    return;
                }
            }
        }
    }

    /// Delivers a claimed webhook's events until it has none left, an
    /// attempt fails or the lease is lost.
    async fn deliver(&self, mut hook: Claimed) {
        loop {
            match self.step(&mut hook).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(error) => {
                    tracing::warn!(
                        webhook_id = %hook.id, board_id = %hook.board_id,
                        error = format!("{error:#}"),
                        "webhook delivery interrupted; it resumes when its lease runs out"
                    );
                    return;
                }
            }
        }
    }

    /// One event: true to go on with the next.
    async fn step(&self, hook: &mut Claimed) -> anyhow::Result<bool> {
        let event = match self.next_event(hook).await? {
            ControlFlow::Continue(event) => event,
            ControlFlow::Break(go_on) => return Ok(go_on),
        };
        let attempt = hook.attempts + 1;
        let delivery_id = Uuid::new_v4();
        let started = Instant::now();
        let outcome = self.post(hook, &event, delivery_id).await;
        let duration = started.elapsed();
        metrics::counter!(WEBHOOK_DELIVERIES_TOTAL, "outcome" => outcome.label()).increment(1);
        metrics::histogram!(WEBHOOK_DELIVERY_DURATION_SECONDS).record(duration.as_secs_f64());

        let after = match outcome {
            Outcome::Delivered(_) => None,
            _ => Some(self.schedule.after(attempt, fastrand::f64())),
        };
        let next_attempt_at = match after {
            Some(AfterFailure::RetryIn(delay)) => {
                Some(chrono::Utc::now() + chrono::Duration::from_std(delay)?)
            }
            _ => None,
        };
        let client = postgres::client(&self.pool).await?;
        let record = Attempt {
            id: delivery_id,
            webhook_id: hook.id,
            version: event.version,
            event_type: event.data.type_name(),
            attempt,
            status_code: outcome.status(),
            error: outcome.error(),
            duration,
            next_attempt_at,
        };
        queue::record(&**client, &record).await?;
        let log = (hook.id, hook.board_id, event.version, attempt);
        match (after, next_attempt_at) {
            (None, _) => {
                tracing::debug!(webhook_id = %log.0, board_id = %log.1, version = log.2,
                    ms = duration.as_millis() as u64, "webhook delivered");
                let held =
                    queue::advance(&**client, hook, &self.owner, event.version, self.lease())
                        .await?;
                hook.delivered_version = event.version;
                hook.attempts = 0;
                Ok(held)
            }
            (Some(AfterFailure::RetryIn(delay)), Some(at)) => {
                tracing::warn!(webhook_id = %log.0, board_id = %log.1, version = log.2,
                    attempt = log.3, error = outcome.error().unwrap_or_default(),
                    retry_in_ms = delay.as_millis() as u64, "webhook delivery failed; retrying");
                queue::retry_later(&**client, hook, &self.owner, attempt, at).await?;
                self.wake_at(hook.board_id, delay);
                Ok(false)
            }
            _ => {
                let reason = format!(
                    "{attempt} attempts at version {} failed; the last: {}",
                    event.version,
                    outcome.error().unwrap_or_default()
                );
                tracing::error!(webhook_id = %log.0, board_id = %log.1, %reason,
                    "webhook disabled");
                queue::disable(&**client, hook, &self.owner, attempt, &reason).await?;
                Ok(false)
            }
        }
    }

    /// The event to deliver next, or whether to go on without one (an
    /// event the webhook does not want is skipped; none left, or stopping,
    /// gives the lease back).
    async fn next_event(
        &self,
        hook: &mut Claimed,
    ) -> anyhow::Result<ControlFlow<bool, Box<BoardEvent>>> {
        let next = {
            let client = postgres::client(&self.pool).await?;
            if self.stopping.load(Ordering::SeqCst) {
                queue::release(&**client, hook, &self.owner).await?;
                return Ok(ControlFlow::Break(false));
            }
            queue::next(&**client, hook).await?
        };
        match next {
            Next::Deliver(event) => Ok(ControlFlow::Continue(event)),
            Next::Skip(version) => {
                let client = postgres::client(&self.pool).await?;
                let held =
                    queue::advance(&**client, hook, &self.owner, version, self.lease()).await?;
                hook.delivered_version = version;
                Ok(ControlFlow::Break(held))
            }
            Next::Idle => {
                let client = postgres::client(&self.pool).await?;
                queue::release(&**client, hook, &self.owner).await?;
                // An event committed after `next` looked, whose wake-up found
                // the lease still held, is picked up now rather than at the
                // next reconcile.
                self.wakeups.boards_advanced([hook.board_id]);
                Ok(ControlFlow::Break(false))
            }
        }
    }

    /// A retry due within a reconcile interval or two is woken for here, so
    /// a receiver's brief hiccup costs seconds; later ones the reconcile
    /// finds.
    fn wake_at(&self, board_id: Uuid, delay: Duration) {
        let soon = Duration::from_millis(self.settings.reconcile_interval_ms * 2);
        if delay > soon {
            return;
        }
        let wakeups = Arc::clone(&self.wakeups);
        tokio::spawn(async move {
            // A little past due, so PostgreSQL's clock agrees it is.
            tokio::time::sleep(delay + Duration::from_millis(20)).await;
            wakeups.boards_advanced([board_id]);
        });
    }

    async fn post(&self, hook: &Claimed, event: &BoardEvent, delivery_id: Uuid) -> Outcome {
        if !self.settings.allow_private_targets {
            // IP literals never reach the resolver: check them here.
            if let Ok(url) = target(&hook.url) {
                let literal = match url.host() {
                    Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
                    Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
                    _ => None,
                };
                if literal.is_some_and(is_forbidden) {
                    return Outcome::Failed("the target address is not allowed".into());
                }
            }
        }
        // The contract's envelope, serialised as everywhere else.
        let body = match serde_json::to_vec(event) {
            Ok(body) => body,
            Err(error) => return Outcome::Failed(format!("encoding the event: {error}")),
        };
        let request = self
            .http
            .post(&hook.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(delivery::EVENT, event.data.type_name())
            .header(
                delivery::EVENT_ID,
                delivery::event_id(event.board_id, event.version),
            )
            .header(delivery::DELIVERY, delivery_id.to_string())
            .header(
                delivery::SIGNATURE,
                delivery::signature(&hook.secret, &body),
            )
            .body(body);
        match request.send().await {
            Ok(response) => Outcome::of_status(response.status().as_u16()),
            Err(error) => Outcome::Failed(describe(&error)),
        }
    }
}

/// Resolves when `stop` turns true.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// A request error in a few words, without the URL (it may carry a token).
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".into();
    }
    let mut text = if error.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Resolves host names to the addresses a webhook may reach only, so a
/// name that points inside the network (or is made to later) is refused
/// at connect time, not only when the webhook was created.
struct PublicAddresses;

impl reqwest::dns::Resolve for PublicAddresses {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|addr| !is_forbidden(addr.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!("{host} resolves to no address a webhook may reach").into());
            }
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}
