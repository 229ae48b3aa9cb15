//! DNS-named backends: each is resolved (A and AAAA) with hickory-resolver, from the
//! system's resolv.conf or the configured `resolvers`, and re-resolved when the answer's
//! TTL runs out, bounded by `dnsTtl.min` and `dnsTtl.max`. Every answer is handed to a
//! callback that turns the addresses into endpoints; a failed lookup keeps the last good
//! answer, is counted, and is retried after `dnsTtl.min`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, NameServerConfigGroup, ResolverConfig,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{BackendAddress, BackendConfig, DnsConfig};
use crate::metrics::Metrics;

/// Addresses as an operator writes them: `10.0.0.1, 10.0.0.2`.
fn list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| a.ip().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// How long one lookup may take (per server attempt).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Called with a backend's config name and the addresses (port 0) its name resolves to.
pub type OnAnswer = Arc<dyn Fn(&str, Vec<SocketAddr>) + Send + Sync>;

/// Why a resolver could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The system's resolver configuration could not be read.
    #[error("DNS resolver: reading resolv.conf")]
    SystemConfig(#[source] hickory_resolver::ResolveError),
}

/// A resolver for `cfg`: its `resolvers`, or the system's configuration. Answers are not
/// cached, so every lookup asks the server (a lookup happens only when an answer expires).
pub fn resolver(cfg: &DnsConfig) -> Result<TokioResolver, Error> {
    let mut builder = if cfg.resolvers.is_empty() {
        TokioResolver::builder_tokio().map_err(Error::SystemConfig)?
    } else {
        let mut group = NameServerConfigGroup::new();
        for addr in &cfg.resolvers {
            group.push(NameServerConfig::new(*addr, Protocol::Udp));
            group.push(NameServerConfig::new(*addr, Protocol::Tcp));
        }
        TokioResolver::builder_with_config(
            ResolverConfig::from_parts(None, vec![], group),
            TokioConnectionProvider::default(),
        )
    };
    let opts = builder.options_mut();
    opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    opts.cache_size = 0;
    opts.timeout = LOOKUP_TIMEOUT;
    opts.attempts = 2;
    Ok(builder.build())
}

/// Runs one watch task per DNS-named backend; replaced whole on reload.
#[derive(Debug)]
pub struct DnsWatcher {
    tracker: TaskTracker,
    stop: CancellationToken,
    generation: Mutex<CancellationToken>,
}

impl DnsWatcher {
    /// A watcher whose tasks run on `tracker` until `stop`.
    pub fn new(tracker: TaskTracker, stop: CancellationToken) -> Self {
        Self {
            tracker,
            generation: Mutex::new(stop.child_token()),
            stop,
        }
    }

    /// Replace the watch tasks with one per DNS-named backend of `backends`.
    pub fn restart(
        &self,
        backends: &[BackendConfig],
        dns: &DnsConfig,
        metrics: &Metrics,
        on_answer: &OnAnswer,
    ) -> Result<(), Error> {
        let named: Vec<(&str, &str)> = backends
            .iter()
            .filter_map(|b| match &b.address {
                BackendAddress::Dns { host, .. } => Some((b.name.as_str(), host.as_str())),
                BackendAddress::Ip(_) => None,
            })
            .collect();
        let resolver = if named.is_empty() {
            None
        } else {
            Some(resolver(dns)?)
        };
        let next = self.stop.child_token();
        let old = std::mem::replace(
            &mut *self.generation.lock().unwrap_or_else(|e| e.into_inner()),
            next.clone(),
        );
        old.cancel();
        if let Some(resolver) = resolver {
            for (name, host) in named {
                self.tracker.spawn(watch(
                    resolver.clone(),
                    name.to_owned(),
                    host.to_owned(),
                    dns.clone(),
                    metrics.clone(),
                    Arc::clone(on_answer),
                    next.clone(),
                ));
            }
        }
        Ok(())
    }
}

async fn watch(
    resolver: TokioResolver,
    name: String,
    host: String,
    cfg: DnsConfig,
    metrics: Metrics,
    on_answer: OnAnswer,
    stop: CancellationToken,
) {
    let mut failing = false;
    loop {
        let lookup = tokio::select! {
            () = stop.cancelled() => return,
            r = resolver.lookup_ip(host.as_str()) => r,
        };
        let wait = match lookup {
            Ok(answer) => {
                let addrs: Vec<SocketAddr> =
                    answer.iter().map(|ip| SocketAddr::new(ip, 0)).collect();
                metrics
                    .dns_lookups
                    .with_label_values(&[name.as_str(), "ok"])
                    .inc();
                if failing {
                    tracing::info!(backend = %name, %host, "DNS lookups succeed again");
                    failing = false;
                }
                tracing::debug!(backend = %name, %host, addresses = %list(&addrs), "resolved");
                metrics
                    .dns_endpoints
                    .with_label_values(&[name.as_str()])
                    .set(addrs.len() as i64);
                on_answer(&name, addrs);
                let ttl = answer
                    .valid_until()
                    .saturating_duration_since(std::time::Instant::now());
                ttl.clamp(cfg.min_ttl, cfg.max_ttl)
            }
            Err(e) => {
                metrics
                    .dns_lookups
                    .with_label_values(&[name.as_str(), "failed"])
                    .inc();
                if !failing {
                    tracing::warn!(backend = %name, %host, error = %e, "DNS lookup failed; keeping the last answer");
                    failing = true;
                }
                cfg.min_ttl
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}
