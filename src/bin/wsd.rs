//! `wsd`: parse flags, load the config, start logging, run the server, and map
//! errors to exit codes. Everything else lives in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use wsd::config::Config;
use wsd::exit;
use wsd::server::Stopped;

/// A WebSocket echo server: every text message is answered with the configured
/// prefix and the message, every binary message is echoed unchanged.
#[derive(Parser, Debug)]
#[command(
    name = "wsd",
    version,
    after_help = "Examples:\n  \
        wsd                                  # config/wsd.toml if present, else defaults (ws://localhost:12345)\n  \
        wsd --config /etc/wsd.toml --bind 0.0.0.0:8080\n  \
        wsd --print-config > my.toml         # start a config file from the effective settings\n  \
        wsd gen-cert --out certs             # a local CA and a certificate for trying wss://\n\n\
        Exit codes: 0 clean shutdown, 1 cannot listen, 2 bad config or usage,\n  \
        130 a second SIGINT/SIGTERM cut the shutdown short."
)]
struct Args {
    /// Config file (TOML). Default: config/wsd.toml if it exists, else built-in defaults.
    #[arg(short, long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Listen address, overriding server.bind (e.g. 127.0.0.1:9000, [::1]:9000, 0.0.0.0:12345).
    #[arg(short, long, value_name = "HOST:PORT")]
    bind: Option<String>,
    /// Print the effective config as TOML and exit.
    #[arg(long)]
    print_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Write a local CA (ca.pem) and a server certificate it signed (cert.pem,
    /// key.pem) for trying wss:// locally. Trust ca.pem in the client.
    GenCert {
        /// A DNS name or IP address the certificate is for (repeatable).
        #[arg(long = "host", value_name = "NAME", default_values = ["localhost", "127.0.0.1", "::1"])]
        hosts: Vec<String>,
        /// Directory to write the files into.
        #[arg(long, value_name = "DIR", default_value = "certs")]
        out: PathBuf,
    },
}

fn gen_cert(hosts: &[String], out: &Path) -> ExitCode {
    match wsd::tls::generate_files(out, hosts) {
        Ok(files) => {
            println!("{files}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wsd gen-cert: {e}");
            ExitCode::from(exit::FAILURE as u8)
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::GenCert { hosts, out }) = &args.command {
        return gen_cert(hosts, out);
    }
    let config = match Config::resolve(args.config.as_deref(), args.bind.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("wsd: {e}");
            return ExitCode::from(exit::USAGE as u8);
        }
    };
    if args.print_config {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    env_logger::Builder::new()
        .parse_filters(&config.log.level)
        .parse_default_env()
        .init();
    match actix_web::rt::System::new().block_on(wsd::server::run(config)) {
        Ok(Stopped::Drained) => ExitCode::SUCCESS,
        Ok(Stopped::Interrupted) => ExitCode::from(exit::INTERRUPTED as u8),
        // Reported once, on stderr; a config problem names the file first,
        // like every other config error.
        Err(e) if e.is_config() => {
            let file = Config::file(args.config.as_deref());
            let file = file.unwrap_or_else(|| wsd::config::DEFAULTS.into());
            eprintln!("wsd: {}: {e}", file.display());
            ExitCode::from(e.exit_code() as u8)
        }
        Err(e) => {
            eprintln!("wsd: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
