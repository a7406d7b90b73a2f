//! Reading a source on a background thread, two ways:
//!
//! - [`Prefetch`] decodes ahead, so that decoding the next frames overlaps with inference on the
//!   current ones (files and videos). What is decoded ahead is bounded in bytes ([`ByteBudget`]),
//!   not frames: a frame can be anything from 1 KB to 805 MB (a 16384² image), so a frame count
//!   bounds nothing.
//! - [`Newest`] reads a live source (a camera, a network stream) as fast as it delivers and keeps
//!   only the newest frame: a consumer that falls behind gets the latest picture, not a queue of
//!   ever older ones, and the frames it had no time for are counted ([`Newest::dropped`]).
//!
//! Both hand out each item with the [`Instant`] it was decoded, for latency measurements.

use super::frame::{Frame, FrameSource};
use crate::error::Result;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bytes of decoded frames alive between the decoder and the consumer. The decoder starts a
/// frame only while fewer than `limit` bytes are in flight, so at most `limit` plus one frame are
/// ever held; the consumer [`release`](Self::release)s each frame's bytes once it is done with it.
#[derive(Debug)]
pub struct ByteBudget {
    limit: usize,
    state: Mutex<(usize, bool)>, // (bytes in flight, closed)
    cv: Condvar,
}

impl ByteBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(ByteBudget { limit: limit.max(1), state: Mutex::new((0, false)), cv: Condvar::new() })
    }
    pub fn limit(&self) -> usize {
        self.limit
    }
    /// Wait until fewer than `limit` bytes are in flight; false once closed.
    fn wait_room(&self) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while st.0 >= self.limit && !st.1 {
            st = self.cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        !st.1
    }
    fn add(&self, bytes: usize) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0 += bytes;
    }
    /// The consumer is done with a frame of `bytes` bytes.
    pub fn release(&self, bytes: usize) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.0 = st.0.saturating_sub(bytes);
        self.cv.notify_all();
    }
    fn close(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1 = true;
        self.cv.notify_all();
    }
    /// Bytes in flight now.
    pub fn in_flight(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0
    }
}

/// Frames of `inner`, decoded ahead on a background thread within `budget`, in order. Dropping
/// it stops the thread after the frame it is decoding.
pub struct Prefetch {
    rx: Option<Receiver<(Result<Frame>, Instant)>>,
    thread: Option<JoinHandle<()>>,
    budget: Arc<ByteBudget>,
    len_hint: Option<u64>,
    desc: String,
    live: bool,
}

impl Prefetch {
    /// `depth` bounds the frames queued as well (small frames), `budget` their bytes.
    pub fn new(mut inner: Box<dyn FrameSource>, depth: usize, budget: Arc<ByteBudget>) -> Self {
        let (len_hint, desc, live) = (inner.len_hint(), inner.describe(), inner.is_live());
        let (tx, rx) = sync_channel(depth.max(1));
        let b = budget.clone();
        let thread = std::thread::Builder::new()
            .name("msf-decode".into())
            .spawn(move || {
                // Errors are passed on like frames: the consumer decides whether a bad frame
                // ends the run, and the source whether anything follows it.
                while b.wait_room() {
                    let Some(item) = inner.next() else { break };
                    let decoded = Instant::now();
                    if let Ok(f) = &item {
                        b.add(f.data.len());
                    }
                    // The receiver is gone: nobody wants more frames.
                    if tx.send((item, decoded)).is_err() {
                        break;
                    }
                }
            })
            .expect("spawn the decoding thread");
        Prefetch { rx: Some(rx), thread: Some(thread), budget, len_hint, desc, live }
    }

    /// The next item with the instant it was decoded.
    pub fn next_timed(&mut self) -> Option<(Result<Frame>, Instant)> {
        self.rx.as_ref()?.recv().ok()
    }
}

impl Iterator for Prefetch {
    type Item = Result<Frame>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_timed().map(|(item, _)| item)
    }
}

impl FrameSource for Prefetch {
    fn len_hint(&self) -> Option<u64> {
        self.len_hint
    }
    fn describe(&self) -> String {
        self.desc.clone()
    }
    fn is_live(&self) -> bool {
        self.live
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        // Close the channel and the budget first so that a blocked decoder wakes up and ends.
        self.rx.take();
        self.budget.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Items waiting between the reading thread and the consumer: errors and frames not yet taken.
/// At most [`Newest::MAX_WAITING`] (a live frame replaces the frames waiting before it).
struct Waiting {
    queue: VecDeque<(Result<Frame>, Instant, bool)>,
    dropped: u64,
    /// The inner source is exhausted (or the thread ended).
    ended: bool,
    /// The consumer is gone.
    closed: bool,
}

struct Shared {
    state: Mutex<Waiting>,
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The newest frame of a live source: its frames are read on a background thread as fast as the
/// source delivers them, and a frame the consumer has not taken yet when a newer one is decoded is
/// dropped ([`Self::dropped`] counts them). Frames come out in order, each the newest decoded when
/// it was asked for (or the next one to be decoded). Errors are never dropped.
///
/// The newest-frame rule applies to the frames of a live source ([`FrameSource::is_live`], asked
/// after each frame, so that a chain of a file and a camera drops only the camera's frames);
/// other frames are handed over one by one, none dropped (one decoded ahead).
///
/// ```
/// use msf_runtime::source::{Frame, FrameSource, Newest};
/// // A live source that decodes far faster than its consumer takes frames.
/// struct Fast(u64);
/// impl Iterator for Fast {
///     type Item = msf_runtime::Result<Frame>;
///     fn next(&mut self) -> Option<Self::Item> {
///         (self.0 < 200).then(|| {
///             self.0 += 1;
///             std::thread::sleep(std::time::Duration::from_millis(1));
///             Ok(Frame { index: self.0 - 1, stream: 0, pts_seconds: None, name: String::new(), width: 1, height: 1, data: vec![0; 3] })
///         })
///     }
/// }
/// impl FrameSource for Fast {
///     fn describe(&self) -> String { "fast".into() }
///     fn is_live(&self) -> bool { true }
/// }
/// let mut newest = Newest::new(Box::new(Fast(0)));
/// let mut taken = Vec::new();
/// while let Some(frame) = newest.next() {
///     taken.push(frame?.index);
///     std::thread::sleep(std::time::Duration::from_millis(10)); // a slow consumer
/// }
/// assert!(taken.windows(2).all(|w| w[0] < w[1]), "in order");
/// assert_eq!(taken.len() as u64 + newest.dropped(), 200);
/// assert!(newest.dropped() > 0);
/// # Ok::<(), msf_runtime::Error>(())
/// ```
pub struct Newest {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    stop: Option<Arc<AtomicBool>>,
    desc: String,
    live: bool,
}

impl Newest {
    /// Most items waiting at once (errors; frames of a live source replace each other).
    pub const MAX_WAITING: usize = 16;
    /// How long dropping a `Newest` waits for its reading thread to end (it may be blocked in a
    /// read until the source's own timeout) before leaving it to end on its own.
    pub const JOIN_WAIT: Duration = Duration::from_secs(1);

    pub fn new(mut inner: Box<dyn FrameSource>) -> Self {
        let (desc, live) = (inner.describe(), inner.is_live());
        let shared = Arc::new(Shared {
            state: Mutex::new(Waiting { queue: VecDeque::new(), dropped: 0, ended: false, closed: false }),
            cv: Condvar::new(),
        });
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("msf-live".into())
            .spawn(move || {
                /// Marks the end however the thread leaves (a panicking source included).
                struct End(Arc<Shared>);
                impl Drop for End {
                    fn drop(&mut self) {
                        self.0.lock().ended = true;
                        self.0.cv.notify_all();
                    }
                }
                let _end = End(sh.clone());
                loop {
                    {
                        // A frame of a source that is not live waits for the consumer (no frame of
                        // it is ever dropped); so does a full queue.
                        let mut st = sh.lock();
                        while !st.closed
                            && (st.queue.len() >= Self::MAX_WAITING || st.queue.iter().any(|(r, _, live)| r.is_ok() && !live))
                        {
                            st = sh.cv.wait(st).unwrap_or_else(|p| p.into_inner());
                        }
                        if st.closed {
                            return;
                        }
                    }
                    let Some(item) = inner.next() else { return };
                    let decoded = Instant::now();
                    let live = inner.is_live();
                    let mut st = sh.lock();
                    if st.closed {
                        return;
                    }
                    if live && item.is_ok() {
                        let before = st.queue.len();
                        st.queue.retain(|(r, _, l)| !(r.is_ok() && *l));
                        st.dropped += (before - st.queue.len()) as u64;
                    }
                    st.queue.push_back((item, decoded, live));
                    sh.cv.notify_all();
                }
            })
            .expect("spawn the live reading thread");
        Newest { shared, thread: Some(thread), stop: None, desc, live }
    }

    /// Give up waiting for a frame once `flag` is raised ([`Iterator::next`] returns `None`), so
    /// that a stalled stream does not hold up a stop.
    pub fn with_stop_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.stop = Some(flag);
        self
    }

    /// Frames decoded and dropped because a newer one came before they were taken.
    pub fn dropped(&self) -> u64 {
        self.shared.lock().dropped
    }

    /// The next item (waiting for one if none is there) with the instant it was decoded.
    pub fn next_timed(&mut self) -> Option<(Result<Frame>, Instant)> {
        let mut st = self.shared.lock();
        loop {
            if let Some((item, decoded, _)) = st.queue.pop_front() {
                self.shared.cv.notify_all();
                return Some((item, decoded));
            }
            if st.ended || self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst)) {
                return None;
            }
            st = self.shared.cv.wait_timeout(st, Duration::from_millis(50)).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

impl Iterator for Newest {
    type Item = Result<Frame>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_timed().map(|(item, _)| item)
    }
}

impl FrameSource for Newest {
    fn describe(&self) -> String {
        self.desc.clone()
    }
    fn is_live(&self) -> bool {
        self.live
    }
}

impl Drop for Newest {
    fn drop(&mut self) {
        {
            let mut st = self.shared.lock();
            st.closed = true;
            st.queue.clear();
        }
        self.shared.cv.notify_all();
        let Some(thread) = self.thread.take() else { return };
        // The thread ends at once unless it is inside the source's `next` (a blocking read):
        // wait a little for it, then let it end on its own.
        let deadline = Instant::now() + Self::JOIN_WAIT;
        let mut st = self.shared.lock();
        while !st.ended {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            st = self.shared.cv.wait_timeout(st, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        drop(st);
        let _ = thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counting(u64, u64);
    impl Iterator for Counting {
        type Item = Result<Frame>;
        fn next(&mut self) -> Option<Self::Item> {
            (self.0 < self.1).then(|| {
                self.0 += 1;
                Ok(Frame { index: self.0 - 1, stream: 0, pts_seconds: None, name: format!("f{}", self.0 - 1), width: 1, height: 1, data: vec![0; 3] })
            })
        }
    }
    impl FrameSource for Counting {
        fn describe(&self) -> String {
            "counting".into()
        }
    }

    #[test]
    fn keeps_order_and_ends() {
        let got: Vec<u64> = Prefetch::new(Box::new(Counting(0, 50)), 3, ByteBudget::new(1 << 20)).map(|f| f.unwrap().index).collect();
        assert_eq!(got, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn dropping_early_stops_the_thread() {
        let mut p = Prefetch::new(Box::new(Counting(0, u64::MAX)), 2, ByteBudget::new(1 << 20));
        assert_eq!(p.next().unwrap().unwrap().index, 0);
        drop(p); // would hang if the thread kept decoding into a full channel
    }

    #[test]
    fn the_byte_budget_bounds_frames_decoded_ahead() {
        // 3-byte frames, a 7-byte budget: the decoder stops at 3 frames (9 bytes) until released.
        let budget = ByteBudget::new(7);
        let mut p = Prefetch::new(Box::new(Counting(0, 100)), 50, budget.clone());
        let first = p.next().unwrap().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(budget.in_flight(), 9, "decoded ahead past the budget");
        budget.release(first.data.len());
        let mut n = 1;
        while let Some(f) = p.next() {
            budget.release(f.unwrap().data.len());
            n += 1;
        }
        assert_eq!(n, 100);
        // Blocked on the budget, a dropped Prefetch still ends its thread.
        let budget = ByteBudget::new(1);
        let mut p = Prefetch::new(Box::new(Counting(0, u64::MAX)), 50, budget);
        p.next();
        drop(p);
    }

    /// A live source producing `n` frames, one every `every`.
    struct Live {
        next: u64,
        n: u64,
        every: std::time::Duration,
        live: bool,
    }
    impl Iterator for Live {
        type Item = Result<Frame>;
        fn next(&mut self) -> Option<Self::Item> {
            (self.next < self.n).then(|| {
                std::thread::sleep(self.every);
                self.next += 1;
                Ok(Frame { index: self.next - 1, stream: 0, pts_seconds: None, name: String::new(), width: 1, height: 1, data: vec![0; 3] })
            })
        }
    }
    impl FrameSource for Live {
        fn describe(&self) -> String {
            "live".into()
        }
        fn is_live(&self) -> bool {
            self.live
        }
    }

    #[test]
    fn newest_drops_what_a_slow_consumer_cannot_take_and_keeps_order() {
        let ms = std::time::Duration::from_millis;
        let mut p = Newest::new(Box::new(Live { next: 0, n: 100, every: ms(1), live: true }));
        let mut got = Vec::new();
        while let Some((f, decoded)) = p.next_timed() {
            got.push(f.unwrap().index);
            assert!(decoded.elapsed() < ms(1000));
            std::thread::sleep(ms(8));
        }
        assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
        assert_eq!(got.len() as u64 + p.dropped(), 100, "{got:?}");
        assert!(p.dropped() > 10, "dropped {} of 100", p.dropped());
        assert_eq!(*got.last().unwrap(), 99, "the last frame is always delivered");

        // A consumer that does nothing else: every frame is delivered or counted (how many it
        // misses depends on the machine's load, so that is not asserted).
        let mut p = Newest::new(Box::new(Live { next: 0, n: 30, every: ms(2), live: true }));
        assert_eq!(p.by_ref().count() as u64 + p.dropped(), 30);
        // A source that is not live: nothing is dropped.
        let mut p = Newest::new(Box::new(Live { next: 0, n: 30, every: ms(0), live: false }));
        let mut n = 0;
        for f in p.by_ref() {
            assert_eq!(f.unwrap().index, n);
            n += 1;
            std::thread::sleep(ms(2));
        }
        assert_eq!((n, p.dropped()), (30, 0));
    }

    #[test]
    fn newest_stops_on_the_flag_and_drops_without_hanging() {
        let ms = std::time::Duration::from_millis;
        // A source that stalls: the stop flag ends the wait, dropping returns within JOIN_WAIT.
        let stop = Arc::new(AtomicBool::new(false));
        let mut p = Newest::new(Box::new(Live { next: 0, n: 2, every: ms(3000), live: true })).with_stop_flag(stop.clone());
        let s = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(ms(100));
            s.store(true, Ordering::SeqCst);
        });
        let t = Instant::now();
        assert!(p.next().is_none());
        drop(p);
        assert!(t.elapsed() < ms(2500), "{:?}", t.elapsed());
        // Dropped while frames keep coming: the thread ends.
        let mut p = Newest::new(Box::new(Counting(0, u64::MAX)));
        assert_eq!(p.next().unwrap().unwrap().index, 0);
        drop(p);
    }
}
