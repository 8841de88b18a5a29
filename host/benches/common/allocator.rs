//! The global allocator `raft-host` runs with (see its `main.rs`), so a
//! bench measures the memory and speed a node has in production.

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
