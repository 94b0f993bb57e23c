//! The `pubq` binary (temporary: serve only, until the CLI lands).

use clap::Parser;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    Serve(pubq::config::ServeArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PUBQ_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let Cmd::Serve(a) = Args::parse().cmd;
    let config = pubq::config::ServerConfig::resolve(&a)?;
    pubq::server::run(config).await?;
    Ok(())
}
