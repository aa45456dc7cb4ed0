//! The allocator `trainer` runs with: the system's, with every large allocation on a
//! 64-byte boundary.
//!
//! The kernels read weight matrices in place and store activations and gradients with
//! 64-byte vector instructions (AVX-512); a buffer 16 or 48 bytes off a cache line makes
//! every one of those touch two lines. The system allocator gives 16-byte alignment, and
//! where a buffer lands depends on what was allocated before: in `trainer fit --all` the
//! second and third models' weights landed off the line while the first's did not, and
//! their epochs took 10-15% longer than the same code with another allocation history.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations of at least this many bytes are aligned to [`LINE`].
const LARGE: usize = 4096;
/// A cache line, and one AVX-512 vector.
const LINE: usize = 64;

/// [`System`], with allocations of 4 KiB or more on a 64-byte boundary.
pub struct CacheAligned;

/// The layout actually asked of the system for `layout`.
fn widen(layout: Layout) -> Layout {
    if layout.size() >= LARGE && layout.align() < LINE {
        // Fails only for a size within 63 bytes of isize::MAX: keep the caller's layout.
        Layout::from_size_align(layout.size(), LINE).unwrap_or(layout)
    } else {
        layout
    }
}

// SAFETY: every block is allocated and freed by `System` with the same widened layout
// (`widen` is a function of the caller's layout alone, and `realloc` below keeps the
// invariant), and a widened layout's alignment only grows, which every caller accepts.
unsafe impl GlobalAlloc for CacheAligned {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: `widen` keeps a non-zero size, as the caller guarantees for `layout`.
        unsafe { System.alloc(widen(layout)) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(widen(layout)) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `widen(layout)` (see `alloc`).
        unsafe { System.dealloc(ptr, widen(layout)) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = widen(layout);
        let Ok(new) = Layout::from_size_align(new_size, layout.align()).map(widen) else {
            return std::ptr::null_mut();
        };
        if old.align() == new.align() {
            // SAFETY: `ptr` was allocated by `System` with `old`; the new block has the
            // alignment of `new`, which is `old`'s.
            return unsafe { System.realloc(ptr, old, new_size) };
        }
        // The alignment changes (a block grows past `LARGE`): move it by hand.
        // SAFETY: `new` has a non-zero size; both blocks are valid for the bytes copied,
        // and `ptr` was allocated by `System` with `old`.
        unsafe {
            let moved = System.alloc(new);
            if !moved.is_null() {
                std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                System.dealloc(ptr, old);
            }
            moved
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_layouts_get_a_cache_line_and_small_ones_keep_theirs() {
        let big = Layout::from_size_align(LARGE, 4).unwrap();
        assert_eq!(widen(big).align(), LINE);
        let small = Layout::from_size_align(LARGE - 1, 4).unwrap();
        assert_eq!(widen(small), small);
        let page = Layout::from_size_align(1 << 20, 4096).unwrap();
        assert_eq!(widen(page), page);
    }

    #[test]
    fn blocks_are_aligned_through_growth_and_keep_their_bytes() {
        let a = CacheAligned;
        let layout = Layout::from_size_align(100, 4).unwrap();
        // SAFETY: non-zero sizes; each block is freed once with the layout it has.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            for i in 0..100 {
                *p.add(i) = i as u8;
            }
            let q = a.realloc(p, layout, 10_000);
            assert!(!q.is_null() && (q as usize).is_multiple_of(LINE));
            assert!((0..100).all(|i| *q.add(i) == i as u8));
            let grown = Layout::from_size_align(10_000, 4).unwrap();
            let r = a.realloc(q, grown, 20_000);
            assert!(!r.is_null() && (r as usize).is_multiple_of(LINE) && *r.add(99) == 99);
            let s = a.realloc(r, Layout::from_size_align(20_000, 4).unwrap(), 50);
            assert!(!s.is_null() && *s.add(49) == 49);
            a.dealloc(s, Layout::from_size_align(50, 4).unwrap());
        }
    }
}
