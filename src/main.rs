//! The `bakery` binary: parse arguments, set up logging, run, print the error chain once.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = bakery::cli::Cli::parse();
    bakery::cli::logging::init(cli.global.verbose, cli.global.quiet);
    match bakery::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", bakery::error::describe(&error));
            ExitCode::from(bakery::error::exit_code(&error) as u8)
        }
    }
}
