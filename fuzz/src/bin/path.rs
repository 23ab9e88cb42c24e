//! AFL++ target: `cargo afl fuzz -i fuzz/seeds/path -o fuzz/out/path target/debug/path`
//! (see fuzz/README.md).
fn main() {
    afl::fuzz!(|data: &[u8]| sage_stream::fuzzing::path(data));
}
