//! A real browser for the dashboard's tests: headless Chromium driven
//! through the DevTools protocol by `browser.py` (beside this file,
//! Python's standard library only). `make setup` installs the browser
//! (`chromium-headless-shell` from Debian).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use super::{CONVERGENCE_TIMEOUT, POLL_INTERVAL};

/// The browsers tried, in order (`IROH_RAFT_BROWSER` overrides).
const BROWSERS: &[&str] = &["chromium-headless-shell", "chromium"];

/// A page open in a headless browser.
pub struct Page {
    driver: Child,
    commands: Option<ChildStdin>,
    answers: BufReader<ChildStdout>,
}

fn browser() -> String {
    if let Ok(chosen) = std::env::var("IROH_RAFT_BROWSER") {
        return chosen;
    }
    BROWSERS
        .iter()
        .find(|name| {
            Command::new("sh")
                .args(["-c", &format!("command -v {name}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .unwrap_or_else(|| {
            panic!(
                "no headless browser ({BROWSERS:?}): `make setup` installs \
                 chromium-headless-shell"
            )
        })
        .to_string()
}

impl Page {
    /// Open `url` in a new headless browser.
    pub fn open(url: &str) -> Page {
        let driver_script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/common/browser.py");
        let mut driver = Command::new("python3")
            .args([driver_script, &browser(), url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the browser driver (python3)");
        let commands = driver.stdin.take().expect("piped stdin");
        let answers = BufReader::new(driver.stdout.take().expect("piped stdout"));
        Page {
            driver,
            commands: Some(commands),
            answers,
        }
    }

    /// Evaluate a JavaScript expression in the page (a promise is
    /// awaited); its JSON value, or the error it raised.
    pub fn eval(&mut self, expression: &str) -> Result<serde_json::Value, String> {
        assert!(!expression.contains('\n'), "one line per expression");
        let commands = self.commands.as_mut().expect("open until dropped");
        writeln!(commands, "{expression}").expect("send to the browser driver");
        let mut line = String::new();
        self.answers
            .read_line(&mut line)
            .expect("read from the browser driver");
        let answer: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| format!("{e}: {line:?}"))?;
        match answer.get("error") {
            Some(error) => Err(error.to_string()),
            None => Ok(answer["value"].clone()),
        }
    }

    /// Wait until `expression` is `true` in the page (it re-renders every
    /// 2 s, a watch at once); panics with `what` after
    /// [`CONVERGENCE_TIMEOUT`].
    pub fn wait_until(&mut self, what: &str, expression: &str) {
        let deadline = Instant::now() + CONVERGENCE_TIMEOUT;
        loop {
            let value = self.eval(expression);
            if value == Ok(serde_json::Value::Bool(true)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the page never showed {what} ({expression} = {value:?})"
            );
            std::thread::sleep(POLL_INTERVAL.max(Duration::from_millis(100)));
        }
    }

    /// The text of the element with this id.
    pub fn text_of(&mut self, id: &str) -> String {
        let value = self
            .eval(&format!("document.getElementById({id:?}).textContent"))
            .unwrap_or_else(|e| panic!("#{id}: {e}"));
        value.as_str().unwrap_or_default().to_string()
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // Closing its stdin ends the driver, which closes the browser (and
        // the browser dies with the driver if that is killed instead).
        self.commands = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.driver.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
