//! Request URL and query parsing never panics: input is a path, a newline, a query string.
#![no_main]

use std::sync::LazyLock;

use api::resources::Catalog;
use libfuzzer_sys::fuzz_target;

/// The built-in resources, parsed against.
static SERVED: LazyLock<Catalog> = LazyLock::new(Catalog::new);

fuzz_target!(|data: &str| {
    let (path, query) = data.split_once('\n').unwrap_or((data, ""));
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
        let _ = api::request::parse(path, method, false, &SERVED);
    }
    let q = api::request::Query::parse(Some(query));
    let _ = q.flag("watch");
});
