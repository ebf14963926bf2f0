//! `wsc`: parse flags, start logging, run the client, map the ending to an
//! exit code. Everything else lives in `wsd::client` (the flags themselves,
//! with their help text, in `wsd::client::cli`).

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use wsd::client::{
    self,
    cli::{Args, Mode},
};
use wsd::exit;

fn main() -> ExitCode {
    let args = Args::parse();
    env_logger::Builder::new()
        .parse_filters("warn")
        .parse_default_env()
        .init();
    let insecure = args.skips_verification();
    let (opts, settings) = match args.into_mode() {
        Ok(Mode::Connect(opts, settings)) => (opts, settings),
        // The load generator, with flags of its own (`wsc bench --help`).
        Ok(Mode::Bench(bench)) => return ExitCode::from(wsd::bench::main(bench) as u8),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "wsc: {e}");
            return ExitCode::from(exit::USAGE as u8);
        }
    };
    if insecure {
        let _ = writeln!(
            std::io::stderr(),
            "wsc: warning: -n: not verifying the server's certificate; the connection is encrypted but not authenticated"
        );
    }
    let code = match actix_rt::System::new().block_on(client::console::run(opts, settings)) {
        Ok(ending) => ending.exit_code(),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "wsc: {e}");
            exit::FAILURE
        }
    };
    ExitCode::from(code as u8)
}
