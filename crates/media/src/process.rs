//! Running ffmpeg and ffprobe as child processes, with a run-time cap, cancellation and
//! line-by-line progress.
//!
//! Arguments are always passed as a vector, never through a shell, so a hostile object key
//! cannot become a command. stderr is kept (its tail becomes the error a user sees) and
//! stdout is streamed to a callback so `-progress pipe:1` can drive progress bars.

use crate::error::{Error, Result};
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How many bytes of stderr are kept for error messages.
const STDERR_TAIL: usize = 4096;

/// Receives each stdout line of a running tool.
type LineSink<'a> = Box<dyn FnMut(&str) + Send + 'a>;

/// One tool invocation.
pub struct ToolRun<'a> {
    program: String,
    args: Vec<String>,
    step: String,
    timeout: Duration,
    cancel: Vec<Arc<AtomicBool>>,
    on_line: Option<LineSink<'a>>,
}

/// What a successful run left behind.
#[derive(Debug)]
pub struct ToolOutput {
    /// All of stdout when no line callback was set; empty otherwise.
    pub stdout: String,
    /// The tail of stderr (warnings are useful even on success).
    pub stderr_tail: String,
}

impl<'a> ToolRun<'a> {
    /// Prepares `program args…`; `step` names it in errors ("encode chunk 3").
    pub fn new(program: &str, args: Vec<String>, step: impl Into<String>) -> Self {
        ToolRun {
            program: program.to_string(),
            args,
            step: step.into(),
            timeout: Duration::from_secs(3600),
            cancel: Vec::new(),
            on_line: None,
        }
    }

    /// Caps the run time; the child is killed when it is exceeded.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Kills the child as soon as `flag` becomes true (shutdown, lease lost); may be given
    /// several flags.
    pub fn cancel_on(mut self, flag: Arc<AtomicBool>) -> Self {
        self.cancel.push(flag);
        self
    }

    /// Streams stdout line by line to `f` instead of collecting it.
    pub fn on_line(mut self, f: impl FnMut(&str) + Send + 'a) -> Self {
        self.on_line = Some(Box::new(f));
        self
    }

    /// Runs to completion; a non-zero exit, time-out or cancellation is an error.
    pub fn run(self) -> Result<ToolOutput> {
        let ToolRun {
            program,
            args,
            step,
            timeout,
            cancel,
            mut on_line,
        } = self;
        tracing::debug!(%program, ?args, %step, "spawning");
        let mut child = Command::new(&program)
            .args(&args)
            // SVT-AV1 prints its configuration to stderr unless told to keep to errors,
            // which would push ffmpeg's own error out of the stderr tail a failure shows.
            .env("SVT_LOG", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| Error::Spawn {
                program: program.clone(),
                source,
            })?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let started = Instant::now();
        let (status, stdout_all, stderr_all) = std::thread::scope(|s| {
            let err_reader = s.spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut e) = stderr {
                    let _ = e.read_to_end(&mut buf);
                }
                String::from_utf8_lossy(&buf).into_owned()
            });
            let out_reader = s.spawn(move || {
                let mut all = String::new();
                if let Some(o) = stdout {
                    for line in BufReader::new(o).lines() {
                        let Ok(line) = line else { break };
                        match on_line.as_mut() {
                            Some(f) => f(&line),
                            None => {
                                all.push_str(&line);
                                all.push('\n');
                            }
                        }
                    }
                }
                all
            });
            let status = loop {
                match child.try_wait() {
                    Ok(Some(status)) => break Ok(status),
                    Ok(None) => {}
                    Err(e) => break Err(Error::io(format!("waiting for {program}"), e)),
                }
                let cancelled = cancel.iter().any(|c| c.load(Ordering::SeqCst));
                if cancelled || started.elapsed() > timeout {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(if cancelled {
                        Error::Cancelled {
                            step: step.clone(),
                            why: "cancelled".into(),
                        }
                    } else {
                        Error::TimedOut {
                            step: step.clone(),
                            secs: timeout.as_secs(),
                        }
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            let out = out_reader.join().unwrap_or_default();
            let err = err_reader.join().unwrap_or_default();
            (status, out, err)
        });
        let status = status?;
        let stderr_tail = tail(&stderr_all, STDERR_TAIL);
        if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&status) {
            tracing::warn!(%program, %step, signal, stderr = %stderr_tail.trim(), "tool crashed");
            return Err(Error::Crashed {
                program,
                step,
                signal,
            });
        }
        if !status.success() {
            let detail = if stderr_tail.trim().is_empty() {
                format!("{program} exited with {status}")
            } else {
                stderr_tail.trim().to_string()
            };
            return Err(Error::Tool { step, detail });
        }
        Ok(ToolOutput {
            stdout: stdout_all,
            stderr_tail,
        })
    }
}

/// Seconds since the epoch, as stored in job records.
pub fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The last `max` bytes of `s`, cut at a char boundary.
fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_child_is_killed_at_its_time_limit() {
        let err = ToolRun::new("sleep", vec!["5".into()], "sleepy")
            .timeout(Duration::from_millis(200))
            .run()
            .unwrap_err();
        assert!(matches!(err, Error::TimedOut { .. }), "{err}");
    }

    #[test]
    fn a_failing_child_reports_its_stderr() {
        let err = ToolRun::new("sh", vec!["-c".into(), "echo boom >&2; exit 3".into()], "x")
            .run()
            .unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
    }

    #[test]
    fn a_missing_program_says_so() {
        let err = ToolRun::new("vodpipe-no-such-tool", vec![], "x")
            .run()
            .unwrap_err();
        assert!(matches!(err, Error::Spawn { .. }));
    }

    #[test]
    fn a_child_killed_by_a_signal_is_a_crash_not_a_verdict() {
        let err = ToolRun::new("sh", vec!["-c".into(), "kill -SEGV $$".into()], "x")
            .run()
            .unwrap_err();
        assert!(matches!(err, Error::Crashed { signal: 11, .. }), "{err:?}");
        assert!(err.is_infrastructure() && !err.is_permanent());
    }

    #[test]
    fn lines_are_streamed_to_the_callback() {
        let mut seen = Vec::new();
        ToolRun::new("sh", vec!["-c".into(), "echo a; echo b".into()], "x")
            .on_line(|l| seen.push(l.to_string()))
            .run()
            .unwrap();
        assert_eq!(seen, ["a", "b"]);
    }
}
