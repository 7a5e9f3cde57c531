//! The one back-off policy for API calls: transient failures (the server unreachable, 429,
//! 5xx) are retried with doubling delays; everything else is returned to the caller, which
//! knows what a 404 or a 409 means for it.

use std::future::Future;
use std::time::Duration;

/// The first delay after a transient failure.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest delay between two attempts.
const MAX_DELAY: Duration = Duration::from_secs(5);

/// Whether `e` may go away by itself: the connection failed, or the server answered 429 or 5xx.
pub(crate) fn is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => matches!(s.code, 429 | 500 | 502 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

/// Whether the API answered 404 Not Found.
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_not_found())
}

/// Whether the API answered 409: AlreadyExists on create, Conflict on update or a failed
/// precondition.
pub(crate) fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Calls `f` until it succeeds or fails with a non-transient error, or until `give_up_after`
/// has passed since the first attempt (then the last error is returned). `None` retries for
/// as long as it takes: the caller's task is cancelled on shutdown.
pub(crate) async fn retry<T, F, Fut>(
    what: &str,
    give_up_after: Option<Duration>,
    mut f: F,
) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let start = tokio::time::Instant::now();
    let mut delay = FIRST_DELAY;
    loop {
        match f().await {
            Err(e) if is_transient(&e) => {
                if give_up_after.is_some_and(|limit| start.elapsed() + delay > limit) {
                    return Err(e);
                }
                tracing::debug!(error = %e, ?delay, "{what}: transient failure, retrying");
                tokio::time::sleep(delay).await;
                delay = next_delay(delay);
            }
            r => return r,
        }
    }
}

/// The delay after `delay`: doubled, at most [`MAX_DELAY`].
fn next_delay(delay: Duration) -> Duration {
    (delay * 2).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("x", reason)
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn only_overload_and_server_errors_are_transient() {
        assert!(is_transient(&api_error(503, "ServiceUnavailable")));
        assert!(is_transient(&api_error(429, "TooManyRequests")));
        assert!(is_transient(&api_error(500, "InternalError")));
        assert!(!is_transient(&api_error(404, "NotFound")));
        assert!(!is_transient(&api_error(409, "Conflict")));
        assert!(!is_transient(&api_error(422, "Invalid")));
        assert!(is_not_found(&api_error(404, "NotFound")));
        assert!(is_conflict(&api_error(409, "AlreadyExists")));
    }

    #[test]
    fn delays_double_up_to_a_cap() {
        assert_eq!(next_delay(FIRST_DELAY), Duration::from_millis(200));
        assert_eq!(next_delay(Duration::from_secs(4)), MAX_DELAY);
        assert_eq!(next_delay(MAX_DELAY), MAX_DELAY);
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_and_others_returned() {
        let mut calls = 0;
        let r = retry("test", None, || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Err(api_error(503, "ServiceUnavailable"))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(r.unwrap(), 3);

        let mut calls = 0;
        let r: Result<(), _> = retry("test", None, || {
            calls += 1;
            async { Err(api_error(404, "NotFound")) }
        })
        .await;
        assert!(is_not_found(&r.unwrap_err()));
        assert_eq!(calls, 1);

        let r: Result<(), _> = retry("test", Some(Duration::from_secs(1)), || async {
            Err(api_error(503, "ServiceUnavailable"))
        })
        .await;
        assert!(is_transient(&r.unwrap_err()));
    }
}
