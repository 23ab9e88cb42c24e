//! AFL++ target: `cargo afl fuzz -i fuzz/seeds/query -o fuzz/out/query target/debug/query`
//! (see fuzz/README.md).
fn main() {
    afl::fuzz!(|data: &[u8]| sage_stream::fuzzing::query(data));
}
