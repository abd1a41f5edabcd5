//! systemd on the system bus (zbus, blocking): does a systemd-oomd rule watch a job's
//! unit, and moving a job into a root-owned `oomguard-<id>.scope` that oomd omits.
//!
//! The route is the one measured in the VM lab (facts.md): StartTransientUnit for the
//! job's PID with `Slice=user-UID.slice` and `ManagedOOMPreference=omit`, carrying the
//! memory limits of the unit it left, so shielding never lifts a limit.

use std::path::Path;

use anyhow::{Context, Result};
use zbus::blocking::{Connection, Proxy};
use zbus::zvariant::{OwnedObjectPath, Value};

const DEST: &str = "org.freedesktop.systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";

/// Whether systemd is PID 1 here (it creates `/run/systemd/system`).
pub fn booted(root: &Path) -> bool {
    root.join("run/systemd/system").is_dir()
}

/// The oomd rule that watches a job's unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    /// The unit the job is in (as PID 1 sees it, e.g. `user@1000.service`).
    pub unit: String,
    /// The unit (the job's or an ancestor slice) carrying the rule.
    pub watched_by: String,
    /// `ManagedOOMMemoryPressure=kill` and/or `ManagedOOMSwap=kill`.
    pub rules: Vec<&'static str>,
}

/// systemd-oomd's memory-pressure rule over a job: the watched unit, its cgroup's
/// `memory.pressure`, the limit and how long pressure may stay above it.
#[derive(Debug, Clone, PartialEq)]
pub struct PressureRule {
    pub unit: String,
    pub pressure_file: std::path::PathBuf,
    pub limit_pct: f64,
    pub duration_s: f64,
}

/// A system-bus connection to PID 1.
pub struct Systemd {
    conn: Connection,
}

fn iface_of(unit: &str) -> &'static str {
    match unit.rsplit('.').next() {
        Some("service") => "org.freedesktop.systemd1.Service",
        Some("scope") => "org.freedesktop.systemd1.Scope",
        Some("slice") => "org.freedesktop.systemd1.Slice",
        _ => "org.freedesktop.systemd1.Unit",
    }
}

impl Systemd {
    /// Connect to the system bus.
    pub fn connect() -> Result<Systemd> {
        let conn = Connection::system().context("connecting to the D-Bus system bus")?;
        Ok(Systemd { conn })
    }

    fn proxy<'a>(&'a self, path: &'a str, iface: &'a str) -> Result<Proxy<'a>> {
        Ok(zbus::blocking::proxy::Builder::new(&self.conn)
            .destination(DEST)?
            .path(path)?
            .interface(iface)?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()?)
    }

    fn unit_path_by_pid(&self, pid: u32) -> Result<OwnedObjectPath> {
        let m = self.proxy("/org/freedesktop/systemd1", MANAGER)?;
        m.call("GetUnitByPID", &(pid,))
            .with_context(|| format!("GetUnitByPID({pid})"))
    }

    fn unit_path(&self, name: &str) -> Result<OwnedObjectPath> {
        let m = self.proxy("/org/freedesktop/systemd1", MANAGER)?;
        m.call("GetUnit", &(name,))
            .with_context(|| format!("GetUnit({name})"))
    }

    fn prop<T>(&self, path: &str, iface: &str, name: &str) -> Result<T>
    where
        T: TryFrom<zbus::zvariant::OwnedValue>,
        T::Error: Into<zbus::Error>,
    {
        let p = self.proxy(path, iface)?;
        p.get_property::<T>(name)
            .with_context(|| format!("property {name} of {path}"))
    }

    /// The unit a process is in, as PID 1 sees it.
    pub fn unit_of(&self, pid: u32) -> Result<String> {
        let path = self.unit_path_by_pid(pid)?;
        self.prop(path.as_str(), "org.freedesktop.systemd1.Unit", "Id")
    }

    /// Whether `systemd-oomd.service` is active.
    pub fn oomd_active(&self) -> bool {
        self.unit_path("systemd-oomd.service")
            .and_then(|p| {
                self.prop::<String>(p.as_str(), "org.freedesktop.systemd1.Unit", "ActiveState")
            })
            .is_ok_and(|s| s == "active")
    }

    /// The oomd rule (`...=kill`) on the unit of `pid` or an ancestor slice, if any.
    pub fn oomd_watch(&self, pid: u32) -> Result<Option<Watch>> {
        let mut path = self.unit_path_by_pid(pid)?;
        let unit: String = self.prop(path.as_str(), "org.freedesktop.systemd1.Unit", "Id")?;
        let mut name = unit.clone();
        for _ in 0..64 {
            let iface = iface_of(&name);
            let mut rules = Vec::new();
            for (prop, label) in [
                ("ManagedOOMMemoryPressure", "ManagedOOMMemoryPressure=kill"),
                ("ManagedOOMSwap", "ManagedOOMSwap=kill"),
            ] {
                if self
                    .prop::<String>(path.as_str(), iface, prop)
                    .is_ok_and(|v| v == "kill")
                {
                    rules.push(label);
                }
            }
            if !rules.is_empty() {
                return Ok(Some(Watch {
                    unit,
                    watched_by: name,
                    rules,
                }));
            }
            let parent: String = self.prop(path.as_str(), iface, "Slice").unwrap_or_default();
            if parent.is_empty() || parent == name {
                return Ok(None);
            }
            path = self.unit_path(&parent)?;
            name = parent;
        }
        Ok(None)
    }

    /// systemd-oomd's pressure rule over `pid`, if one watches it: the unit, its
    /// `memory.pressure` under `cgroup_root`, the unit's limit (or oomd.conf's default),
    /// and the duration (the unit's, systemd >= 257, or oomd.conf's).
    pub fn pressure_rule(&self, pid: u32, cgroup_root: &Path) -> Result<Option<PressureRule>> {
        let Some(w) = self.oomd_watch(pid)? else {
            return Ok(None);
        };
        if !w.rules.contains(&"ManagedOOMMemoryPressure=kill") {
            return Ok(None);
        }
        let path = self.unit_path(&w.watched_by)?;
        let iface = iface_of(&w.watched_by);
        let conf = crate::host::oomd::read_oomd_conf(Path::new("/"));
        let (def_limit, def_duration) = (
            conf.default_memory_pressure_limit_pct,
            conf.default_memory_pressure_duration_s,
        );
        // A fraction of 2^32 (systemd >= 249; 0 = oomd's default).
        let limit_pct =
            match self.prop::<u32>(path.as_str(), iface, "ManagedOOMMemoryPressureLimit") {
                Ok(0) | Err(_) => def_limit,
                Ok(v) => v as f64 / 4_294_967_296.0 * 100.0,
            };
        let duration_s =
            match self.prop::<u64>(path.as_str(), iface, "ManagedOOMMemoryPressureDurationUSec") {
                Ok(us) if us > 0 && us != u64::MAX => us as f64 / 1e6,
                _ => def_duration,
            };
        let cg: String = self.prop(path.as_str(), iface, "ControlGroup")?;
        Ok(Some(PressureRule {
            unit: w.watched_by,
            pressure_file: cgroup_root
                .join(cg.trim_start_matches('/'))
                .join("memory.pressure"),
            limit_pct,
            duration_s,
        }))
    }

    /// The memory limits a job gives up by leaving `unit` for `slice`: the tightest
    /// `MemoryHigh`, `MemoryMax` and `MemorySwapMax` over `unit` and every ancestor slice
    /// of it that is not also an ancestor of `slice` (`user-1000.slice` keeps `user.slice`
    /// and `-.slice` above it).
    pub fn limits_left(&self, unit: &str, slice: &str) -> Result<Vec<(&'static str, u64)>> {
        let kept = slice_ancestors(slice);
        let mut best: [(&'static str, u64); 3] = [
            ("MemoryHigh", u64::MAX),
            ("MemoryMax", u64::MAX),
            ("MemorySwapMax", u64::MAX),
        ];
        let mut name = unit.to_owned();
        for _ in 0..64 {
            if kept.contains(&name) {
                break;
            }
            let path = self.unit_path(&name)?;
            let iface = iface_of(&name);
            for (key, v) in best.iter_mut() {
                if let Ok(x) = self.prop::<u64>(path.as_str(), iface, key) {
                    *v = (*v).min(x);
                }
            }
            let parent: String = self.prop(path.as_str(), iface, "Slice").unwrap_or_default();
            if parent.is_empty() || parent == name {
                break;
            }
            name = parent;
        }
        Ok(best.into_iter().filter(|(_, v)| *v != u64::MAX).collect())
    }

    /// Move `pids` (a job and its descendants) into a new root-owned scope `oomguard-<id>.scope` in `user-<uid>.slice`
    /// with `ManagedOOMPreference=omit` and the memory limits it leaves (see
    /// [`Systemd::limits_left`]). Returns the scope's name and the limits it carries, once
    /// the PID is in it.
    pub fn move_to_scope(
        &self,
        pids: &[u32],
        job_id: &str,
        uid: u32,
        left_unit: &str,
    ) -> Result<(String, Vec<(&'static str, u64)>)> {
        let scope = format!("oomguard-{job_id}.scope");
        let slice = format!("user-{uid}.slice");
        let desc = format!("oomguard job {job_id} (left {left_unit})");
        let mut props: Vec<(&str, Value)> = vec![
            ("Description", Value::from(desc.as_str())),
            ("PIDs", Value::from(pids.to_vec())),
            ("Slice", Value::from(slice.as_str())),
            ("ManagedOOMPreference", Value::from("omit")),
        ];
        let limits = self.limits_left(left_unit, &slice)?;
        for (key, v) in &limits {
            props.push((key, Value::from(*v)));
        }
        let aux: Vec<(&str, Vec<(&str, Value)>)> = Vec::new();
        let m = self.proxy("/org/freedesktop/systemd1", MANAGER)?;
        let _job: OwnedObjectPath = m
            .call("StartTransientUnit", &(scope.as_str(), "fail", props, aux))
            .with_context(|| format!("StartTransientUnit({scope})"))?;
        let pid = pids.first().copied().unwrap_or(0);
        for _ in 0..100 {
            if self.unit_of(pid).is_ok_and(|u| u == scope) {
                return Ok((scope, limits));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        anyhow::bail!("systemd created {scope} but process {pid} is not in it after 2 s")
    }
}

/// A slice and its ancestors by name: `a-b-c.slice` -> `a-b-c.slice`, `a-b.slice`,
/// `a.slice`, `-.slice`.
pub fn slice_ancestors(slice: &str) -> Vec<String> {
    let mut out = vec![slice.to_owned()];
    let mut stem = slice.strip_suffix(".slice").unwrap_or(slice).to_owned();
    while let Some(i) = stem.rfind('-') {
        stem.truncate(i);
        if stem.is_empty() {
            break;
        }
        out.push(format!("{stem}.slice"));
    }
    if slice != "-.slice" {
        out.push("-.slice".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestors_of_a_slice() {
        assert_eq!(
            slice_ancestors("user-1000.slice"),
            ["user-1000.slice", "user.slice", "-.slice"]
        );
        assert_eq!(slice_ancestors("-.slice"), ["-.slice"]);
    }

    #[test]
    fn interfaces_by_suffix() {
        assert_eq!(
            iface_of("user@1000.service"),
            "org.freedesktop.systemd1.Service"
        );
        assert_eq!(
            iface_of("user-1000.slice"),
            "org.freedesktop.systemd1.Slice"
        );
        assert_eq!(iface_of("x.scope"), "org.freedesktop.systemd1.Scope");
        assert!(!booted(Path::new("/nonexistent")));
    }
}
