//! The daemon's admin policy (`/etc/oomguard/config.toml`) and the pure decision it
//! makes on each request. No I/O: the daemon gathers the facts and calls [`Policy::decide`].
//!
//! Every refusal quotes the configuration line that forbids the request, so an admin and
//! a user can see exactly why (`max_jobs_per_user = 2` at config.toml:7).

use serde::Deserialize;

/// Default number of jobs one user may have protected at a time.
pub const DEFAULT_MAX_JOBS: u32 = 4;
/// Default lowest `oom_score_adj` a user may ask for.
pub const DEFAULT_LOWEST_ADJ: i32 = -1000;

/// Where a setting came from: the file's line, or the built-in default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Built-in default (no config file, or the key is absent).
    Default,
    /// `line` is the 1-based line number, `text` the line as written.
    Line {
        file: String,
        line: usize,
        text: String,
    },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => write!(f, "built-in default"),
            Source::Line { file, line, text } => write!(f, "`{}` at {file}:{line}", text.trim()),
        }
    }
}

/// A setting and the line that set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

/// Parsed policy. Defaults (no file) let every user shield up to 4 of their own jobs
/// down to -1000.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// `None`: every user may ask. `Some(list)`: only these user names (or numeric uids).
    pub allowed_users: Setting<Option<Vec<String>>>,
    /// `None`: no group restriction. `Some(list)`: members of these groups may ask too
    /// (with `allowed_users` set, a user passes if either list admits them).
    pub allowed_groups: Setting<Option<Vec<String>>>,
    pub max_jobs_per_user: Setting<u32>,
    pub lowest_adj: Setting<i32>,
    /// Unix socket mode, default 0o666 (every request is judged by its peer credentials).
    pub socket_mode: Setting<u32>,
    /// Group owning the socket (name), default none (root's).
    pub socket_group: Setting<Option<String>>,
    /// How the daemon guards the jobs it shields (`[guard]`).
    pub guard: GuardPolicy,
}

/// `[guard]`: the daemon's guard settings for every job it shields.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardPolicy {
    /// Signal sent to a job in danger when its request named none (e.g. "USR1"); none: no signal.
    pub checkpoint_signal: Option<String>,
    /// `danger` when a killer is estimated to act within this many seconds.
    pub danger_seconds: u32,
    /// `danger` at this percentage of the way to a killer's trigger.
    pub danger_percent: u32,
    /// At most one firing of a job's actions per this many seconds.
    pub min_interval_seconds: u32,
    /// The runaway safety valve (lower a -1000 shield when the job itself exhausts memory).
    pub valve: bool,
    /// Seconds between the valve's warning and lowering the shield.
    pub valve_grace_seconds: u32,
}

impl GuardPolicy {
    /// The valve for one job: (on, grace in seconds). The user may turn it off for their job
    /// (`run --no-valve`) or give it another grace (`run --valve-grace`); `valve = false` in the
    /// policy turns it off for every job.
    pub fn job_valve(&self, user_valve: Option<bool>, user_grace_ms: Option<u64>) -> (bool, f64) {
        (
            self.valve && user_valve != Some(false),
            user_grace_ms.map_or(self.valve_grace_seconds as f64, |ms| ms as f64 / 1000.0),
        )
    }
}

impl Default for GuardPolicy {
    fn default() -> Self {
        GuardPolicy {
            checkpoint_signal: None,
            danger_seconds: 10,
            danger_percent: 95,
            min_interval_seconds: 60,
            valve: true,
            valve_grace_seconds: 10,
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        let d = |v| Setting {
            value: v,
            source: Source::Default,
        };
        Policy {
            allowed_users: Setting {
                value: None,
                source: Source::Default,
            },
            allowed_groups: Setting {
                value: None,
                source: Source::Default,
            },
            max_jobs_per_user: d(DEFAULT_MAX_JOBS),
            lowest_adj: Setting {
                value: DEFAULT_LOWEST_ADJ,
                source: Source::Default,
            },
            socket_mode: Setting {
                value: 0o666,
                source: Source::Default,
            },
            socket_group: Setting {
                value: None,
                source: Source::Default,
            },
            guard: GuardPolicy::default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    allowed_users: Option<Vec<String>>,
    allowed_groups: Option<Vec<String>>,
    max_jobs_per_user: Option<u32>,
    lowest_adj: Option<i32>,
    socket_mode: Option<String>,
    socket_group: Option<String>,
    guard: Option<GuardPolicy>,
}

/// Error in a config file.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{file}: {msg}")]
    Syntax { file: String, msg: String },
    #[error("{file}: {key} = {value}: {why}")]
    Value {
        file: String,
        key: &'static str,
        value: String,
        why: &'static str,
    },
}

impl Policy {
    /// Parse a config file's text. `file` names it in messages.
    pub fn parse(text: &str, file: &str) -> Result<Policy, PolicyError> {
        let raw: Raw = toml::from_str(text).map_err(|e| PolicyError::Syntax {
            file: file.into(),
            msg: e.to_string(),
        })?;
        let src = |key: &str| -> Source {
            text.lines()
                .enumerate()
                .find(|(_, l)| {
                    let l = l.trim_start();
                    l.strip_prefix(key)
                        .is_some_and(|r| r.trim_start().starts_with('='))
                })
                .map(|(i, l)| Source::Line {
                    file: file.into(),
                    line: i + 1,
                    text: l.into(),
                })
                .unwrap_or(Source::Default)
        };
        let mut p = Policy::default();
        if let Some(v) = raw.allowed_users {
            p.allowed_users = Setting {
                value: Some(v),
                source: src("allowed_users"),
            };
        }
        if let Some(v) = raw.allowed_groups {
            p.allowed_groups = Setting {
                value: Some(v),
                source: src("allowed_groups"),
            };
        }
        if let Some(v) = raw.max_jobs_per_user {
            p.max_jobs_per_user = Setting {
                value: v,
                source: src("max_jobs_per_user"),
            };
        }
        if let Some(v) = raw.lowest_adj {
            if !(-1000..=0).contains(&v) {
                return Err(PolicyError::Value {
                    file: file.into(),
                    key: "lowest_adj",
                    value: v.to_string(),
                    why: "must be in -1000..=0",
                });
            }
            p.lowest_adj = Setting {
                value: v,
                source: src("lowest_adj"),
            };
        }
        if let Some(v) = raw.socket_mode {
            let m = u32::from_str_radix(v.trim_start_matches("0o"), 8)
                .ok()
                .filter(|m| *m <= 0o777);
            let Some(m) = m else {
                return Err(PolicyError::Value {
                    file: file.into(),
                    key: "socket_mode",
                    value: v,
                    why: "must be an octal mode string such as \"0660\"",
                });
            };
            p.socket_mode = Setting {
                value: m,
                source: src("socket_mode"),
            };
        }
        if let Some(v) = raw.socket_group {
            p.socket_group = Setting {
                value: Some(v),
                source: src("socket_group"),
            };
        }
        if let Some(g) = raw.guard {
            let bad = |key: &'static str, value: String, why: &'static str| PolicyError::Value {
                file: file.into(),
                key,
                value,
                why,
            };
            if !(1..=100).contains(&g.danger_percent) {
                return Err(bad(
                    "guard.danger_percent",
                    g.danger_percent.to_string(),
                    "must be in 1..=100",
                ));
            }
            if let Some(sig) = &g.checkpoint_signal
                && !crate::guard::actions::is_signal_name(sig)
            {
                return Err(bad(
                    "guard.checkpoint_signal",
                    sig.clone(),
                    "must be a signal name such as \"USR1\" or \"SIGTERM\", or a number",
                ));
            }
            p.guard = g;
        }
        Ok(p)
    }

    /// Decide a protect request. `asker` describes the peer, `adj` is the value asked
    /// for and `active_jobs` how many of this user's protected jobs are alive now.
    pub fn decide(&self, asker: &Asker, adj: i32, active_jobs: u32) -> Result<(), Refusal> {
        let by_user = self.allowed_users.value.as_ref();
        let by_group = self.allowed_groups.value.as_ref();
        if asker.uid != 0 && (by_user.is_some() || by_group.is_some()) {
            let user_ok = by_user.is_some_and(|l| {
                l.iter()
                    .any(|u| *u == asker.user || u.parse::<u32>() == Ok(asker.uid))
            });
            let group_ok = by_group.is_some_and(|l| l.iter().any(|g| asker.groups.contains(g)));
            if !user_ok && !group_ok {
                let source = if by_user.is_some() {
                    self.allowed_users.source.clone()
                } else {
                    self.allowed_groups.source.clone()
                };
                return Err(Refusal {
                    why: format!(
                        "user {} (uid {}) is not allowed to shield jobs",
                        asker.user, asker.uid
                    ),
                    source,
                });
            }
        }
        if adj < self.lowest_adj.value {
            return Err(Refusal {
                why: format!(
                    "oom_score_adj {adj} is below the lowest allowed, {}",
                    self.lowest_adj.value
                ),
                source: self.lowest_adj.source.clone(),
            });
        }
        if active_jobs >= self.max_jobs_per_user.value {
            return Err(Refusal {
                why: format!(
                    "user {} already has {active_jobs} protected jobs, the most allowed is {}",
                    asker.user, self.max_jobs_per_user.value
                ),
                source: self.max_jobs_per_user.source.clone(),
            });
        }
        Ok(())
    }
}

/// Who is asking (from SO_PEERCRED and the user/group databases).
#[derive(Debug, Clone)]
pub struct Asker {
    pub uid: u32,
    pub user: String,
    /// Names of every group the user belongs to (primary and supplementary).
    pub groups: Vec<String>,
}

/// A policy refusal: why, and the setting that forbids it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub why: String,
    pub source: Source,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "refused by policy: {} ({})", self.why, self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Asker {
        Asker {
            uid: 1000,
            user: "alice".into(),
            groups: vec!["alice".into(), "ml".into()],
        }
    }

    /// The shipped config documents every option, commented out: uncommented, it parses.
    #[test]
    fn the_shipped_config_uncommented_parses() {
        let text = include_str!("../../dist/config.toml");
        let on: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(r)
                    if r.starts_with('[')
                        || r.split_once(" = ").is_some_and(|(k, _)| !k.contains(' ')) =>
                {
                    r
                }
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let p = Policy::parse(&on, "dist/config.toml").unwrap_or_else(|e| panic!("{e}\n{on}"));
        assert_eq!(p.guard.checkpoint_signal.as_deref(), Some("USR1"));
        assert_eq!(p.socket_group.value.as_deref(), Some("oomguard"));
        assert!(Policy::parse(text, "dist/config.toml").unwrap() == Policy::default());
    }

    #[test]
    fn guard_section() {
        let p = Policy::parse(
            "[guard]\ncheckpoint_signal = \"USR1\"\ndanger_seconds = 30\nvalve = false\n",
            "c",
        )
        .unwrap();
        assert_eq!(p.guard.checkpoint_signal.as_deref(), Some("USR1"));
        assert_eq!(p.guard.danger_seconds, 30);
        assert!(!p.guard.valve);
        assert_eq!(p.guard.danger_percent, 95, "unset keys keep their defaults");
        let e = Policy::parse("[guard]\ncheckpoint_signal = \"NOPE\"\n", "c").unwrap_err();
        assert!(e.to_string().contains("guard.checkpoint_signal"), "{e}");
        let e = Policy::parse("[guard]\ndanger_percent = 0\n", "c").unwrap_err();
        assert!(e.to_string().contains("1..=100"), "{e}");
        assert!(Policy::parse("[guard]\ntypo = 1\n", "c").is_err());
    }

    #[test]
    fn defaults_allow_four_jobs_to_minus_1000() {
        let p = Policy::default();
        assert!(p.decide(&alice(), -1000, 3).is_ok());
        let r = p.decide(&alice(), -1000, 4).unwrap_err();
        assert_eq!(r.source, Source::Default);
        assert!(r.to_string().contains("the most allowed is 4"), "{r}");
    }

    #[test]
    fn refusal_quotes_the_line() {
        let text = "# comment\nmax_jobs_per_user = 2\nlowest_adj = -500\n";
        let p = Policy::parse(text, "/etc/oomguard/config.toml").unwrap();
        let r = p.decide(&alice(), -1000, 0).unwrap_err();
        assert_eq!(
            r.to_string(),
            "refused by policy: oom_score_adj -1000 is below the lowest allowed, -500 (`lowest_adj = -500` at /etc/oomguard/config.toml:3)"
        );
        let r = p.decide(&alice(), -500, 2).unwrap_err();
        assert!(
            r.to_string()
                .contains("`max_jobs_per_user = 2` at /etc/oomguard/config.toml:2"),
            "{r}"
        );
        assert!(p.decide(&alice(), -400, 1).is_ok());
    }

    #[test]
    fn users_and_groups() {
        let p = Policy::parse(
            "allowed_users = [\"bob\"]\nallowed_groups = [\"ml\"]\n",
            "c",
        )
        .unwrap();
        assert!(p.decide(&alice(), 0, 0).is_ok(), "alice is in group ml");
        let carol = Asker {
            uid: 1002,
            user: "carol".into(),
            groups: vec!["carol".into()],
        };
        let r = p.decide(&carol, 0, 0).unwrap_err();
        assert!(
            r.to_string().contains("`allowed_users = [\"bob\"]` at c:1"),
            "{r}"
        );
        let p = Policy::parse("allowed_users = [\"1002\"]\n", "c").unwrap();
        assert!(p.decide(&carol, 0, 0).is_ok(), "numeric uid admitted");
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(Policy::parse("lowest_adj = 5\n", "c").is_err());
        assert!(Policy::parse("socket_mode = \"999\"\n", "c").is_err());
        assert!(Policy::parse("nonsense = 1\n", "c").is_err());
        let p =
            Policy::parse("socket_mode = \"0660\"\nsocket_group = \"oomguard\"\n", "c").unwrap();
        assert_eq!(p.socket_mode.value, 0o660);
    }

    #[test]
    fn a_job_valve_honours_the_user_and_the_policy() {
        let p = GuardPolicy::default();
        assert_eq!(p.job_valve(None, None), (true, 10.0));
        assert_eq!(p.job_valve(Some(false), None), (false, 10.0));
        assert_eq!(p.job_valve(Some(true), Some(2500)), (true, 2.5));
        let off = GuardPolicy {
            valve: false,
            ..GuardPolicy::default()
        };
        assert!(!off.job_valve(Some(true), None).0);
    }
}
