use super::*;

/// A valid config; tests change one thing each.
const GOOD: &str = r##"
data_dir = "/var/lib/bridgewarden"
policy = "policy.toml"

[matrix]
homeserver = "https://matrix.example.org"
user = "@bridgewarden:example.org"
password = { file = "secrets/matrix" }
invite_from = ["@admin:example.org"]

[irc.libera]
host = "irc.libera.chat"
tls = true
nick = "bridgewarden"
sasl = { mechanism = "plain", account = "bw", password = { env = "BW_SASL" } }
moderator_accounts = ["Alice"]

[[bridge]]
matrix = "#chat:example.org"
channel = "#chat"

[moderation]
rooms = ["!mods:example.org", "libera/#chat-ops"]
"##;

fn load(text: &str) -> Result<(Config, Vec<Diagnostic>), Diagnostics> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), "").unwrap();
    let file = dir.path().join("bw.toml");
    let mut read = |p: &Path| -> io::Result<String> {
        match p.file_name().and_then(|n| n.to_str()) {
            Some("matrix") => Ok("hunter2\n".into()),
            Some("empty") => Ok("\n".into()),
            Some("ca.pem" | "bot.pem") => Ok("PEM".into()),
            _ => Err(io::Error::new(io::ErrorKind::NotFound, "No such file")),
        }
    };
    let env = |k: &str| (k == "BW_SASL").then(|| "s3cret".to_string());
    Config::from_toml(
        file.to_str().unwrap(),
        text,
        Inputs {
            read_file: &mut read,
            env: &env,
        },
    )
}

/// `text` fails with an error containing `message`, located where `at` first occurs in it.
#[track_caller]
fn check_error(text: &str, at: &str, message: &str) {
    let offset = text
        .find(at)
        .unwrap_or_else(|| panic!("{at:?} not in the text"));
    let (line, col) = Source { name: "", text }.position(offset);
    let errs = load(text).expect_err("should fail");
    assert!(
        errs.errors()
            .any(|e| e.message.contains(message) && (e.line, e.col) == (line, col)),
        "expected {line}:{col} {message:?}, got:\n{errs}"
    );
}

/// GOOD with `from` replaced by `to`.
#[track_caller]
fn edit(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "{from:?} not in GOOD");
    GOOD.replacen(from, to, 1)
}

#[test]
fn a_good_config_is_validated_into_its_checked_form() {
    let (c, warnings) = load(GOOD).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/bridgewarden"));
    assert!(c.policy.ends_with("policy.toml") && c.policy.is_absolute());
    assert_eq!(c.audit_dir, PathBuf::from("/var/lib/bridgewarden/audit"));
    assert_eq!(
        c.matrix.data_dir,
        PathBuf::from("/var/lib/bridgewarden/matrix")
    );
    assert!(matches!(&c.matrix.auth, MatrixAuth::Password(p) if p == "hunter2"));
    assert_eq!(c.matrix.rooms, ["#chat:example.org", "!mods:example.org"]);
    assert_eq!(c.irc.len(), 1);
    let net = &c.irc[0];
    assert_eq!(net.config.network, "libera");
    assert_eq!(net.config.port, 6697, "TLS defaults to 6697");
    assert_eq!(net.config.channels, ["#chat", "#chat-ops"]);
    assert_eq!(net.moderator_modes, "oh");
    assert_eq!(net.moderator_accounts, ["alice"]);
    assert!(
        matches!(&net.config.sasl, Some(Sasl::Plain { account, password }) if account == "bw" && password == "s3cret")
    );
    assert_eq!(
        c.bridges,
        [Bridge {
            matrix: "#chat:example.org".into(),
            network: "libera".into(),
            channel: "#chat".into()
        }]
    );
    assert_eq!(c.moderation.command_prefix, "!");
    assert_eq!(c.moderation.matrix_power_level, 50);
    assert_eq!(
        c.metrics_listen,
        Some(DEFAULT_METRICS_LISTEN.parse().unwrap())
    );
    assert!(!c.log_json);
}

#[test]
fn syntax_errors_and_unknown_keys_are_located() {
    check_error("data_dir = \n", "\n", "");
    check_error(
        &edit("tls = true", "tls = true\nssl = true"),
        "ssl",
        "unknown field `ssl`",
    );
    check_error(
        &edit("channel = ", "chanel = "),
        "chanel",
        "unknown field `chanel`",
    );
    check_error(
        &edit("tls = true", "tls = \"yes\""),
        "\"yes\"",
        "invalid type",
    );
    check_error(
        &edit("data_dir = \"/var/lib/bridgewarden\"\n", ""),
        "\n",
        "missing field `data_dir`",
    );
}

#[test]
fn each_bad_value_is_an_error_at_its_key() {
    let cases: &[(&str, &str, &str, &str)] = &[
        // (replace, with, error located at, message)
        (
            "https://matrix.example.org",
            "matrix.example.org",
            "\"matrix.example.org\"",
            "not an http(s) URL",
        ),
        (
            "@bridgewarden:example.org",
            "@Bridge Warden",
            "\"@Bridge Warden\"",
            "not a Matrix user id",
        ),
        (
            "password = { file = \"secrets/matrix\" }",
            "password = \"hunter2\"",
            "\"hunter2\"",
            "must not be written in the config",
        ),
        (
            "secrets/matrix",
            "secrets/missing",
            "{ file",
            "cannot read `password`",
        ),
        (
            "secrets/matrix",
            "secrets/empty",
            "{ file",
            "`password` is empty",
        ),
        (
            "{ env = \"BW_SASL\" }",
            "{ env = \"NOPE\" }",
            "{ env = \"NOPE\"",
            "NOPE is not set",
        ),
        (
            "{ file = \"secrets/matrix\" }",
            "{ file = \"secrets/matrix\", env = \"X\" }",
            "{ file",
            "exactly one of",
        ),
        (
            "[\"@admin:example.org\"]",
            "[\"admin\"]",
            "\"admin\"",
            "not a Matrix user id",
        ),
        (
            "nick = \"bridgewarden\"",
            "nick = \"9lives\"",
            "\"9lives\"",
            "not a valid IRC nick",
        ),
        (
            "tls = true",
            "tls = true\nport = 70000",
            "70000",
            "out of range",
        ),
        (
            "tls = true",
            "tls = true\nflood_rate = 0.0",
            "0.0",
            "flood_rate",
        ),
        (
            "tls = true",
            "tls = true\nmax_lines = 0",
            "0\n",
            "max_lines",
        ),
        (
            "mechanism = \"plain\"",
            "mechanism = \"scram\"",
            "\"scram\"",
            "unknown SASL mechanism",
        ),
        (
            "mechanism = \"plain\", account = \"bw\", ",
            "mechanism = \"external\", ",
            "{ mechanism",
            "needs a TLS client certificate",
        ),
        (
            "tls = true",
            "tls = false\nca_file = \"ca.pem\"",
            "\"ca.pem\"",
            "`tls` is not on",
        ),
        (
            "tls = true",
            "tls = true\nca_file = \"nope.pem\"",
            "\"nope.pem\"",
            "cannot read the CA file",
        ),
        (
            "matrix = \"#chat:example.org\"",
            "matrix = \"chat\"",
            "\"chat\"",
            "not a Matrix room id or alias",
        ),
        (
            "channel = \"#chat\"",
            "channel = \"chat\"",
            "\"chat\"",
            "not an IRC channel name",
        ),
        (
            "channel = \"#chat\"",
            "network = \"oftc\"\nchannel = \"#chat\"",
            "\"oftc\"",
            "no IRC network named",
        ),
        (
            "\"libera/#chat-ops\"",
            "\"oftc/#chat-ops\"",
            "\"oftc/#chat-ops\"",
            "no IRC network named",
        ),
        (
            "\"libera/#chat-ops\"",
            "\"chat-ops\"",
            "\"chat-ops\"",
            "neither a Matrix room nor an IRC channel",
        ),
        (
            "[moderation]",
            "[moderation]\ncommand_prefix = \"go \"",
            "\"go \"",
            "cannot be a command prefix",
        ),
        (
            "[moderation]",
            "[moderation]\nmatrix_power_level = 0",
            "0\n",
            "at least 1",
        ),
        (
            "[moderation]",
            "[relay]\nignore_senders = [\"(\"]\n[moderation]",
            "\"(\"",
            "bad regex",
        ),
        (
            "[moderation]",
            "[audit]\nretention = \"1 year\"\n[moderation]",
            "\"1 year\"",
            "bad duration",
        ),
        (
            "[moderation]",
            "[metrics]\nlisten = \"localhost\"\n[moderation]",
            "\"localhost\"",
            "not an address",
        ),
        (
            "[moderation]",
            "[log]\nformat = \"xml\"\n[moderation]",
            "\"xml\"",
            "log format",
        ),
        (
            "policy = \"policy.toml\"",
            "policy = \"nope.toml\"",
            "\"nope.toml\"",
            "does not exist",
        ),
        (
            "[irc.libera]",
            "[irc.matrix]",
            "[irc.matrix]",
            "cannot name an IRC network",
        ),
    ];
    for (from, to, at, message) in cases {
        check_error(&edit(from, to), at, message);
    }
}

#[test]
fn duplicates_and_ambiguity_are_refused() {
    let twice =
        format!("{GOOD}\n[[bridge]]\nmatrix = \"#chat:example.org\"\nchannel = \"#CHAT\"\n");
    let errs = load(&twice).unwrap_err();
    assert!(
        errs.to_string()
            .contains("#chat:example.org is bridged twice"),
        "{errs}"
    );
    assert!(
        errs.to_string()
            .contains("#CHAT on libera is bridged twice"),
        "{errs}"
    );
    let two_networks = edit(
        "[[bridge]]",
        "[irc.oftc]\nhost = \"irc.oftc.net\"\nnick = \"bw\"\n\n[[bridge]]",
    );
    let errs = load(&two_networks).unwrap_err();
    assert!(
        errs.to_string()
            .contains("several IRC networks are configured"),
        "{errs}"
    );
    let both = edit(
        "password = {",
        "access_token = { env = \"BW_SASL\" }\npassword = {",
    );
    assert!(load(&both).unwrap_err().to_string().contains("not both"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = edit("nick = \"bridgewarden\"", "nick = \"9\"")
        .replace("channel = \"#chat\"", "channel = \"chat\"")
        .replace("secrets/matrix", "secrets/missing");
    let errs = load(&text).unwrap_err();
    assert_eq!(errs.errors().count(), 3, "{errs}");
}

#[test]
fn warnings_do_not_stop_the_load() {
    let text = edit(
        "[[bridge]]\nmatrix = \"#chat:example.org\"\nchannel = \"#chat\"\n",
        "",
    )
    .replace(
        "[moderation]",
        "[metrics]\nlisten = \"0.0.0.0:9184\"\n\n[moderation]",
    )
    .replace("@admin:example.org", "@Admin:example.org");
    let (_, warnings) = load(&text).unwrap();
    let text: Vec<String> = warnings.iter().map(|w| w.message.clone()).collect();
    assert!(
        text.iter().any(|w| w.contains("nothing will be relayed")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|w| w.contains("reachable from other machines")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|w| w.contains("invites from @admin:example.org would be declined")),
        "{text:?}"
    );
}

#[test]
fn metrics_can_be_turned_off_and_logs_can_be_json() {
    let text = edit(
        "[moderation]",
        "[metrics]\nlisten = \"\"\n[log]\nformat = \"json\"\nlevel = \"debug\"\n\n[moderation]",
    );
    let (c, _) = load(&text).unwrap();
    assert_eq!(c.metrics_listen, None);
    assert!(c.log_json);
    assert_eq!(c.log_level, "debug");
}

#[test]
fn names_are_checked() {
    for ok in ["#chat", "&local", "#c++", "##dev"] {
        assert!(valid_channel(ok), "{ok}");
    }
    for bad in ["chat", "#", "#a b", "#a,b", "#a\x07"] {
        assert!(!valid_channel(bad), "{bad:?}");
    }
    for ok in ["alice", "[bot]", "a-b_c", "`x"] {
        assert!(valid_nick(ok), "{ok}");
    }
    for bad in ["", "9x", "-x", "a b", "a!b", "ник"] {
        assert!(!valid_nick(bad), "{bad:?}");
    }
    for ok in ["!abc", "!abc:example.org", "#a:example.org"] {
        assert!(valid_matrix_room(ok), "{ok}");
    }
    for bad in ["abc", "#nosrv", "#:x", "! a"] {
        assert!(!valid_matrix_room(bad), "{bad:?}");
    }
}

#[test]
fn the_example_config_in_contrib_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/bridgewarden.example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    // Its secret files exist only once contrib/quickstart.sh has run.
    let mut read = |p: &Path| -> io::Result<String> {
        if p.ends_with("matrix-password") {
            Ok("secret\n".into())
        } else {
            std::fs::read_to_string(p)
        }
    };
    let env = |_: &str| None;
    let (c, warnings) = Config::from_toml(
        path.to_str().unwrap(),
        &text,
        Inputs {
            read_file: &mut read,
            env: &env,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(c.policy.is_file(), "{}", c.policy.display());
    assert_eq!(c.bridges.len(), 1);
    assert_eq!(c.irc[0].config.channels, ["#lobby"]);
    assert_eq!(
        c.matrix.rooms,
        ["#lobby:localhost", "#moderators:localhost"]
    );
}
