//! Real `switchboard serve` processes for crash and fault tests: a temp config written from the
//! in-process kit's settings, a port chosen by the test (kept across restarts), readiness on
//! `/readyz`, `kill -9` and restart on the same database, a signed webhook flooder that
//! records which event ids got a 2xx, and a TCP proxy that can cut a hub off its database.
//!
//! Everything listens on and talks to 127.0.0.1 only, and every wait is bounded.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::{settings_toml, sign};

/// How long a hub may take to answer `/readyz` after it was started.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// A free port on 127.0.0.1 (bound, read and released; the hub binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// One `switchboard serve` process, restartable on the same config, port and database.
pub struct Hub {
    pub addr: String,
    pub port: u16,
    pub config: PathBuf,
    pub token: String,
    pub client: reqwest::Client,
    dir: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Hub {
    /// Writes the test settings for `db_url` (with `tweak` applied to the TOML table) into
    /// `dir`, creates an admin token with `switchboard token create`, and starts serving.
    pub async fn start(db_url: &str, dir: &Path, tweak: impl FnOnce(&mut toml::Table)) -> Hub {
        let port = free_port();
        let mut table: toml::Table =
            toml::from_str(&settings_toml(db_url)).expect("test settings are TOML");
        table
            .get_mut("server")
            .and_then(|s| s.as_table_mut())
            .expect("[server]")
            .insert(
                "listen".into(),
                toml::Value::String(format!("127.0.0.1:{port}")),
            );
        tweak(&mut table);
        let config = dir.join("switchboard.toml");
        std::fs::write(&config, toml::to_string(&table).expect("serialise config"))
            .expect("write config");
        let token = create_token(&config);
        let mut hub = Hub {
            addr: format!("http://127.0.0.1:{port}"),
            port,
            config,
            token,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
            dir: dir.to_path_buf(),
            child: None,
            starts: 0,
        };
        hub.spawn().await;
        hub
    }

    /// Starts the process and waits until `/readyz` answers 200.
    async fn spawn(&mut self) {
        assert!(self.child.is_none(), "the hub is already running");
        self.starts += 1;
        let log = std::fs::File::create(self.log_path(self.starts)).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .env_remove("SWITCHBOARD_CONFIG")
            .env("RUST_LOG", "warn,switchboard=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("spawn switchboard serve");
        self.child = Some(child);
        self.wait_ready().await;
    }

    fn log_path(&self, start: u32) -> PathBuf {
        self.dir.join(format!("hub-{start}.log"))
    }

    /// The log of every start so far, for failure messages.
    pub fn logs(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                let text = std::fs::read_to_string(self.log_path(n)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- start {n} (last 40 lines) ---\n{}", tail.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_WITHIN;
        let probe = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client");
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("switchboard serve exited with {status}\n{}", self.logs());
            }
            if let Ok(r) = probe.get(format!("{}/readyz", self.addr)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "not ready within {READY_WITHIN:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `kill -9`: the process gets no chance to finish anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            // std's kill is SIGKILL on Unix.
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same config, port and database.
    pub async fn restart(&mut self) {
        self.spawn().await;
    }

    /// SIGTERM, then waits (bounded) for a clean exit; returns whether it exited with 0.
    pub async fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.addr))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request")
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let r = self.get(path).await;
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.expect("json")
    }

    /// The `text` of every entry on the timeline of the customer with `email` (all pages).
    /// Empty when there is no such customer yet.
    pub async fn timeline_texts(&self, email: &str) -> Vec<String> {
        let found = self
            .get_json(&format!("/api/v1/customers?email={email}"))
            .await;
        let Some(customer) = found["items"][0]["id"].as_str() else {
            return Vec::new();
        };
        let mut texts = Vec::new();
        let mut cursor: Option<String> = None;
        // Bounded: at most 10 000 pages of 200.
        for _ in 0..10_000 {
            let mut path = format!("/api/v1/customers/{customer}/timeline?limit=200");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page = self.get_json(&path).await;
            for e in page["items"].as_array().into_iter().flatten() {
                texts.push(e["body"]["text"].as_str().unwrap_or_default().to_string());
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return texts,
            }
        }
        panic!("timeline of {email} did not end within 10 000 pages");
    }

    /// Polls the timeline of `email` until it holds at least `n` entries or `within` passes;
    /// returns the last texts seen.
    pub async fn wait_timeline(&self, email: &str, n: usize, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        loop {
            let texts = self.timeline_texts(email).await;
            if texts.len() >= n || Instant::now() > deadline {
                return texts;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `switchboard token create` on the config; the token is the last line of its output.
fn create_token(config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("--config")
        .arg(config)
        .args(["token", "create", "--name", "crash-test", "--role", "admin"])
        .env_remove("SWITCHBOARD_CONFIG")
        .output()
        .expect("run switchboard token create");
    assert!(
        out.status.success(),
        "token create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .expect("a token line")
        .trim()
        .to_string()
}

/// One webhook request the flooder made.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub id: String,
    pub started: Instant,
    pub latency: Duration,
    /// `None` when no HTTP answer came (refused, reset, timed out).
    pub status: Option<u16>,
    pub problem_json: bool,
    pub retry_after: bool,
}

#[derive(Debug, Default)]
pub struct FloodReport {
    pub attempts: Vec<Attempt>,
    /// Event ids that got a 2xx.
    pub acked: BTreeSet<String>,
    /// Every event id that was sent at least once.
    pub tried: BTreeSet<String>,
}

impl FloodReport {
    pub fn statuses(&self) -> HashMap<Option<u16>, usize> {
        let mut m = HashMap::new();
        for a in &self.attempts {
            *m.entry(a.status).or_insert(0) += 1;
        }
        m
    }
}

/// Signed generic-webhook traffic from `workers` tasks. Each event is retried (like a
/// provider would) until it gets a 2xx or the flood stops; ids are `{prefix}-{worker}-{n}`,
/// and each event's `text` is its id so the timeline can be checked against what was acked.
pub struct Flood {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    report: Arc<Mutex<FloodReport>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Flood {
    /// Posts to `{base}/webhooks/api` as customer `email`; `pause` between events per worker.
    pub fn start(base: &str, email: &str, prefix: &str, workers: usize, pause: Duration) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let report = Arc::new(Mutex::new(FloodReport::default()));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        let tasks = (0..workers)
            .map(|w| {
                let (stop, acked, report, client) =
                    (stop.clone(), acked.clone(), report.clone(), client.clone());
                let url = format!("{base}/webhooks/api");
                let (email, prefix) = (email.to_string(), prefix.to_string());
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let id = format!("{prefix}-{w}-{n}");
                        let body = serde_json::to_vec(&serde_json::json!({
                            "id": id, "type": "message.created", "thread": format!("{prefix}-{w}"),
                            "text": id, "email": email, "name": "Flood",
                        }))
                        .expect("json");
                        let signature = sign(&body);
                        report.lock().unwrap().tried.insert(id.clone());
                        // Retry this event until acknowledged, as a provider does.
                        while !stop.load(Ordering::Relaxed) {
                            let started = Instant::now();
                            let r = client
                                .post(&url)
                                .header("content-type", "application/json")
                                .header("x-switchboard-signature", &signature)
                                .body(body.clone())
                                .send()
                                .await;
                            let attempt = match &r {
                                Ok(r) => Attempt {
                                    id: id.clone(),
                                    started,
                                    latency: started.elapsed(),
                                    status: Some(r.status().as_u16()),
                                    problem_json: r
                                        .headers()
                                        .get("content-type")
                                        .is_some_and(|v| v == "application/problem+json"),
                                    retry_after: r.headers().contains_key("retry-after"),
                                },
                                Err(_) => Attempt {
                                    id: id.clone(),
                                    started,
                                    latency: started.elapsed(),
                                    status: None,
                                    problem_json: false,
                                    retry_after: false,
                                },
                            };
                            let ok = attempt.status.is_some_and(|s| (200..300).contains(&s));
                            {
                                let mut rep = report.lock().unwrap();
                                rep.attempts.push(attempt);
                                if ok {
                                    rep.acked.insert(id.clone());
                                }
                            }
                            if ok {
                                acked.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(25)).await;
                        }
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                    }
                })
            })
            .collect();
        Flood {
            stop,
            acked,
            report,
            tasks,
        }
    }

    /// Events acknowledged so far.
    pub fn acked(&self) -> usize {
        self.acked.load(Ordering::Relaxed)
    }

    /// Waits (bounded) until at least `n` more events than now are acknowledged.
    pub async fn wait_acked(&self, more: usize, within: Duration) -> bool {
        let target = self.acked() + more;
        let deadline = Instant::now() + within;
        while self.acked() < target {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// A copy of the attempts so far.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.report.lock().unwrap().attempts.clone()
    }

    /// Stops every worker (requests in flight finish or time out) and returns the record.
    pub async fn stop(self) -> FloodReport {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        std::mem::take(&mut *self.report.lock().unwrap())
    }
}

/// What the proxy does with database connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Pass bytes both ways.
    Forward,
    /// Close every proxied connection; accept new ones but never answer (a dead host).
    Blackhole,
    /// Close every proxied connection; close new ones at once (a host that resets).
    Refuse,
    /// Keep every proxied connection open but pass nothing, and never answer new ones (a
    /// network that drops packets); on the next change the stalled connections are closed.
    Stall,
}

/// A TCP proxy on 127.0.0.1 in front of a server (PostgreSQL), to take the server "down" for
/// one hub without touching the server other tests share.
pub struct TcpProxy {
    pub port: u16,
    mode: watch::Sender<ProxyMode>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(upstream: &str) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let (mode, rx) = watch::channel(ProxyMode::Forward);
        let upstream = upstream.to_string();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    // Out of descriptors or similar: pause rather than spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let mut rx = rx.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let current = *rx.borrow_and_update();
                    match current {
                        ProxyMode::Refuse => drop(client),
                        ProxyMode::Blackhole | ProxyMode::Stall => {
                            // Hold the socket silently until the mode changes, then close it.
                            let _ = rx.changed().await;
                            drop(client);
                        }
                        ProxyMode::Forward => {
                            let Ok(server) = TcpStream::connect(&upstream).await else {
                                return;
                            };
                            let (mut client, mut server) = (client, server);
                            let mode = tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
                                m = async {
                                    while rx.changed().await.is_ok() {
                                        let m = *rx.borrow();
                                        if m != ProxyMode::Forward {
                                            return m;
                                        }
                                    }
                                    ProxyMode::Refuse
                                } => m,
                            };
                            if mode == ProxyMode::Stall {
                                // Keep both ends open, pass nothing; close on the next change.
                                let _ = rx.changed().await;
                            }
                            drop((client, server));
                        }
                    }
                });
            }
        });
        TcpProxy { port, mode, task }
    }

    pub fn set(&self, mode: ProxyMode) {
        let _ = self.mode.send(mode);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.set(ProxyMode::Refuse);
        self.task.abort();
    }
}
