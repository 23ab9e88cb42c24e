//! AFL++ target: `cargo afl fuzz -i fuzz/seeds/range -o fuzz/out/range target/debug/range`
//! (see fuzz/README.md).
fn main() {
    afl::fuzz!(|data: &[u8]| sage_stream::fuzzing::range(data));
}
