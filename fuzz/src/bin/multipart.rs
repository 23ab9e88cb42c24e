//! AFL++ target: `cargo afl fuzz -i fuzz/seeds/multipart -o fuzz/out/multipart target/debug/multipart`
//! (see fuzz/README.md).
fn main() {
    afl::fuzz!(|data: &[u8]| sage_stream::fuzzing::multipart(data));
}
