//! Command-line parsing: every subcommand parses into what `run` expects, and
//! bad input is a clap error (exit code 2) before any request is made.

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use serde_json::json;

use super::*;

fn parse(args: &[&str]) -> Cli {
    let argv = std::iter::once("pubq").chain(args.iter().copied());
    match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => panic!("{args:?} should parse: {e}"),
    }
}

fn refuse(args: &[&str]) -> ErrorKind {
    let argv = std::iter::once("pubq").chain(args.iter().copied());
    match Cli::try_parse_from(argv) {
        Ok(cli) => panic!("{args:?} should be refused, parsed as {cli:?}"),
        Err(e) => e.kind(),
    }
}

#[test]
fn the_command_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn serve_takes_the_server_flags() {
    let Command::Serve { args } = parse(&[
        "serve",
        "--listen",
        "127.0.0.1:9000",
        "--memory",
        "--fsync",
        "never",
        "--shutdown-grace",
        "5s",
    ])
    .command
    else {
        panic!("not serve");
    };
    assert_eq!(args.listen, "127.0.0.1:9000".parse().ok());
    assert!(args.memory);
    assert_eq!(args.fsync, Some(crate::config::FsyncPolicy::Never));
    assert_eq!(args.shutdown_grace, Some(std::time::Duration::from_secs(5)));
}

#[test]
fn serve_refuses_data_dir_with_memory() {
    assert_eq!(
        refuse(&["serve", "--memory", "--data-dir", "/tmp/x"]),
        ErrorKind::ArgumentConflict
    );
}

#[test]
fn connection_flags_go_anywhere_after_the_command() {
    let Command::Topic { connect, command } = parse(&[
        "topic",
        "create",
        "orders",
        "--fifo",
        "--server",
        "http://h:1",
        "--token",
        "secret",
    ])
    .command
    else {
        panic!("not topic");
    };
    assert_eq!(connect.server, "http://h:1");
    assert_eq!(connect.token.as_deref(), Some("secret"));
    let TopicCommand::Create {
        name,
        fifo,
        content_based_dedup,
    } = command
    else {
        panic!("not create");
    };
    assert_eq!(name.as_str(), "orders");
    assert!(fifo);
    assert!(!content_based_dedup);

    let Command::Topic { connect, .. } =
        parse(&["topic", "--server", "http://h:2", "list"]).command
    else {
        panic!("not topic");
    };
    assert_eq!(connect.server, "http://h:2");
}

#[test]
fn topic_subcommands_parse() {
    for (args, want) in [
        (&["topic", "delete", "t"][..], "delete"),
        (&["topic", "show", "t"][..], "show"),
        (&["topic", "list"][..], "list"),
    ] {
        let Command::Topic { command, .. } = parse(args).command else {
            panic!("not topic");
        };
        let got = match command {
            TopicCommand::Delete { .. } => "delete",
            TopicCommand::Show { .. } => "show",
            TopicCommand::List => "list",
            TopicCommand::Create { .. } => "create",
        };
        assert_eq!(got, want);
    }
}

#[test]
fn invalid_names_are_usage_errors() {
    assert_eq!(
        refuse(&["topic", "create", "bad name"]),
        ErrorKind::ValueValidation
    );
    let long = "q".repeat(81);
    assert_eq!(
        refuse(&["queue", "create", &long]),
        ErrorKind::ValueValidation
    );
}

#[test]
fn queue_create_maps_every_flag_to_its_setting() {
    let Command::Queue { command, .. } = parse(&[
        "queue",
        "create",
        "jobs",
        "--fifo",
        "--delay",
        "10s",
        "--visibility",
        "1m",
        "--retention",
        "4d",
        "--max-message-bytes",
        "2048",
        "--receive-wait",
        "20",
        "--content-based-dedup",
        "--dedup-window",
        "5m",
        "--dlq",
        "jobs-dlq",
        "--max-receives",
        "5",
        "--backoff-initial",
        "1s",
        "--backoff-max",
        "1m",
    ])
    .command
    else {
        panic!("not queue");
    };
    let QueueCommand::Create {
        name,
        fifo,
        settings,
    } = command
    else {
        panic!("not create");
    };
    assert_eq!(name.as_str(), "jobs");
    assert_eq!(
        settings.to_json(Some(fifo)),
        json!({
            "fifo": true,
            "delay_seconds": 10,
            "visibility_timeout_seconds": 60,
            "retention_seconds": 345600,
            "max_message_bytes": 2048,
            "receive_wait_seconds": 20,
            "content_based_dedup": true,
            "dedup_window_seconds": 300,
            "dead_letter": {"queue": "jobs-dlq", "max_receives": 5},
            "retry_backoff": {"initial_seconds": 1, "max_seconds": 60},
        })
    );
}

#[test]
fn queue_create_without_flags_states_only_the_kind() {
    let Command::Queue {
        command: QueueCommand::Create { fifo, settings, .. },
        ..
    } = parse(&["queue", "create", "q"]).command
    else {
        panic!("not queue create");
    };
    assert_eq!(settings.to_json(Some(fifo)), json!({ "fifo": false }));
}

#[test]
fn queue_update_sends_only_what_changed() {
    let Command::Queue {
        command: QueueCommand::Update { settings, .. },
        ..
    } = parse(&[
        "queue",
        "update",
        "q",
        "--visibility",
        "45",
        "--content-based-dedup=false",
    ])
    .command
    else {
        panic!("not queue update");
    };
    assert_eq!(
        settings.to_json(None),
        json!({ "visibility_timeout_seconds": 45, "content_based_dedup": false })
    );
}

#[test]
fn queue_update_has_no_fifo_flag() {
    assert_eq!(
        refuse(&["queue", "update", "q", "--fifo"]),
        ErrorKind::UnknownArgument
    );
}

#[test]
fn dlq_and_max_receives_go_together() {
    assert_eq!(
        refuse(&["queue", "create", "q", "--dlq", "d"]),
        ErrorKind::MissingRequiredArgument
    );
    assert_eq!(
        refuse(&["queue", "create", "q", "--max-receives", "5"]),
        ErrorKind::MissingRequiredArgument
    );
}

#[test]
fn backoff_needs_both_ends() {
    assert_eq!(
        refuse(&["queue", "create", "q", "--backoff-initial", "1s"]),
        ErrorKind::MissingRequiredArgument
    );
    assert_eq!(
        refuse(&["queue", "create", "q", "--backoff-max", "1m"]),
        ErrorKind::MissingRequiredArgument
    );
}

#[test]
fn bad_durations_are_usage_errors() {
    for bad in ["soon", "5 minutes", "1.5s", "1500ms", "-1", "5d3"] {
        let flag = format!("--visibility={bad}");
        assert_eq!(
            refuse(&["queue", "create", "q", &flag]),
            ErrorKind::ValueValidation,
            "{bad}"
        );
    }
    assert_eq!(
        refuse(&["consume", "q", "--wait", "forever"]),
        ErrorKind::ValueValidation
    );
    assert_eq!(
        refuse(&["nack", "q", "r", "--delay", "x"]),
        ErrorKind::ValueValidation
    );
}

#[test]
fn queue_admin_subcommands_parse() {
    for args in [
        &["queue", "delete", "q"][..],
        &["queue", "list"][..],
        &["queue", "show", "q"][..],
        &["queue", "purge", "q"][..],
    ] {
        assert!(matches!(parse(args).command, Command::Queue { .. }));
    }
    let Command::Queue {
        command: QueueCommand::Redrive {
            dlq,
            max_per_second,
        },
        ..
    } = parse(&["queue", "redrive", "dlq", "--max-per-second", "50"]).command
    else {
        panic!("not redrive");
    };
    assert_eq!(dlq.as_str(), "dlq");
    assert_eq!(max_per_second, Some(50));
}

#[test]
fn subscribe_takes_a_json_object_filter() {
    let Command::Subscribe(args) = parse(&[
        "subscribe",
        "orders",
        "email",
        "--filter",
        r#"{"type": ["order_placed"]}"#,
    ])
    .command
    else {
        panic!("not subscribe");
    };
    assert_eq!(args.topic.as_str(), "orders");
    assert_eq!(args.queue.as_str(), "email");
    assert_eq!(args.filter, Some(json!({"type": ["order_placed"]})));

    assert_eq!(
        refuse(&["subscribe", "t", "q", "--filter", "{not json"]),
        ErrorKind::ValueValidation
    );
    assert_eq!(
        refuse(&["subscribe", "t", "q", "--filter", "[1, 2]"]),
        ErrorKind::ValueValidation
    );
}

#[test]
fn unsubscribe_needs_topic_and_queue() {
    assert!(matches!(
        parse(&["unsubscribe", "t", "q"]).command,
        Command::Unsubscribe(_)
    ));
    assert_eq!(
        refuse(&["unsubscribe", "t"]),
        ErrorKind::MissingRequiredArgument
    );
}

#[test]
fn publish_takes_every_message_flag() {
    let Command::Publish(args) = parse(&[
        "publish",
        "orders",
        "hello",
        "--attr",
        "type=order_placed",
        "--attr",
        "expr=a=b",
        "--group",
        "g",
        "--dedup",
        "d",
        "--delay",
        "5s",
        "--poison",
    ])
    .command
    else {
        panic!("not publish");
    };
    assert_eq!(args.topic.as_str(), "orders");
    let m = args
        .message
        .to_message(b"hello".to_vec())
        .expect("valid message");
    assert_eq!(m.body, "hello");
    assert_eq!(
        m.attributes.get("type").map(String::as_str),
        Some("order_placed")
    );
    assert_eq!(m.attributes.get("expr").map(String::as_str), Some("a=b"));
    assert_eq!(m.group_id.as_deref(), Some("g"));
    assert_eq!(m.dedup_id.as_deref(), Some("d"));
    assert_eq!(m.delay_seconds, Some(5));
    assert!(m.poison);
}

#[test]
fn publish_body_is_optional_and_dash_means_stdin() {
    let Command::Publish(args) = parse(&["publish", "t", "--poison"]).command else {
        panic!("not publish");
    };
    assert_eq!(args.message.body, None);
    let Command::Publish(args) = parse(&["publish", "t", "-", "--base64"]).command else {
        panic!("not publish");
    };
    assert_eq!(args.message.body.as_deref(), Some("-"));
    assert!(args.message.base64);
}

#[test]
fn malformed_attrs_are_usage_errors() {
    for bad in ["novalue", "=v"] {
        assert_eq!(
            refuse(&["publish", "t", "b", "--attr", bad]),
            ErrorKind::ValueValidation,
            "{bad}"
        );
    }
}

#[test]
fn deliver_at_must_be_rfc3339_and_excludes_delay() {
    let Command::Send(args) =
        parse(&["send", "q", "b", "--deliver-at", "2030-01-02T03:04:05Z"]).command
    else {
        panic!("not send");
    };
    assert_eq!(args.queue.as_str(), "q");
    assert_eq!(
        args.message.deliver_at.as_deref(),
        Some("2030-01-02T03:04:05Z")
    );
    assert_eq!(
        refuse(&["send", "q", "b", "--deliver-at", "tomorrow"]),
        ErrorKind::ValueValidation
    );
    assert_eq!(
        refuse(&[
            "send",
            "q",
            "b",
            "--delay",
            "5s",
            "--deliver-at",
            "2030-01-02T03:04:05Z"
        ]),
        ErrorKind::ArgumentConflict
    );
}

#[test]
fn lines_exclude_a_dedup_id() {
    assert_eq!(
        refuse(&["send", "q", "--lines", "--dedup", "d"]),
        ErrorKind::ArgumentConflict
    );
}

#[test]
fn consume_flags_parse() {
    let Command::Consume(args) = parse(&[
        "consume",
        "jobs",
        "--max",
        "10",
        "--wait",
        "20s",
        "--visibility",
        "2m",
        "--follow",
        "--no-ack",
    ])
    .command
    else {
        panic!("not consume");
    };
    assert_eq!(args.queue.as_str(), "jobs");
    assert_eq!(args.max, Some(10));
    assert_eq!(args.wait, Some(20));
    assert_eq!(args.visibility, Some(120));
    assert!(args.follow);
    assert!(args.no_ack);

    let Command::Consume(args) = parse(&["consume", "jobs"]).command else {
        panic!("not consume");
    };
    assert_eq!(
        (args.max, args.wait, args.follow, args.no_ack),
        (None, None, false, false)
    );
}

#[test]
fn ack_and_nack_take_one_or_more_receipts() {
    let Command::Ack(args) = parse(&["ack", "q", "r1", "r2"]).command else {
        panic!("not ack");
    };
    assert_eq!(args.receipts, ["r1", "r2"]);
    assert_eq!(refuse(&["ack", "q"]), ErrorKind::MissingRequiredArgument);

    let Command::Nack(args) = parse(&["nack", "q", "r1", "--delay", "5s"]).command else {
        panic!("not nack");
    };
    assert_eq!(args.receipts, ["r1"]);
    assert_eq!(args.delay, 5);
    let Command::Nack(args) = parse(&["nack", "q", "r1"]).command else {
        panic!("not nack");
    };
    assert_eq!(args.delay, 0);
}

#[test]
fn visibility_needs_a_timeout() {
    let Command::Visibility(args) = parse(&["visibility", "q", "r", "--timeout", "1m"]).command
    else {
        panic!("not visibility");
    };
    assert_eq!(args.timeout, 60);
    assert_eq!(
        refuse(&["visibility", "q", "r"]),
        ErrorKind::MissingRequiredArgument
    );
}

#[test]
fn tail_and_health_parse() {
    let Command::Tail(args) = parse(&["tail", "orders", "--filter", r#"{"a": ["b"]}"#]).command
    else {
        panic!("not tail");
    };
    assert_eq!(args.topic.as_str(), "orders");
    assert!(args.filter.is_some());
    assert!(matches!(parse(&["health"]).command, Command::Health(_)));
}

#[test]
fn serve_has_no_connection_flags() {
    assert_eq!(
        refuse(&["serve", "--server", "http://h"]),
        ErrorKind::UnknownArgument
    );
}

#[test]
fn exit_codes_follow_the_kind_of_failure() {
    let connect = anyhow::Error::from(ClientError::Connect {
        url: "u".into(),
        detail: "refused".into(),
    });
    assert_eq!(exit_code(&connect), 3);
    let api = anyhow::Error::from(ClientError::Api {
        status: 404,
        code: "QueueNotFound".into(),
        message: "m".into(),
    });
    assert_eq!(exit_code(&api), 1);
    assert_eq!(exit_code(&UsageError("x".into()).into()), 2);
    let bad_url = Client::new("ftp://x", None)
        .map(|_| ())
        .map_err(anyhow::Error::from);
    assert_eq!(bad_url.err().map(|e| exit_code(&e)), Some(2));
    assert_eq!(exit_code(&anyhow::anyhow!("other")), 1);
}

#[test]
fn bench_workloads_parse_with_their_defaults_and_connection_flags() {
    let Command::Bench(args) = parse(&[
        "bench",
        "fanout",
        "--queues",
        "2",
        "--consumer",
        "longpoll",
        "--ack",
        "each",
        "--server",
        "http://h:1",
    ])
    .command
    else {
        panic!("not bench");
    };
    assert_eq!(args.connect.server, "http://h:1");
    let BenchWorkload::Fanout(fanout) = args.workload else {
        panic!("not fanout");
    };
    assert_eq!(fanout.queues, 2);
    assert_eq!(fanout.messages, 100_000);
    assert_eq!(fanout.duration, None);
    assert_eq!(fanout.publisher.batch, 100);
    assert_eq!(
        fanout.common.drain_timeout,
        std::time::Duration::from_secs(10)
    );

    let Command::Bench(args) =
        parse(&["bench", "latency", "--rate", "500", "--duration", "1500ms"]).command
    else {
        panic!("not bench");
    };
    let BenchWorkload::Latency(latency) = args.workload else {
        panic!("not latency");
    };
    assert_eq!(latency.rate, 500);
    assert_eq!(latency.duration, std::time::Duration::from_millis(1500));
}

#[test]
fn bench_refuses_out_of_range_and_conflicting_flags() {
    assert_eq!(
        refuse(&["bench", "fanout", "--batch", "101"]),
        ErrorKind::ValueValidation
    );
    assert_eq!(
        refuse(&["bench", "fanout", "--prefetch", "1001"]),
        ErrorKind::ValueValidation
    );
    assert_eq!(
        refuse(&["bench", "fanout", "--messages", "5", "--duration", "5s"]),
        ErrorKind::ArgumentConflict
    );
    assert_eq!(
        refuse(&["bench", "fanout", "--consumer", "carrier-pigeon"]),
        ErrorKind::InvalidValue
    );
    assert_eq!(
        refuse(&["bench"]),
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
}
