//! How long a client turned away by a priority level is told to wait (`Retry-After`), as
//! upstream's dropped-requests tracker says: 1 second at first; doubled (to at most 32) while
//! the level keeps turning away at least three requests per second of it; one less when
//! fewer than one per second were turned away. It is recomputed when a rejection lands in a
//! new second, over the rejections of the last `Retry-After` seconds.

use std::collections::VecDeque;

const MAX: u64 = 32;

/// One level's rejections, by second.
#[derive(Debug)]
pub(crate) struct Tracker {
    retry_after: u64,
    last_increase: u64,
    history: VecDeque<(u64, u64)>,
}

impl Default for Tracker {
    fn default() -> Tracker {
        Tracker {
            retry_after: 1,
            last_increase: 0,
            history: VecDeque::new(),
        }
    }
}

impl Tracker {
    /// Records a rejection at `now` (seconds since the epoch); the `Retry-After` to send.
    pub(crate) fn record(&mut self, now: u64) -> u64 {
        let new_second = self.history.back().is_none_or(|(s, _)| *s != now);
        if new_second {
            let since = now.saturating_sub(self.retry_after);
            let drops: u64 = self
                .history
                .iter()
                .filter(|(s, _)| *s >= since)
                .map(|(_, n)| n)
                .sum();
            let ra = self.retry_after;
            if drops >= 3 * ra && now.saturating_sub(self.last_increase) >= ra {
                self.retry_after = (ra * 2).min(MAX);
                self.last_increase = now;
            } else if drops < ra && ra > 1 {
                self.retry_after -= 1;
            }
            let keep = now.saturating_sub((2 * self.retry_after).min(MAX));
            self.history.retain(|(s, _)| *s >= keep);
            self.history.push_back((now, 0));
        }
        if let Some((_, n)) = self.history.back_mut() {
            *n += 1;
        }
        self.retry_after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_rejections_double_the_wait_and_a_lull_brings_it_down() {
        let mut t = Tracker::default();
        assert_eq!(t.record(100), 1);
        for _ in 0..5 {
            t.record(100);
        }
        assert_eq!(t.record(101), 2, "six in the last second: doubled");
        for _ in 0..10 {
            t.record(101);
        }
        assert_eq!(t.record(102), 2, "doubled at most once per Retry-After");
        for _ in 0..10 {
            t.record(102);
        }
        assert_eq!(t.record(103), 4);
        assert_eq!(t.record(200), 3, "nothing for a while: one less");
        assert_eq!(t.record(300), 2);
    }

    #[test]
    fn the_wait_never_passes_32_seconds() {
        let mut t = Tracker::default();
        for second in 0..200 {
            for _ in 0..200 {
                t.record(second);
            }
        }
        assert_eq!(t.record(200), MAX);
    }
}
