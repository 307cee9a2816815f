//! Process limits `serve` and `bench` need raised.
//!
//! Every open WebSocket is a file descriptor and every loaded SQLite tenant
//! holds one or two more, so the usual soft limit of 1,024 open files caps
//! a server at a few hundred replicas (and the bench's idle-connection
//! scenario at as many sockets). The hard limit is what the operator
//! allows; raising the soft limit up to it needs no privilege.
//!
//! Process set-up belongs to the binary: the server and bench libraries
//! stay free of it, and the bench need not link the server to share it.

/// Raises the soft limit on open files to the hard limit. Returns the
/// limit now in force (`None` where it cannot be read, e.g. not on Unix).
pub fn raise_open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        // SAFETY: getrlimit/setrlimit only read and write the struct we
        // pass, which lives on this stack frame.
        unsafe {
            let mut lim: libc::rlimit = std::mem::zeroed();
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return None;
            }
            if lim.rlim_cur < lim.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: lim.rlim_max,
                    rlim_max: lim.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    lim = raised;
                }
            }
            Some(lim.rlim_cur as u64)
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(unix)]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let limit = raise_open_files_limit().expect("readable on unix");
        // SAFETY: as above.
        let hard = unsafe {
            let mut lim: libc::rlimit = std::mem::zeroed();
            assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
            assert_eq!(
                lim.rlim_cur, lim.rlim_max,
                "soft limit raised to the hard one"
            );
            lim.rlim_max as u64
        };
        assert_eq!(limit, hard);
    }
}
