//! The one retry pace of the service: capped exponential backoff with jitter.
//!
//! Every retry loop (fetching, producing, committing, calling the runtime or the backend,
//! restarting a crashed worker) waits with this. Jitter matters with several workers: without
//! it they all retry a broker or runtime that just came back at the same instants.

use std::time::Duration;

/// Pauses that double from `initial` up to `max`; each pause is drawn between half and all of
/// the current step ("equal jitter"), so retries spread out but never come much sooner than the
/// step says.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The first step, and the step again after [`reset`](Backoff::reset).
    initial: Duration,
    /// Steps stop growing here.
    max: Duration,
    /// The step the next pause is drawn from.
    step: Duration,
}

impl Backoff {
    /// A pace whose first pause is drawn from `initial` and whose steps double up to `max`.
    pub const fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            step: initial,
        }
    }

    /// The pause before the next attempt; the step doubles for the one after.
    pub fn next_pause(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        let half = step / 2;
        half + half.mul_f64(fastrand::f64())
    }

    /// Back to the first step, after a success.
    pub fn reset(&mut self) {
        self.step = self.initial;
    }

    /// Sleeps for [`next_pause`](Backoff::next_pause); returns how long.
    pub async fn wait(&mut self) -> Duration {
        let pause = self.next_pause();
        tokio::time::sleep(pause).await;
        pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_to_the_cap_with_jitter_in_the_upper_half() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let steps = [100, 200, 400, 800, 800, 800];
        for step in steps {
            let pause = b.next_pause();
            let step = Duration::from_millis(step);
            assert!(
                pause >= step / 2 && pause <= step,
                "{pause:?} for step {step:?}"
            );
        }
        b.reset();
        assert!(b.next_pause() <= Duration::from_millis(100));
    }

    #[test]
    fn pauses_differ_between_backoffs() {
        let draw = || {
            let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(1));
            (0..8).map(|_| b.next_pause()).collect::<Vec<_>>()
        };
        assert_ne!(draw(), draw(), "no jitter");
    }
}
