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
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use tokio::sync::Semaphore;

use crate::app::{App, AppComponent};
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
        Ok(Self { app, servers })
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
        if self.servers.is_empty() {
            return std::future::pending().await;
        }
        let tasks: Vec<_> = self
            .servers
            .iter()
            .map(|(address, subscriptions)| {
                let trigger = self.clone();
                let (address, subscriptions) = (address.clone(), subscriptions.clone());
                tokio::spawn(async move { trigger.serve_server(address, subscriptions).await })
            })
            .collect();
        futures::future::join_all(tasks).await;
    }

    /// Keeps one server's subscriptions alive, reconnecting with backoff.
    async fn serve_server(&self, address: String, subscriptions: Vec<Arc<Subscription>>) {
        let shown = redact(&address);
        let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let mut backoff = BACKOFF_START;
        loop {
            match self.listen(&address, &subscriptions, &in_flight).await {
                Ok(()) => {
                    tracing::warn!(address = %shown, "Redis subscription ended; reconnecting");
                    backoff = BACKOFF_START;
                }
                Err(err) => {
                    tracing::warn!(address = %shown, retry_in_ms = backoff.as_millis() as u64, "Redis subscription failed: {err:#}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Subscribes and dispatches messages until the connection ends.
    async fn listen(
        &self,
        address: &str,
        subscriptions: &[Arc<Subscription>],
        in_flight: &Arc<Semaphore>,
    ) -> anyhow::Result<()> {
        let client = redis::Client::open(address).context("invalid Redis address")?;
        let mut pubsub = tokio::time::timeout(Duration::from_secs(5), client.get_async_pubsub())
            .await
            .context("connecting timed out")??;
        for subscription in subscriptions {
            pubsub.subscribe(&subscription.channel).await?;
        }
        tracing::info!(
            address = %redact(address),
            channels = ?subscriptions.iter().map(|s| s.channel.as_str()).collect::<Vec<_>>(),
            "subscribed"
        );
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            let channel = message.get_channel_name().to_owned();
            let payload = message.get_payload_bytes().to_vec();
            for subscription in subscriptions.iter().filter(|s| s.channel == channel) {
                let permit = in_flight.clone().acquire_owned().await?;
                let (app, subscription) = (self.app.clone(), subscription.clone());
                let payload = payload.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let handled = handle_message(&app, &subscription, payload).await;
                    crate::metrics::trigger_message(
                        &subscription.channel,
                        &subscription.component.id,
                        handled.is_ok(),
                    );
                    if let Err(err) = handled {
                        tracing::error!(
                            component = %subscription.component.id,
                            channel = %subscription.channel,
                            "message handler failed: {err:#}"
                        );
                    }
                });
            }
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
                let instance =
                    crate::metrics::instantiation(&counted.id, pre.instantiate_async(&mut *store))
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
