//! Warnings for the client, recorded while a request is served (upstream's
//! `warning.AddWarning` on the request context): whatever deep in the registry or admission
//! chain has something to tell the user calls [`add`], and [`handlers::api`](crate::handlers::api)
//! sends each recorded message as a `Warning: 299 - "..."` header.

use std::cell::RefCell;
use std::future::Future;

tokio::task_local! {
    static RECORDED: RefCell<Vec<String>>;
}

/// Records `message` for the request being served; a repeated message is sent once. Outside
/// a request (the server's own writes) it is dropped.
pub fn add(message: String) {
    let _ = RECORDED.try_with(|r| {
        let mut r = r.borrow_mut();
        if !r.contains(&message) {
            r.push(message);
        }
    });
}

/// Runs `serve`, and returns its answer with the warnings recorded meanwhile.
pub async fn recording<T>(serve: impl Future<Output = T>) -> (T, Vec<String>) {
    RECORDED
        .scope(RefCell::new(Vec::new()), async {
            let answer = serve.await;
            (answer, RECORDED.with(|r| r.take()))
        })
        .await
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn warnings_are_kept_per_request_once_each() {
        let (answer, warnings) = super::recording(async {
            super::add("first".into());
            super::add("second".into());
            super::add("first".into());
            7
        })
        .await;
        assert_eq!(answer, 7);
        assert_eq!(warnings, ["first", "second"]);
        super::add("outside any request".into());
    }
}
