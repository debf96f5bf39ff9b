//! Thin command line edge: the allocator, and the commands of [`cli`].

mod cli;

use std::process::ExitCode;

/// dlmalloc (pure Rust) instead of the C library's malloc, on every target, so the binary tests
/// run is the one the musl image ships. musl's own malloc cost a worker 2.5 times the CPU per
/// request of the glibc build — with one thread, so not contention, its plain speed — and
/// dlmalloc brings the musl build to the glibc figures (BENCHMARKS.md, "Threads and the
/// allocator"). Its single global lock is uncontended: a worker is one thread, and the supervisor
/// never starts a thread, so no other thread can hold the lock when it forks.
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

fn main() -> anyhow::Result<ExitCode> {
    cli::run()
}
