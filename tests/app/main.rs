//! The axum app: admin, player, analytics, Django compatibility, real
//! browsers and players, the log end to end.

#[path = "../common/mod.rs"]
mod common;

mod app;
mod browser;
mod django_compat;
mod log_e2e;
mod players;

fn main() -> std::process::ExitCode {
    common::harness::run_groups(vec![
        ("app", app::tests()),
        ("players", players::tests()),
        ("django_compat", django_compat::tests()),
        ("browser", browser::tests()),
        ("log_e2e", log_e2e::tests()),
    ])
}
