//! [`Admission`], the `max_connections` gate, checked before any actor exists.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// An atomic count rather than a question to the registry: the registry learns
/// of a session only after its actor starts, so two upgrades racing for the last
/// slot could both be told yes. Reserving a [`Slot`] here is exact.
#[derive(Debug, Clone)]
pub struct Admission {
    live: Arc<AtomicUsize>,
    max: usize,
}

/// One admitted connection; the slot frees itself when dropped (with the session).
#[derive(Debug)]
pub struct Slot {
    live: Arc<AtomicUsize>,
}

impl Admission {
    pub fn new(max: usize) -> Self {
        Admission {
            live: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    /// A slot, or `None` when `max` sessions are already live.
    pub fn try_admit(&self) -> Option<Slot> {
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot {
                live: self.live.clone(),
            })
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_counts_slots_and_frees_them_on_drop() {
        let gate = Admission::new(2);
        let a = gate.try_admit().expect("first");
        let _b = gate.try_admit().expect("second");
        assert!(gate.try_admit().is_none());
        drop(a);
        assert!(gate.try_admit().is_some());
    }
}
