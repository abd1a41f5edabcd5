//! Shared rendering helpers: sizes, colour policy, JSON output.

use std::io::IsTerminal;

/// Colour only on a terminal, and never with `NO_COLOR` set (any value, per no-color.org).
pub fn use_color() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
}

/// Human size from KiB: `812 KiB`, `1.5 MiB`, `12.0 GiB`.
pub fn kib(k: u64) -> String {
    const U: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut v = k as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{k} KiB")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// Print a value as JSON on stdout, followed by a newline: indented for a person on a
/// terminal, compact for a program reading a pipe.
pub fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    use std::io::Write;
    let stdout = std::io::stdout();
    let tty = stdout.is_terminal();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    if tty {
        serde_json::to_writer_pretty(&mut out, v)?;
    } else {
        serde_json::to_writer(&mut out, v)?;
    }
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn sizes() {
        assert_eq!(kib(812), "812 KiB");
        assert_eq!(kib(1536), "1.5 MiB");
        assert_eq!(kib(12 * 1024 * 1024), "12.0 GiB");
    }
}
