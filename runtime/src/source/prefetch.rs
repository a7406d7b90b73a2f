//! Decode ahead: a [`FrameSource`] wrapper that reads its inner source on a background thread, so
//! that decoding the next frames overlaps with inference on the current ones (files and videos;
//! cameras want the newest frame instead, not a queue).

use super::frame::{Frame, FrameSource};
use crate::error::Result;
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

/// Frames of `inner`, decoded up to `depth` ahead on a background thread, in order. Dropping it
/// stops the thread after the frame it is decoding.
pub struct Prefetch {
    rx: Option<Receiver<Result<Frame>>>,
    thread: Option<JoinHandle<()>>,
    len_hint: Option<u64>,
    desc: String,
}

impl Prefetch {
    pub fn new(mut inner: Box<dyn FrameSource>, depth: usize) -> Self {
        let (len_hint, desc) = (inner.len_hint(), inner.describe());
        let (tx, rx) = sync_channel(depth.max(1));
        let thread = std::thread::Builder::new()
            .name("msf-decode".into())
            .spawn(move || {
                // Errors are passed on like frames: the consumer decides whether a bad frame
                // ends the run, and the source whether anything follows it.
                for item in inner.by_ref() {
                    // The receiver is gone: nobody wants more frames.
                    if tx.send(item).is_err() {
                        break;
                    }
                }
            })
            .expect("spawn the decoding thread");
        Prefetch { rx: Some(rx), thread: Some(thread), len_hint, desc }
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
        // Close the channel first so that a blocked sender wakes up and the thread ends.
        self.rx.take();
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
        let got: Vec<u64> = Prefetch::new(Box::new(Counting(0, 50)), 3).map(|f| f.unwrap().index).collect();
        assert_eq!(got, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn dropping_early_stops_the_thread() {
        let mut p = Prefetch::new(Box::new(Counting(0, u64::MAX)), 2);
        assert_eq!(p.next().unwrap().unwrap().index, 0);
        drop(p); // would hang if the thread kept decoding into a full channel
    }
}
