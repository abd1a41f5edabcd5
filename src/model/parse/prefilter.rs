//! The fast path of `history --file`: kills are rare in a kernel log, so instead of
//! splitting every line, one Aho-Corasick (Teddy SIMD) pass finds the few lines that hold
//! a word some parser needs, and only those are split and parsed. Every message
//! [`super::classify`] recognises contains one of [`NEEDLES`] (a test checks this on the
//! corpus and a property test on generated lines).

use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

/// Words at least one of which every OOM-related line contains.
pub const NEEDLES: &[&str] = &[
    "oom",
    "OOM",
    "kill",
    "Kill",
    "emory",
    "sending SIG",
    "Sending SIG",
    "exited after",
    "corrective",
    "MemAvailable [",
    "SwapFree [",
    "PSI avg",
    "PID:",
    "Executing the command",
    "ictim",
    "DataLoader",
    "exitcode: -9",
    "Out Of Memory",
    "KernelRestarter",
    "exit code 137",
    "pty host",
    "Path: /",
    "Swap Usage:",
    "Pressure: Avg10",
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
