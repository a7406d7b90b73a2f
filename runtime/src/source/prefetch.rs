//! Decode ahead: a [`FrameSource`] wrapper that reads its inner source on a background thread, so
//! that decoding the next frames overlaps with inference on the current ones (files and videos;
//! cameras want the newest frame instead, not a queue).
//!
//! What is decoded ahead is bounded in bytes ([`ByteBudget`]), not frames: a frame can be
//! anything from 1 KB to 805 MB (a 16384² image), so a frame count bounds nothing.

use super::frame::{Frame, FrameSource};
use crate::error::Result;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

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
    rx: Option<Receiver<Result<Frame>>>,
    thread: Option<JoinHandle<()>>,
    budget: Arc<ByteBudget>,
    len_hint: Option<u64>,
    desc: String,
}

impl Prefetch {
    /// `depth` bounds the frames queued as well (small frames), `budget` their bytes.
    pub fn new(mut inner: Box<dyn FrameSource>, depth: usize, budget: Arc<ByteBudget>) -> Self {
        let (len_hint, desc) = (inner.len_hint(), inner.describe());
        let (tx, rx) = sync_channel(depth.max(1));
        let b = budget.clone();
        let thread = std::thread::Builder::new()
            .name("msf-decode".into())
            .spawn(move || {
                // Errors are passed on like frames: the consumer decides whether a bad frame
                // ends the run, and the source whether anything follows it.
                while b.wait_room() {
                    let Some(item) = inner.next() else { break };
                    if let Ok(f) = &item {
                        b.add(f.data.len());
                    }
                    // The receiver is gone: nobody wants more frames.
                    if tx.send(item).is_err() {
                        break;
                    }
                }
            })
            .expect("spawn the decoding thread");
        Prefetch { rx: Some(rx), thread: Some(thread), budget, len_hint, desc }
    }
}

impl Iterator for Prefetch {
    type Item = Result<Frame>;
    fn next(&mut self) -> Option<Self::Item> {
        self.rx.as_ref()?.recv().ok()
    }
}

impl FrameSource for Prefetch {
    fn len_hint(&self) -> Option<u64> {
        self.len_hint
    }
    fn describe(&self) -> String {
        self.desc.clone()
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
}
