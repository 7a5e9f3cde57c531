//! Admission to the CPU-heavy steps of starting pods (making a sandbox, creating and starting a
//! container), a few at a time and the oldest pod first.
//!
//! Started all at once, a burst of pods shares the cores evenly and every pod becomes Running
//! near the end of the burst. Let in by age, the first pods finish early and the last no later,
//! which is what pod start latency measures. Image pulls and probes do not pass through it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Lets at most `permits` holders in at a time, lowest priority value first.
#[derive(Debug)]
pub(crate) struct Gate {
    permits: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    inside: usize,
    /// Waiters by (priority, arrival), each waiting for a pass.
    waiting: BTreeMap<(u64, u64), oneshot::Sender<Pass>>,
    arrivals: u64,
}

/// Being inside the gate; leaving hands the place to the next waiter.
#[derive(Debug)]
pub(crate) struct Pass(Arc<Gate>);

impl Gate {
    pub(crate) fn new(permits: usize) -> Arc<Gate> {
        Arc::new(Gate {
            permits: permits.max(1),
            state: Mutex::default(),
        })
    }

    /// Waits for a place; `priority` orders the waiters (a pod's age on this node).
    pub(crate) async fn enter(self: &Arc<Gate>, priority: u64) -> Pass {
        let rx = {
            let mut st = self.state.lock().expect("gate lock");
            if st.inside < self.permits && st.waiting.is_empty() {
                st.inside += 1;
                return Pass(self.clone());
            }
            let (tx, rx) = oneshot::channel();
            st.arrivals += 1;
            let arrival = st.arrivals;
            st.waiting.insert((priority, arrival), tx);
            rx
        };
        // A place is handed over with a pass, so a waiter that gives up (its future dropped)
        // drops the pass and so passes it on: no place is lost.
        rx.await.expect("a gate outlives its waiters")
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        let next = {
            let mut st = self.0.state.lock().expect("gate lock");
            match st.waiting.pop_first() {
                Some((_, tx)) => tx,
                None => {
                    st.inside -= 1;
                    return;
                }
            }
        };
        // If that waiter is gone, the pass comes back and is dropped in turn: the next one.
        let _ = next.send(Pass(self.0.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn places_go_to_the_lowest_priority_value_first() {
        let gate = Gate::new(1);
        let first = gate.enter(5).await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for p in [3u64, 1, 2] {
            let (gate, tx) = (gate.clone(), tx.clone());
            tasks.push(tokio::spawn(async move {
                let _pass = gate.enter(p).await;
                tx.send(p).unwrap();
            }));
            tokio::task::yield_now().await;
        }
        // A waiter that gives up does not take its place with it.
        let quitter = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.enter(0).await })
        };
        tokio::task::yield_now().await;
        quitter.abort();
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        let order: Vec<u64> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(order, [1, 2, 3]);
        assert_eq!(gate.state.lock().unwrap().inside, 0);
    }
}
