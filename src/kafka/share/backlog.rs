//! What becomes of an acquired request that waits for a place in the worker's in-flight window,
//! IO-free. A ShareFetch acquires whole batches, more than the window may have room for. Kept,
//! such a request waits for this worker while other members may sit idle; released, it goes to
//! a member with room, but its next acquisition counts against the delivery limit. So a request
//! is kept for a moment (a full worker fetches nothing more meanwhile), then released; a
//! request one delivery short of the limit is kept until there is room, and one on its last
//! delivery is handed out beyond the window (its admission answers it without executing).

use std::time::Duration;

use tokio::time::Instant;

/// How long a request waits here for room before it is released for another member.
pub(crate) const PATIENCE: Duration = Duration::from_millis(100);

/// An acquired request waiting for room, as the decision needs it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Waiting {
    pub deliveries: i16,
    /// When it was acquired.
    pub since: Instant,
    /// When its lock runs out, less a margin.
    pub expires: Instant,
    /// Acquired in the share session still open (a lost session's records were released).
    pub current: bool,
}

/// The decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turn {
    /// Forget it: Kafka made it available again (its session is gone, or its lock ran out).
    Drop,
    /// Hand it out with its place of the window.
    Deliver,
    /// Hand it out without a place: its last delivery, which is answered, not executed.
    DeliverBeyond,
    /// Give it back for another member.
    Release,
    /// Look again at this time (or when room frees up).
    WaitUntil(Instant),
}

pub(crate) fn turn(w: &Waiting, room: bool, stopping: bool, limit: i16, now: Instant) -> Turn {
    if !w.current || w.expires <= now {
        return Turn::Drop;
    }
    let last = w.deliveries >= limit;
    if stopping {
        // Nothing is executed any more; the session's close releases what is held anyway.
        return Turn::Release;
    }
    if room {
        return Turn::Deliver;
    }
    if last {
        return Turn::DeliverBeyond;
    }
    if w.deliveries + 1 >= limit {
        return Turn::WaitUntil(w.expires);
    }
    let patience_ends = w.since + PATIENCE;
    if now >= patience_ends {
        Turn::Release
    } else {
        Turn::WaitUntil(patience_ends.min(w.expires))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: i16 = 5;

    fn waiting(deliveries: i16) -> Waiting {
        let now = Instant::now();
        Waiting {
            deliveries,
            since: now,
            expires: now + Duration::from_secs(30),
            current: true,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn with_room_it_goes_and_without_it_waits_a_moment_then_is_released() {
        let w = waiting(1);
        assert_eq!(turn(&w, true, false, LIMIT, Instant::now()), Turn::Deliver);
        assert_eq!(
            turn(&w, false, false, LIMIT, Instant::now()),
            Turn::WaitUntil(w.since + PATIENCE)
        );
        tokio::time::advance(PATIENCE).await;
        assert_eq!(turn(&w, false, false, LIMIT, Instant::now()), Turn::Release);
    }

    #[tokio::test(start_paused = true)]
    async fn near_the_limit_it_is_kept_and_on_its_last_delivery_it_goes_beyond_the_window() {
        let w = waiting(LIMIT - 1);
        tokio::time::advance(PATIENCE * 10).await;
        assert_eq!(
            turn(&w, false, false, LIMIT, Instant::now()),
            Turn::WaitUntil(w.expires),
            "a release would make its next delivery the last"
        );
        assert_eq!(
            turn(&waiting(LIMIT), false, false, LIMIT, Instant::now()),
            Turn::DeliverBeyond
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_session_or_a_lock_run_out_drops_it_and_a_stop_releases_it() {
        let mut w = waiting(1);
        assert_eq!(turn(&w, true, true, LIMIT, Instant::now()), Turn::Release);
        w.current = false;
        assert_eq!(turn(&w, true, false, LIMIT, Instant::now()), Turn::Drop);
        let w = waiting(1);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(turn(&w, true, false, LIMIT, Instant::now()), Turn::Drop);
    }
}
