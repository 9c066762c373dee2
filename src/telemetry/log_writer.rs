//! A log sink that batches lines in memory and writes them out from a
//! background thread, so that logging one line per request costs no system
//! call on the request path.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a line may wait in memory before it is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// Above this many buffered bytes the writing caller flushes itself, which
/// bounds memory and slows a flood down instead of dropping lines.
const HIGH_WATER: usize = 1 << 20;

struct Shared {
    pending: Mutex<Vec<u8>>,
    out: Mutex<Box<dyn Write + Send>>,
    stopping: Mutex<bool>,
    wake: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a log lock leaves plain bytes behind: keep going.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Writes out what is pending. The output lock is taken before the
    /// buffer is swapped, so batches reach the output in the order written.
    fn flush(&self) -> io::Result<()> {
        let mut out = lock(&self.out);
        let batch = std::mem::take(&mut *lock(&self.pending));
        if !batch.is_empty() {
            out.write_all(&batch)?;
        }
        out.flush()
    }
}

/// The `MakeWriter` handed to tracing-subscriber.
#[derive(Clone)]
pub struct BatchedWriter(Arc<Shared>);

/// Writes everything still pending and stops the background thread when
/// dropped; lines logged after that are written by whoever fills the
/// buffer, or lost at exit.
pub struct Flusher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Flusher {
    fn drop(&mut self) {
        *lock(&self.shared.stopping) = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = self.shared.flush();
    }
}

/// A writer for tracing-subscriber and the flusher that drains it into
/// `out` every [`FLUSH_EVERY`].
pub fn batched(out: impl Write + Send + 'static) -> (BatchedWriter, Flusher) {
    let shared = Arc::new(Shared {
        pending: Mutex::new(Vec::with_capacity(64 * 1024)),
        out: Mutex::new(Box::new(out)),
        stopping: Mutex::new(false),
        wake: Condvar::new(),
    });
    let s = shared.clone();
    let thread = std::thread::Builder::new()
        .name("tlsward-log".into())
        .spawn(move || {
            let mut stopping = lock(&s.stopping);
            while !*stopping {
                stopping = s
                    .wake
                    .wait_timeout(stopping, FLUSH_EVERY)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                // Nobody to tell if stderr is gone.
                let _ = s.flush();
            }
        })
        .ok();
    (BatchedWriter(shared.clone()), Flusher { shared, thread })
}

/// One log line's writer.
pub struct Line<'a>(&'a Shared);

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let full = {
            let mut pending = lock(&self.0.pending);
            pending.extend_from_slice(buf);
            pending.len() >= HIGH_WATER
        };
        if full {
            self.0.flush()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Lines are flushed in batches; see FLUSH_EVERY.
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchedWriter {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Line(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::fmt::MakeWriter;

    /// An output that records what reached it and how many writes it took.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut s = lock(&self.0);
            s.0.extend_from_slice(buf);
            s.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_from_many_threads_arrive_whole_and_in_order_in_few_writes() {
        let sink = Sink::default();
        let (writer, flusher) = batched(sink.clone());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let w = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        let line = format!("thread={t} line={i}\n");
                        w.make_writer().write_all(line.as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(flusher);
        let (bytes, writes) = lock(&sink.0).clone();
        let text = String::from_utf8(bytes).unwrap();
        for t in 0..4 {
            let seen: Vec<usize> = text
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("thread={t} line=")))
                .map(|n| n.parse().unwrap())
                .collect();
            assert_eq!(seen, (0..5_000).collect::<Vec<_>>(), "thread {t}");
        }
        assert!(writes < 1_000, "{writes} writes for 20,000 lines");
    }

    #[test]
    fn a_line_reaches_the_output_without_a_flush_call() {
        let sink = Sink::default();
        let (writer, flusher) = batched(sink.clone());
        writer.make_writer().write_all(b"hello\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while lock(&sink.0).0.is_empty() {
            assert!(std::time::Instant::now() < deadline, "never flushed");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(lock(&sink.0).0, b"hello\n");
        drop(flusher);
    }

    #[test]
    fn a_flood_is_written_by_the_caller_once_the_buffer_is_full() {
        let sink = Sink::default();
        let (writer, flusher) = batched(sink.clone());
        let line = vec![b'x'; 1024];
        for _ in 0..(2 * HIGH_WATER / line.len()) {
            writer.make_writer().write_all(&line).unwrap();
        }
        // Without waiting for the flusher, at least one full buffer is out.
        assert!(lock(&sink.0).0.len() >= HIGH_WATER);
        drop(flusher);
        assert_eq!(lock(&sink.0).0.len(), 2 * HIGH_WATER);
    }
}
