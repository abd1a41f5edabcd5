//! uid -> user name, from an `/etc/passwd`-format file (rooted, like every reader).

use std::collections::HashMap;
use std::path::Path;

/// A uid -> name map; unknown uids print as numbers.
#[derive(Clone, Debug, Default)]
pub struct UserNames(HashMap<u32, String>);

impl UserNames {
    /// Load `path` (normally `/etc/passwd`). A missing or garbled file gives an empty map.
    pub fn load(path: &Path) -> Self {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        UserNames(
            text.lines()
                .filter_map(|l| {
                    let mut f = l.split(':');
                    let name = f.next()?;
                    let uid = f.nth(1)?.parse().ok()?;
                    (!name.is_empty()).then(|| (uid, name.to_string()))
                })
                .collect(),
        )
    }

    /// The uid of user `name`, if listed.
    pub fn uid_of(&self, name: &str) -> Option<u32> {
        self.0
            .iter()
            .find(|(_, n)| n.as_str() == name)
            .map(|(u, _)| *u)
    }

    pub fn name(&self, uid: u32) -> String {
        self.0.get(&uid).cloned().unwrap_or_else(|| uid.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn passwd() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("passwd");
        std::fs::write(
            &p,
            "root:x:0:0:root:/root:/bin/bash\nbroken\nalice:x:1000:1000::/home/a:/bin/sh\n",
        )
        .unwrap();
        let u = UserNames::load(&p);
        assert_eq!(
            (u.name(0), u.name(1000), u.name(4242)),
            ("root".into(), "alice".into(), "4242".into())
        );
        assert_eq!(UserNames::load(&d.path().join("none")).name(0), "0");
        assert_eq!((u.uid_of("alice"), u.uid_of("bob")), (Some(1000), None));
    }
}
