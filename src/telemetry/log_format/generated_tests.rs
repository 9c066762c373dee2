//! Generated events, inside generated spans, through the subscriber
//! [`init_logging`](crate::telemetry::init_logging) installs: every event is
//! one line; a JSON line parses, has no duplicate key and carries exactly
//! the event's fields; a text line has no control character and its fields
//! read back. The checks are in `line_check`, which the `log_format` fuzz
//! target shares.

use crate::testing::Captured;

use proptest::prelude::*;
use tracing::Level;
use tracing_subscriber::EnvFilter;

use super::line_check::{
    Expected, GenEvent, GenSpan, Node, Val, check_json, check_text, lines, play,
};
use crate::telemetry::{LogFormat, log_writer, subscriber};

/// The lines `nodes` log through the production subscriber and batched
/// writer, and what each should show.
fn run(nodes: &[Node], format: LogFormat) -> (String, Vec<Expected<'_>>) {
    let sink = Captured::default();
    let (writer, flusher) = log_writer::batched(sink.clone());
    let mut expected = Vec::new();
    tracing::subscriber::with_default(
        subscriber(format, EnvFilter::new("trace"), false, writer),
        || play(nodes, &mut Vec::new(), &mut expected),
    );
    drop(flusher);
    let bytes = sink.bytes();
    (String::from_utf8(bytes).expect("UTF-8"), expected)
}

// ----- generators -----

fn text() -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec![
        '\n', '\r', '\t', '\0', '\x1b', '\x7f', '\u{85}', '\u{9b}', '\u{2028}', '\u{2029}',
        '\u{202e}', '\u{2066}', '"', '\\', '=', ' ', '{', '}', ':', ',', 'é', '漢', '🦀', '\'',
    ]);
    let c = prop_oneof![4 => prop::char::range('a', 'z'), 2 => special, 1 => any::<char>()];
    prop::collection::vec(c, 0..10).prop_map(String::from_iter)
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "timestamp", "level", "target", "span", "spans", "message", "name", "fields.level",
            "fields.fields.level", "fields.span", "r#type", "type", "policy", "a",
        ])
        .prop_map(str::to_owned),
        2 => "[a-z_]{1,8}",
        2 => text(),
    ]
}

fn val() -> impl Strategy<Value = Val> {
    let float = prop_oneof![
        any::<f64>(),
        prop::sample::select(vec![
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            0.5,
            1e300,
            5e-324,
            f64::MAX
        ]),
    ];
    prop_oneof![
        text().prop_map(Val::Str),
        text().prop_map(Val::Display),
        text().prop_map(Val::Debug),
        text().prop_map(Val::Error),
        any::<i64>().prop_map(Val::I64),
        any::<u64>().prop_map(Val::U64),
        any::<i128>().prop_map(Val::I128),
        any::<u128>().prop_map(Val::U128),
        float.prop_map(Val::F64),
        any::<bool>().prop_map(Val::Bool),
    ]
}

fn event() -> impl Strategy<Value = GenEvent> {
    let message = prop::option::of(prop_oneof![
        text().prop_map(Val::Str),
        text().prop_map(Val::Display)
    ]);
    (
        prop::sample::select(vec![
            Level::TRACE,
            Level::DEBUG,
            Level::INFO,
            Level::WARN,
            Level::ERROR,
        ]),
        prop::sample::select(vec![
            "tlsward",
            "tlsward::access",
            "tlsward::operator::controller",
            "kube_runtime",
        ]),
        message,
        prop::collection::vec((field_name(), val()), 0..6),
    )
        .prop_map(|(level, target, message, mut fields)| {
            if let Some(m) = message {
                fields.insert(0, ("message".to_owned(), m));
            }
            GenEvent {
                level,
                target,
                fields,
            }
        })
}

fn span() -> impl Strategy<Value = GenSpan> {
    let name = prop_oneof![
        3 => prop::sample::select(vec!["reconcile", "review", "conn"]).prop_map(str::to_owned),
        1 => text(),
    ];
    // Few names, so that fields recorded later often clash with earlier ones.
    let field = prop_oneof![
        2 => prop::sample::select(vec!["name", "a", "fields.a"]).prop_map(str::to_owned),
        3 => field_name(),
    ];
    (
        name,
        prop::collection::vec((field, val(), prop::bool::weighted(0.3)), 0..4),
    )
        .prop_map(|(name, fields)| GenSpan { name, fields })
}

fn nodes() -> impl Strategy<Value = Vec<Node>> {
    let leaf = event().prop_map(Node::Event);
    let tree = leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            2 => event().prop_map(Node::Event),
            1 => (span(), prop::collection::vec(inner, 0..4)).prop_map(|(s, c)| Node::Span(s, c)),
        ]
    });
    prop::collection::vec(tree, 1..5)
}

// 256 cases each; `PROPTEST_CASES` sets another number. A failure names its
// seed (`PROPTEST_RNG_SEED` replays it).
#[test]
fn json_lines_parse_without_duplicate_keys_and_carry_exactly_the_events_fields() {
    crate::testing::check_property(
        "json_lines_parse_without_duplicate_keys_and_carry_exactly_the_events_fields",
        256,
        nodes(),
        |nodes| {
            let (out, expected) = run(&nodes, LogFormat::Json);
            let lines = lines(&out, expected.len()).map_err(TestCaseError::fail)?;
            for (line, exp) in lines.iter().zip(&expected) {
                check_json(line, exp).map_err(TestCaseError::fail)?;
            }
            Ok(())
        },
    );
}

#[test]
fn text_lines_are_one_line_each_and_their_fields_read_back() {
    crate::testing::check_property(
        "text_lines_are_one_line_each_and_their_fields_read_back",
        256,
        nodes(),
        |nodes| {
            let (out, expected) = run(&nodes, LogFormat::Text);
            let lines = lines(&out, expected.len()).map_err(TestCaseError::fail)?;
            for (line, exp) in lines.iter().zip(&expected) {
                check_text(line, exp).map_err(TestCaseError::fail)?;
            }
            Ok(())
        },
    );
}
