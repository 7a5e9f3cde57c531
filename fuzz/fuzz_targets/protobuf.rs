//! The protobuf body decoder never panics, whatever the bytes (with or without the magic).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = api::protobuf::decode(data);
    let mut with_magic = api::protobuf::MAGIC.to_vec();
    with_magic.extend_from_slice(data);
    let _ = api::protobuf::decode(&with_magic);
});
