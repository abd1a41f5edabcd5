//! Prometheus metrics of the guard, served as text on `--metrics ADDR` (`GET /metrics`).
//!
//! Labels: `job_id` (not `job`, which Prometheus sets to the scrape job). Per guarded job: memory, risk level, the seconds-to-act estimate, shield layers applied.
//! Per killer: kills seen. The daemon's own CPU time and resident memory.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::model::risk::{Level, Outlook};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub job_id: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobKillerLabels {
    pub job_id: String,
    pub killer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LayerLabels {
    pub job_id: String,
    pub layer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KillerLabels {
    pub killer: String,
}

type FGauge = Gauge<f64, AtomicU64>;

/// Every series the daemon exports.
pub struct Metrics {
    registry: Registry,
    job_memory: Family<JobLabels, Gauge>,
    job_level: Family<JobLabels, Gauge>,
    job_eta: Family<JobKillerLabels, FGauge>,
    job_layer: Family<LayerLabels, Gauge>,
    kills: Family<KillerLabels, Gauge>,
    cpu: FGauge,
    rss: Gauge,
    names: Mutex<std::collections::HashMap<String, String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("oomguard");
        let m = Metrics {
            job_memory: Family::default(),
            job_level: Family::default(),
            job_eta: Family::default(),
            job_layer: Family::default(),
            kills: Family::default(),
            cpu: FGauge::default(),
            rss: Gauge::default(),
            names: Mutex::default(),
            registry: Registry::default(),
        };
        registry.register(
            "job_memory_bytes",
            "Resident + swapped memory of a guarded job's processes",
            m.job_memory.clone(),
        );
        registry.register(
            "job_risk_level",
            "Risk level of a guarded job: 0 ok, 1 watch, 2 danger",
            m.job_level.clone(),
        );
        registry.register(
            "job_seconds_to_act_estimate",
            "Estimated seconds until a killer acts on the job, at the current growth rate (estimate)",
            m.job_eta.clone(),
        );
        registry.register(
            "job_layer_applied",
            "1 if the shield layer is applied to the job",
            m.job_layer.clone(),
        );
        registry.register(
            "kills_seen",
            "OOM kills found in the logs, by killer",
            m.kills.clone(),
        );
        registry.register(
            "daemon_cpu_seconds",
            "CPU time used by the daemon itself",
            m.cpu.clone(),
        );
        registry.register(
            "daemon_resident_bytes",
            "Resident memory of the daemon itself",
            m.rss.clone(),
        );
        Metrics { registry, ..m }
    }

    fn labels(&self, job: &str) -> JobLabels {
        let name = self
            .names
            .lock()
            .unwrap()
            .get(job)
            .cloned()
            .unwrap_or_default();
        JobLabels {
            job_id: job.to_string(),
            name,
        }
    }

    /// Record a job and its applied layers.
    pub fn job_started(&self, job: &str, name: &str, layers: &[(&str, bool)]) {
        self.names
            .lock()
            .unwrap()
            .insert(job.to_string(), name.to_string());
        for (layer, on) in layers {
            self.job_layer
                .get_or_create(&LayerLabels {
                    job_id: job.into(),
                    layer: (*layer).into(),
                })
                .set(i64::from(*on));
        }
    }

    /// Update a job from the guard's latest step.
    pub fn job_sample(&self, job: &str, memory_bytes: u64, threats: &[Outlook], level: Level) {
        let l = self.labels(job);
        self.job_memory.get_or_create(&l).set(memory_bytes as i64);
        self.job_level.get_or_create(&l).set(level as i64);
        for t in threats {
            let k = JobKillerLabels {
                job_id: job.into(),
                killer: t.killer.name().into(),
            };
            // No estimate = not approaching: +Inf, which Prometheus understands.
            self.job_eta
                .get_or_create(&k)
                .set(t.eta_s.unwrap_or(f64::INFINITY));
        }
    }

    /// Forget a job that ended.
    pub fn job_ended(&self, job: &str) {
        let l = self.labels(job);
        self.job_memory.remove(&l);
        self.job_level.remove(&l);
        for killer in ["kernel", "systemd-oomd", "earlyoom", "nohang"] {
            self.job_eta.remove(&JobKillerLabels {
                job_id: job.into(),
                killer: killer.into(),
            });
        }
        for layer in ["kernel", "systemd-oomd", "earlyoom", "nohang"] {
            self.job_layer.remove(&LayerLabels {
                job_id: job.into(),
                layer: layer.into(),
            });
        }
    }

    pub fn kills_seen(&self, killer: &str, count: u64) {
        self.kills
            .get_or_create(&KillerLabels {
                killer: killer.into(),
            })
            .set(count as i64);
    }

    /// Refresh the daemon's own cost from /proc/self.
    pub fn update_self(&self) {
        if let Ok(p) = procfs::process::Process::myself()
            && let Ok(st) = p.stat()
        {
            let tck = procfs::ticks_per_second() as f64;
            self.cpu.set((st.utime + st.stime) as f64 / tck);
            self.rss.set((st.rss * procfs::page_size()) as i64);
        }
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        self.update_self();
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Serve `GET /metrics` on `addr` until the process ends (one request at a time: scrapes are
/// rare). Returns the address bound (`127.0.0.1:0` picks a free port).
pub fn serve(addr: &str, metrics: Arc<Metrics>) -> anyhow::Result<std::net::SocketAddr> {
    let listener =
        TcpListener::bind(addr).with_context(|| format!("cannot listen for metrics on {addr}"))?;
    let bound = listener.local_addr()?;
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let _ = answer(s, &metrics);
        }
    });
    Ok(bound)
}

fn answer(mut s: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut first = String::new();
    let mut r = BufReader::new(s.try_clone()?);
    r.read_line(&mut first)?;
    // Drain the headers (bounded).
    let mut line = String::new();
    for _ in 0..100 {
        line.clear();
        if r.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let path = first.split_whitespace().nth(1).unwrap_or("");
    let (status, ctype, body) =
        if first.starts_with("GET ") && (path == "/metrics" || path.starts_with("/metrics?")) {
            (
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                metrics.encode(),
            )
        } else {
            (
                "404 Not Found",
                "text/plain",
                "oomguard serves /metrics\n".to_string(),
            )
        };
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}
