//! The Redis trigger: subscribes to channels and runs a component for every message.
//!
//! One subscriber connection per server address carries all of that server's channels.
//! Each message gets a fresh instance calling the component's `fermyon:spin/inbound-redis`
//! `handle-message` export, as in Spin. A handler error or trap is logged with the
//! channel and the subscription goes on. When the server goes away the subscription is
//! re-established with capped exponential backoff; messages published while it was gone
//! are lost (that is what pub/sub does), which is why the app keeps its jobs in a
//! durable outbox and treats messages only as wake-up calls.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::{App, AppComponent, DeadlineExceeded};
use crate::bindings::redis_trigger::RedisTriggerPre;
use crate::capabilities::InstanceState;
use crate::variables::Template;

/// Messages of one subscription handled at once; further messages wait their turn.
const MAX_IN_FLIGHT: usize = 64;
/// First and longest wait before reconnecting.
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A channel and the component its messages go to.
struct Subscription {
    channel: String,
    component: Arc<AppComponent>,
    pre: RedisTriggerPre<InstanceState>,
}

/// The running Redis trigger: subscriptions grouped by server address.
pub struct RedisTrigger {
    app: Arc<App>,
    servers: BTreeMap<String, Vec<Arc<Subscription>>>,
    /// Message handlers in progress, so a drain can wait for them (issue 10, item 1).
    handlers: TaskTracker,
    /// Messages whose handler overran the request timeout, since start (logged with each).
    deadline_hits: Arc<AtomicU64>,
}

impl RedisTrigger {
    /// Resolves addresses and checks that each component exports the Redis handler.
    pub fn new(app: Arc<App>) -> anyhow::Result<Self> {
        let mut servers: BTreeMap<String, Vec<Arc<Subscription>>> = BTreeMap::new();
        for trigger in &app.manifest.redis_triggers {
            let address = Template::parse(&trigger.address)?.render(&app.variables)?;
            let channel = Template::parse(&trigger.channel)?.render(&app.variables)?;
            let component = app.components[&trigger.component].clone();
            let pre = RedisTriggerPre::new(component.pre.clone())
                .map_err(anyhow::Error::from)
                .with_context(|| {
                    format!(
                        "component `{}` does not export fermyon:spin/inbound-redis",
                        component.id
                    )
                })?;
            servers
                .entry(address)
                .or_default()
                .push(Arc::new(Subscription {
                    channel,
                    component,
                    pre,
                }));
        }
        Ok(Self {
            app,
            servers,
            handlers: TaskTracker::new(),
            deadline_hits: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Whether any subscription is configured.
    pub fn has_subscriptions(&self) -> bool {
        !self.servers.is_empty()
    }

    /// Channels and their components, for the start-up banner.
    pub fn describe(&self) -> Vec<(String, String)> {
        self.servers
            .values()
            .flatten()
            .map(|sub| (sub.channel.clone(), sub.component.id.clone()))
            .collect()
    }

    /// Runs every subscription until the process stops.
    pub async fn run(self: Arc<Self>) {
        self.run_until(CancellationToken::new()).await;
    }

    /// Runs every subscription until `stop` is cancelled, then drains (issue 10, item 1):
    /// each subscriber unsubscribes and takes no further message, and this returns once
    /// every handler already running has finished (and so made its own acknowledgement,
    /// such as marking its job done). The caller bounds the wait (`--shutdown-timeout`).
    pub async fn run_until(self: Arc<Self>, stop: CancellationToken) {
        if self.servers.is_empty() {
            return stop.cancelled().await;
        }
        let tasks: Vec<_> = self
            .servers
            .iter()
            .map(|(address, subscriptions)| {
                let trigger = self.clone();
                let (address, subscriptions) = (address.clone(), subscriptions.clone());
                let stop = stop.clone();
                tokio::spawn(
                    async move { trigger.serve_server(address, subscriptions, stop).await },
                )
            })
            .collect();
        futures::future::join_all(tasks).await;
        self.handlers.close();
        tracing::info!(
            handlers = self.handlers.len(),
            "Redis subscriptions stopped; waiting for message handlers in progress"
        );
        self.handlers.wait().await;
    }

    /// Messages cut off at the request timeout since start.
    pub fn deadline_hits(&self) -> u64 {
        self.deadline_hits.load(Ordering::Relaxed)
    }

    /// Message handlers still running; during a drain, those the drain waits for.
    pub fn handlers_in_progress(&self) -> usize {
        self.handlers.len()
    }

    /// Keeps one server's subscriptions alive, reconnecting with backoff, until `stop`.
    async fn serve_server(
        &self,
        address: String,
        subscriptions: Vec<Arc<Subscription>>,
        stop: CancellationToken,
    ) {
        let shown = redact(&address);
        let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let mut backoff = BACKOFF_START;
        while !stop.is_cancelled() {
            match self
                .listen(&address, &subscriptions, &in_flight, &stop)
                .await
            {
                Ok(()) if stop.is_cancelled() => break,
                Ok(()) => {
                    tracing::warn!(address = %shown, "Redis subscription ended; reconnecting");
                    backoff = BACKOFF_START;
                }
                Err(err) => {
                    tracing::warn!(address = %shown, retry_in_ms = backoff.as_millis() as u64, "Redis subscription failed: {err:#}");
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Subscribes and dispatches messages until the connection ends or `stop` is
    /// cancelled; on `stop` it unsubscribes, so the server sends no further message.
    async fn listen(
        &self,
        address: &str,
        subscriptions: &[Arc<Subscription>],
        in_flight: &Arc<Semaphore>,
        stop: &CancellationToken,
    ) -> anyhow::Result<()> {
        let client = self.app.capabilities.redis.client(address)?;
        let mut pubsub = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            connected = tokio::time::timeout(Duration::from_secs(5), client.get_async_pubsub()) => {
                // redis-rs's error repeats its detail as its own source: show it once.
                connected
                    .context("connecting timed out")?
                    .map_err(|err| anyhow::anyhow!("cannot connect: {err}"))?
            }
        };
        for subscription in subscriptions {
            pubsub.subscribe(&subscription.channel).await?;
        }
        tracing::info!(
            address = %redact(address),
            channels = ?subscriptions.iter().map(|s| s.channel.as_str()).collect::<Vec<_>>(),
            "subscribed"
        );
        {
            let mut messages = pubsub.on_message();
            loop {
                let message = tokio::select! {
                    biased;
                    () = stop.cancelled() => break,
                    message = messages.next() => match message {
                        Some(message) => message,
                        None => return Ok(()),
                    },
                };
                self.dispatch(&message, subscriptions, in_flight).await?;
            }
        }
        let channels: Vec<&str> = subscriptions.iter().map(|s| s.channel.as_str()).collect();
        // Bounded: a server that does not answer must not hold up the drain.
        match tokio::time::timeout(Duration::from_secs(2), pubsub.unsubscribe(&channels)).await {
            Ok(Ok(())) => tracing::info!(address = %redact(address), "unsubscribed"),
            Ok(Err(err)) => {
                tracing::warn!(address = %redact(address), "unsubscribing failed: {err}")
            }
            Err(_) => tracing::warn!(address = %redact(address), "unsubscribing timed out"),
        }
        Ok(())
    }

    /// Starts the handlers of one message, one per subscription of its channel.
    async fn dispatch(
        &self,
        message: &redis::Msg,
        subscriptions: &[Arc<Subscription>],
        in_flight: &Arc<Semaphore>,
    ) -> anyhow::Result<()> {
        let channel = message.get_channel_name();
        let payload = message.get_payload_bytes();
        for subscription in subscriptions.iter().filter(|s| s.channel == channel) {
            let permit = in_flight.clone().acquire_owned().await?;
            let (app, subscription) = (self.app.clone(), subscription.clone());
            let payload = payload.to_vec();
            let deadline_hits = self.deadline_hits.clone();
            self.handlers.spawn(async move {
                let _permit = permit;
                let handled = handle_message(&app, &subscription, payload).await;
                crate::metrics::trigger_message(
                    &subscription.channel,
                    &subscription.component.id,
                    handled.is_ok(),
                );
                if let Err(err) = &handled {
                    if err.downcast_ref::<DeadlineExceeded>().is_some() {
                        let count = deadline_hits.fetch_add(1, Ordering::Relaxed) + 1;
                        tracing::warn!(
                            component = %subscription.component.id,
                            channel = %subscription.channel,
                            deadline_exceeded_total = count,
                            "message handler cut off: {err:#}"
                        );
                        return;
                    }
                    tracing::error!(
                        component = %subscription.component.id,
                        channel = %subscription.channel,
                        "message handler failed: {err:#}"
                    );
                }
            });
        }
        Ok(())
    }
}

/// Runs one message through a fresh instance of the subscription's component.
async fn handle_message(
    app: &App,
    subscription: &Subscription,
    payload: Vec<u8>,
) -> anyhow::Result<()> {
    let mut instance = app.start_instance(&subscription.component).await;
    let pre = subscription.pre.clone();
    let counted = subscription.component.clone();
    let handled = instance
        .run(move |store| {
            Box::pin(async move {
                let instance = crate::metrics::instantiation(
                    &counted.metrics,
                    pre.instantiate_async(&mut *store),
                )
                .await?;
                instance
                    .fermyon_spin_inbound_redis()
                    .call_handle_message(store, &payload)
                    .await
            })
        })
        .await?;
    handled.map_err(|code| anyhow::anyhow!("handler returned {code:?}"))
}

/// An address fit for logs: any password is replaced by `***`.
pub fn redact(address: &str) -> String {
    match url::Url::parse(address) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        Ok(url) => url.to_string(),
        Err(_) => "<invalid address>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(
            redact("redis://user:s3cret@cache:6379/0"),
            "redis://user:***@cache:6379/0"
        );
        assert_eq!(redact("redis://cache:6379"), "redis://cache:6379");
        assert!(!redact("not a url s3cret").contains("s3cret"));
    }
}
