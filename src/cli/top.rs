//! `oomguard top`: every process in the order the kernel's OOM killer would choose it.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use super::render::{kib, print_json, use_color};
use super::survey::{HostArgs, MemcgTarget, Row, memcg_target, resolve_cgroup_dir};
use crate::host::psi::{Pressure, system_memory_pressure};
use crate::model::killer::{KernelOom, Killer, Snapshot};

/// Arguments of `oomguard top`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    oomguard top                      live view, refreshed every second (q quits)\n  \
    oomguard top --once -n 10         the next ten victims of a global OOM\n  \
    oomguard top --json --cgroup /sys/fs/cgroup/system.slice/slurmd.service\n\n\
    The score is the kernel's own: oom_score equals /proc/PID/oom_score. With --cgroup the\n\
    order is that of the group's memcg OOM killer (its limit is the total; only members).")]
pub struct Args {
    /// Print one table (or JSON) and exit, instead of the live view
    #[arg(long)]
    pub once: bool,
    /// Print a JSON array of processes in victim order (implies --once)
    #[arg(long)]
    pub json: bool,
    /// Rank only the members of this memory cgroup, as its memcg OOM killer would (v1 or v2)
    #[arg(long, value_name = "DIR")]
    pub cgroup: Option<PathBuf>,
    /// Show at most N processes
    #[arg(short = 'n', long = "limit", value_name = "N")]
    pub limit: Option<usize>,
    /// Refresh interval of the live view, in seconds
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    pub interval: f64,
    /// Include processes that are never chosen (adj -1000, init) in the table
    #[arg(long, short = 'a')]
    pub all: bool,
    #[command(flatten)]
    pub host: HostArgs,
}

/// One refresh: what the header says and the rows.
struct View {
    header: Vec<String>,
    rows: Vec<Row>,
}

fn gather(args: &Args) -> anyhow::Result<View> {
    let snap = args.host.snapshot()?;
    let cg = args.host.cgroupfs();
    let target = match &args.cgroup {
        Some(dir) => Some(memcg_target(&cg, &resolve_cgroup_dir(&cg, dir)?, &snap)?),
        None => None,
    };
    let killer = match &target {
        Some(t) => KernelOom::memcg(&t.path, t.members.iter().copied(), t.totalpages),
        None => KernelOom::global(),
    };
    let users = args.host.users();
    let ranked = killer.rank(&snap);
    let mut rows: Vec<Row> = ranked.iter().map(|r| Row::new(r, &snap, &users)).collect();
    if !args.json && !args.all {
        rows.retain(|r| r.killable);
    }
    if let Some(n) = args.limit {
        rows.truncate(n);
    }
    let psi = system_memory_pressure(&args.host.proc_root).ok();
    Ok(View {
        header: header(&snap, target.as_ref(), psi, killer.totalpages(&snap)),
        rows,
    })
}

fn header(
    snap: &Snapshot,
    target: Option<&MemcgTarget>,
    psi: Option<Pressure>,
    total: u64,
) -> Vec<String> {
    let t = &snap.totals;
    let mut h = vec![format!(
        "Memory {} total, {} available ({:.0}%); swap {} total, {} free",
        kib(t.mem_total_kib),
        kib(t.mem_available_kib),
        100.0 * t.mem_available_kib as f64 / t.mem_total_kib.max(1) as f64,
        kib(t.swap_total_kib),
        kib(t.swap_free_kib),
    )];
    h.push(match psi {
        Some(p) => format!(
            "Pressure (avg10/avg60): some {:.2}%/{:.2}%, full {:.2}%/{:.2}%",
            p.some.avg10, p.some.avg60, p.full.avg10, p.full.avg60
        ),
        None => "Pressure: not available (kernel without PSI)".into(),
    });
    h.push(match target {
        None => format!(
            "Kernel OOM killer, global: candidates ranked against RAM + swap = {total} pages"
        ),
        Some(t) => format!(
            "Kernel memcg OOM in {}: limit {}, usage {}, total {} pages, {} members",
            t.path,
            t.group.limit_bytes.map_or("none".into(), |b| kib(b / 1024)),
            t.group.usage_bytes.map_or("?".into(), |b| kib(b / 1024)),
            t.totalpages,
            t.members.len()
        ),
    });
    h
}

const COLS: [(&str, usize); 9] = [
    ("#", 4),
    ("PID", 7),
    ("USER", 9),
    ("NAME", 15),
    ("RSS", 10),
    ("SWAP", 9),
    ("ADJ", 5),
    ("SCORE", 5),
    ("SHARE", 6),
];
/// Width left for the cgroup/unit column in a 100-column table.
const CGROUP_W: usize = 100 - 4 - 7 - 9 - 15 - 10 - 9 - 5 - 5 - 6 - 9;

fn cells(r: &Row) -> [String; 10] {
    let place = r
        .cgroup
        .as_deref()
        .map(|c| r.unit.clone().unwrap_or_else(|| c.to_string()))
        .unwrap_or_default();
    [
        r.rank.map_or("-".into(), |n| n.to_string()),
        r.pid.to_string(),
        r.user.clone(),
        r.name.clone(),
        kib(r.rss_kib),
        kib(r.swap_kib),
        r.oom_score_adj.to_string(),
        r.oom_score.to_string(),
        format!("{:.1}%", 100.0 * r.share),
        place,
    ]
}

/// Cut `s` to `w` characters, keeping its end (the informative part of paths).
fn tail(s: &str, w: usize) -> String {
    let n = s.chars().count();
    if n <= w {
        s.to_string()
    } else {
        format!("…{}", s.chars().skip(n + 1 - w).collect::<String>())
    }
}

fn head(s: &str, w: usize) -> String {
    if s.chars().count() <= w {
        s.to_string()
    } else {
        s.chars().take(w).collect()
    }
}

fn print_table(view: &View) -> anyhow::Result<()> {
    let color = use_color();
    let mut out = std::io::stdout().lock();
    for h in &view.header {
        writeln!(out, "{h}")?;
    }
    let mut line = String::new();
    for (name, w) in COLS {
        line.push_str(&format!("{name:>w$} "));
    }
    line.push_str("CGROUP/UNIT");
    writeln!(
        out,
        "{}",
        if color {
            format!("\x1b[1m{line}\x1b[0m")
        } else {
            line
        }
    )?;
    for r in &view.rows {
        let c = cells(r);
        let mut line = String::new();
        for (i, (_, w)) in COLS.iter().enumerate() {
            let w = *w;
            let v = if i == 3 || i == 2 {
                head(&c[i], w)
            } else {
                c[i].clone()
            };
            if i == 2 || i == 3 {
                line.push_str(&format!("{v:<w$} "));
            } else {
                line.push_str(&format!("{v:>w$} "));
            }
        }
        line.push_str(&tail(&c[9], CGROUP_W));
        let line = line.trim_end().to_string();
        let line = if color && r.rank == Some(1) {
            format!("\x1b[31m{line}\x1b[0m")
        } else {
            line
        };
        if writeln!(out, "{line}").is_err() {
            break; // e.g. `| head`: a closed pipe is not an error
        }
    }
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    if args.json {
        print_json(&gather(&args)?.rows)?;
    } else if args.once || !std::io::stdout().is_terminal() {
        print_table(&gather(&args)?)?;
    } else {
        live(&args)?;
    }
    Ok(0)
}

/// Draw one frame of the live view.
fn draw(f: &mut ratatui::Frame, view: &View) {
    use ratatui::layout::{Constraint, Layout};
    use ratatui::style::{Modifier, Style};
    use ratatui::widgets::{Paragraph, Row as TRow, Table};

    let [top, body] = Layout::vertical([
        Constraint::Length(view.header.len() as u16 + 1),
        Constraint::Min(0),
    ])
    .areas(f.area());
    let mut hdr = view.header.clone();
    hdr.push("q: quit".into());
    f.render_widget(Paragraph::new(hdr.join("\n")), top);
    let widths = COLS
        .iter()
        .map(|(_, w)| Constraint::Length(*w as u16))
        .chain([Constraint::Min(10)]);
    let rows = view.rows.iter().map(|r| {
        let row = TRow::new(cells(r));
        if r.rank == Some(1) {
            row.style(Style::default().add_modifier(Modifier::BOLD))
        } else {
            row
        }
    });
    let head = TRow::new(COLS.iter().map(|(n, _)| *n).chain(["CGROUP/UNIT"]))
        .style(Style::default().add_modifier(Modifier::REVERSED));
    f.render_widget(Table::new(rows, widths).header(head), body);
}

/// The live view: refreshed every `--interval` seconds; q, Esc or Ctrl-C quits.
fn live(args: &Args) -> anyhow::Result<()> {
    use ratatui::crossterm::event::{self, Event, KeyCode, KeyModifiers};

    let interval = Duration::from_secs_f64(args.interval.clamp(0.1, 3600.0));
    let mut view = gather(args)?;
    let mut terminal = ratatui::init();
    let result = (|| -> anyhow::Result<()> {
        loop {
            terminal.draw(|f| draw(f, &view))?;
            if event::poll(interval)?
                && let Event::Key(k) = event::read()?
            {
                let ctrl_c =
                    k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                if matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c {
                    return Ok(());
                }
            }
            view = gather(args)?;
        }
    })();
    ratatui::restore();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: Args,
    }

    fn fixture_args(extra: &[&str]) -> Args {
        let fx = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
        let mut argv = vec![
            "t".to_string(),
            format!("--proc-root={fx}/proc"),
            format!("--cgroup-root={fx}/cgroup-v1"),
        ];
        argv.extend(extra.iter().map(|s| s.to_string()));
        T::parse_from(argv).a
    }

    #[test]
    fn live_view_renders_header_and_victims() {
        let view = gather(&fixture_args(&[])).unwrap();
        let mut term = ratatui::Terminal::new(ratatui::backend::TestBackend::new(100, 12)).unwrap();
        term.draw(|f| draw(f, &view)).unwrap();
        let screen: String = term
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        for needle in [
            "Memory 23.",
            "Kernel OOM killer, global",
            "q: quit",
            "PID",
            "python3",
            "4402",
            "870",
        ] {
            assert!(
                screen.contains(needle),
                "missing {needle:?} on screen:\n{screen}"
            );
        }
    }

    #[test]
    fn table_fits_100_columns_and_memcg_mode_ranks_members_only() {
        let view = gather(&fixture_args(&["--cgroup", "job/4f2a"])).unwrap();
        assert_eq!(
            view.rows.iter().map(|r| r.pid).collect::<Vec<_>>(),
            vec![4402]
        );
        assert!(
            view.header[2].contains("memcg OOM in /job/4f2a: limit 300.0 MiB"),
            "{}",
            view.header[2]
        );
        for r in &view.rows {
            let c = cells(r);
            let w: usize = COLS.iter().map(|(_, w)| w + 1).sum::<usize>()
                + tail(&c[9], CGROUP_W).chars().count();
            assert!(w <= 100, "{w}");
        }
        let err = gather(&fixture_args(&["--cgroup", "job"]))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("has no memory limit"), "{err}");
    }
}
