//! Helpers for tests that make real memory-cgroup OOM kills.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn oomguard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_oomguard"))
}

/// A child cgroup-v1 memory group with a limit, under our own group. Dropping it kills every
/// process left in it and removes it, also when the test failed.
pub struct MemcgV1 {
    pub dir: PathBuf,
}

impl MemcgV1 {
    /// `Err(reason)` when this machine has no usable cgroup-v1 memory controller.
    pub fn create(tag: &str, limit_bytes: u64) -> Result<MemcgV1, String> {
        let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
        let path = own
            .lines()
            .find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, ctrl, p) = (f.next()?, f.next()?, f.next()?);
                ctrl.split(',')
                    .any(|c| c == "memory")
                    .then(|| p.to_string())
            })
            .ok_or("no cgroup-v1 memory controller in /proc/self/cgroup")?;
        let base = Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/'));
        let dir = base.join(format!("oomguard-test-{tag}-{}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let g = MemcgV1 { dir };
        std::fs::write(g.dir.join("memory.limit_in_bytes"), limit_bytes.to_string())
            .map_err(|e| format!("cannot set a limit: {e}"))?;
        Ok(g)
    }

    pub fn add(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).unwrap();
    }

    pub fn procs(&self) -> Vec<i32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect()
    }
}

impl Drop for MemcgV1 {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let procs = self.procs();
            if procs.is_empty() && std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            for p in procs {
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("WARNING: could not remove {}", self.dir.display());
    }
}

/// A python3 process that sets its oom_score_adj, joins `cg`, then fills `mib` MiB (touched) and
/// holds it. If `grow_to_mib` is set it then grows in 5 MiB steps up to that total and holds.
pub struct Hog {
    pub child: Child,
}

const HOG: &str = r#"
import os, sys, time
adj, mib, grow, cg = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
open('/proc/self/oom_score_adj', 'w').write(str(adj))
open(cg + '/cgroup.procs', 'w').write(str(os.getpid()))
held = [b'\x01' * (mib << 20)]
print('ready', flush=True)
if grow:
    sys.stdin.readline()
    total = mib
    while total < grow:
        held.append(b'\x02' * (5 << 20)); total += 5
    print('grown', flush=True)
while True:
    time.sleep(3600)
"#;

impl Hog {
    pub fn start(cg: &MemcgV1, adj: i32, mib: u64, grow_to_mib: Option<u64>) -> Hog {
        let mut child = Command::new("python3")
            .args([
                "-c",
                HOG,
                &adj.to_string(),
                &mib.to_string(),
                &grow_to_mib.unwrap_or(0).to_string(),
            ])
            .arg(&cg.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "hog did not start");
        Hog { child }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Start growing (for a hog made with `grow_to_mib`).
    pub fn grow(&mut self) {
        use std::io::Write;
        let _ = writeln!(self.child.stdin.as_mut().unwrap());
    }

    /// `Some(signal)` once the process has been killed by a signal.
    pub fn killed_by(&mut self) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        self.child
            .try_wait()
            .ok()
            .flatten()
            .and_then(|s| s.signal())
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A seed that differs between runs, printed so a failure can be replayed.
pub fn seed() -> u64 {
    let s = std::env::var("OOMGUARD_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            use std::hash::{BuildHasher, RandomState};
            RandomState::new().hash_one(std::time::SystemTime::now())
        });
    eprintln!("seed {s} (set OOMGUARD_TEST_SEED={s} to replay)");
    s
}

/// xorshift64*: enough randomness for test parameters.
pub struct Rng(pub u64);
impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D) % n
    }
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

/// Copy a fixture tree into `to` (created if missing) so a test can add to it or garble it.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}
