//! Where OOM kills are written down: the kernel's ring buffer (`/dev/kmsg`, or `dmesg`
//! when kmsg cannot be read), the systemd journal (`journalctl -o json`, spawned), and
//! files or stdin users give. Each source feeds one [`Assembler`]; the caller merges.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::model::event::{Assembler, Clock, OomEvent, from_bytes};
use crate::model::parse::{journal, prefilter};

/// Events and unlinked evidence of one source.
pub type Found = (Vec<OomEvent>, Vec<String>);

/// Wall-clock time of boot from `<proc>/stat` (`btime`, whole seconds).
pub fn boot_unix(proc: &Path) -> Option<f64> {
    let s = std::fs::read_to_string(proc.join("stat")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<f64>().ok())
}

/// One `/dev/kmsg` record: `prio,seq,usec,flags[,…];message` (continuation lines, which
/// start with a space, carry dictionary keys and are skipped).
pub fn kmsg_record(rec: &[u8]) -> Option<(f64, String)> {
    let semi = memchr::memchr(b';', rec)?;
    let head = std::str::from_utf8(&rec[..semi]).ok()?;
    let usec: u64 = head.split(',').nth(2)?.parse().ok()?;
    let body = &rec[semi + 1..];
    let end = memchr::memchr(b'\n', body).unwrap_or(body.len());
    Some((
        usec as f64 / 1e6,
        String::from_utf8_lossy(&body[..end]).into_owned(),
    ))
}

/// Read every record now in the kernel's ring buffer from `path` (`/dev/kmsg`), without
/// blocking, and assemble its events.
pub fn kmsg(path: &Path, clock: Clock) -> Result<Found> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("cannot read {}", path.display()))?;
    let mut a = Assembler::new("kmsg", clock);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match rustix::io::read(&fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let rec = &buf[..n];
                if !prefilter::candidate(rec) {
                    continue;
                }
                if let Some((up, msg)) = kmsg_record(rec) {
                    a.push_kmsg(up, &msg);
                }
            }
            // Overwritten while we read: the next read resumes at the oldest record.
            Err(rustix::io::Errno::PIPE) => continue,
            Err(rustix::io::Errno::AGAIN) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
    Ok(a.finish())
}

/// The kernel log through `dmesg` (for systems where `/dev/kmsg` is not readable but
/// `dmesg` is, e.g. through a setuid wrapper or a capability).
pub fn dmesg(clock: Clock) -> Result<Found> {
    let out = Command::new("dmesg")
        .arg("--raw")
        .stderr(Stdio::piped())
        .output()
        .context("cannot run dmesg")?;
    if !out.status.success() {
        bail!(
            "dmesg failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // `--raw` keeps `<6>[  310.63] msg`: strip the priority.
    let text: Vec<u8> = out
        .stdout
        .split(|&b| b == b'\n')
        .flat_map(|l| {
            let l = if l.first() == Some(&b'<') {
                memchr::memchr(b'>', l).map_or(l, |i| &l[i + 1..])
            } else {
                l
            };
            l.iter().copied().chain(std::iter::once(b'\n'))
        })
        .collect();
    Ok(from_bytes(&text, "dmesg", clock))
}

/// What to ask the journal for.
#[derive(Debug, Clone, Default)]
pub struct JournalQuery {
    /// A journal file (`journalctl --file`) instead of the system journal.
    pub file: Option<std::path::PathBuf>,
    /// Seconds since the epoch.
    pub since: Option<f64>,
    pub until: Option<f64>,
}

/// The journal entries of the killers (kernel, systemd-oomd, systemd and user managers,
/// earlyoom, nohang), through `journalctl -o json`.
pub fn journal(q: &JournalQuery, clock: Clock) -> Result<Found> {
    let mut cmd = Command::new("journalctl");
    cmd.args(["-o", "json", "--no-pager", "-q"]);
    if let Some(f) = &q.file {
        cmd.arg(format!("--file={}", f.display()));
    }
    if let Some(s) = q.since {
        cmd.arg(format!("--since=@{}", s.floor() as i64));
    }
    if let Some(u) = q.until {
        cmd.arg(format!("--until=@{}", u.ceil() as i64));
    }
    // OR of matches: the programs that write kill lines.
    let matches = [
        "_TRANSPORT=kernel",
        "SYSLOG_IDENTIFIER=systemd-oomd",
        "SYSLOG_IDENTIFIER=systemd",
        "SYSLOG_IDENTIFIER=earlyoom",
        "SYSLOG_IDENTIFIER=nohang",
        "SYSLOG_IDENTIFIER=nohang-desktop",
    ];
    for (i, m) in matches.iter().enumerate() {
        if i > 0 {
            cmd.arg("+");
        }
        cmd.arg(m);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run journalctl")?;
    let mut a = Assembler::new(
        if q.file.is_some() {
            "journal-file"
        } else {
            "journal"
        },
        clock,
    );
    let out = child.stdout.take().context("journalctl stdout")?;
    let mut rd = BufReader::with_capacity(1 << 16, out);
    let mut line = Vec::new();
    loop {
        line.clear();
        if rd.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if !prefilter::candidate(&line) {
            continue;
        }
        if let Some(e) = journal::entry(&line) {
            a.push_entry(e.unix, e.ident.as_deref(), &e.message);
        }
    }
    let mut err = String::new();
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    let status = child.wait()?;
    // journalctl exits 1 with "No entries" or "No journal files were found" on empty
    // systems: not an error for us.
    if !status.success()
        && !err.contains("No journal files")
        && !err.contains("No entries")
        && !err.trim().is_empty()
    {
        bail!("journalctl failed: {}", err.trim());
    }
    Ok(a.finish())
}

/// Whether a file is a binary journal file (magic `LPKSHHRH`).
pub fn is_journal_file(path: &Path) -> bool {
    let mut magic = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"LPKSHHRH"
}

/// A text log file (or `-` for stdin), any format users paste.
pub fn text(path: &Path, clock: Clock) -> Result<Found> {
    let name = path.display().to_string();
    if name == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading stdin")?;
        return Ok(from_bytes(&buf, "stdin", clock));
    }
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {name}"))?;
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    // SAFETY: the map is read-only and private; a file truncated under us can raise
    // SIGBUS, which is the usual caveat of grep-like tools and acceptable for logs.
    let map = unsafe { memmap2::Mmap::map(&f) }.with_context(|| format!("cannot map {name}"))?;
    let _ = map.advise(memmap2::Advice::Sequential);
    Ok(from_bytes(&map, &name, clock))
}

/// Follow new kills as they are logged, calling `on_kill` with each new event's killer,
/// until `stop` says so. Uses `journalctl -f` when the journal is there (kernel, systemd-oomd,
/// earlyoom, nohang), else `/dev/kmsg` (kernel only). Blocks; run it on its own thread.
pub fn follow_kills(
    kmsg_path: &Path,
    clock: Clock,
    mut on_kill: impl FnMut(&OomEvent),
) -> Result<()> {
    let journal = if Path::new("/run/systemd/journal").exists() {
        Command::new("journalctl")
            .args(["-f", "-n", "0", "-o", "json", "--no-pager", "-q"])
            .args([
                "_TRANSPORT=kernel",
                "+",
                "SYSLOG_IDENTIFIER=systemd-oomd",
                "+",
                "SYSLOG_IDENTIFIER=systemd",
                "+",
                "SYSLOG_IDENTIFIER=earlyoom",
                "+",
                "SYSLOG_IDENTIFIER=nohang",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()
    } else {
        None
    };
    let mut a = Assembler::new("follow", clock);
    let mut seen = 0;
    let mut check = |a: &mut Assembler| {
        if a.created() > seen {
            seen = a.created();
            if let Some(e) = a.last() {
                on_kill(e);
            }
            a.trim();
        }
    };
    if let Some(mut child) = journal {
        let out = child.stdout.take().context("journalctl stdout")?;
        let mut rd = BufReader::new(out);
        let mut line = Vec::new();
        while rd.read_until(b'\n', &mut line)? > 0 {
            if prefilter::candidate(&line)
                && let Some(e) = journal::entry(&line)
            {
                a.push_entry(e.unix, e.ident.as_deref(), &e.message);
                check(&mut a);
            }
            line.clear();
        }
        let _ = child.wait();
        return Ok(());
    }
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(kmsg_path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .with_context(|| format!("cannot read {}", kmsg_path.display()))?;
    // Only what is logged from now on.
    rustix::fs::seek(&fd, rustix::fs::SeekFrom::End(0))?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match rustix::io::read(&fd, &mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                if prefilter::candidate(&buf[..n])
                    && let Some((up, msg)) = kmsg_record(&buf[..n])
                {
                    a.push_kmsg(up, &msg);
                    check(&mut a);
                }
            }
            Err(rustix::io::Errno::PIPE) | Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e).context("reading the kernel log"),
        }
    }
}
