//! `wsd`: parse flags, load the config, start logging, run the server, and map
//! errors to exit codes. Everything else lives in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use wsd::auth::{Grant, Signer};
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
        wsd gen-cert --out certs             # a local CA and a certificate for trying wss://\n  \
        wsd token --sub ann --ttl 1h --subscribe 'chat:room.*'   # a connection token (auth.hmac_secret)\n\n\
        Exit codes: 0 clean shutdown, 1 cannot listen, 2 bad config or usage,\n  \
        130 a second SIGINT/SIGTERM cut the shutdown short."
)]
struct Args {
    /// Config file (TOML). Default: config/wsd.toml if it exists, else built-in defaults.
    #[arg(short, long, value_name = "PATH", global = true)]
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
    /// Print a connection token (a JWT) for `?token=` or `Authorization:
    /// Bearer`, signed with the config's auth.hmac_secret (HS256), or with
    /// --key (RS256/ES256; the server is given the matching public key).
    Token {
        /// The user id (`sub`).
        #[arg(long, value_name = "USER")]
        sub: String,
        /// How long the token is valid, e.g. 15m, 1h, 7d.
        #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = wsd::units::parse_duration)]
        ttl: std::time::Duration,
        /// A channel pattern it may subscribe to (repeatable): `*` is one
        /// `.`-separated segment, a final `>` one or more.
        #[arg(long, value_name = "PATTERN")]
        subscribe: Vec<String>,
        /// A channel pattern it may publish to (repeatable).
        #[arg(long, value_name = "PATTERN")]
        publish: Vec<String>,
        /// A PEM private key (RSA or EC P-256) to sign with instead of the secret.
        #[arg(long, value_name = "PATH")]
        key: Option<PathBuf>,
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

/// `wsd token`: sign a grant with the configured secret or a private key.
fn token(config: &Config, grant: &Grant, key: Option<&Path>) -> ExitCode {
    let signed = Signer::new(&config.auth, key)
        .map_err(|e| e.to_string())
        .and_then(|signer| signer.sign(grant).map_err(|e| e.to_string()));
    match signed {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wsd token: {e}");
            ExitCode::from(exit::USAGE as u8)
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
    if let Some(Command::Token {
        sub,
        ttl,
        subscribe,
        publish,
        key,
    }) = args.command
    {
        let grant = Grant {
            sub,
            ttl,
            subscribe,
            publish,
        };
        return token(&config, &grant, key.as_deref());
    }
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
