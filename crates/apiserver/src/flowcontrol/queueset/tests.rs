use std::sync::Mutex as StdMutex;

use super::*;

const WAIT: Duration = Duration::from_secs(15);

/// Requests waiting and requests holding seats.
fn counts(level: &Level) -> (usize, usize) {
    let s = level.lock();
    let waiting = s.queues.iter().map(|q| q.waiting.len()).sum();
    (waiting, s.executing)
}

fn queued(limit: usize, queue_length_limit: usize) -> Arc<Level> {
    let queuing = Queuing {
        queues: 8,
        hand_size: 1,
        queue_length_limit,
    };
    Level::new(limit, Some(queuing))
}

/// Starts a request of `flow` that records `label` once it holds a seat, then frees it; returns
/// once the request waits in its queue.
async fn enqueue(
    level: &Arc<Level>,
    flow: u64,
    label: &'static str,
    order: &Arc<StdMutex<Vec<&'static str>>>,
) {
    let before = counts(level).0;
    let (level2, order) = (level.clone(), order.clone());
    tokio::spawn(async move {
        if level2.acquire(flow, WAIT).await.is_ok() {
            order.lock().unwrap().push(label);
        }
    });
    while counts(level).0 == before {
        tokio::task::yield_now().await;
    }
}

#[test]
fn hands_are_distinct_cards_of_the_deck() {
    for hash in [0, 1, 7, 12345, u64::MAX] {
        let mut hand = deal(hash, 64, 6);
        assert_eq!(hand.len(), 6);
        assert!(hand.iter().all(|c| *c < 64));
        hand.sort_unstable();
        hand.dedup();
        assert_eq!(hand.len(), 6, "distinct cards for {hash}");
        assert_eq!(deal(hash, 64, 6).len(), 6);
    }
    assert_eq!(deal(5, 8, 1), vec![5]);
    assert_eq!(deal(13, 8, 8).len(), 8);
}

#[tokio::test]
async fn a_level_without_queues_turns_away_what_finds_no_seat() {
    let level = Level::new(1, None);
    let first = level.acquire(1, WAIT).await.unwrap();
    assert_eq!(
        level.acquire(2, WAIT).await.err(),
        Some(Rejection::ConcurrencyLimit)
    );
    drop(first);
    assert!(level.acquire(2, WAIT).await.is_ok());
}

#[tokio::test]
async fn a_quiet_flow_is_served_before_a_noisy_flows_backlog() {
    let level = queued(1, 10);
    let order = Arc::new(StdMutex::new(Vec::new()));
    let held = level.acquire(2, WAIT).await.unwrap();
    for label in ["noisy 1", "noisy 2", "noisy 3"] {
        enqueue(&level, 0, label, &order).await;
    }
    enqueue(&level, 1, "quiet", &order).await;
    assert_eq!(counts(&level), (4, 1));
    drop(held);
    while counts(&level) != (0, 0) {
        tokio::task::yield_now().await;
    }
    let order = order.lock().unwrap().clone();
    assert_eq!(order, ["noisy 1", "quiet", "noisy 2", "noisy 3"]);
}

#[tokio::test]
async fn a_full_queue_turns_away_its_flow_but_not_another() {
    let level = queued(1, 2);
    let order = Arc::new(StdMutex::new(Vec::new()));
    let _held = level.acquire(2, WAIT).await.unwrap();
    enqueue(&level, 0, "a", &order).await;
    enqueue(&level, 0, "b", &order).await;
    assert_eq!(
        level.acquire(0, WAIT).await.err(),
        Some(Rejection::QueueFull)
    );
    enqueue(&level, 1, "other flow", &order).await;
    assert_eq!(counts(&level), (3, 1));
}

#[tokio::test]
async fn a_request_that_waits_too_long_leaves_its_queue() {
    let level = queued(1, 10);
    let held = level.acquire(0, WAIT).await.unwrap();
    let short = Duration::from_millis(20);
    assert_eq!(
        level.acquire(0, short).await.err(),
        Some(Rejection::TimeOut)
    );
    assert_eq!(counts(&level), (0, 1));
    drop(held);
    assert_eq!(counts(&level), (0, 0));
}

#[tokio::test]
async fn a_request_given_up_frees_its_place_and_a_more_generous_limit_dispatches() {
    let level = queued(1, 10);
    let held = level.acquire(0, WAIT).await.unwrap();
    let waiting = tokio::spawn({
        let level = level.clone();
        async move { level.acquire(0, WAIT).await.map(|_| ()) }
    });
    while counts(&level).0 == 0 {
        tokio::task::yield_now().await;
    }
    waiting.abort();
    let _ = waiting.await;
    assert_eq!(counts(&level), (0, 1));
    let order = Arc::new(StdMutex::new(Vec::new()));
    enqueue(&level, 1, "next", &order).await;
    level.set_limit(2);
    while counts(&level) != (0, 1) {
        tokio::task::yield_now().await;
    }
    drop(held);
    assert_eq!(counts(&level), (0, 0));
    assert_eq!(order.lock().unwrap().clone(), ["next"]);
}
