//! Reader of `/proc`, rooted at a configurable path (`/proc` in production).
//!
//! The hot path (`scan`) reads three small files per process (`status`, `oom_score_adj`,
//! `cgroup`) with one reusable buffer and parses only the fields the model needs; it runs on
//! several threads. Processes that vanish mid-scan and unreadable files are skipped, never
//! a panic. Less frequent reads (`stat`, `cmdline`, `meminfo`) use the `procfs` crate.

use std::ffi::CStr;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rustix::fs::{Mode, OFlags};

use crate::model::process::{CgroupPaths, MemCounters, MemTotals, ProcInfo};

/// A `/proc` tree.
#[derive(Clone, Debug)]
pub struct ProcFs {
    root: PathBuf,
}

impl Default for ProcFs {
    fn default() -> Self {
        ProcFs::new("/proc")
    }
}

impl ProcFs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ProcFs { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every numeric entry of the tree, ascending.
    pub fn pids(&self) -> anyhow::Result<Vec<i32>> {
        let rd = std::fs::read_dir(&self.root)
            .with_context(|| format!("cannot list {}", self.root.display()))?;
        let mut pids: Vec<i32> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
            .filter(|&p: &i32| p > 0)
            .collect();
        pids.sort_unstable();
        Ok(pids)
    }

    /// Sample every process. Vanished or unreadable ones are left out.
    pub fn scan(&self) -> anyhow::Result<Vec<ProcInfo>> {
        let pids = self.pids()?;
        let dir = self.open_root()?;
        // Below a few hundred processes threads cost more than they save (and asking how many
        // cores we may use reads three cgroup files).
        let threads = if pids.len() < 256 {
            1
        } else {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(8)
        };
        if threads <= 1 {
            let mut r = Reader::new(&dir);
            return Ok(pids.iter().filter_map(|&p| r.sample(p)).collect());
        }
        let chunk = pids.len().div_ceil(threads);
        let dir = &dir;
        let parts: Vec<Vec<ProcInfo>> = std::thread::scope(|s| {
            let handles: Vec<_> = pids
                .chunks(chunk)
                .map(|c| {
                    s.spawn(move || {
                        let mut r = Reader::new(dir);
                        c.iter().filter_map(|&p| r.sample(p)).collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        Ok(parts.into_iter().flatten().collect())
    }

    /// Sample one process; `None` if it does not exist (any more) or cannot be read.
    pub fn sample(&self, pid: i32) -> Option<ProcInfo> {
        let dir = self.open_root().ok()?;
        Reader::new(&dir).sample(pid)
    }

    fn open_root(&self) -> anyhow::Result<OwnedFd> {
        rustix::fs::open(
            &self.root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("cannot open {}", self.root.display()))
    }

    /// `/proc/PID/oom_score`, as the kernel prints it.
    pub fn oom_score(&self, pid: i32) -> Option<u64> {
        let mut buf = Vec::new();
        read_into(&self.pid_path(pid, "oom_score"), &mut buf).ok()?;
        std::str::from_utf8(&buf).ok()?.trim().parse().ok()
    }

    /// `/proc/PID/oom_score_adj`.
    pub fn oom_score_adj(&self, pid: i32) -> Option<i32> {
        let mut buf = Vec::new();
        read_into(&self.pid_path(pid, "oom_score_adj"), &mut buf).ok()?;
        parse_i32(&buf)
    }

    /// `/proc/PID/cmdline` split at NULs (empty for kernel threads and zombies).
    pub fn cmdline(&self, pid: i32) -> Option<Vec<String>> {
        let p = procfs::process::Process::new_with_root(self.root.join(pid.to_string())).ok()?;
        p.cmdline().ok()
    }

    /// `/proc/PID/stat`, parsed by procfs.
    pub fn stat(&self, pid: i32) -> Option<procfs::process::Stat> {
        let p = procfs::process::Process::new_with_root(self.root.join(pid.to_string())).ok()?;
        p.stat().ok()
    }

    /// `/proc/meminfo`.
    /// The guard reads this every second per machine, so only the four fields it needs are
    /// parsed (procfs's full parse costs several times more).
    pub fn meminfo(&self) -> anyhow::Result<MemTotals> {
        let path = self.root.join("meminfo");
        let mut buf = Vec::with_capacity(2048);
        read_into(&path, &mut buf).with_context(|| format!("cannot read {}", path.display()))?;
        parse_meminfo(&buf).with_context(|| format!("{} is not a meminfo file", path.display()))
    }

    fn pid_path(&self, pid: i32, file: &str) -> PathBuf {
        self.root.join(itoa::Buffer::new().format(pid)).join(file)
    }
}

/// Reads `PID/file` relative to an open `/proc` directory with one reusable buffer:
/// no path allocation, one `openat` and (for these small files) one `read` each.
struct Reader<'a> {
    dir: &'a OwnedFd,
    buf: Vec<u8>,
    path: [u8; 40],
}

impl<'a> Reader<'a> {
    fn new(dir: &'a OwnedFd) -> Self {
        Reader {
            dir,
            buf: vec![0; 8192],
            path: [0; 40],
        }
    }

    /// Read `pid/name` into the buffer; the filled part, or `None` if it cannot be read.
    ///
    /// A read that returns less than the room left is taken as the whole file: the files read
    /// here (`status`, `oom_score_adj`, `cgroup`) are produced whole by one kernel call
    /// (`single_open` seq files and a simple buffer), which fills the reader's buffer as far as
    /// the content goes. That saves the second, empty `read` per file: a third of the system
    /// calls of a scan.
    fn read(&mut self, pid: i32, name: &str) -> Option<&[u8]> {
        let mut itoa = itoa::Buffer::new();
        let p = itoa.format(pid).as_bytes();
        let len = p.len() + 1 + name.len();
        if len + 1 > self.path.len() {
            return None;
        }
        self.path[..p.len()].copy_from_slice(p);
        self.path[p.len()] = b'/';
        self.path[p.len() + 1..len].copy_from_slice(name.as_bytes());
        self.path[len] = 0;
        let cpath = CStr::from_bytes_with_nul(&self.path[..=len]).ok()?;
        let fd = rustix::fs::openat(
            self.dir,
            cpath,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        let mut n = 0;
        loop {
            if n == self.buf.len() {
                self.buf.resize(n * 2, 0);
            }
            let room = self.buf.len() - n;
            match rustix::io::read(&fd, &mut self.buf[n..]) {
                Ok(0) => break,
                Ok(k) if k < room => {
                    n += k;
                    break;
                }
                Ok(k) => n += k,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return None,
            }
        }
        Some(&self.buf[..n])
    }

    fn sample(&mut self, pid: i32) -> Option<ProcInfo> {
        let mut info = parse_status(self.read(pid, "status")?)?;
        info.pid = pid;
        // A process may vanish between reads: then it is left out.
        info.oom_score_adj = parse_i32(self.read(pid, "oom_score_adj")?)?;
        // cgroup is unreadable in some sandboxes: keep the process, without a path.
        if let Some(b) = self.read(pid, "cgroup") {
            info.cgroup = parse_cgroup(b);
        }
        Some(info)
    }
}

/// Read a whole (small) file into `buf`, replacing its contents.
fn read_into(path: &Path, buf: &mut Vec<u8>) -> std::io::Result<()> {
    buf.clear();
    std::fs::File::open(path)?.read_to_end(buf)?;
    Ok(())
}

fn parse_i32(buf: &[u8]) -> Option<i32> {
    std::str::from_utf8(buf).ok()?.trim().parse().ok()
}

/// Lock (as they fault in) this process's file-backed mappings: its code and that of its
/// libraries. Under a cgroup's `MemoryHigh` the kernel reclaims exactly these pages, and
/// faulting them back is charged and throttled: a guard living in the throttled cgroup would
/// stall for seconds at each wake-up. `MLOCK_ONFAULT` counts against RLIMIT_MEMLOCK only the
/// ranges' length, far below the default limit. Returns how many mappings were locked.
pub fn lock_file_mappings(maps: &Path) -> usize {
    let Ok(text) = std::fs::read_to_string(maps) else {
        return 0;
    };
    let mut n = 0;
    for l in text.lines() {
        let mut f = l.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        let path = f.nth(3);
        if !path.is_some_and(|p| p.starts_with('/')) || !perms.starts_with('r') {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else {
            continue;
        };
        // SAFETY: mlock2 only changes residency of an existing mapping of ours.
        if unsafe { libc::mlock2(a as *const libc::c_void, b - a, libc::MLOCK_ONFAULT) } == 0 {
            n += 1;
        }
    }
    n
}

/// Parse the fields of `/proc/PID/status` the model needs. `None` if it is not a status file.
/// A task without `RssAnon` (kernel thread, zombie) gets `mem: None`.
pub fn parse_status(buf: &[u8]) -> Option<ProcInfo> {
    let mut info = ProcInfo::default();
    let mut mem = MemCounters::default();
    let (mut seen_name, mut seen_rss) = (false, false);
    for line in buf.split(|&b| b == b'\n') {
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let (key, val) = (&line[..colon], &line[colon + 1..]);
        match key {
            b"Name" => {
                // Name is escaped by the kernel (\n, \\); keep it as printed, trimmed.
                info.name = String::from_utf8_lossy(trim(val)).into_owned();
                seen_name = true;
            }
            b"PPid" => info.ppid = leading_num(val)? as i32,
            b"Uid" => info.uid = leading_num(val)? as u32,
            b"Kthread" => info.kthread = leading_num(val)? == 1,
            b"RssAnon" => {
                mem.rss_anon_kib = leading_num(val)?;
                seen_rss = true;
            }
            b"RssFile" => mem.rss_file_kib = leading_num(val)?,
            b"RssShmem" => mem.rss_shmem_kib = leading_num(val)?,
            b"VmPTE" => mem.pgtables_kib = leading_num(val)?,
            b"VmSwap" => mem.swap_kib = leading_num(val)?,
            _ => {}
        }
    }
    if !seen_name {
        return None;
    }
    // Kernels before 6.4 print no Kthread line: a child of kthreadd without an mm is one.
    if !seen_rss && info.ppid == 2 {
        info.kthread = true;
    }
    info.mem = seen_rss.then_some(mem);
    Some(info)
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &v[start..end]
}

/// The first unsigned decimal number in `v` (after leading whitespace).
fn leading_num(v: &[u8]) -> Option<u64> {
    let v = trim(v);
    let end = v
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(v.len());
    if end == 0 {
        return None;
    }
    std::str::from_utf8(&v[..end]).ok()?.parse().ok()
}

/// Free RAM + free swap and their total, in bytes, from `sysinfo(2)`: no /proc/meminfo to
/// format, a fraction of its cost (see [`crate::model::risk::screen_calm`]).
pub fn sysinfo_free() -> (u64, u64) {
    let si = rustix::system::sysinfo();
    let unit = u64::from(si.mem_unit.max(1));
    (
        (si.freeram as u64 + si.freeswap as u64) * unit,
        (si.totalram as u64 + si.totalswap as u64) * unit,
    )
}

/// Parse `/proc/meminfo` (KiB): MemTotal, MemAvailable (MemFree before 3.14), SwapTotal, SwapFree.
pub fn parse_meminfo(buf: &[u8]) -> Option<MemTotals> {
    let (mut total, mut avail, mut free, mut st, mut sf) = (None, None, None, None, None);
    for line in buf.split(|&b| b == b'\n') {
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let slot = match &line[..colon] {
            b"MemTotal" => &mut total,
            b"MemAvailable" => &mut avail,
            b"MemFree" => &mut free,
            b"SwapTotal" => &mut st,
            b"SwapFree" => &mut sf,
            _ => continue,
        };
        *slot = Some(leading_num(&line[colon + 1..])?);
        // SwapFree comes after the others: the remaining 40 lines are not needed.
        if total.is_some() && avail.is_some() && st.is_some() && sf.is_some() {
            break;
        }
    }
    Some(MemTotals {
        mem_total_kib: total?,
        mem_available_kib: avail.or(free)?,
        swap_total_kib: st.unwrap_or(0),
        swap_free_kib: sf.unwrap_or(0),
    })
}

/// Parse `/proc/PID/cgroup`: `hierarchy-ID:controller-list:path` lines.
pub fn parse_cgroup(buf: &[u8]) -> CgroupPaths {
    let mut out = CgroupPaths::default();
    for line in buf.split(|&b| b == b'\n') {
        let mut parts = line.splitn(3, |&b| b == b':');
        let (Some(id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let path = String::from_utf8_lossy(path).into_owned();
        if id == b"0" && ctrls.is_empty() {
            out.unified = Some(path);
        } else if ctrls.split(|&b| b == b',').any(|c| c == b"memory") {
            out.v1_memory = Some(path);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tpython3\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4402\n\
        Pid:\t4402\nPPid:\t4400\nUid:\t1000\t1000\t1000\t1000\nKthread:\t0\nVmRSS:\t  1037312 kB\n\
        RssAnon:\t  1033216 kB\nRssFile:\t    4096 kB\nRssShmem:\t       0 kB\nVmPTE:\t    2104 kB\n\
        VmSwap:\t      12 kB\nThreads:\t1\n";

    #[test]
    fn status_fields() {
        let p = parse_status(STATUS.as_bytes()).unwrap();
        assert_eq!(
            (p.name.as_str(), p.ppid, p.uid, p.kthread),
            ("python3", 4400, 1000, false)
        );
        let m = p.mem.unwrap();
        assert_eq!(m.rss_kib(), 1037312);
        assert_eq!((m.pgtables_kib, m.swap_kib), (2104, 12));
    }

    #[test]
    fn kernel_thread_has_no_mm() {
        let s = "Name:\tkworker/0:1\nPPid:\t2\nUid:\t0\t0\t0\t0\nKthread:\t1\n";
        let p = parse_status(s.as_bytes()).unwrap();
        assert!(p.kthread && p.mem.is_none());
        // Old kernels without the Kthread line: child of kthreadd without an mm.
        let s = "Name:\tkworker/0:1\nPPid:\t2\nUid:\t0\t0\t0\t0\n";
        assert!(parse_status(s.as_bytes()).unwrap().kthread);
    }

    #[test]
    fn garbled_status_is_rejected_not_panicking() {
        assert!(parse_status(b"").is_none());
        assert!(parse_status(b"\x00\xff garbage").is_none());
        assert!(parse_status(b"Name:\tx\nRssAnon:\tlots kB\n").is_none());
        let truncated = &STATUS.as_bytes()[..STATUS.len() / 2];
        let _ = parse_status(truncated);
    }

    #[test]
    fn meminfo_fields() {
        let m = parse_meminfo(b"MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   23000000 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n").unwrap();
        assert_eq!(
            (m.mem_total_kib, m.mem_available_kib, m.swap_total_kib),
            (24000000, 23000000, 0)
        );
        assert_eq!(
            parse_meminfo(b"MemTotal: 5 kB\nMemFree: 3 kB\n")
                .unwrap()
                .mem_available_kib,
            3
        );
        assert!(parse_meminfo(b"garbage").is_none());
        assert!(parse_meminfo(b"MemTotal: x kB\n").is_none());
    }

    #[test]
    fn cgroup_v1_and_v2() {
        let v1 = b"9:name=systemd:/\n4:memory:/process_api/241e\n1:cpu,cpuacct:/\n0::/\n";
        let c = parse_cgroup(v1);
        assert_eq!(c.v1_memory.as_deref(), Some("/process_api/241e"));
        assert_eq!(c.unified.as_deref(), Some("/"));
        let v2 = b"0::/user.slice/user-1000.slice/user@1000.service/app.slice/x.scope\n";
        let c = parse_cgroup(v2);
        assert_eq!(c.v1_memory, None);
        assert_eq!(
            c.display(),
            Some("/user.slice/user-1000.slice/user@1000.service/app.slice/x.scope")
        );
        assert_eq!(
            parse_cgroup(b"garbage\n::\n"),
            CgroupPaths {
                v1_memory: None,
                unified: None
            }
        );
    }
}
