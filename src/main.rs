use std::process::ExitCode;

fn main() -> ExitCode {
    bridgewarden::cli::main()
}
