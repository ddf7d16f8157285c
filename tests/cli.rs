//! The `switchboard` binary: check-config, token create, migrate, replay, jobs.

use std::process::Command;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    c.env_remove("SWITCHBOARD_CONFIG").env_remove("RUST_LOG");
    c
}

fn write_config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("sb.toml");
    let text = format!(
        "[database]\nurl = \"sqlite://{}/sb.db\"\n[log]\nlevel = \"warn\"\n{extra}",
        dir.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

const CONNECTOR: &str = "[[connectors]]\nid = \"api\"\nkind = \"generic\"\nsecret = \"s\"\nevent_id = \"/id\"\n[connectors.mapping]\ntext = \"/text\"\n";

#[test]
fn shipped_config_passes_check_config() {
    let out = bin()
        .args(["check-config", "config/switchboard.toml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("api (generic): webhooks at /webhooks/api"),
        "{stdout}"
    );
    let out = bin()
        .args(["check-config", "config/examples/generic.toml"])
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn check_config_names_the_exact_bad_key_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[[connectors]]\nid = \"api\"\nkind = \"generic\"\n", "connectors[0].secret: missing"),
        ("[[connectors]]\nid = \"api\"\nkind = \"shopfiy\"\n", "connectors[0].kind: unknown kind `shopfiy`"),
        ("[server]\nlisten = \"localhost\"\n", "server.listen: "),
        ("[server]\nmax_body_byte = 5\n", "unknown field `max_body_byte`"),
        (&format!("{CONNECTOR}{}", CONNECTOR.replace("[connectors.mapping]\ntext = \"/text\"\n", "")), "connectors[1].id: `api` is used by another connector"),
        ("[[connectors]]\nid = \"api\"\nkind = \"generic\"\nsecret_env = \"SB_CLI_TEST_UNSET\"\n", "connectors[0].secret_env: environment variable SB_CLI_TEST_UNSET is not set"),
    ];
    for (extra, expected) in cases {
        let path = write_config(dir.path(), extra);
        let out = bin().arg("check-config").arg(&path).output().unwrap();
        assert!(!out.status.success(), "{extra}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "expected `{expected}` in `{err}`");
    }
}

#[test]
fn env_overrides_reach_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), CONNECTOR);
    let out = bin()
        .arg("check-config")
        .arg(&path)
        .env("SWITCHBOARD_DATABASE__URL", "mysql://nope")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("database.url"));
}

#[test]
fn token_create_prints_the_token_alone_on_its_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), CONNECTOR);
    let out = bin()
        .args(["--config"])
        .arg(&path)
        .args(["token", "create", "--name", "ci", "--role", "agent"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap();
    assert!(last.starts_with("sb_") && !last.contains(' '), "{stdout}");
    let bad = bin()
        .args(["--config"])
        .arg(&path)
        .args(["token", "create", "--name", "x", "--role", "root"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

#[test]
fn migrate_replay_and_jobs_run_against_the_configured_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), CONNECTOR);
    let out = bin()
        .arg("--config")
        .arg(&path)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("[1, 2, 3"));
    let out = bin()
        .arg("--config")
        .arg(&path)
        .args([
            "replay",
            "--connector",
            "api",
            "--since",
            "2026-01-01T00:00:00Z",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("replayed 0 raw event(s)"));
    let out = bin()
        .arg("--config")
        .arg(&path)
        .args(["replay", "--connector", "nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = bin()
        .arg("--config")
        .arg(&path)
        .args(["replay", "--connector", "api", "--since", "yesterday"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("not RFC 3339"));
    let out = bin()
        .arg("--config")
        .arg(&path)
        .args(["jobs", "--dead"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("queued 0 running 0 dead 0"));
}

#[test]
fn help_documents_every_command() {
    let out = bin().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in [
        "serve",
        "migrate",
        "check-config",
        "token",
        "replay",
        "jobs",
        "SWITCHBOARD_",
    ] {
        assert!(help.contains(cmd), "{cmd} missing from --help");
    }
}
