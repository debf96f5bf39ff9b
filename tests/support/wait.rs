//! The one way a test waits: `eventually` asks a probe until it reports what was waited for,
//! and at the deadline fails naming what it waited for and what it saw last. A fixed sleep in
//! its place is too short on a busy machine and wastes time on a quiet one.

use std::fmt::{self, Debug, Display};
use std::future::Future;
use std::time::Duration;

/// The first pause between two looks. It doubles up to `LONGEST_PAUSE`, so a condition that
/// holds at once is seen at once, and a slow probe (a JVM tool, a scrape) is not asked in a
/// tight loop for minutes.
const FIRST_PAUSE: Duration = Duration::from_millis(10);

/// The longest pause between two looks: short beside every timeout the tests use.
const LONGEST_PAUSE: Duration = Duration::from_millis(250);

/// Asks `probe` until it returns `Ok`, and returns that value. Each `Err` carries what the probe
/// saw instead; after `timeout` the last of them goes into the panic message with `what` (the
/// condition waited for). The probe is always asked once more after the last pause, so a
/// condition that holds at the deadline counts.
#[track_caller]
pub fn eventually<T, O: Debug>(
    timeout: Duration,
    what: impl Display,
    probe: impl FnMut() -> Result<T, O>,
) -> T {
    // A match, not a closure: a closure would lose #[track_caller] and blame this line.
    match within(timeout, probe) {
        Ok(value) => value,
        Err(seen) => gave_up(timeout, &what, &seen),
    }
}

/// What `eventually` does, but returning the last observation at the deadline instead of
/// panicking: for a caller whose timeout is an answer of its own (a process that has not
/// exited), which its caller judges.
pub fn within<T, O>(timeout: Duration, mut probe: impl FnMut() -> Result<T, O>) -> Result<T, O> {
    let started = std::time::Instant::now();
    let mut pause = FIRST_PAUSE;
    loop {
        match probe() {
            Ok(value) => return Ok(value),
            Err(seen) if started.elapsed() >= timeout => return Err(seen),
            Err(_) => {}
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

/// `eventually` for a probe that awaits (a Kafka call, the runtime double's state). It pauses on
/// tokio's clock, so the runtime goes on serving meanwhile and a test with paused time advances
/// it instead of waiting.
#[track_caller]
pub fn eventually_async<T, O: Debug, F: Future<Output = Result<T, O>>>(
    timeout: Duration,
    what: impl Display,
    mut probe: impl FnMut() -> F,
) -> impl Future<Output = T> {
    // The caller's place is taken here: an async fn's body does not keep #[track_caller].
    let caller = std::panic::Location::caller();
    async move {
        let started = tokio::time::Instant::now();
        let mut pause = FIRST_PAUSE;
        loop {
            match probe().await {
                Ok(value) => return value,
                Err(seen) if started.elapsed() >= timeout => {
                    panic!("{} (waited at {caller})", message(timeout, &what, &seen))
                }
                Err(_) => {}
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(LONGEST_PAUSE);
        }
    }
}

/// What the probe saw, shown as it is rather than escaped onto one line: a log, say.
pub struct Shown(
    /// The observation, lines and all.
    pub String,
);

impl Debug for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[track_caller]
fn gave_up(timeout: Duration, what: &impl Display, seen: &impl Debug) -> ! {
    panic!("{}", message(timeout, what, seen))
}

fn message(timeout: Duration, what: &impl Display, seen: &impl Debug) -> String {
    format!("waited {timeout:?} for {what}; last seen:\n{seen:#?}")
}

/// Waits until the runtime double has executed `n` requests in all: executions are under way,
/// the premise of a test that strikes while requests are in flight.
pub async fn executions(double: &super::runtime_double::RuntimeDouble, n: u64, timeout: Duration) {
    eventually_async(
        timeout,
        format!("{n} executions by the runtime double"),
        || async {
            let calls = double.calls();
            if calls >= n { Ok(()) } else { Err(calls) }
        },
    )
    .await;
}
