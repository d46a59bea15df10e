//! Counters the daemon keeps, rendered in the Prometheus text format, and the small HTTP
//! endpoint that serves them with `/health`.
//!
//! The endpoint listens on loopback by default and answers only `GET /metrics` and
//! `GET /health`; anything else is a 404. It reads at most one small request per connection and
//! never blocks the bridge.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Upper bounds of the evaluation-latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 10] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1,
];

#[derive(Default)]
pub struct Metrics {
    pub events: Labelled,
    pub relayed: Labelled,
    pub relay_failures: Labelled,
    pub decisions: Labelled,
    pub actions: Labelled,
    pub policy_reloads: Labelled,
    pub audit_errors: AtomicU64,
    /// Jobs (an event's effects) waiting in or being run by the room workers.
    pub queued: AtomicU64,
    latency: Mutex<Histogram>,
}

/// A counter with labels.
#[derive(Default)]
pub struct Labelled(Mutex<BTreeMap<Vec<(&'static str, String)>, u64>>);

impl Labelled {
    pub fn inc(&self, labels: &[(&'static str, &str)]) {
        let key = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        if let Ok(mut m) = self.0.lock() {
            *m.entry(key).or_insert(0) += 1;
        }
    }

    pub fn get(&self, labels: &[(&'static str, &str)]) -> u64 {
        let key: Vec<(&'static str, String)> =
            labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        self.0
            .lock()
            .map(|m| m.get(&key).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        if let Ok(m) = self.0.lock() {
            for (labels, v) in m.iter() {
                let _ = writeln!(out, "{name}{} {v}", render_labels(labels));
            }
        }
    }
}

#[derive(Default)]
struct Histogram {
    counts: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

fn render_labels(labels: &[(&'static str, String)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    format!("{{{}}}", parts.join(","))
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Gauges read from elsewhere at render time (adapter state).
pub struct Gauge {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

impl Metrics {
    /// Records how long one event took to route (policy evaluation included).
    pub fn observe_latency(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Ok(mut h) = self.latency.lock() {
            for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
                if secs <= *bound {
                    h.counts[i] += 1;
                }
            }
            h.count += 1;
            h.sum += secs;
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self, gauges: &[Gauge]) -> String {
        let mut out = String::new();
        self.events.render(
            &mut out,
            "bridgewarden_events_total",
            "Events received, per network.",
        );
        self.relayed.render(
            &mut out,
            "bridgewarden_relayed_total",
            "Messages relayed, per direction.",
        );
        self.relay_failures.render(
            &mut out,
            "bridgewarden_relay_failures_total",
            "Relays that could not be delivered, per target network.",
        );
        self.decisions.render(
            &mut out,
            "bridgewarden_decisions_total",
            "Policy rule matches, per rule and mode.",
        );
        self.actions.render(
            &mut out,
            "bridgewarden_actions_total",
            "Moderation actions, per kind and outcome.",
        );
        self.policy_reloads.render(
            &mut out,
            "bridgewarden_policy_reloads_total",
            "Policy reloads, per result.",
        );
        let _ = writeln!(
            out,
            "# HELP bridgewarden_audit_errors_total Audit writes that failed (the action was not taken).\n# TYPE bridgewarden_audit_errors_total counter\nbridgewarden_audit_errors_total {}",
            self.audit_errors.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP bridgewarden_effects_queued Events whose effects wait for their room's worker (a backlog).\n# TYPE bridgewarden_effects_queued gauge\nbridgewarden_effects_queued {}",
            self.queued.load(Ordering::Relaxed)
        );
        if let Ok(h) = self.latency.lock() {
            let name = "bridgewarden_routing_seconds";
            let _ = writeln!(
                out,
                "# HELP {name} Time to route one event, policy evaluation included.\n# TYPE {name} histogram"
            );
            for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
                let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {}", h.counts[i]);
            }
            let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "{name}_sum {}", h.sum);
            let _ = writeln!(out, "{name}_count {}", h.count);
        }
        // Samples of one metric must be together: group by name, keeping the given order.
        let mut gauges: Vec<&Gauge> = gauges.iter().collect();
        gauges.sort_by_key(|g| g.name);
        let mut named: Vec<&str> = Vec::new();
        for g in gauges {
            if !named.contains(&g.name) {
                let _ = writeln!(
                    out,
                    "# HELP {} {}\n# TYPE {} {}",
                    g.name, g.help, g.name, g.kind
                );
                named.push(g.name);
            }
            let _ = writeln!(out, "{}{} {}", g.name, render_labels(&g.labels), g.value);
        }
        out
    }
}

/// An answer to a GET.
pub struct Response {
    pub ok: bool,
    pub content_type: &'static str,
    pub body: String,
}

/// Answers a path, or None for a 404.
pub type Handler = std::sync::Arc<dyn Fn(&str) -> Option<Response> + Send + Sync>;

/// Serves GET requests with `handler` until the task is dropped.
pub async fn serve(listener: TcpListener, handler: Handler) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            // Out of file descriptors, most likely: do not spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let mut len = 0;
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while len < buf.len() {
                    match sock.read(&mut buf[len..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => len += n,
                    }
                    if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            })
            .await;
            if read.is_err() {
                return;
            }
            let request = String::from_utf8_lossy(&buf[..len]);
            let mut words = request.split_whitespace();
            let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            let answer = (method == "GET").then(|| handler(path)).flatten();
            let (status, kind, body) = match answer {
                Some(r) if r.ok => ("200 OK", r.content_type, r.body),
                Some(r) => ("503 Service Unavailable", r.content_type, r.body),
                None => ("404 Not Found", "text/plain", "not found\n".to_string()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histogram_and_gauges_in_the_text_format() {
        let m = Metrics::default();
        m.relayed.inc(&[("direction", "irc_to_matrix")]);
        m.relayed.inc(&[("direction", "irc_to_matrix")]);
        m.decisions
            .inc(&[("rule", "in\"sults"), ("mode", "enforce")]);
        m.observe_latency(Duration::from_micros(300));
        m.observe_latency(Duration::from_millis(50));
        let text = m.render(&[Gauge {
            name: "bridgewarden_irc_connected",
            help: "1 when registered.",
            kind: "gauge",
            labels: vec![("network", "libera".into())],
            value: 1.0,
        }]);
        assert!(
            text.contains("bridgewarden_relayed_total{direction=\"irc_to_matrix\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("bridgewarden_decisions_total{rule=\"in\\\"sults\",mode=\"enforce\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("bridgewarden_routing_seconds_bucket{le=\"0.00025\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("bridgewarden_routing_seconds_bucket{le=\"0.0005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("bridgewarden_routing_seconds_bucket{le=\"+Inf\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("bridgewarden_routing_seconds_count 2"),
            "{text}"
        );
        assert!(text.contains("# TYPE bridgewarden_irc_connected gauge\nbridgewarden_irc_connected{network=\"libera\"} 1"), "{text}");
        assert_eq!(m.relayed.get(&[("direction", "irc_to_matrix")]), 2);
    }

    #[test]
    fn samples_of_one_metric_stay_together_whatever_the_order_given() {
        let g = |name: &'static str, net: &str| Gauge {
            name,
            help: "h",
            kind: "counter",
            labels: vec![("network", net.into())],
            value: 0.0,
        };
        let text = Metrics::default().render(&[
            g("bridgewarden_irc_reconnects_total", "a"),
            g("bridgewarden_irc_queue_drops_total", "a"),
            g("bridgewarden_irc_reconnects_total", "b"),
            g("bridgewarden_irc_queue_drops_total", "b"),
        ]);
        let names: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("bridgewarden_irc_"))
            .map(|l| l.split('{').next().unwrap_or(""))
            .collect();
        assert_eq!(
            names,
            [
                "bridgewarden_irc_queue_drops_total",
                "bridgewarden_irc_queue_drops_total",
                "bridgewarden_irc_reconnects_total",
                "bridgewarden_irc_reconnects_total"
            ]
        );
        assert_eq!(
            text.matches("# TYPE bridgewarden_irc_").count(),
            2,
            "{text}"
        );
    }
}
