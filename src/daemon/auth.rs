//! Who is asking: SO_PEERCRED of the connection, and the user's name and groups from
//! the system's user database (NSS, via libc).

use std::ffi::CStr;
use std::os::fd::AsFd;

use crate::model::policy::Asker;

/// Credentials of the peer process at connect time.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// SO_PEERCRED of a connected Unix socket.
pub fn peer(sock: &impl AsFd) -> std::io::Result<Peer> {
    let c = rustix::net::sockopt::socket_peercred(sock)?;
    Ok(Peer {
        pid: c.pid.as_raw_nonzero().get(),
        uid: c.uid.as_raw(),
        gid: c.gid.as_raw(),
    })
}

/// User name and group names of `uid` (primary gid `gid`). Unknown users get their
/// number as name and only their primary group's number.
pub fn asker(uid: u32, gid: u32) -> Asker {
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0u8; 16384];
    let mut res: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: buffers are valid for the given sizes; res is checked before use.
    let rc =
        unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut res) };
    if rc != 0 || res.is_null() {
        return Asker {
            uid,
            user: uid.to_string(),
            groups: vec![gid.to_string()],
        };
    }
    // SAFETY: pw_name points into buf, NUL-terminated by getpwuid_r.
    let name = unsafe { CStr::from_ptr(pw.pw_name) };
    let user = name.to_string_lossy().into_owned();
    let mut gids = vec![0 as libc::gid_t; 256];
    let mut n = gids.len() as libc::c_int;
    // SAFETY: gids has n slots.
    unsafe { libc::getgrouplist(name.as_ptr(), gid, gids.as_mut_ptr(), &mut n) };
    gids.truncate(n.max(0) as usize);
    let groups = gids.into_iter().map(group_name).collect();
    Asker { uid, user, groups }
}

fn group_name(gid: u32) -> String {
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0u8; 16384];
    let mut res: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in `asker`.
    let rc =
        unsafe { libc::getgrgid_r(gid, &mut gr, buf.as_mut_ptr().cast(), buf.len(), &mut res) };
    if rc != 0 || res.is_null() {
        return gid.to_string();
    }
    // SAFETY: gr_name points into buf.
    unsafe { CStr::from_ptr(gr.gr_name) }
        .to_string_lossy()
        .into_owned()
}

/// Numeric gid of a group name.
pub fn gid_of(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0u8; 16384];
    let mut res: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in `asker`.
    let rc = unsafe {
        libc::getgrnam_r(
            c.as_ptr(),
            &mut gr,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut res,
        )
    };
    (rc == 0 && !res.is_null()).then_some(gr.gr_gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_root() {
        let a = asker(0, 0);
        assert_eq!(a.user, "root");
        assert!(a.groups.contains(&"root".to_string()));
        assert_eq!(gid_of("root"), Some(0));
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let p = peer(&a).unwrap();
        assert_eq!(p.pid, std::process::id() as i32);
    }
}
