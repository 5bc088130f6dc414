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

/// A copy of `src` in memory advised for huge pages before it is first touched, so the kernel
/// backs it with 2 MiB pages as the copy faults it in. Small slices are copied plainly.
pub fn copy_to_huge_pages<T: Copy>(src: &[T]) -> Box<[T]> {
    if std::mem::size_of_val(src) < MIN_BYTES {
        return src.into();
    }
    let mut fresh: Vec<T> = Vec::with_capacity(src.len());
    advise(fresh.spare_capacity_mut());
    fresh.extend_from_slice(src);
    fresh.into_boxed_slice()
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
    use super::copy_to_huge_pages;

    #[test]
    fn copies_are_equal_small_and_large() {
        let small: Vec<u64> = (0..100).collect();
        assert_eq!(&*copy_to_huge_pages(&small), &small[..]);
        let large: Vec<u64> = (0..3_000_000).map(|i| i * 7).collect();
        assert_eq!(&*copy_to_huge_pages(&large), &large[..]);
    }
}
