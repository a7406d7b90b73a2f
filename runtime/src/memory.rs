//! This process's resident memory, from `/proc/self/status` (Linux; `None` elsewhere): what a
//! run reports as its load and peak memory, and what the benches measure.

/// A `kB` field of `/proc/self/status` (`VmHWM`, `VmRSS`, …) in KiB.
pub fn proc_status_kib(field: &str) -> Option<u64> {
    status_field_kib(&std::fs::read_to_string("/proc/self/status").ok()?, field)
}

/// A `kB` field of one snapshot of `/proc/<pid>/status`.
fn status_field_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    line[field.len() + 1..].trim().trim_end_matches("kB").trim().parse().ok()
}

/// Peak resident memory of this process so far (`VmHWM`), in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    proc_status_kib("VmHWM")
}

/// Current resident memory (`VmRSS`), in KiB.
pub fn rss_kib() -> Option<u64> {
    proc_status_kib("VmRSS")
}

/// Reset the peak (`VmHWM`) to the current RSS (Linux ≥ 4.0: `5` to `/proc/self/clear_refs`).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Run `load` with every block of 128 KiB or more in a mapping of its own, then keep large
/// blocks on the heap again for the run.
///
/// glibc's malloc raises its mapping threshold each time a mapped block is freed, so after the
/// first weight-sized buffer of a load is dropped, weights land on the heap. Loading reads,
/// parses and packs every weight into blocks of slightly different sizes; the packed copies
/// cannot reuse the holes the parsed ones leave, and the load peaks at twice the weights
/// (full-size model, tract: 171 → 117 MiB with this). Mapped blocks go back to the system when
/// freed. During a run the same would cost a page fault per touched page of every activation
/// (tract, one thread: 222 → 310 ms a frame), hence the heap afterwards, with the thresholds that
/// glibc's adaptation reaches on its own. The allocator is the process's: binaries call this
/// (msf-run does), a library never should. Elsewhere than glibc it only runs `load`.
pub fn load_with_mapped_blocks<T>(load: impl FnOnce() -> T) -> T {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes malloc's parameters; it is thread-safe.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10) };
        let out = load();
        // glibc's own ceiling for the adaptive threshold on 64-bit, and twice it for trimming.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
        }
        out
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    load()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn peak_is_at_least_current() {
        // One snapshot: other test threads allocate between two separate reads.
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let now = super::status_field_kib(&status, "VmRSS").unwrap();
        let peak = super::status_field_kib(&status, "VmHWM").unwrap();
        assert!(now > 0 && peak >= now, "rss {now} peak {peak}");
        assert_eq!(super::status_field_kib(&status, "NoSuchField"), None);
        assert!(super::rss_kib().is_some() && super::peak_rss_kib().is_some());
    }
}
