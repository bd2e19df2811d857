//! The `opslake` binary; everything lives in the library so tests can drive it.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    opslake_cli::malloc::tune();
    opslake_cli::install_panic_hook();
    let cli = opslake_cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(opslake_cli::exit::EXTERNAL);
        }
    };
    runtime.block_on(opslake_cli::run(cli))
}
