//! Pressure stall information: `/proc/pressure/memory` and cgroup v2 `memory.pressure`.

use std::path::Path;

use anyhow::Context;
use procfs::FromRead;
use serde::Serialize;

/// One PSI line (`some` or `full`): averages in percent, total stall time in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct PsiLine {
    pub avg10: f32,
    pub avg60: f32,
    pub avg300: f32,
    pub total_us: u64,
}

/// Memory pressure of the system or of a cgroup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Pressure {
    pub some: PsiLine,
    pub full: PsiLine,
}

/// Read a PSI file (`/proc/pressure/memory` or a cgroup's `memory.pressure`).
pub fn read_pressure(path: &Path) -> anyhow::Result<Pressure> {
    let p = procfs::MemoryPressure::from_file(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let line = |r: procfs::PressureRecord| PsiLine {
        avg10: r.avg10,
        avg60: r.avg60,
        avg300: r.avg300,
        total_us: r.total,
    };
    Ok(Pressure {
        some: line(p.some),
        full: line(p.full),
    })
}

/// The system's memory pressure, from `<proc_root>/pressure/memory` (absent without CONFIG_PSI).
pub fn system_memory_pressure(proc_root: &Path) -> anyhow::Result<Pressure> {
    read_pressure(&proc_root.join("pressure/memory"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_format_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("memory.pressure");
        std::fs::write(
            &f,
            "some avg10=1.50 avg60=0.20 avg300=0.00 total=123456\n\
             full avg10=0.75 avg60=0.10 avg300=0.00 total=65432\n",
        )
        .unwrap();
        let p = read_pressure(&f).unwrap();
        assert_eq!(p.some.avg10, 1.5);
        assert_eq!(p.full.total_us, 65432);
        std::fs::write(&f, "some avg10=x\n").unwrap();
        assert!(read_pressure(&f).is_err());
        assert!(read_pressure(&dir.path().join("missing")).is_err());
    }
}
