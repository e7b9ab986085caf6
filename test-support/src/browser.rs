//! A real headless Chromium driven through chromedriver (W3C WebDriver over HTTP, spoken with awc),
//! for the dashboard's tests. Debian's `chromium` and `chromium-driver` packages; `.ci/run` installs
//! them. A missing browser is an error with the install hint, never a reason to skip.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::process::Child;

/// Where Debian puts them.
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The W3C name of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Errors driving the browser; each says what was asked and, for a missing browser, how to install it.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    #[error(
        "{0} is missing: install Chromium and its driver with `apt-get install chromium chromium-driver` (.ci/run does)"
    )]
    Missing(&'static str),
    #[error("starting chromedriver: {0}")]
    Start(std::io::Error),
    #[error("chromedriver did not answer on {0} within {1:?} (log: {2})")]
    NotReady(String, Duration, PathBuf),
    #[error("WebDriver {method} {path}: {message}")]
    Command {
        method: &'static str,
        path: String,
        message: String,
    },
    #[error("waited {timeout:?} for {what}; last value {last}")]
    Timeout {
        what: String,
        timeout: Duration,
        last: Value,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = BrowserError> = std::result::Result<T, E>;

/// One headless Chromium session, ended (and chromedriver with its browser stopped) when dropped.
pub struct Browser {
    runtime: actix_rt::SystemRunner,
    client: awc::Client,
    base: String,
    session: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a headless Chromium with a fresh profile, with
    /// the flags that keep it off the network (this machine's closed network refuses Google's hosts).
    /// `log` receives chromedriver's output.
    pub fn start(log: &Path) -> Result<Self> {
        for (path, what) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromedriver")] {
            if !Path::new(path).exists() {
                return Err(BrowserError::Missing(what));
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        // Its own process group: the Chromium it starts is killed with it, whatever state the session
        // is left in.
        let driver = Child::spawn_in_own_group(
            Path::new(CHROMEDRIVER),
            [
                format!("--port={port}"),
                "--allowed-ips=127.0.0.1".to_owned(),
            ],
            log,
        )
        .map_err(BrowserError::Start)?;
        let profile = tempfile::tempdir()?;
        let runtime = actix_rt::System::new();
        let client = runtime.block_on(async {
            awc::Client::builder()
                .timeout(Duration::from_secs(60))
                .finish()
        });
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Self {
            runtime,
            client,
            base,
            session: String::new(),
            driver,
            _profile: profile,
        };
        let timeout = Duration::from_secs(30);
        let deadline = Instant::now() + timeout;
        loop {
            match browser.request("GET", "/status".to_owned(), None) {
                Ok(v) if v["ready"] == true => break,
                _ if Instant::now() > deadline || !browser.driver.is_running() => {
                    return Err(BrowserError::NotReady(
                        browser.base.clone(),
                        timeout,
                        log.to_owned(),
                    ));
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1400,1000",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([format!(
            "--user-data-dir={}",
            browser._profile.path().display()
        )])
        .collect::<Vec<_>>();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let answer = browser.request("POST", "/session".to_owned(), Some(caps))?;
        browser.session = answer["sessionId"]
            .as_str()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| BrowserError::Command {
                method: "POST",
                path: "/session".to_owned(),
                message: format!("no sessionId in {answer}"),
            })?
            .to_owned();
        Ok(browser)
    }

    /// One WebDriver command; its `value`, or the error it names.
    fn request(&self, method: &'static str, path: String, body: Option<Value>) -> Result<Value> {
        let url = format!("{}{}", self.base, path);
        let fail = |message: String| BrowserError::Command {
            method,
            path: path.clone(),
            message,
        };
        self.runtime.block_on(async {
            let req = match method {
                "GET" => self.client.get(&url),
                "DELETE" => self.client.delete(&url),
                _ => self.client.post(&url),
            };
            let mut res = match body {
                Some(b) => req.send_json(&b).await,
                None if method == "POST" => req.send_json(&json!({})).await,
                None => req.send().await,
            }
            .map_err(|e| fail(e.to_string()))?;
            let bytes = res
                .body()
                .limit(64 << 20)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let v: Value = serde_json::from_slice(&bytes).map_err(|e| fail(e.to_string()))?;
            if res.status().is_success() {
                Ok(v["value"].clone())
            } else {
                Err(fail(format!("{} {}", res.status(), v["value"])))
            }
        })
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{}", self.session, rest)
    }

    /// Opens `url`.
    pub fn goto(&self, url: &str) -> Result<()> {
        self.request("POST", self.session_path("/url"), Some(json!({"url": url})))
            .map(drop)
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page and answers its return.
    pub fn execute(&self, script: &str, args: Value) -> Result<Value> {
        self.request(
            "POST",
            self.session_path("/execute/sync"),
            Some(json!({"script": script, "args": args})),
        )
    }

    /// The element reference of the first match of `css`.
    pub fn find(&self, css: &str) -> Result<String> {
        let v = self.request(
            "POST",
            self.session_path("/element"),
            Some(json!({"using": "css selector", "value": css})),
        )?;
        Ok(v[ELEMENT].as_str().unwrap_or_default().to_owned())
    }

    /// Clicks the element `css` (as a user would: WebDriver scrolls it into view and clicks its centre).
    pub fn click(&self, css: &str) -> Result<()> {
        let el = self.find(css)?;
        self.request(
            "POST",
            self.session_path(&format!("/element/{el}/click")),
            None,
        )
        .map(drop)
    }

    /// Clears the input `css` and types `text` into it.
    pub fn type_into(&self, css: &str, text: &str) -> Result<()> {
        let el = self.find(css)?;
        self.request(
            "POST",
            self.session_path(&format!("/element/{el}/clear")),
            None,
        )?;
        self.request(
            "POST",
            self.session_path(&format!("/element/{el}/value")),
            Some(json!({"text": text})),
        )
        .map(drop)
    }

    /// A real pointer click at (`x`, `y`) CSS pixels from the top-left corner of the element `css`.
    pub fn click_at(&self, css: &str, x: f64, y: f64) -> Result<()> {
        let el = self.find(css)?;
        let rect = self.request(
            "GET",
            self.session_path(&format!("/element/{el}/rect")),
            None,
        )?;
        // Pointer offsets from an element are from its centre.
        let dx = (x - rect["width"].as_f64().unwrap_or_default() / 2.0).round();
        let dy = (y - rect["height"].as_f64().unwrap_or_default() / 2.0).round();
        let mut origin = serde_json::Map::new();
        origin.insert(ELEMENT.to_owned(), Value::from(el));
        let actions = json!({"actions": [{
            "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
            "actions": [
                {"type": "pointerMove", "duration": 0, "origin": origin, "x": dx, "y": dy},
                {"type": "pointerDown", "button": 0},
                {"type": "pointerUp", "button": 0},
            ],
        }]});
        self.request("POST", self.session_path("/actions"), Some(actions))
            .map(drop)
    }

    /// A PNG of the element `css` as drawn.
    pub fn screenshot(&self, css: &str) -> Result<Vec<u8>> {
        let el = self.find(css)?;
        let v = self.request(
            "GET",
            self.session_path(&format!("/element/{el}/screenshot")),
            None,
        )?;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .map_err(|e| BrowserError::Command {
                method: "GET",
                path: "screenshot".to_owned(),
                message: e.to_string(),
            })
    }

    /// Polls `script` (a function body) until `done` holds for its answer; its last answer then.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        script: &str,
        mut done: impl FnMut(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.execute(script, json!([]))?;
            if done(&v) {
                return Ok(v);
            }
            if Instant::now() > deadline {
                return Err(BrowserError::Timeout {
                    what: what.to_owned(),
                    timeout,
                    last: v,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            // Ends Chromium; chromedriver's process group (Chromium too, if this failed) is killed when
            // its Child drops.
            let _ = self.request("DELETE", self.session_path(""), None);
        }
    }
}
