//! AFL++ target: `cargo afl fuzz -i fuzz/seeds/conditional -o fuzz/out/conditional target/debug/conditional`
//! (see fuzz/README.md).
fn main() {
    afl::fuzz!(|data: &[u8]| sage_stream::fuzzing::conditional(data));
}
