//! One share session (KIP-932) of this member with one broker, IO-free: the epoch each request
//! carries, which partitions the broker holds in the session, and the acknowledgements waiting
//! to go there.
//!
//! Epoch 0 opens a session (and may carry no acknowledgements); each answered request moves
//! the epoch on by one (after `i32::MAX` comes 1), ShareFetch and ShareAcknowledge alike; -1
//! closes it, which releases whatever the member still holds there. A session is bound to its
//! connection: a lost session (SHARE_SESSION_NOT_FOUND, INVALID_SHARE_SESSION_EPOCH,
//! SHARE_SESSION_LIMIT_REACHED, or the connection gone) released the member's records on that
//! broker, so acknowledgements of them are void, and the next request opens a new session with
//! every partition listed again. Requests list only what changed: partitions added, partitions
//! carrying acknowledgements, and (as forgotten) partitions to drop.

use std::collections::BTreeSet;

use super::acks::{AckBatch, AckType, PendingAcks};

/// What one request to the broker says about the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outgoing {
    pub epoch: i32,
    /// Partitions listed, each with its acknowledgement batches (perhaps none).
    pub partitions: Vec<(i32, Vec<AckBatch>)>,
    /// Partitions the session drops.
    pub forgotten: Vec<i32>,
}

/// How the broker took a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Answered (whatever the partitions' own errors): the session moves on.
    Answered,
    /// The session is gone (one of the session errors, or the connection).
    SessionLost,
}

/// The session with one broker.
#[derive(Debug, Default)]
pub(crate) struct ShareSession {
    /// The epoch of the next request; 0 opens a session.
    epoch: i32,
    /// What the broker holds in the session.
    in_session: BTreeSet<i32>,
    /// What it should hold: the assigned partitions this broker leads.
    wanted: BTreeSet<i32>,
    acks: PendingAcks,
    /// Counts the sessions opened: records acquired in an earlier one were released when it
    /// was lost, and their acknowledgements are void.
    generation: u64,
    /// What the request in flight changes (partitions added, forgotten), applied once it is
    /// answered, and how many acknowledgements it carries.
    sent: Option<(BTreeSet<i32>, BTreeSet<i32>, usize)>,
}

impl ShareSession {
    /// The session records are acquired in now: their acknowledgements name it.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether a session is open (requests other than an opening one may go).
    pub fn is_open(&self) -> bool {
        self.epoch > 0
    }

    /// Whether no partition is to be fetched from.
    pub fn wants_nothing(&self) -> bool {
        self.wanted.is_empty()
    }

    /// The partitions to fetch from now on.
    pub fn want(&mut self, partitions: BTreeSet<i32>) {
        self.wanted = partitions;
    }

    /// An acknowledgement of a record acquired in session `generation`; `false` (and
    /// dropped) when that session is gone, so the broker released the record already.
    pub fn ack(&mut self, generation: u64, partition: i32, offset: i64, ack: AckType) -> bool {
        if generation != self.generation {
            return false;
        }
        self.acks.add(partition, offset, ack);
        true
    }

    /// A ShareFetch: opens the session (listing every wanted partition, no acknowledgements),
    /// or carries what changed and the acknowledgements waiting. `None` when there is nothing
    /// to fetch from and nothing to say.
    pub fn fetch(&mut self) -> Option<Outgoing> {
        if self.epoch == 0 {
            if self.wanted.is_empty() {
                return None;
            }
            self.sent = Some((self.wanted.clone(), BTreeSet::new(), 0));
            return Some(Outgoing {
                epoch: 0,
                partitions: self.wanted.iter().map(|p| (*p, Vec::new())).collect(),
                forgotten: Vec::new(),
            });
        }
        if self.wanted.is_empty() && self.in_session.is_empty() && self.acks.is_empty() {
            return None;
        }
        let added: BTreeSet<i32> = self.wanted.difference(&self.in_session).copied().collect();
        let mut forgotten: BTreeSet<i32> =
            self.in_session.difference(&self.wanted).copied().collect();
        let carried = self.acks.len();
        let mut acks = self.acks.take();
        // A partition listed only for its acknowledgements is not to join the session.
        for (p, _) in &acks {
            if !self.wanted.contains(p) {
                forgotten.insert(*p);
            }
        }
        for p in &added {
            if !acks.iter().any(|(q, _)| q == p) {
                acks.push((*p, Vec::new()));
            }
        }
        acks.sort_by_key(|(p, _)| *p);
        self.sent = Some((added, forgotten.clone(), carried));
        Some(Outgoing {
            epoch: self.epoch,
            partitions: acks,
            forgotten: forgotten.into_iter().collect(),
        })
    }

    /// A ShareAcknowledge of what waits, on an open session; `None` when nothing waits or no
    /// session is open (acknowledgements cannot open one).
    pub fn acknowledge(&mut self) -> Option<Outgoing> {
        if !self.is_open() || self.acks.is_empty() {
            return None;
        }
        self.sent = Some((BTreeSet::new(), BTreeSet::new(), self.acks.len()));
        Some(Outgoing {
            epoch: self.epoch,
            partitions: self.acks.take(),
            forgotten: Vec::new(),
        })
    }

    /// The closing request (epoch -1) with the last acknowledgements, when a session is open;
    /// the session is closed afterwards, whatever the answer.
    pub fn close(&mut self) -> Option<Outgoing> {
        if !self.is_open() {
            return None;
        }
        let partitions = self.acks.take();
        self.reset();
        Some(Outgoing {
            epoch: -1,
            partitions,
            forgotten: Vec::new(),
        })
    }

    /// The broker's answer to the last request; returns how many acknowledgements went void
    /// when the session was lost (those waiting, and those the lost request carried).
    pub fn taken(&mut self, taken: Taken) -> usize {
        let sent = self.sent.take();
        match taken {
            Taken::Answered => {
                if let Some((added, forgotten, _)) = sent {
                    self.in_session.extend(added);
                    for p in forgotten {
                        self.in_session.remove(&p);
                    }
                }
                self.epoch = if self.epoch == i32::MAX {
                    1
                } else {
                    self.epoch + 1
                };
                0
            }
            Taken::SessionLost => {
                let void = self.acks.len() + sent.map_or(0, |(_, _, carried)| carried);
                self.reset();
                void
            }
        }
    }

    fn reset(&mut self) {
        self.epoch = 0;
        self.in_session.clear();
        self.acks = PendingAcks::default();
        self.generation += 1;
        self.sent = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ps: &[i32]) -> BTreeSet<i32> {
        ps.iter().copied().collect()
    }

    fn accept(offset: i64) -> AckBatch {
        AckBatch {
            first: offset,
            last: offset,
            types: vec![AckType::Accept as i8],
        }
    }

    #[test]
    fn nothing_wanted_opens_no_session() {
        let mut s = ShareSession::default();
        assert_eq!(s.fetch(), None);
        assert_eq!(s.acknowledge(), None);
        assert_eq!(s.close(), None);
    }

    #[test]
    fn the_first_fetch_opens_with_every_partition_and_later_ones_list_only_changes() {
        let mut s = ShareSession::default();
        s.want(set(&[0, 1]));
        let open = s.fetch().unwrap();
        assert_eq!(open.epoch, 0);
        assert_eq!(open.partitions, vec![(0, vec![]), (1, vec![])]);
        assert_eq!(s.taken(Taken::Answered), 0);
        assert!(s.is_open());

        let g = s.generation();
        assert!(s.ack(g, 1, 7, AckType::Accept));
        let next = s.fetch().unwrap();
        assert_eq!(next.epoch, 1);
        assert_eq!(next.partitions, vec![(1, vec![accept(7)])]);
        assert!(next.forgotten.is_empty());
        s.taken(Taken::Answered);

        s.want(set(&[1, 2]));
        let next = s.fetch().unwrap();
        assert_eq!(next.epoch, 2);
        assert_eq!(next.partitions, vec![(2, vec![])]);
        assert_eq!(next.forgotten, vec![0]);
        s.taken(Taken::Answered);
        assert_eq!(s.in_session, set(&[1, 2]));
    }

    #[test]
    fn acknowledgements_of_a_partition_no_longer_wanted_go_with_it_forgotten() {
        let mut s = ShareSession::default();
        s.want(set(&[0, 1]));
        s.fetch();
        s.taken(Taken::Answered);
        let g = s.generation();
        s.ack(g, 0, 3, AckType::Accept);
        s.want(set(&[1]));
        let next = s.fetch().unwrap();
        assert_eq!(next.partitions, vec![(0, vec![accept(3)])]);
        assert_eq!(next.forgotten, vec![0]);
    }

    #[test]
    fn share_acknowledge_needs_an_open_session_and_moves_the_epoch_too() {
        let mut s = ShareSession::default();
        s.want(set(&[0]));
        assert!(s.ack(s.generation(), 0, 1, AckType::Release));
        assert_eq!(s.acknowledge(), None, "no session to acknowledge in");
        s.fetch();
        s.taken(Taken::Answered);
        let g = s.generation();
        s.ack(g, 0, 2, AckType::Accept);
        let ack = s.acknowledge().unwrap();
        assert_eq!(ack.epoch, 1);
        s.taken(Taken::Answered);
        assert_eq!(s.fetch().unwrap().epoch, 2);
    }

    #[test]
    fn a_lost_session_voids_its_acknowledgements_and_reopens_in_full() {
        let mut s = ShareSession::default();
        s.want(set(&[0, 1]));
        s.fetch();
        s.taken(Taken::Answered);
        let old = s.generation();
        s.ack(old, 0, 1, AckType::Accept);
        s.ack(old, 0, 2, AckType::Accept);
        s.fetch();
        assert_eq!(
            s.taken(Taken::SessionLost),
            2,
            "the two the lost request carried"
        );
        s.ack(s.generation(), 1, 5, AckType::Accept);
        assert!(
            !s.ack(old, 0, 3, AckType::Accept),
            "acquired in the lost session"
        );
        let reopen = s.fetch().unwrap();
        assert_eq!(reopen.epoch, 0);
        assert_eq!(reopen.partitions, vec![(0, vec![]), (1, vec![])]);
        assert_eq!(s.taken(Taken::SessionLost), 1, "the ack waiting went void");
    }

    #[test]
    fn closing_carries_the_last_acknowledgements_with_epoch_minus_one() {
        let mut s = ShareSession::default();
        s.want(set(&[0]));
        s.fetch();
        s.taken(Taken::Answered);
        s.ack(s.generation(), 0, 9, AckType::Accept);
        let close = s.close().unwrap();
        assert_eq!(close.epoch, -1);
        assert_eq!(close.partitions, vec![(0, vec![accept(9)])]);
        assert!(!s.is_open());
        assert_eq!(s.close(), None);
    }

    #[test]
    fn the_epoch_wraps_to_one() {
        let mut s = ShareSession::default();
        s.want(set(&[0]));
        s.fetch();
        s.taken(Taken::Answered);
        s.epoch = i32::MAX;
        s.fetch();
        s.taken(Taken::Answered);
        assert_eq!(s.fetch().unwrap().epoch, 1);
    }
}
