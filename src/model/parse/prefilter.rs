//! The fast path of `history --file`: kills are rare in a kernel log, so instead of
//! splitting every line, one Aho-Corasick (Teddy SIMD) pass finds the few lines that hold
//! a word some parser needs, and only those are split and parsed. Thirteen short needles
//! keep Teddy fast (about 7 GB/s here; 30 needles ran at 1 GB/s). Every message
//! [`super::classify`] recognises contains one of [`NEEDLES`] (a test checks this on the
//! corpus and a property test on generated lines).

use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

/// Words at least one of which every OOM-related line contains.
pub const NEEDLES: &[&str] = &[
    // kernel, systemd-oomd, systemd's unit lines, Slurm
    "oom",
    "OOM",
    "kill",
    "Kill",
    // `memory: usage`, `Memory cgroup`, `Out of memory`, `Memory pressure`, `low memory!`
    "emory",
    // earlyoom's and nohang's `sending SIGTERM`
    "SIG",
    // earlyoom's `process exited after`, torchrun's `exitcode: -9`, `exit code 137`
    "exit",
    // nohang
    "ictim",
    "PID:",
    "_threshold_",
    "Executing the",
    "corrective",
    // Jupyter
    "KernelRestarter",
];

fn searcher() -> &'static AhoCorasick {
    static AC: OnceLock<AhoCorasick> = OnceLock::new();
    AC.get_or_init(|| {
        AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostFirst)
            .kind(Some(AhoCorasickKind::DFA))
            .build(NEEDLES)
            .expect("needles build")
    })
}

/// Whether a line could matter to a parser.
pub fn candidate(line: &[u8]) -> bool {
    searcher().is_match(line)
}

/// Call `f` with every candidate line of `text` (without its newline), in order.
pub fn candidate_lines(text: &[u8], mut f: impl FnMut(&[u8])) {
    let ac = searcher();
    let mut pos = 0;
    while pos < text.len() {
        let Some(m) = ac.find(aho_corasick::Input::new(text).span(pos..text.len())) else {
            break;
        };
        let start = memchr::memrchr(b'\n', &text[..m.start()]).map_or(0, |i| i + 1);
        let end = memchr::memchr(b'\n', &text[m.end()..]).map_or(text.len(), |i| m.end() + i);
        f(&text[start..end]);
        pos = end + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_lines_and_skips_noise() {
        let text =
            b"usb 1-1: new device\nOut of memory: Killed process 1 (x)\nnoise\nlast oom line";
        let mut got = Vec::new();
        candidate_lines(text, |l| got.push(String::from_utf8_lossy(l).into_owned()));
        assert_eq!(
            got,
            ["Out of memory: Killed process 1 (x)", "last oom line"]
        );
    }
}
