//! Giving freed heap memory back to the system after a burst.
//!
//! glibc's allocator keeps what a burst freed (per-thread arenas, the top of the heap) mapped
//! and resident; a bridge idles most of the time, so after activity quiets down the daemon asks
//! it to return that memory (`malloc_trim`). On other allocators this does nothing. Must not be
//! called per event: it walks every arena (about a millisecond).

use std::time::{Duration, Instant};

/// When activity was last quiet long enough, or went on long enough, to trim.
#[derive(Debug)]
pub struct Trimmer {
    quiet: Duration,
    at_most: Duration,
    last_activity: Option<Instant>,
    last_trim: Instant,
}

impl Trimmer {
    /// Trims once activity has been quiet for `quiet`, and at least every `at_most` while it
    /// goes on.
    pub fn new(quiet: Duration, at_most: Duration, now: Instant) -> Self {
        Trimmer {
            quiet,
            at_most,
            last_activity: None,
            last_trim: now,
        }
    }

    pub fn activity(&mut self, now: Instant) {
        self.last_activity = Some(now);
    }

    /// True when a trim is due now (and counts it as done).
    pub fn due(&mut self, now: Instant) -> bool {
        let Some(last) = self.last_activity else {
            return false;
        };
        let quiet = now.duration_since(last) >= self.quiet;
        if !quiet && now.duration_since(self.last_trim) < self.at_most {
            return false;
        }
        self.last_trim = now;
        if quiet {
            self.last_activity = None;
        }
        true
    }
}

/// Returns the heap's free memory to the system (glibc); a no-op elsewhere.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists under its locks; it takes
    // no pointers from us and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn nothing_to_trim_without_activity() {
        let t0 = Instant::now();
        let mut t = Trimmer::new(S, 30 * S, t0);
        assert!(!t.due(t0 + 100 * S));
    }

    #[test]
    fn trims_once_after_activity_quiets() {
        let t0 = Instant::now();
        let mut t = Trimmer::new(S, 30 * S, t0);
        t.activity(t0);
        assert!(!t.due(t0 + S / 2), "still busy");
        assert!(t.due(t0 + S));
        assert!(!t.due(t0 + 2 * S), "once per quiet spell");
        t.activity(t0 + 3 * S);
        assert!(t.due(t0 + 4 * S));
    }

    #[test]
    fn trims_now_and_then_while_activity_goes_on() {
        let t0 = Instant::now();
        let mut t = Trimmer::new(S, 30 * S, t0);
        let mut trims = 0;
        for ms in (0..95_000).step_by(250) {
            let now = t0 + Duration::from_millis(ms);
            t.activity(now);
            trims += usize::from(t.due(now));
        }
        assert_eq!(trims, 3, "every 30 s of constant activity");
        assert!(t.due(t0 + 96 * S), "and once more when it stops");
    }
}
