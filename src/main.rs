//! The `lethe` binary: everything lives in the library; see `lethe::cli`.

fn main() -> std::process::ExitCode {
    lethe::cli::main()
}
