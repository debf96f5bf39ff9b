//! Memory every process of the service shares: mapped by the supervisor before it forks, so each
//! worker (and the metrics process) inherits the same pages. Workers count into it with atomic
//! adds; the metrics process reads it. It belongs to the supervisor, so a count survives the
//! worker that made it (a kill -9 loses nothing), the way unicorn's raindrops and gunicorn's
//! prometheus multiprocess mode keep a prefork server's numbers.
//!
//! Why memory and not messages to the supervisor: the supervisor stays what it is, one thread
//! and a poll loop, and never parses a worker's report; a worker's count costs one atomic add,
//! with no syscall and no lock that a dying worker could leave held.

use std::num::NonZeroUsize;
use std::sync::atomic::AtomicU64;

use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous};

use super::error::SupervisorError;

/// Maps `words` zeroed 64-bit cells shared with every process forked afterwards. The mapping
/// lives until the process exits (it is never unmapped), hence `'static`.
pub fn shared_cells(words: usize) -> Result<&'static [AtomicU64], SupervisorError> {
    let bytes = words
        .checked_mul(size_of::<AtomicU64>())
        .and_then(NonZeroUsize::new)
        .ok_or(SupervisorError::Os {
            context: "mapping shared memory",
            source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        })?;
    // SAFETY: a fresh anonymous mapping at an address the kernel picks aliases no Rust object;
    // nothing else can reach it until this function returns.
    let ptr = unsafe {
        mmap_anonymous(
            None,
            bytes,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
        )
    }
    .map_err(super::os("mapping shared memory"))?;
    // SAFETY: the mapping is `bytes` long, page-aligned (so aligned for AtomicU64), readable and
    // writable, and zero-filled by the kernel; all-zero bytes are a valid AtomicU64. It is never
    // unmapped, so `'static` holds. Every access goes through the atomics, which is what makes
    // the concurrent writes of other processes to the same pages sound (an AtomicU64 has the
    // same layout as a u64 and is lock-free on every target this builds for). `fork` keeps the
    // mapping at the same address in the child, so the slice stays valid there too.
    let cells = unsafe { std::slice::from_raw_parts(ptr.as_ptr().cast::<AtomicU64>(), words) };
    Ok(cells)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    /// Zeroed and usable to its last cell. That other processes see the writes is what the
    /// service tests show: counters of killed workers still count (tests/metrics.rs).
    #[test]
    fn cells_start_at_zero_and_count() {
        let cells = shared_cells(1024).unwrap();
        assert!(cells.iter().all(|c| c.load(Ordering::Relaxed) == 0));
        cells[1023].fetch_add(7, Ordering::Relaxed);
        assert_eq!(cells[1023].load(Ordering::Relaxed), 7);
        assert!(shared_cells(0).is_err());
    }
}
