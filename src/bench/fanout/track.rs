//! One subscriber's bookkeeping of the measured sequence 0, 1, 2, ...: what
//! arrived in order, late or twice, and at the end what never arrived.
//!
//! Memory is bounded by the gaps, not by the run's length: a subscriber
//! keeps the highest number seen and the ranges still missing below it.

use std::collections::VecDeque;
use std::ops::Range;

/// The most missing ranges one subscriber tracks. Beyond this the oldest is
/// given up on and counted as lost for good; should one of its publications
/// arrive after all, it counts as a duplicate. A server that drops this much
/// fails the run either way.
const MAX_GAPS: usize = 1024;

/// What one delivery was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// The next after everything received so far (possibly after a gap).
    InOrder,
    /// One that was missing: it arrived after a later publication.
    Late,
    /// Already received.
    Duplicate,
}

#[derive(Debug, Default)]
pub(crate) struct Track {
    /// One past the highest sequence number received.
    high: u64,
    /// Numbers below `high` not received, as disjoint ranges in order.
    gaps: VecDeque<Range<u64>>,
    /// Numbers in gaps given up on (see [`MAX_GAPS`]).
    abandoned: u64,
    pub(crate) received: u64,
    pub(crate) duplicates: u64,
    pub(crate) out_of_order: u64,
}

impl Track {
    pub(crate) fn record(&mut self, seq: u64) -> Arrival {
        if seq >= self.high {
            if seq > self.high {
                self.gaps.push_back(self.high..seq);
                if self.gaps.len() > MAX_GAPS
                    && let Some(oldest) = self.gaps.pop_front()
                {
                    self.abandoned += oldest.end - oldest.start;
                }
            }
            self.high = seq + 1;
            self.received += 1;
            return Arrival::InOrder;
        }
        let i = self.gaps.partition_point(|gap| gap.end <= seq);
        match self.gaps.get(i).cloned() {
            Some(gap) if gap.start <= seq => {
                // Take `seq` out of its gap: shrink it, drop it, or split it.
                if gap.end - gap.start == 1 {
                    self.gaps.remove(i);
                } else if seq == gap.start {
                    self.gaps[i].start += 1;
                } else if seq + 1 == gap.end {
                    self.gaps[i].end -= 1;
                } else {
                    self.gaps[i].end = seq;
                    self.gaps.insert(i + 1, seq + 1..gap.end);
                }
                self.received += 1;
                self.out_of_order += 1;
                Arrival::Late
            }
            _ => {
                self.duplicates += 1;
                Arrival::Duplicate
            }
        }
    }

    /// Of `published` publications (numbered from 0), those never received.
    pub(crate) fn lost(&self, published: u64) -> u64 {
        let missing: u64 = self.gaps.iter().map(|g| g.end - g.start).sum();
        missing + self.abandoned + published.saturating_sub(self.high)
    }

    /// Numbers received that were never published: a server inventing
    /// publications (or one of ours sent after we stopped counting).
    pub(crate) fn beyond(&self, published: u64) -> u64 {
        self.high.saturating_sub(published)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(seqs: &[u64]) -> (Track, Vec<Arrival>) {
        let mut t = Track::default();
        let arrivals = seqs.iter().map(|&s| t.record(s)).collect();
        (t, arrivals)
    }

    #[test]
    fn in_order_deliveries_lose_nothing() {
        let (t, arrivals) = track(&[0, 1, 2, 3]);
        assert!(arrivals.iter().all(|a| *a == Arrival::InOrder));
        assert_eq!(
            (t.received, t.lost(4), t.duplicates, t.out_of_order),
            (4, 0, 0, 0)
        );
        assert_eq!(t.lost(6), 2, "the tail that never came is lost");
    }

    #[test]
    fn a_gap_is_lost_unless_it_is_filled_late() {
        let (t, _) = track(&[0, 1, 3, 4]);
        assert_eq!((t.received, t.lost(5)), (4, 1));
        let (t, arrivals) = track(&[0, 2, 1, 3]);
        assert_eq!(arrivals[2], Arrival::Late);
        assert_eq!((t.received, t.lost(4), t.out_of_order), (4, 0, 1));
    }

    #[test]
    fn late_arrivals_split_shrink_and_close_gaps() {
        let (t, _) = track(&[10, 5, 0, 9, 1]);
        // Received 0, 1, 5, 9, 10 of 0..=10.
        assert_eq!((t.received, t.out_of_order, t.lost(11)), (5, 4, 6));
        let (t, _) = track(&[3, 0, 1, 2]);
        assert_eq!((t.lost(4), t.gaps.len()), (0, 0));
    }

    #[test]
    fn a_second_copy_is_a_duplicate_and_not_a_delivery() {
        let (t, arrivals) = track(&[0, 1, 1, 0, 2]);
        assert_eq!(arrivals[2], Arrival::Duplicate);
        assert_eq!(arrivals[3], Arrival::Duplicate);
        assert_eq!((t.received, t.duplicates, t.lost(3)), (3, 2, 0));
    }

    #[test]
    fn gaps_are_bounded_and_the_oldest_given_up_counts_as_lost() {
        let seqs: Vec<u64> = (0..=(MAX_GAPS as u64 + 5)).map(|i| i * 2 + 1).collect();
        let (t, _) = track(&seqs);
        assert_eq!(t.gaps.len(), MAX_GAPS);
        let published = seqs[seqs.len() - 1] + 1;
        assert_eq!(t.lost(published), published - t.received);
        assert_eq!(t.beyond(published), 0);
        assert_eq!(t.beyond(published - 3), 3);
    }
}
