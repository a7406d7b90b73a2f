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
