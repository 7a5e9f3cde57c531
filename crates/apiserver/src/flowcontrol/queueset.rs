//! One limited priority level's seats and queues (upstream's queue set). A request takes one
//! of the level's seats if one is free and nothing waits; else it waits in a queue: of the
//! queues its flow is dealt (shuffle sharding: `handSize` of the `queues`, from the flow's
//! hash), the shortest. A freed seat goes to the queue whose turn it is by start-time fair
//! queuing: each dispatch costs its queue one unit of virtual time, and a queue that was
//! idle starts at the current virtual time, so a flow cannot save turns it did not use and a
//! noisy flow waits behind quiet ones. A level without queuing (limit response `Reject`)
//! turns away what finds no free seat.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;

/// A level's queues (its `limitResponse.queuing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Queuing {
    pub queues: usize,
    pub hand_size: usize,
    pub queue_length_limit: usize,
}

/// Why a request was turned away (upstream's `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// Its queue was full.
    QueueFull,
    /// No seat was free and the level does not queue.
    ConcurrencyLimit,
    /// It waited too long.
    TimeOut,
}

impl Rejection {
    /// The `reason` label of upstream's rejection metric.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Rejection::QueueFull => "queue-full",
            Rejection::ConcurrencyLimit => "concurrency-limit",
            Rejection::TimeOut => "time-out",
        }
    }
}

/// One level's state.
pub(crate) struct Level {
    queuing: Option<Queuing>,
    state: Mutex<State>,
}

struct State {
    limit: usize,
    executing: usize,
    queues: Vec<Queue>,
    /// The virtual start of the request dispatched last.
    clock: u64,
    next_id: u64,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<(u64, oneshot::Sender<()>)>,
    executing: usize,
    next_start: u64,
}

/// A place in a level: waiting in a queue, then holding a seat. Dropped, it leaves its queue
/// or gives its seat to the next request.
pub(crate) struct Seat {
    level: Arc<Level>,
    queue: Option<usize>,
    id: u64,
}

impl Level {
    /// A level of `limit` seats.
    pub(crate) fn new(limit: usize, queuing: Option<Queuing>) -> Arc<Level> {
        let count = queuing.map_or(0, |q| q.queues);
        Arc::new(Level {
            queuing,
            state: Mutex::new(State {
                limit,
                executing: 0,
                queues: (0..count).map(|_| Queue::default()).collect(),
                clock: 0,
                next_id: 0,
            }),
        })
    }

    /// Its queues, if it queues.
    pub(crate) fn queuing(&self) -> Option<Queuing> {
        self.queuing
    }

    /// Changes the number of seats, dispatching what the new ones allow.
    pub(crate) fn set_limit(&self, limit: usize) {
        let mut s = self.lock();
        s.limit = limit;
        s.dispatch();
    }

    /// A seat for a request of the flow hashed to `flow`, waiting at most `wait` for it.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        flow: u64,
        wait: Duration,
    ) -> Result<Seat, Rejection> {
        let (mut rx, seat) = {
            let mut s = self.lock();
            let Some(q) = self.queuing else {
                if s.executing >= s.limit {
                    return Err(Rejection::ConcurrencyLimit);
                }
                s.executing += 1;
                let id = s.ticket();
                return Ok(self.seat(None, id));
            };
            let index = s.shortest(&deal(flow, q.queues, q.hand_size));
            if s.queues[index].waiting.len() >= q.queue_length_limit {
                return Err(Rejection::QueueFull);
            }
            let (tx, rx) = oneshot::channel();
            let (id, clock) = (s.ticket(), s.clock);
            let queue = &mut s.queues[index];
            if queue.waiting.is_empty() && queue.executing == 0 {
                queue.next_start = queue.next_start.max(clock);
            }
            queue.waiting.push_back((id, tx));
            s.dispatch();
            (rx, self.seat(Some(index), id))
        };
        match tokio::time::timeout(wait, &mut rx).await {
            Ok(Ok(())) => Ok(seat),
            _ if rx.try_recv().is_ok() => Ok(seat),
            // Dropping the seat takes it out of its queue (or, dispatched since, frees it).
            _ => Err(Rejection::TimeOut),
        }
    }

    fn seat(self: &Arc<Self>, queue: Option<usize>, id: u64) -> Seat {
        Seat {
            level: self.clone(),
            queue,
            id,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn ticket(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The queue of `hand` with the fewest requests, waiting or executing.
    fn shortest(&self, hand: &[usize]) -> usize {
        let len = |i: &usize| self.queues[*i].waiting.len() + self.queues[*i].executing;
        hand.iter().copied().min_by_key(len).unwrap_or(0)
    }

    /// Gives free seats to waiting requests: the queue with the earliest virtual start first
    /// (the earliest arrival among equals).
    fn dispatch(&mut self) {
        while self.executing < self.limit {
            let turn = self
                .queues
                .iter()
                .enumerate()
                .filter_map(|(i, q)| q.waiting.front().map(|(id, _)| (q.next_start, *id, i)))
                .min();
            let Some((start, _, i)) = turn else { break };
            let queue = &mut self.queues[i];
            let Some((_, tx)) = queue.waiting.pop_front() else {
                break;
            };
            queue.next_start = start + 1;
            queue.executing += 1;
            self.clock = start;
            self.executing += 1;
            // A receiver gone is a request given up: its seat frees itself when dropped.
            let _ = tx.send(());
        }
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        let mut s = self.level.lock();
        if let Some(q) = self.queue {
            let waiting = &mut s.queues[q].waiting;
            if let Some(pos) = waiting.iter().position(|(id, _)| *id == self.id) {
                waiting.remove(pos);
                return;
            }
            s.queues[q].executing -= 1;
        }
        s.executing -= 1;
        s.dispatch();
    }
}

/// Shuffle sharding: `hand` distinct queues out of `deck`, dealt from the bits of `hash`.
pub(crate) fn deal(mut hash: u64, deck: usize, hand: usize) -> Vec<usize> {
    let hand = hand.clamp(1, deck.max(1));
    let mut cards: Vec<usize> = Vec::with_capacity(hand);
    for left in (deck + 1 - hand..=deck).rev() {
        let mut card = (hash % left as u64) as usize;
        hash /= left as u64;
        let mut taken = cards.clone();
        taken.sort_unstable();
        for t in taken {
            if card >= t {
                card += 1;
            }
        }
        cards.push(card);
    }
    cards
}

#[cfg(test)]
mod tests;
