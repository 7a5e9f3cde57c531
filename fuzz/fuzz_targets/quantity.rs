//! Quantity parsing never panics or overflows, and the rounded views of a value agree:
//! whole units and thousandths are both rounded up from the same exact value.
#![no_main]

use api::quantity::Quantity;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &str| {
    if let Ok(q) = Quantity::parse(data) {
        if !q.is_negative() {
            let (milli, units) = (q.milli(), q.units());
            assert!(milli <= units * 1000, "{data:?}: {milli} milli vs {units} units");
            assert!(units == 0 || milli > (units - 1) * 1000, "{data:?}: {milli} milli vs {units} units");
        }
    }
});
