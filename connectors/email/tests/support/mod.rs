//! Real servers for the email tests: a throwaway Dovecot (IMAP) and an aiosmtpd (SMTP), each
//! in a temp dir on a free 127.0.0.1 port, stopped on drop. When the server is not installed a
//! test prints `SKIPPED <name>: …` and passes, except under `CI=true`, where it fails.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub const USER: &str = "support@shop.example";
pub const PASSWORD: &str = "secret";
/// Debian's `mail` user and group: Dovecot refuses uid 0 for mail users.
const MAIL_UID: u32 = 8;

fn missing(name: &str, what: &str) -> bool {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{name}: {what} is required under CI=true");
    }
    println!("SKIPPED {name}: {what}");
    false
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn wait_port(port: u16, up: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let ok = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        if ok == up {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "port {port} did not come {}",
        if up { "up" } else { "down" }
    );
}

pub struct Dovecot {
    pub port: u16,
    dir: tempfile::TempDir,
    conf: PathBuf,
    running: bool,
}

impl Dovecot {
    /// Starts a Dovecot for `USER`/`PASSWORD`; `None` (test skipped) when it is not installed.
    pub fn start(test: &str) -> Option<Dovecot> {
        let found = Command::new("dovecot")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found
            && !missing(
                test,
                "dovecot is not installed (apt-get install dovecot-imapd)",
            )
        {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for sub in ["run", "state", "mail"] {
            std::fs::create_dir_all(d.join(sub)).expect("mkdir");
        }
        let port = free_port();
        let conf = d.join("dovecot.conf");
        let p = d.display();
        std::fs::write(
            &conf,
            format!(
                "protocols = imap\nlisten = 127.0.0.1\nbase_dir = {p}/run\nstate_dir = {p}/state\n\
                 log_path = {p}/dovecot.log\ninfo_log_path = {p}/dovecot.log\nssl = no\n\
                 disable_plaintext_auth = no\nauth_mechanisms = plain login\nfirst_valid_uid = 8\n\
                 mail_location = maildir:{p}/mail/%u/Maildir\n\
                 passdb {{\n  driver = static\n  args = password={PASSWORD}\n}}\n\
                 userdb {{\n  driver = static\n  args = uid=mail gid=mail home={p}/mail/%u\n}}\n\
                 service imap-login {{\n  chroot =\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
                 service anvil {{\n  chroot =\n}}\n"
            ),
        )
        .expect("write conf");
        let mut dv = Dovecot {
            port,
            dir,
            conf,
            running: false,
        };
        dv.maildir_dirs();
        dv.up();
        Some(dv)
    }

    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("mail").join(USER).join("Maildir")
    }

    fn maildir_dirs(&self) {
        let md = self.maildir();
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(md.join(sub)).expect("maildir");
        }
        chown_tree(&self.dir.path().join("mail"));
    }

    fn up(&mut self) {
        let st = Command::new("dovecot")
            .arg("-c")
            .arg(&self.conf)
            .status()
            .expect("run dovecot");
        assert!(st.success(), "dovecot failed to start: {}", self.log());
        wait_port(self.port, true);
        self.running = true;
    }

    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        let _ = Command::new("dovecot")
            .arg("-c")
            .arg(&self.conf)
            .arg("stop")
            .stderr(Stdio::null())
            .status();
        wait_port(self.port, false);
        // The master is gone once its pid file is.
        let pid = self.dir.path().join("run").join("master.pid");
        let deadline = Instant::now() + Duration::from_secs(10);
        while pid.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.running = false;
    }

    pub fn restart(&mut self) {
        self.stop();
        self.up();
    }

    /// Makes Dovecot assign the mailbox a new UIDVALIDITY (as after a server rebuild): the
    /// UID list and indexes are removed while it is stopped.
    pub fn reset_uidvalidity(&mut self) {
        self.stop();
        for e in std::fs::read_dir(self.maildir())
            .expect("maildir")
            .flatten()
        {
            let n = e.file_name().to_string_lossy().to_string();
            if n == "dovecot-uidlist" || n.starts_with("dovecot.index") {
                let _ = std::fs::remove_file(e.path());
            }
        }
        // A different second, so a time-based UIDVALIDITY differs too.
        std::thread::sleep(Duration::from_millis(1100));
        self.up();
    }

    /// Delivers one message the way an MDA does: write into `tmp/`, rename into `new/`.
    pub fn deliver(&self, bytes: &[u8]) {
        static N: AtomicU64 = AtomicU64::new(0);
        let md = self.maildir();
        let name = format!(
            "{}.M{}P{}.test",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            N.fetch_add(1, Ordering::Relaxed),
            std::process::id()
        );
        let tmp = md.join("tmp").join(&name);
        std::fs::write(&tmp, bytes).expect("write mail");
        let _ = std::os::unix::fs::chown(&tmp, Some(MAIL_UID), Some(MAIL_UID));
        std::fs::rename(&tmp, md.join("new").join(&name)).expect("deliver");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }
}

fn chown_tree(p: &Path) {
    let _ = std::os::unix::fs::chown(p, Some(MAIL_UID), Some(MAIL_UID));
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            chown_tree(&e.path());
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A plain email with the given headers and text.
pub fn mail(from: &str, subject: &str, id: &str, extra_headers: &str, text: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {USER}\r\nSubject: {subject}\r\nDate: Mon, 03 Mar 2025 10:00:00 +0000\r\nMessage-ID: <{id}>\r\n{extra_headers}\r\n{text}\r\n"
    )
    .into_bytes()
}

/// aiosmtpd on a free port, writing every received message to `<dir>/<n>.eml` and its
/// envelope to `<n>.json`. `reply` scripts a response to `DATA` (e.g. `451 try later`)
/// for the first `fail_count` messages.
pub struct Smtp {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

const SMTP_SERVER: &str = r#"
import asyncio, json, os, sys
from aiosmtpd.controller import Controller

out, port, reply, fail_count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
state = {"n": 0, "failed": 0}

class Handler:
    async def handle_DATA(self, server, session, envelope):
        if reply and state["failed"] < fail_count:
            state["failed"] += 1
            return reply
        state["n"] += 1
        n = state["n"]
        with open(os.path.join(out, f"{n}.eml.tmp"), "wb") as f:
            f.write(envelope.original_content or envelope.content)
        with open(os.path.join(out, f"{n}.json"), "w") as f:
            json.dump({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos}, f)
        os.rename(os.path.join(out, f"{n}.eml.tmp"), os.path.join(out, f"{n}.eml"))
        return "250 OK queued"

c = Controller(Handler(), hostname="127.0.0.1", port=port, auth_require_tls=False)
c.start()
print("ready", flush=True)
try:
    sys.stdin.read()
finally:
    c.stop()
"#;

impl Smtp {
    /// `None` (test skipped) when python3 or aiosmtpd is missing.
    pub fn start(test: &str, reply: &str, fail_count: u32) -> Option<Smtp> {
        let found = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found
            && !missing(
                test,
                "aiosmtpd is not installed (python3 -m pip install aiosmtpd)",
            )
        {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("server.py");
        std::fs::write(&script, SMTP_SERVER).expect("script");
        let port = free_port();
        let child = Command::new("python3")
            .arg(&script)
            .arg(dir.path())
            .arg(port.to_string())
            .arg(reply)
            .arg(fail_count.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        wait_port(port, true);
        Some(Smtp { port, dir, child })
    }

    /// Messages received so far, in order: (raw bytes, envelope JSON).
    pub fn received(&self) -> Vec<(Vec<u8>, serde_json::Value)> {
        let mut out = Vec::new();
        for n in 1.. {
            let eml = self.dir.path().join(format!("{n}.eml"));
            let Ok(bytes) = std::fs::read(&eml) else {
                break;
            };
            let env = std::fs::read(self.dir.path().join(format!("{n}.json")))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(serde_json::Value::Null);
            out.push((bytes, env));
            if n > 10_000 {
                break;
            }
        }
        out
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
