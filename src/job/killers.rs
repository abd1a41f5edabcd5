//! earlyoom and nohang: find them in `/proc`, read their rules, and say whether they
//! would still pick a job with a given `oom_score_adj`, name and command line.

use std::path::Path;

use crate::job::layers::{Layer, State};
use crate::model::armed::arg_value as opt;

/// A running killer found in `/proc`.
#[derive(Debug, Clone)]
pub struct Found {
    pub pid: i32,
    pub args: Vec<String>,
}

/// Find running processes whose command (or, for script interpreters, first script
/// argument) is named `name`.
pub fn find(proc: &Path, name: &str) -> Vec<Found> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(proc) else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let base = |s: &String| s.rsplit('/').next().unwrap_or(s).to_owned();
        let hit = args.first().is_some_and(|a| base(a) == name)
            || (args.first().is_some_and(|a| base(a).starts_with("python"))
                && args.get(1).is_some_and(|a| base(a) == name));
        if hit {
            let skip = if args.first().is_some_and(|a| base(a) == name) {
                1
            } else {
                2
            };
            out.push(Found {
                pid,
                args: args[skip..].to_vec(),
            });
        }
    }
    out
}

fn matches(re: &str, s: &str) -> bool {
    regex::Regex::new(re).is_ok_and(|r| r.is_match(s))
}

/// The earlyoom layer for a job with `adj` and process name `comm`.
pub fn earlyoom(eo: &Found, adj: i32, comm: &str) -> Layer {
    const L: &str = "earlyoom";
    let who = format!("earlyoom (pid {})", eo.pid);
    if adj == -1000 {
        return Layer::new(
            L,
            State::Applied,
            format!("{who} skips processes with oom_score_adj -1000"),
        );
    }
    if let Some(re) = opt(&eo.args, "--ignore", None)
        && matches(re, comm)
    {
        return Layer::new(
            L,
            State::Applied,
            format!("{who} ignores it: --ignore '{re}' matches '{comm}'"),
        );
    }
    if eo.args.iter().any(|a| a == "--sort-by-rss") {
        return Layer::new(
            L,
            State::Failed,
            format!(
                "{who} runs with --sort-by-rss: it picks the largest RSS whatever oom_score_adj {adj} says"
            ),
        );
    }
    if let Some(re) = opt(&eo.args, "--prefer", None)
        && matches(re, comm)
    {
        return Layer::new(
            L,
            State::Failed,
            format!("{who} --prefer '{re}' matches '{comm}' and adds 300 to its oom_score"),
        );
    }
    if adj < 0 {
        Layer::new(
            L,
            State::Applied,
            format!("{who} ranks by oom_score, lowered by oom_score_adj {adj}"),
        )
    } else {
        Layer::new(
            L,
            State::Failed,
            format!("{who} ranks by oom_score; oom_score_adj {adj} gives no shield"),
        )
    }
}

/// The nohang layer: rules `@BADNESS_ADJ_RE_NAME|CMDLINE  N /// REGEX` with N > 0 that
/// match the job still raise its badness.
pub fn nohang(nh: &Found, config: &str, adj: i32, comm: &str, cmdline: &str) -> Layer {
    const L: &str = "nohang";
    let who = format!("nohang (pid {})", nh.pid);
    if adj == -1000 {
        return Layer::new(
            L,
            State::Applied,
            format!("{who} never picks a process whose oom_score is 0"),
        );
    }
    let mut hits = Vec::new();
    for line in config.lines() {
        let line = line.trim();
        let (target, rest) = if let Some(r) = line.strip_prefix("@BADNESS_ADJ_RE_NAME") {
            (comm, r)
        } else if let Some(r) = line.strip_prefix("@BADNESS_ADJ_RE_CMDLINE") {
            (cmdline, r)
        } else {
            continue;
        };
        let Some((n, re)) = rest.split_once("///") else {
            continue;
        };
        if n.trim().parse::<i64>().is_ok_and(|n| n > 0) && matches(re.trim(), target) {
            hits.push(line.to_owned());
        }
    }
    if !hits.is_empty() {
        return Layer::new(
            L,
            State::Failed,
            format!("{who} rules raise its badness: {}", hits.join("; ")),
        );
    }
    if adj < 0 {
        Layer::new(
            L,
            State::Applied,
            format!("{who} ranks by oom_score, lowered by oom_score_adj {adj}"),
        )
    } else {
        Layer::new(
            L,
            State::Failed,
            format!("{who} ranks by oom_score; oom_score_adj {adj} gives no shield"),
        )
    }
}

/// Assess earlyoom and nohang for a job (absent killers are "not applicable").
pub fn assess(proc: &Path, adj: i32, comm: &str, cmdline: &str) -> Vec<Layer> {
    let eo = find(proc, "earlyoom");
    let l_eo = match eo.first() {
        Some(f) => earlyoom(f, adj, comm),
        None => Layer::new("earlyoom", State::NotApplicable, "earlyoom is not running"),
    };
    let nh = find(proc, "nohang");
    let l_nh = match nh.first() {
        Some(f) => {
            let path = opt(&f.args, "--config", Some("-c")).unwrap_or("/etc/nohang/nohang.conf");
            let config = std::fs::read_to_string(path).unwrap_or_default();
            nohang(f, &config, adj, comm, cmdline)
        }
        None => Layer::new("nohang", State::NotApplicable, "nohang is not running"),
    };
    vec![l_eo, l_nh]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eo(args: &[&str]) -> Found {
        Found {
            pid: 9,
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn earlyoom_rules() {
        assert_eq!(
            earlyoom(&eo(&["--sort-by-rss"]), -1000, "python3").state,
            State::Applied
        );
        let l = earlyoom(&eo(&["-m", "5", "--sort-by-rss"]), -500, "python3");
        assert_eq!(l.state, State::Failed);
        assert!(l.detail.contains("--sort-by-rss"));
        let l = earlyoom(&eo(&["--prefer", "^(python3|java)$"]), -500, "python3");
        assert_eq!(l.state, State::Failed, "{}", l.detail);
        assert_eq!(
            earlyoom(&eo(&["--prefer=^java$"]), -500, "python3").state,
            State::Applied
        );
        assert_eq!(
            earlyoom(&eo(&["--ignore", "py"]), 0, "python3").state,
            State::Applied
        );
        assert_eq!(earlyoom(&eo(&[]), 0, "python3").state, State::Failed);
    }

    #[test]
    fn nohang_rules() {
        let conf =
            "@BADNESS_ADJ_RE_NAME 200 /// ^python3$\n@BADNESS_ADJ_RE_CMDLINE -100 /// train\n";
        let f = eo(&[]);
        let l = nohang(&f, conf, -500, "python3", "python3 train.py");
        assert_eq!(l.state, State::Failed);
        assert!(
            l.detail.contains("^python3$") && !l.detail.contains("train"),
            "{}",
            l.detail
        );
        assert_eq!(nohang(&f, conf, -1000, "python3", "").state, State::Applied);
        assert_eq!(nohang(&f, conf, -500, "java", "java").state, State::Applied);
    }

    #[test]
    fn finds_by_name_in_a_fake_proc() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("77")).unwrap();
        std::fs::write(
            d.path().join("77/cmdline"),
            b"/usr/bin/python3\0/usr/sbin/nohang\0--config\0/x\0",
        )
        .unwrap();
        std::fs::create_dir_all(d.path().join("78")).unwrap();
        std::fs::write(d.path().join("78/cmdline"), b"earlyoom\0-r\0 60\0").unwrap();
        assert_eq!(find(d.path(), "nohang")[0].args, vec!["--config", "/x"]);
        assert_eq!(find(d.path(), "earlyoom")[0].pid, 78);
    }
}
