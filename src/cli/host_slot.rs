//! Two `serve`s of one group on one host, both with default settings. By default worker *i* is
//! the static member `<host name>-<i>`, so the second would claim the first one's instance ids
//! and fence it, and its metrics endpoint would find the default port taken. Each `serve`
//! therefore claims a slot on the host, a lock file per group and slot: the first keeps the
//! host name and the default port; the n-th becomes `<host name>.n` and serves metrics on the
//! default port + n − 1. The lock dies with the process (kill -9 included), so an instance
//! started again gets the first free slot, its old one when nothing took it meanwhile.

use std::fs::File;
use std::path::PathBuf;

use hd_kafka_exec::config::{Config, Membership};

/// More `serve`s of one group on one host than this is not a setup anyone means.
const SLOTS: u32 = 64;

/// This process' slot; holds the lock while it lives (and its forked workers with it).
#[derive(Debug)]
pub struct HostSlot {
    number: u32,
    _lock: Option<File>,
}

impl HostSlot {
    /// Claims the first free slot for `config`'s group when its instance ids are the default
    /// ones; slot 1 (nothing to change) otherwise, or when no lock can be taken at all.
    pub fn claim(config: &Config) -> HostSlot {
        let k = &config.kafka;
        let host = hd_kafka_exec::config::host_name();
        let defaulted = matches!(&k.membership, Membership::Static { prefix } if *prefix == host);
        if !defaulted {
            return HostSlot {
                number: 1,
                _lock: None,
            };
        }
        for number in 1..=SLOTS {
            match try_lock(lock_path(&k.group_id, &host, number)) {
                Ok(Some(lock)) => {
                    return HostSlot {
                        number,
                        _lock: Some(lock),
                    };
                }
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(
                        "cannot claim a slot on this host ({e}): if another serve of group {} runs \
                         here with the default instance ids, the two fence each other; give \
                         each its own \"group_instance_id\"",
                        k.group_id
                    );
                    break;
                }
            }
        }
        HostSlot {
            number: 1,
            _lock: None,
        }
    }

    /// Gives `config` this slot's instance prefix and default metrics port; says so once when
    /// they differ from the defaults (`announce`).
    pub fn apply(&self, config: &mut Config, announce: bool) {
        if self.number == 1 {
            return;
        }
        let n = self.number;
        if let Membership::Static { prefix } = &mut config.kafka.membership {
            *prefix = format!("{prefix}.{n}");
        }
        let supervisor = &mut config.supervisor;
        let mut port = None;
        if let (Some(addr), false) = (&mut supervisor.metrics_addr, supervisor.metrics_addr_chosen)
        {
            let shifted = u32::from(addr.port()) + n - 1;
            if let Ok(shifted) = u16::try_from(shifted) {
                addr.set_port(shifted);
                port = Some(shifted);
            }
        }
        if announce {
            let prefix = match &config.kafka.membership {
                Membership::Static { prefix } => prefix.as_str(),
                Membership::Dynamic => "",
            };
            tracing::info!(
                group = %config.kafka.group_id,
                slot = n,
                instance_prefix = prefix,
                metrics_port = ?port,
                "another serve of this group runs on this host with the default instance ids: \
                 this one takes the next slot, its own instance ids and metrics port"
            );
        }
    }
}

/// One lock file per group, host name and slot, where every process of the host looks.
fn lock_path(group: &str, host: &str, number: u32) -> PathBuf {
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    std::env::temp_dir().join(format!(
        "hd-kafka-exec.{}.{}.{number}.lock",
        safe(group),
        safe(host)
    ))
}

/// The lock on `path` when free (`None` when another process holds it).
fn try_lock(path: PathBuf) -> std::io::Result<Option<File>> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    // Not nix's `Flock`: its drop unlocks the open file description, which the forked workers
    // share, so a worker ending would free the slot under its live supervisor. A plain flock
    // is released only when every process holding the file has closed it.
    #[allow(
        deprecated,
        reason = "the plain flock(2) semantics are the point, see above"
    )]
    let locked = nix::fcntl::flock(
        std::os::fd::AsRawFd::as_raw_fd(&file),
        nix::fcntl::FlockArg::LockExclusiveNonblock,
    );
    match locked {
        Ok(()) => Ok(Some(file)),
        Err(nix::errno::Errno::EWOULDBLOCK) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_held_until_its_holder_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slot.lock");
        let first = try_lock(path.clone()).unwrap();
        assert!(first.is_some());
        assert!(
            try_lock(path.clone()).unwrap().is_none(),
            "a second open file description cannot lock it while the first holds it"
        );
        drop(first);
        assert!(try_lock(path).unwrap().is_some(), "free again once let go");
    }

    #[test]
    fn lock_files_name_group_host_and_slot_safely() {
        let p = lock_path("hd group/1", "host-a", 2);
        assert_eq!(
            p.file_name().unwrap().to_str().unwrap(),
            "hd-kafka-exec.hd_group_1.host-a.2.lock"
        );
    }
}
