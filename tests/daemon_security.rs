//! The root daemon against real users (made with useradd, removed after): ownership,
//! descent and recycled-PID checks, policy refusals quoting the config line, the
//! end-to-end `run` path through the daemon with `--adj 0`, and a protocol that
//! survives malformed, oversized, slow and 1,000 garbage connections.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_oomguard"))
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

fn has_cap_sys_resource() -> bool {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let hex = s
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap() & (1 << 24) != 0
}

/// A daemon on a private socket, killed on drop.
struct Daemon {
    child: Child,
    sock: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(config: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let cfg = dir.path().join("config.toml");
        std::fs::write(&cfg, config).unwrap();
        let sock = dir.path().join("run/oomguard.sock");
        let log = dir.path().join("daemon.log");
        let child = Command::new(bin())
            .args(["daemon", "--config", cfg.to_str().unwrap()])
            .env("OOMGUARD_SOCKET", &sock)
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let d = Daemon {
            child,
            sock,
            log,
            _dir: dir,
        };
        let t0 = Instant::now();
        while UnixStream::connect(&d.sock).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "daemon never listened: {}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }
    fn cfg(&self) -> PathBuf {
        self._dir.path().join("config.toml")
    }
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    /// One raw exchange as root.
    fn raw(&self, bytes: &[u8]) -> serde_json::Value {
        let mut s = UnixStream::connect(&self.sock).unwrap();
        s.write_all(bytes).unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad reply {line:?}: {e}"))
    }
    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway user, deleted on drop.
struct User {
    name: String,
    uid: u32,
    gid: u32,
}

impl User {
    fn create(tag: &str) -> User {
        let name = format!("ogt{}{tag}", std::process::id());
        let st = Command::new("useradd")
            .args([
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                "--user-group",
                &name,
            ])
            .status()
            .unwrap();
        assert!(st.success(), "useradd {name}");
        let id = |flag: &str| -> u32 {
            let o = Command::new("id").args([flag, &name]).output().unwrap();
            String::from_utf8(o.stdout).unwrap().trim().parse().unwrap()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        User { name, uid, gid }
    }
    fn cmd(&self, prog: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(prog);
        c.uid(self.uid).gid(self.gid);
        c
    }
    fn sleeper(&self) -> Child {
        self.cmd("sleep").arg("60").spawn().unwrap()
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    s.rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(19)
        .unwrap()
        .parse()
        .unwrap()
}

/// Python client: sends argv[2] (a JSON line) to socket argv[1] and prints the reply. With
/// argv[3] == "child", it forks a sleeping child first and asks for that child.
const CLIENT: &str = r#"
import os, socket, sys, time, json
req = json.loads(sys.argv[2])
child = 0
if len(sys.argv) > 3:
    child = os.fork()
    if child == 0:
        time.sleep(30); os._exit(0)
    req["pid"] = child
    req["start_ticks"] = int(open(f"/proc/{child}/stat").read().rsplit(")", 1)[1].split()[19])
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(json.dumps(req).encode() + b"\n")
print(s.makefile().readline(), end="")
if child:
    os.kill(child, 9); os.waitpid(child, 0)
"#;

fn ask(user: &User, d: &Daemon, req: serde_json::Value, child: bool) -> serde_json::Value {
    let mut c = user.cmd("/usr/bin/python3");
    c.args(["-c", CLIENT, d.sock.to_str().unwrap(), &req.to_string()]);
    if child {
        c.arg("child");
    }
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|_| panic!("reply: {}", String::from_utf8_lossy(&o.stdout)))
}

fn shield_req(pid: u32, ticks: u64, adj: i32, mode: &str) -> serde_json::Value {
    serde_json::json!({"v":1,"op":"shield","pid":pid,"start_ticks":ticks,"adj":adj,"job_id":"t1","mode":mode})
}

fn refused(r: &serde_json::Value, needle: &str) {
    assert_eq!(r["ok"], false, "{r}");
    let e = r["error"].as_str().unwrap();
    assert!(e.contains(needle), "error {e:?} lacks {needle:?}");
}

/// clone3 with set_tid: a new process (as `user`) with exactly PID `pid`.
fn spawn_with_pid(pid: i32, user: &User) -> std::io::Result<i32> {
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    let tids = [pid];
    let args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        set_tid: tids.as_ptr() as u64,
        set_tid_size: 1,
        ..Default::default()
    };
    let prog = c"/bin/sleep";
    let argv = [c"sleep".as_ptr(), c"60".as_ptr(), std::ptr::null()];
    let (uid, gid) = (user.uid, user.gid);
    // SAFETY: the child runs only raw syscalls, then execs.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if r == 0 {
        unsafe {
            let g = [gid];
            libc::setgroups(1, g.as_ptr());
            libc::setgid(gid);
            libc::setuid(uid);
            libc::execv(prog.as_ptr(), argv.as_ptr());
            libc::_exit(127);
        }
    }
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r as i32)
    }
}

#[test]
fn users_ownership_descent_recycling_policy() {
    if !is_root() {
        eprintln!("SKIP: needs root to useradd test users and run the daemon");
        return;
    }
    if !Path::new("/usr/bin/python3").exists() {
        eprintln!(
            "SKIP: the test client runs as the test users with /usr/bin/python3, absent here"
        );
        return;
    }
    let a = User::create("a");
    let b = User::create("b");
    let d = Daemon::start("# test policy\nmax_jobs_per_user = 1\nlowest_adj = -500\n");
    let cfg = d.cfg().display().to_string();

    // A cannot shield B's process.
    let bs = Kill(b.sleeper());
    let r = ask(
        &a,
        &d,
        shield_req(bs.0.id(), ticks(bs.0.id()), 0, "protect"),
        false,
    );
    refused(&r, &format!("belongs to uid {}", b.uid));
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{}/oom_score_adj", bs.0.id()))
            .unwrap()
            .trim(),
        "0"
    );
    // ... nor through the CLI.
    let o = a
        .cmd(bin())
        .args(["protect", "--adj", "0", &bs.0.id().to_string()])
        .env("OOMGUARD_SOCKET", &d.sock)
        .env("OOMGUARD_STATE_DIR", "/nonexistent-state")
        .output()
        .unwrap();
    assert!(!o.status.success());

    // A cannot use `run` mode on its own process that does not descend from the asker.
    let a1 = Kill(a.sleeper());
    let r = ask(
        &a,
        &d,
        shield_req(a1.0.id(), ticks(a1.0.id()), 0, "run"),
        false,
    );
    refused(&r, "does not descend from the asking process");
    // ... but can for its own child.
    let r = ask(&a, &d, shield_req(0, 0, 0, "run"), true);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["layers"][0]["state"], "applied", "{r}");

    // A recycled PID: A's process dies, a new one gets its number; the old start time
    // no longer matches and the daemon says so.
    let mut old = a.sleeper();
    let (pid, old_ticks) = (old.id() as i32, ticks(old.id()));
    old.kill().unwrap();
    old.wait().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    match spawn_with_pid(pid, &a) {
        Ok(newpid) => {
            assert_eq!(newpid, pid);
            let r = ask(
                &a,
                &d,
                shield_req(pid as u32, old_ticks, 0, "protect"),
                false,
            );
            refused(&r, "its PID was recycled");
            unsafe {
                libc::kill(newpid, libc::SIGKILL);
                libc::waitpid(newpid, std::ptr::null_mut(), 0);
            }
        }
        Err(e) => eprintln!("SKIP (recycled-PID part): clone3 set_tid failed: {e}"),
    }

    // Over policy: below lowest_adj, and over max_jobs_per_user; each names its line.
    let r = ask(
        &a,
        &d,
        shield_req(a1.0.id(), ticks(a1.0.id()), -1000, "protect"),
        false,
    );
    refused(&r, &format!("`lowest_adj = -500` at {cfg}:3"));
    let r = ask(
        &a,
        &d,
        shield_req(a1.0.id(), ticks(a1.0.id()), 0, "protect"),
        false,
    );
    assert_eq!(r["ok"], true, "{r}");
    let a2 = Kill(a.sleeper());
    let r = ask(
        &a,
        &d,
        shield_req(a2.0.id(), ticks(a2.0.id()), 0, "protect"),
        false,
    );
    refused(&r, &format!("`max_jobs_per_user = 1` at {cfg}:2"));
    drop(a1);
    std::thread::sleep(Duration::from_millis(50));

    // End to end: `oomguard run --adj 0` as A goes through the daemon.
    let state = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(state.path(), Some(a.uid), Some(a.gid)).unwrap();
    let run_as_a = |args: &[&str]| {
        a.cmd(bin())
            .args(args)
            .env("OOMGUARD_SOCKET", &d.sock)
            .env("OOMGUARD_STATE_DIR", state.path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let o = run_as_a(&[
        "run",
        "--adj",
        "0",
        "--",
        "sh",
        "-c",
        "id -u; cat /proc/self/oom_score_adj",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("{}\n0\n", a.uid)
    );
    let log = d.log();
    assert!(
        log.contains(&format!("uid {} ({})", a.uid, a.name)) && log.contains("mode Run"),
        "{log}"
    );
    if has_cap_sys_resource() {
        eprintln!("SKIP (EACCES part): CAP_SYS_RESOURCE present, -500 would succeed");
    } else {
        let o = run_as_a(&["run", "--adj", "-500", "--", "true"]);
        assert_eq!(o.status.code(), Some(1));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("CAP_SYS_RESOURCE"), "{err}");
    }
    let o = run_as_a(&["run", "--", "true"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("`lowest_adj = -500`"),
        "run relays the policy line"
    );

    // As root under sudo, the job runs as the invoking user, not as root.
    let sudo_state = tempfile::tempdir().unwrap();
    let o = Command::new(bin())
        .args(["run", "--adj", "0", "--", "id", "-u"])
        .env("SUDO_UID", a.uid.to_string())
        .env("SUDO_GID", a.gid.to_string())
        .env("OOMGUARD_STATE_DIR", sudo_state.path())
        .env("OOMGUARD_SOCKET", "/nonexistent/sock")
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), format!("{}\n", a.uid));
    let rec = std::fs::read_dir(sudo_state.path().join("jobs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let meta = std::fs::metadata(rec.join("output.log")).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        a.uid,
        "the log belongs to the user"
    );
    drop(bs);
    drop(a2);
}

#[test]
fn malformed_oversized_slow_and_garbage() {
    if !is_root() {
        eprintln!("SKIP: needs root to run the daemon");
        return;
    }
    let mut d = Daemon::start("");
    refused(&d.raw(b"garbage\n"), "malformed request");
    refused(
        &d.raw(b"{\"v\":7,\"op\":\"ping\"}\n"),
        "unsupported protocol version 7",
    );
    refused(
        &d.raw(b"{\"v\":1,\"op\":\"format_disk\"}\n"),
        "malformed request",
    );
    refused(&d.raw(&vec![b'x'; 10_000]), "request too long");
    assert_eq!(d.raw(b"{\"v\":1,\"op\":\"ping\"}\n")["ok"], true);

    // A slow request times out, and does not hold up others meanwhile.
    let mut slow = UnixStream::connect(&d.sock).unwrap();
    slow.write_all(b"{\"v\":1,").unwrap();
    let t0 = Instant::now();
    assert_eq!(d.raw(b"{\"v\":1,\"op\":\"ping\"}\n")["ok"], true);
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "served while a slow client waits"
    );
    let mut line = String::new();
    BufReader::new(&mut slow).read_line(&mut line).unwrap();
    let r: serde_json::Value = serde_json::from_str(&line).unwrap();
    refused(&r, "request timed out");
    assert!(t0.elapsed() >= Duration::from_secs(4), "{:?}", t0.elapsed());

    // 1,000 garbage connections: random bytes, half-lines, hang-ups.
    let mut seed = 0x9e3779b97f4a7c15u64;
    for i in 0..1000 {
        let mut s = UnixStream::connect(&d.sock).unwrap();
        let n = (seed % 600) as usize;
        let bytes: Vec<u8> = (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let _ = s.write_all(&bytes);
        if i % 3 == 0 {
            let _ = s.write_all(b"\n");
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
    }
    assert!(d.alive(), "daemon survived: {}", d.log());
    assert_eq!(d.raw(b"{\"v\":1,\"op\":\"ping\"}\n")["ok"], true);
    let mut me = Kill(Command::new("sleep").arg("30").spawn().unwrap());
    let pid = me.0.id();
    let r = d.raw(format!("{}\n", shield_req(pid, ticks(pid), 0, "protect")).as_bytes());
    assert_eq!(r["ok"], true, "{r}");
    let _ = me.0.kill();
}
