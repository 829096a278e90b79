//! The summary table: each scenario records rows — what it tried, what it found, pass or
//! fail, and figures (counts, recovery seconds) — and the table is printed when the test
//! binary exits, whatever the outcome and whether or not output is captured.
//!
//! Printing bypasses the test harness's capture (it writes to the process's standard
//! error directly, and from an `atexit` hook once every test has finished). The table is
//! also written, after every scenario, to `$CARGO_TARGET_DIR/reliability-summary.md`.

use std::future::Future;
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Once, OnceLock};
use std::time::Instant;

use futures::FutureExt;

use crate::Scale;

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Scenario, e.g. `1 crash points`.
    pub scenario: String,
    /// What was tried.
    pub tried: String,
    /// What was found.
    pub found: String,
    /// Whether it was what the design promises.
    pub pass: bool,
    /// Figures: counts, seconds.
    pub figures: String,
    /// Wall time of this step, in seconds.
    pub secs: f64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

static ROWS: Mutex<Vec<Row>> = Mutex::new(Vec::new());
static STARTED: OnceLock<Instant> = OnceLock::new();
static HOOK: Once = Once::new();

extern "C" fn at_exit() {
    // Never unwind across the C boundary.
    let _ = std::panic::catch_unwind(|| {
        let rows = lock(&ROWS).clone();
        if !rows.is_empty() {
            let table = render(&rows);
            write_stderr(&format!("\n{table}"));
            write_file(&table);
        }
    });
}

fn register() {
    STARTED.get_or_init(Instant::now);
    HOOK.call_once(|| {
        // SAFETY: `at_exit` is an `extern "C" fn()` that never unwinds; registering it
        // has no other precondition.
        unsafe {
            libc::atexit(at_exit);
        }
    });
}

/// Writes `text` to the process's standard error, bypassing the test harness's capture.
fn write_stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

/// A progress line on standard error (never captured): `[reliability] msg`.
pub fn note(msg: &str) {
    write_stderr(&format!("[reliability] {msg}\n"));
}

/// Where the table is written: `$CARGO_TARGET_DIR/reliability-summary.md`.
pub fn summary_path() -> PathBuf {
    tidemark_testkit::bins::target_dir().join("reliability-summary.md")
}

fn write_file(table: &str) {
    let _ = std::fs::write(summary_path(), table);
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The table as Markdown, rows grouped by scenario (in name order), with a footer.
pub fn render(rows: &[Row]) -> String {
    let mut rows = rows.to_vec();
    rows.sort_by(|a, b| a.scenario.cmp(&b.scenario));
    let scale = std::env::var("TIDEMARK_RELIABILITY").unwrap_or_else(|_| "reduced".into());
    let mut out = format!("## Tidemark reliability summary ({scale} run)\n\n");
    out.push_str("| scenario | tried | found | result | figures | s |\n|---|---|---|---|---|---|\n");
    for r in &rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.1} |\n",
            cell(&r.scenario),
            cell(&r.tried),
            cell(&r.found),
            if r.pass { "pass" } else { "**FAIL**" },
            cell(&r.figures),
            r.secs
        ));
    }
    let failed = rows.iter().filter(|r| !r.pass).count();
    let wall = STARTED.get().map_or(0.0, |s| s.elapsed().as_secs_f64());
    out.push_str(&format!(
        "\n{} rows, {} passed, {failed} failed; wall time {wall:.0} s since the first scenario started.\n",
        rows.len(),
        rows.len() - failed
    ));
    out
}

struct Inner {
    scenario: String,
    rows: Vec<Row>,
    step: String,
    mark: Instant,
}

/// Records the rows of one scenario. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Mutex<Inner>>,
    scale: Scale,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").field("scenario", &lock(&self.inner).scenario).finish_non_exhaustive()
    }
}

impl Recorder {
    fn new(scenario: &str, scale: Scale) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                scenario: scenario.to_owned(),
                rows: Vec::new(),
                step: "setting up".into(),
                mark: Instant::now(),
            })),
            scale,
        }
    }

    /// The run's scale.
    pub fn scale(&self) -> Scale {
        self.scale
    }

    /// Says what is being tried now: printed as progress, and named in the failure row
    /// if the scenario panics before recording its result.
    pub fn step(&self, what: impl Into<String>) {
        let what = what.into();
        let scenario = {
            let mut inner = lock(&self.inner);
            inner.step.clone_from(&what);
            inner.scenario.clone()
        };
        note(&format!("{scenario}: {what}"));
    }

    /// Records a row; the time since the previous row is its wall time. Returns `pass`.
    pub fn record(
        &self,
        tried: impl Into<String>,
        found: impl Into<String>,
        pass: bool,
        figures: impl Into<String>,
    ) -> bool {
        let mut inner = lock(&self.inner);
        let secs = inner.mark.elapsed().as_secs_f64();
        inner.mark = Instant::now();
        let row = Row {
            scenario: inner.scenario.clone(),
            tried: tried.into(),
            found: found.into(),
            pass,
            figures: figures.into(),
            secs,
        };
        inner.rows.push(row);
        pass
    }

    /// Records a row and panics when it did not pass (the row says why).
    ///
    /// # Panics
    /// When `pass` is false.
    pub fn require(
        &self,
        tried: impl Into<String>,
        found: impl Into<String>,
        pass: bool,
        figures: impl Into<String>,
    ) {
        let (tried, found) = (tried.into(), found.into());
        if !self.record(tried.clone(), found.clone(), pass, figures) {
            panic!("{tried}: {found}");
        }
    }

    fn finish(&self, panic: Option<String>) -> Vec<Row> {
        let mut inner = lock(&self.inner);
        if let Some(message) = panic {
            // A failure already recorded by `require` needs no second row.
            let recorded = inner.rows.last().is_some_and(|r| !r.pass && message.starts_with(&r.tried));
            if !recorded {
                let secs = inner.mark.elapsed().as_secs_f64();
                let mut found: String =
                    message.lines().next().unwrap_or_default().chars().take(300).collect();
                if found.is_empty() {
                    found = "panicked".into();
                }
                let row = Row {
                    scenario: inner.scenario.clone(),
                    tried: inner.step.clone(),
                    found,
                    pass: false,
                    figures: String::new(),
                    secs,
                };
                inner.rows.push(row);
            }
        }
        inner.rows.clone()
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panicked".into()
    }
}

/// Runs one scenario: `body` gets a [`Recorder`]; its rows (and a failure row if it
/// panics) go into the summary, which is printed when the process exits. A panic is
/// re-raised afterwards, so the test fails as usual.
pub async fn run<F, Fut>(scenario: &str, body: F)
where
    F: FnOnce(Recorder) -> Fut,
    Fut: Future<Output = ()>,
{
    register();
    let scale = Scale::from_env();
    let rec = Recorder::new(scenario, scale);
    note(&format!("{scenario}: starting ({} run)", scale.name()));
    let started = Instant::now();
    let outcome = AssertUnwindSafe(body(rec.clone())).catch_unwind().await;
    let rows = rec.finish(outcome.as_ref().err().map(|p| panic_message(p.as_ref())));
    let failed = rows.iter().any(|r| !r.pass) || outcome.is_err();
    note(&format!(
        "{scenario}: {} after {:.1} s\n{}",
        if failed { "FAILED" } else { "passed" },
        started.elapsed().as_secs_f64(),
        rows.iter()
            .map(|r| format!(
                "    [{}] {} -> {} ({})",
                if r.pass { "pass" } else { "FAIL" },
                r.tried,
                r.found,
                r.figures
            ))
            .collect::<Vec<_>>()
            .join("\n")
    ));
    let table = {
        let mut all = lock(&ROWS);
        all.extend(rows);
        render(&all)
    };
    write_file(&table);
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }
    // A row recorded as failed without a panic still fails the test.
    assert!(!failed, "{scenario}: a check failed (see the summary table)");
}
