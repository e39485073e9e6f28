//! The worker threads of a run (bench or replay), the progress line while they run, and
//! the join that turns a failed worker into a failed run.
//!
//! A worker that panics or returns an error must end the run with an error, never hang it.
//! Two things make sure of that:
//!
//! - each worker's `finished` flag is set by a drop guard, so it is set when the worker
//!   returns, fails or unwinds from a panic, and the progress loop (which waits for every
//!   flag) always ends;
//! - a failing worker raises the run's `abandoned` flag, which every other worker polls
//!   in its event loop: a worker waiting for something only the failed one would have done
//!   (at top speed, a replay connection waits for connections of other threads to finish)
//!   stops instead of waiting forever.
//!
//! After the progress loop, every worker is joined and its result checked: a panic or an
//! error becomes the run's error.

use std::any::Any;
use std::io::{self, IsTerminal};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::anyhow;

/// How often the progress loop looks at the workers' flags.
const PROGRESS_POLL: Duration = Duration::from_millis(100);
/// How often the progress line is redrawn.
const PROGRESS_PRINT: Duration = Duration::from_secs(1);

/// Live counters of one worker (written by it, read by the main thread).
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct Progress {
    sent: AtomicU64,
    completed: AtomicU64,
    finished: AtomicBool,
}

/// A worker's side of the run: where it reports progress, and how it learns that the run
/// was abandoned because another worker failed.
#[derive(Clone, Copy, Debug)]
pub struct Reporter<'a> {
    progress: &'a Progress,
    abandoned: &'a AtomicBool,
}

impl<'a> Reporter<'a> {
    /// A reporter on its own, for driving one worker outside [`run_workers`].
    #[cfg(test)]
    pub fn new(progress: &'a Progress, abandoned: &'a AtomicBool) -> Reporter<'a> {
        Reporter { progress, abandoned }
    }

    /// The worker's counts so far (single writer: relaxed stores).
    pub fn update(&self, sent: u64, completed: u64) {
        self.progress.sent.store(sent, Ordering::Relaxed);
        self.progress.completed.store(completed, Ordering::Relaxed);
    }

    /// Another worker failed: the run's result is an error whatever this worker measures,
    /// so it should stop.
    pub fn abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Acquire)
    }

    fn abandon(&self) {
        self.abandoned.store(true, Ordering::Release);
    }
}

/// Sets the worker's `finished` flag however the worker ends (and abandons the run when
/// it ends by a panic), so the progress loop never waits for a worker that is gone.
struct FinishedOnDrop<'a>(Reporter<'a>);

impl Drop for FinishedOnDrop<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.abandon();
        }
        self.0.progress.finished.store(true, Ordering::Release);
    }
}

/// How the progress line reads: `[  12.0 s] sent N, LABEL M[, R req/s]`.
#[derive(Clone, Copy, Debug)]
pub struct ProgressLine {
    /// The word for answers ("completed", "answered").
    pub completed_label: &'static str,
    /// Also print the answers per second since the previous line.
    pub rate: bool,
}

/// Runs `work` on each input in its own thread named `rush-{tool}-{index}`, shows a
/// progress line on stderr (only on a terminal) until every worker has finished, then
/// joins them: their outputs in input order, or the run's error when a worker panicked,
/// returned an error, or could not be started.
pub fn run_workers<Input, Output, Work>(
    tool: &str,
    inputs: Vec<Input>,
    start: Instant,
    line: ProgressLine,
    work: Work,
) -> anyhow::Result<Vec<Output>>
where
    Input: Send,
    Output: Send,
    Work: Fn(Input, Reporter<'_>) -> anyhow::Result<Output> + Sync,
{
    let progress: Vec<Progress> = inputs.iter().map(|_| Progress::default()).collect();
    let abandoned = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let mut handles = Vec::with_capacity(inputs.len());
        let mut spawn_error = None;
        for (index, (input, progress)) in inputs.into_iter().zip(&progress).enumerate() {
            let reporter = Reporter { progress, abandoned: &abandoned };
            let work = &work;
            let spawned = std::thread::Builder::new()
                .name(format!("rush-{tool}-{index}"))
                .spawn_scoped(scope, move || {
                    let _finished = FinishedOnDrop(reporter);
                    let result = work(input, reporter);
                    if result.is_err() {
                        reporter.abandon();
                    }
                    result
                });
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(error) => {
                    // The workers already started stop; the run fails.
                    abandoned.store(true, Ordering::Release);
                    spawn_error =
                        Some(anyhow!(error).context(format!("cannot start a {tool} thread")));
                    break;
                }
            }
        }
        show_progress(&progress[..handles.len()], start, line);
        let mut outputs = Vec::with_capacity(handles.len());
        let mut failure = spawn_error;
        for (index, handle) in handles.into_iter().enumerate() {
            let error = match handle.join() {
                Ok(Ok(output)) => {
                    outputs.push(output);
                    continue;
                }
                Ok(Err(error)) => error.context(format!("{tool} thread {index} failed")),
                Err(panic) => {
                    anyhow!("{tool} thread {index} panicked: {}", panic_message(panic.as_ref()))
                }
            };
            // The first failure is the cause; the others are usually its consequences.
            failure.get_or_insert(error);
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(outputs),
        }
    })
}

/// The text of a panic payload (`panic!` with a message gives a `&str` or a `String`).
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "(no message)"
    }
}

/// A progress line on stderr once a second until every worker has finished (printed only
/// on a terminal, but waited for either way).
fn show_progress(progress: &[Progress], start: Instant, line: ProgressLine) {
    let terminal = io::stderr().is_terminal();
    let mut last_print = Instant::now();
    let mut last_completed = 0u64;
    while !progress.iter().all(|p| p.finished.load(Ordering::Acquire)) {
        std::thread::sleep(PROGRESS_POLL);
        if !terminal || last_print.elapsed() < PROGRESS_PRINT {
            continue;
        }
        let sent: u64 = progress.iter().map(|p| p.sent.load(Ordering::Relaxed)).sum();
        let completed: u64 = progress.iter().map(|p| p.completed.load(Ordering::Relaxed)).sum();
        let mut text = format!(
            "\r\x1b[2K[{:6.1} s] sent {sent}, {} {completed}",
            start.elapsed().as_secs_f64(),
            line.completed_label
        );
        if line.rate {
            let rate = (completed - last_completed.min(completed)) as f64
                / last_print.elapsed().as_secs_f64();
            text += &format!(", {rate:.0} req/s");
        }
        eprint!("{text}");
        last_print = Instant::now();
        last_completed = completed;
    }
    if terminal {
        eprint!("\r\x1b[2K");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    const LINE: ProgressLine = ProgressLine { completed_label: "answered", rate: false };

    /// Runs `run_workers` on a thread of its own and waits at most 20 s for it: a hang is a
    /// test failure, not a test run that never ends.
    fn within_a_timeout<T: Send + 'static>(
        run: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = sender.send(run());
        });
        receiver.recv_timeout(Duration::from_secs(20)).expect("the run ended (it hung before)")
    }

    #[test]
    fn outputs_come_back_in_input_order_with_progress() {
        let outputs = within_a_timeout(|| {
            run_workers("test", vec![3_u64, 1, 2], Instant::now(), LINE, |input, reporter| {
                reporter.update(input, input);
                assert!(!reporter.abandoned());
                Ok(input * 10)
            })
        })
        .unwrap();
        assert_eq!(outputs, vec![30, 10, 20]);
    }

    /// Pins the hang of `rush replay` the fuzz run found: a worker that panicked never set
    /// its `finished` flag, so the progress loop waited forever and "a replay thread
    /// panicked" was never reported. The other worker here waits, like a top-speed replay
    /// connection, for something only the panicked one would have done: it must learn that
    /// the run was abandoned.
    #[test]
    fn a_panicking_worker_ends_the_run_with_an_error_instead_of_hanging_it() {
        let result = within_a_timeout(|| {
            run_workers("replay", vec![0, 1], Instant::now(), LINE, |input, reporter| {
                if input == 0 {
                    std::thread::sleep(Duration::from_millis(50));
                    panic!("schedule overflow");
                }
                while !reporter.abandoned() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(())
            })
        });
        let error = result.expect_err("a panicked worker fails the run").to_string();
        assert!(error.contains("replay thread 0 panicked: schedule overflow"), "{error}");
    }

    #[test]
    fn a_worker_error_ends_the_run_and_stops_the_others() {
        let result = within_a_timeout(|| {
            run_workers("bench", vec![0, 1, 2], Instant::now(), LINE, |input, reporter| {
                if input == 1 {
                    anyhow::bail!("cannot create the poll");
                }
                while !reporter.abandoned() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(input)
            })
        });
        let error = format!("{:#}", result.expect_err("a failed worker fails the run"));
        assert!(error.contains("bench thread 1 failed: cannot create the poll"), "{error}");
    }
}
