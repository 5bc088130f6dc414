//! Transparent huge pages for the matcher's table and name arena.
//!
//! Why: a lookup reads one to three random cache lines spread over ~35 MiB (1M names). With
//! 4 KiB pages every such read also misses the TLB, and the page-table walk itself misses the
//! cache; with 2 MiB pages the whole set is ~18 TLB entries. `matcher` bench, cold lookups over
//! 1M names: see `bench/RESULTS-iocdns.md`.
//!
//! Linux only, and only a hint (`madvise(MADV_HUGEPAGE)`): where transparent huge pages are
//! `never` or the kernel has no 2 MiB page at hand, memory is mapped as before. It matters where
//! THP is `madvise` (this machine, many distributions) rather than `always`.

/// Buffers smaller than this stay on ordinary pages (a huge page would be mostly empty).
const MIN_BYTES: usize = 4 << 20;

/// Asks the kernel to back `buf` with 2 MiB pages. Call it on memory that is not yet touched
/// (a fresh `vec![0; n]` or a `Vec`'s spare capacity): pages are then faulted in huge, with no
/// copy and no extra peak memory. Buffers under 4 MiB are left alone.
pub fn advise_huge_pages<T>(buf: &mut [T]) {
    if std::mem::size_of_val(buf) >= MIN_BYTES {
        advise(buf);
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn advise<T>(buf: &mut [T]) {
    const PAGE: usize = 4096;
    let start = buf.as_mut_ptr() as usize;
    let first = start.next_multiple_of(PAGE);
    let end = (start + std::mem::size_of_val(buf)) & !(PAGE - 1);
    if end <= first {
        return;
    }
    // SAFETY: the range lies inside memory this function borrows exclusively, and
    // MADV_HUGEPAGE only changes how the kernel backs it, never its contents or validity.
    let rc = unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE) };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "madvise(MADV_HUGEPAGE) refused");
    }
}

#[cfg(not(target_os = "linux"))]
fn advise<T>(_buf: &mut [T]) {}

#[cfg(test)]
mod tests {
    use super::advise_huge_pages;

    #[test]
    fn advised_memory_keeps_its_contents() {
        let mut small = vec![7u64; 100];
        advise_huge_pages(&mut small);
        assert!(small.iter().all(|&v| v == 7));
        let mut large = vec![0u64; 3_000_000];
        advise_huge_pages(&mut large);
        large
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = i as u64);
        assert!(large.iter().enumerate().all(|(i, &v)| v == i as u64));
        let mut spare: Vec<u8> = Vec::with_capacity(8 << 20);
        advise_huge_pages(spare.spare_capacity_mut());
        spare.extend_from_slice(&[1; 1000]);
        assert_eq!(spare.len(), 1000);
    }
}
