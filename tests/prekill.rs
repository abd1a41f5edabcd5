//! The prekill hook spoken to as systemd-oomd would: Varlink over a unix socket.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use oomguard::guard::prekill::PrekillHook;

fn call(s: &mut UnixStream, msg: &str) -> String {
    s.write_all(msg.as_bytes()).unwrap();
    s.write_all(&[0]).unwrap();
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while s.read(&mut b).unwrap() == 1 && b[0] != 0 {
        out.push(b[0]);
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn notify_fires_the_jobs_of_the_cgroup_and_replies() {
    let dir = tempfile::tempdir().unwrap();
    let me = rustix::process::getuid().as_raw();
    let hook = PrekillHook::bind(dir.path(), "oomguard", vec![me]).unwrap();
    let path = hook.path.clone();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        hook.serve(move |cg| {
            seen2.lock().unwrap().push(cg.to_string());
            vec!["job-1".into()]
        })
    });
    let mut s = UnixStream::connect(&path).unwrap();
    let cg = "/user.slice/user-1000.slice/user@1000.service/app.slice/vte-spawn-1.scope";
    let r = call(
        &mut s,
        &format!(
            r#"{{"method":"io.systemd.oom.Prekill.Notify","parameters":{{"cgroup":"{cg}"}}}}"#
        ),
    );
    assert_eq!(r, r#"{"parameters":{}}"#);
    assert_eq!(seen.lock().unwrap().as_slice(), [cg.to_string()]);
    // Several calls on one connection; GetInfo names the interface; unknown methods get an error.
    assert!(
        call(&mut s, r#"{"method":"org.varlink.service.GetInfo"}"#)
            .contains("io.systemd.oom.Prekill")
    );
    assert!(
        call(&mut s, r#"{"method":"io.systemd.oom.Prekill.Bogus"}"#).contains("MethodNotFound")
    );
    // Garbage gets an error and the connection closes; the hook goes on serving others.
    let mut bad = UnixStream::connect(&path).unwrap();
    assert!(call(&mut bad, "not json").contains("InvalidParameter"));
    let mut again = UnixStream::connect(&path).unwrap();
    let r = call(
        &mut again,
        r#"{"method":"io.systemd.oom.Prekill.Notify","parameters":{"cgroup":"/a"}}"#,
    );
    assert_eq!(r, r#"{"parameters":{}}"#);
}

#[test]
fn peers_other_than_systemd_oomd_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hook = PrekillHook::bind(dir.path(), "oomguard", vec![4_000_000]).unwrap();
    let path = hook.path.clone();
    let fired = Arc::new(Mutex::new(0));
    let f2 = fired.clone();
    std::thread::spawn(move || {
        hook.serve(move |_| {
            *f2.lock().unwrap() += 1;
            vec![]
        })
    });
    let mut s = UnixStream::connect(&path).unwrap();
    let _ = s.write_all(
        b"{\"method\":\"io.systemd.oom.Prekill.Notify\",\"parameters\":{\"cgroup\":\"/a\"}}\0",
    );
    let mut b = [0u8; 16];
    assert_eq!(
        s.read(&mut b).unwrap_or(0),
        0,
        "a refused peer gets no reply"
    );
    assert_eq!(*fired.lock().unwrap(), 0);
}

#[test]
fn prekill_fires_the_checkpoint_signal_of_guarded_jobs_in_that_cgroup_once() {
    use oomguard::guard::set::GuardSet;
    use oomguard::guard::{Actions, GuardConfig, parse_signal};
    use std::os::unix::process::ExitStatusExt;

    let set = GuardSet::new(
        None,
        oomguard::host::proc::ProcFs::default(),
        oomguard::host::cgroup::CgroupFs::default(),
    );
    // `sleep` dies of SIGUSR1 (default action), which shows the signal arrived.
    let mut job = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let cfg = GuardConfig {
        actions: Actions {
            checkpoint_signal: Some(parse_signal("USR1").unwrap()),
            ..Actions::default()
        },
        ..GuardConfig::default()
    };
    set.add("j1", "sleep", job.id() as i32, cfg, &[("kernel", true)]);
    let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", job.id())).unwrap();
    let unified = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap()
        .to_string();
    assert!(
        set.prekill("/no/such.scope").is_empty(),
        "a job elsewhere is left alone"
    );
    assert_eq!(set.prekill(&unified), vec!["j1".to_string()]);
    let st = job.wait().unwrap();
    assert_eq!(st.signal(), Some(libc::SIGUSR1));
    set.tick();
    assert!(set.is_empty(), "the ended job is forgotten");
}
