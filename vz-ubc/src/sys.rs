//! The only unsafe code of vz-ubc: asking libc for the page size.
#![allow(unsafe_code, reason = "the one file of vz-ubc that calls libc")]

/// The size of a memory page in bytes (`sysconf(_SC_PAGESIZE)`), 4096 when unknown.
pub(crate) fn page_size() -> u64 {
    // SAFETY: sysconf only reads a constant of the C library; it has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|s| *s > 0).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    #[test]
    fn page_size_is_a_power_of_two() {
        let p = super::page_size();
        assert!(p >= 4096 && p.is_power_of_two(), "{p}");
    }
}
