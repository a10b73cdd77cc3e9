//! `GET /metrics`: Prometheus metrics through `prometheus-client` (OpenMetrics text, which
//! Prometheus scrapes natively), so the exposition format is never written by hand.
//!
//! Labels are bounded: routes are the router's templates (`/v1/playbooks/{id}/graph`, or
//! `unmatched`), and symptoms and causes are playbook ids, never values from the event.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use whyfail_engine::Resolution;
use whyfail_engine::model::resolution::Status;
use whyfail_providers::live::Stats;

use super::conn::Registry as Connections;
use super::work::Slots;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DiagnosisLabels {
    status: String,
    symptom: String,
    root_cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: String,
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The service's metrics and their registry.
pub(crate) struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_latency: LatencyFamily,
    diagnoses: Family<DiagnosisLabels, Counter>,
    reloads: Family<ReloadLabels, Counter>,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~8 s: offline diagnoses take tens of microseconds, live ones up to the deadline.
    Histogram::new(exponential_buckets(0.00025, 2.0, 16))
}

/// Values read at scrape time from elsewhere: the live provider's counters and the
/// diagnosis slots in use.
#[derive(Debug)]
struct Gauges {
    probes: Option<Arc<Stats>>,
    slots: Arc<Slots>,
    connections: Arc<Connections>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

impl Collector for Gauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let g = ConstGauge::new(self.slots.in_use() as i64);
        g.encode(encoder.encode_descriptor(
            "diagnoses_in_flight",
            "Diagnosis slots taken now (at most --concurrency); a slot is held until its work has stopped",
            None,
            g.metric_type(),
        )?)?;
        let g = ConstGauge::new(self.slots.running.load(Ordering::Relaxed));
        g.encode(encoder.encode_descriptor(
            "diagnoses_running",
            "Diagnoses running now on the blocking pool, including those whose request has ended",
            None,
            g.metric_type(),
        )?)?;
        let c = ConstCounter::new(self.slots.cancelled.load(Ordering::Relaxed));
        c.encode(encoder.encode_descriptor(
            "diagnoses_cancelled",
            "Diagnoses stopped early because their request timed out or its client went away",
            None,
            c.metric_type(),
        )?)?;
        let g = ConstGauge::new(self.connections.open() as i64);
        g.encode(encoder.encode_descriptor(
            "connections_open",
            "Client connections open now (at most --max-connections)",
            None,
            g.metric_type(),
        )?)?;
        let closed = &self.connections.closed;
        let mut family = encoder.encode_descriptor(
            "connections_closed",
            "Connections the server closed: header_timeout, idle_timeout, evicted (oldest idle one, to make room at --max-connections), refused (at the cap with every connection busy)",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (reason, n) in [
            ("header_timeout", &closed.header_timeout),
            ("idle_timeout", &closed.idle_timeout),
            ("evicted", &closed.evicted),
            ("refused", &closed.refused),
        ] {
            let c = ConstCounter::new(n.load(Ordering::Relaxed));
            c.encode(family.encode_family(&ReasonLabels { reason })?)?;
        }
        let Some(stats) = &self.probes else {
            return Ok(());
        };
        let requests = stats.requests.load(Ordering::Relaxed);
        let probes = stats.probes.load(Ordering::Relaxed);
        let held = stats.held_back.load(Ordering::Relaxed);
        let counters = [
            (
                "fact_requests",
                "Live facts asked for by diagnoses",
                requests,
            ),
            (
                "probe_calls",
                "Live probes actually started (the rest were answered without one)",
                probes,
            ),
            (
                "probe_cache_answers",
                "Live facts answered from the cache or by joining an in-flight probe",
                requests.saturating_sub(probes).saturating_sub(held),
            ),
            (
                "probes_held_back",
                "Probes not made because the provider is rate-limiting the connection",
                held,
            ),
        ];
        for (name, help, value) in counters {
            let c = ConstCounter::new(value);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        Ok(())
    }
}

impl Metrics {
    pub fn new(
        probes: Option<Arc<Stats>>,
        slots: Arc<Slots>,
        connections: Arc<Connections>,
    ) -> Self {
        let mut registry = Registry::with_prefix("whyfail");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route and status",
            http_requests.clone(),
        );
        let http_latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "http_request_duration",
            "Time to answer an HTTP request, by route",
            Unit::Seconds,
            http_latency.clone(),
        );
        let diagnoses = Family::<DiagnosisLabels, Counter>::default();
        registry.register(
            "diagnoses",
            "Diagnoses made, by status, symptom (playbook) and root cause (`none` when not diagnosed)",
            diagnoses.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "reloads",
            "Playbook set reloads, by result (failed: the last good set kept serving)",
            reloads.clone(),
        );
        registry.register_collector(Box::new(Gauges {
            probes,
            slots,
            connections,
        }));
        Metrics {
            registry,
            http_requests,
            http_latency,
            diagnoses,
            reloads,
        }
    }

    pub fn request(&self, method: &str, route: &str, status: u16, latency: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels {
                method: method.to_string(),
                route: route.to_string(),
                status: status.to_string(),
            })
            .inc();
        self.http_latency
            .get_or_create(&RouteLabels {
                route: route.to_string(),
            })
            .observe(latency.as_secs_f64());
    }

    pub fn diagnosis(&self, res: &Resolution) {
        let status = match res.status {
            Status::Diagnosed => "diagnosed",
            Status::Inconclusive => "inconclusive",
            Status::NoMatch => "no_match",
        };
        let symptom = res.symptom.as_ref().map_or("none", |s| s.id.as_str());
        let root_cause = match res.status {
            Status::Diagnosed => res.root_causes.first().map_or("none", |c| c.id.as_str()),
            _ => "none",
        };
        self.diagnoses
            .get_or_create(&DiagnosisLabels {
                status: status.to_string(),
                symptom: symptom.to_string(),
                root_cause: root_cause.to_string(),
            })
            .inc();
    }

    pub fn reload(&self, ok: bool) {
        self.reloads
            .get_or_create(&ReloadLabels {
                result: if ok { "ok" } else { "failed" }.to_string(),
            })
            .inc();
    }

    /// The exposition text.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
