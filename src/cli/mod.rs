//! The `pubq` command line: `serve` starts the server; every other command is a
//! client of a running server over HTTP (through [`crate::client`]), printing
//! JSON lines on stdout and errors on stderr.
//!
//! Exit codes: 0 ok, 1 the server refused or something failed, 2 usage error
//! (clap's own, or a check clap cannot express), 3 cannot connect.
//!
//! This module owns parsing and presentation only; what a command means is the
//! server's business, so value ranges are left for the server to check.

mod admin;
mod auth;
mod bench;
mod consume;
mod devcert;
mod encryption_key;
mod message;
mod output;
mod values;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::client::{Client, ClientError};
use crate::config::ServeArgs;

pub use admin::UnsubscribeArgs;
pub use admin::{HealthArgs, QueueCommand, QueueSettingsArgs, SubscribeArgs, TopicCommand};
pub use auth::AuthCommand;
pub use bench::{BenchArgs, BenchFailed, Workload as BenchWorkload};
pub use consume::{ConsumeArgs, TailArgs};
pub use devcert::DevCertArgs;
pub use encryption_key::EncryptionKeyArgs;
pub use message::{AckArgs, MessageArgs, NackArgs, PublishArgs, SendArgs, VisibilityArgs};
pub use values::Attr;

/// Where client commands find the server unless told otherwise.
pub const DEFAULT_SERVER_URL: &str = "http://127.0.0.1:7733";

/// pubq: topics, queues, fan-out, long polling and WebSocket push in one binary.
#[derive(Debug, Parser)]
#[command(name = "pubq", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Every command. Client commands carry [`ConnectArgs`].
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve {
        #[command(flatten)]
        args: Box<ServeArgs>,
    },
    /// Create, delete, list and show topics.
    Topic {
        #[command(flatten)]
        connect: ConnectArgs,
        #[command(subcommand)]
        command: TopicCommand,
    },
    /// Create, update, delete, list, show, purge and redrive queues.
    Queue {
        #[command(flatten)]
        connect: ConnectArgs,
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// Subscribe a queue to a topic (again: replace its filter).
    Subscribe(SubscribeArgs),
    /// Remove a queue's subscription to a topic.
    Unsubscribe(UnsubscribeArgs),
    /// Publish a message to a topic (one copy to every matching subscribed queue).
    Publish(PublishArgs),
    /// Send a message straight to a queue.
    Send(SendArgs),
    /// Receive messages from a queue, print them, and ack them.
    Consume(ConsumeArgs),
    /// Delete received messages by receipt.
    Ack(AckArgs),
    /// Make received messages visible again (now, or after --delay).
    Nack(NackArgs),
    /// Change how long received messages stay hidden.
    Visibility(VisibilityArgs),
    /// Print what is published to a topic, through a temporary queue.
    Tail(TailArgs),
    /// Check that the server is alive and ready.
    Health(HealthArgs),
    /// Make API keys and their hashes for `pubq.toml` (offline).
    Auth {
        #[command(subcommand)]
        command: AuthCommand,
    },
    /// Generate load against a server and verify what it delivers.
    Bench(BenchArgs),
    /// Write a self-signed certificate and key for development TLS
    /// (`serve --tls-cert cert.pem --tls-key key.pem`).
    DevCert(DevCertArgs),
    /// Make a random 32-byte key for encryption at rest
    /// (`serve --encryption-key-file FILE`; offline).
    EncryptionKey(EncryptionKeyArgs),
}

/// How a client command reaches the server.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// Server URL.
    #[arg(
        long,
        env = "PUBQ_URL",
        default_value = DEFAULT_SERVER_URL,
        global = true,
        help_heading = "Connection"
    )]
    pub server: String,
    /// Bearer token: an API key or a JWT.
    #[arg(
        long,
        env = "PUBQ_TOKEN",
        hide_env_values = true,
        global = true,
        help_heading = "Connection"
    )]
    pub token: Option<String>,
    /// Also trust the CA certificate(s) in this PEM file for https:// servers
    /// (e.g. the cert.pem of `pubq dev-cert`).
    #[arg(
        long,
        env = "PUBQ_CA_CERT",
        value_name = "FILE",
        global = true,
        help_heading = "Connection"
    )]
    pub ca_cert: Option<PathBuf>,
}

impl ConnectArgs {
    fn client(&self) -> anyhow::Result<Client> {
        let ca = match &self.ca_cert {
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                UsageError(format!(
                    "cannot read the CA certificate {}: {e}",
                    path.display()
                ))
            })?),
            None => None,
        };
        Ok(Client::with_ca(
            &self.server,
            self.token.clone(),
            ca.as_deref(),
        )?)
    }
}

/// A mistake in the command line that clap could not catch itself (e.g. the
/// same `--attr` key twice). Exit code 2, like clap's own.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Some entries of a batch (publish lines, receipts) failed; each was printed
/// with its error. Exit code 1.
#[derive(Debug, thiserror::Error)]
#[error("{failed} of {total} {what} failed")]
pub struct PartialFailure {
    pub failed: usize,
    pub total: usize,
    pub what: &'static str,
}

/// Runs one parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    run_command(cli.command).await.map_err(tls_hint)
}

async fn run_command(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve { args } => serve(*args).await,
        Command::Topic { connect, command } => admin::topic(&connect.client()?, command).await,
        Command::Queue { connect, command } => admin::queue(&connect.client()?, command).await,
        Command::Subscribe(args) => admin::subscribe(&args.connect.client()?, &args).await,
        Command::Unsubscribe(args) => admin::unsubscribe(&args.connect.client()?, &args).await,
        Command::Health(args) => admin::health(&args.connect.client()?).await,
        Command::Publish(args) => message::publish(&args.connect.client()?, &args).await,
        Command::Send(args) => message::send(&args.connect.client()?, &args).await,
        Command::Ack(args) => message::ack(&args.connect.client()?, &args).await,
        Command::Nack(args) => message::nack(&args.connect.client()?, &args).await,
        Command::Visibility(args) => message::visibility(&args.connect.client()?, &args).await,
        Command::Consume(args) => consume::consume(&args.connect.client()?, &args).await,
        Command::Tail(args) => consume::tail(&args.connect.client()?, &args).await,
        Command::Auth { command } => auth::run(command),
        Command::Bench(args) => bench::run(&args.connect.client()?, &args).await,
        Command::DevCert(args) => devcert::dev_cert(&args),
        Command::EncryptionKey(args) => encryption_key::run(&args),
    }
}

/// A connection refused for the server's certificate gets a hint at the fix.
fn tls_hint(err: anyhow::Error) -> anyhow::Error {
    let untrusted = err.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<ClientError>(),
            Some(ClientError::Connect { detail, .. }) if detail.contains("certificate")
        )
    });
    if untrusted {
        err.context(
            "the server's TLS certificate is not trusted: pass its CA certificate with \
             --ca-cert FILE (or PUBQ_CA_CERT)",
        )
    } else {
        err
    }
}

/// The process exit code for an error [`run`] returned.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.is::<UsageError>() {
            return 2;
        }
        if let Some(e) = cause.downcast_ref::<ClientError>() {
            return match e {
                ClientError::Connect { .. } => 3,
                // A --server that is no URL is a usage mistake.
                ClientError::InvalidUrl { .. } => 2,
                _ => 1,
            };
        }
    }
    1
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = crate::config::ServerConfig::resolve(&args)?;
    crate::server::run(config).await?;
    Ok(())
}
