//! A real PostgreSQL for tests: Debian's server binaries run in a temporary
//! directory on a free loopback port, torn down when dropped.
//!
//! Test machinery (feature `test-support`), never in a release build. Tests
//! isolate by database ([`TestPostgres::fresh_database`]) or by tenant
//! name, so one server can serve many tests; a test that stops the server
//! or terminates its connections starts its own.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// What a missing installation is told to do.
const INSTALL_HINT: &str = "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH nor under \
     /usr/lib/postgresql/*/bin: install Debian's postgresql package \
     (apt-get install -y postgresql; scripts/test does it)";

/// How many times a start is tried on a fresh port, in case another
/// process took the free port found between the check and the bind.
const START_ATTEMPTS: usize = 3;

/// A PostgreSQL server of its own: one data directory, one port, trust
/// authentication for the `postgres` superuser over loopback TCP.
pub struct TestPostgres {
    /// Holds the data directory and the server's unix socket.
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// Run the server's programs as `postgres` (through `runuser`): initdb
    /// and postgres refuse to run as root, and tests here run as root.
    as_postgres: bool,
}

impl std::fmt::Debug for TestPostgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPostgres")
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .finish()
    }
}

static NEXT_DATABASE: AtomicU64 = AtomicU64::new(0);

/// The server [`TestPostgres::shared`] hands out while any test holds it.
static SHARED: Mutex<Weak<TestPostgres>> = Mutex::new(Weak::new());

impl TestPostgres {
    /// Creates a cluster (`initdb`) and starts it (`pg_ctl -w start`, which
    /// returns once the server accepts connections). Panics with what to
    /// install when PostgreSQL is not installed, and with the server's log
    /// when it does not start.
    pub fn start() -> TestPostgres {
        let bin = find_bin().unwrap_or_else(|| panic!("{INSTALL_HINT}"));
        let as_postgres = running_as_root();
        let dir = tempfile::Builder::new()
            .prefix("evsync-pg-")
            .tempdir()
            .expect("create a temporary directory for PostgreSQL");
        if as_postgres {
            run_checked(Command::new("chown").arg("postgres:").arg(dir.path()));
        }
        let mut server = TestPostgres {
            dir,
            bin,
            port: 0,
            as_postgres,
        };
        let data = server.data_dir();
        let initdb = server.bin.join("initdb");
        run_checked(
            server
                .command(&initdb)
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"])
                .args(["--locale=C", "--no-sync"]),
        );
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            server.port = free_port();
            server.write_settings();
            if server.pg_ctl_start() {
                return server;
            }
            last_log = std::fs::read_to_string(server.log_file()).unwrap_or_default();
        }
        panic!("PostgreSQL did not start; its log:\n{last_log}");
    }

    /// A server shared by every test of this process that holds it: started
    /// by the first, stopped when the last one drops its handle (a static
    /// would never be dropped, and its server would outlive the tests).
    /// Tests isolate by database or tenant; a test that stops the server or
    /// terminates connections must [`start`](TestPostgres::start) its own.
    pub fn shared() -> Arc<TestPostgres> {
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(server) = shared.upgrade() {
            return server;
        }
        let server = Arc::new(TestPostgres::start());
        *shared = Arc::downgrade(&server);
        server
    }

    /// The URL of the `postgres` database as the `postgres` superuser.
    pub fn url(&self) -> String {
        self.database_url("postgres")
    }

    /// The URL of database `name` on this server.
    pub fn database_url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// The server's TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates an empty database with a name no other call of this process
    /// used, and returns its URL: tests isolate by database.
    pub fn fresh_database(&self) -> String {
        let n = NEXT_DATABASE.fetch_add(1, Ordering::Relaxed);
        let name = format!("evsync_test_{}_{n}", std::process::id());
        self.psql(&self.url(), &format!("CREATE DATABASE {name}"));
        self.database_url(&name)
    }

    /// Stops the server (`pg_ctl stop -m fast`: sessions are ended, data is
    /// flushed); [`start_again`](TestPostgres::start_again) brings it back.
    pub fn stop(&self) {
        let output = self.pg_ctl(&["stop", "-w", "-m", "fast"]);
        assert!(
            output.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts the stopped server again on the same port with the same data.
    pub fn start_again(&self) {
        assert!(
            self.pg_ctl_start(),
            "PostgreSQL did not start again; its log:\n{}",
            std::fs::read_to_string(self.log_file()).unwrap_or_default()
        );
    }

    /// Ends every session whose `application_name` is `application_name`
    /// (`pg_terminate_backend`) and returns how many there were.
    pub fn terminate(&self, application_name: &str) -> usize {
        let out = self.psql(
            &self.url(),
            &format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE application_name = '{}' AND pid <> pg_backend_pid()",
                application_name.replace('\'', "''")
            ),
        );
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("terminate: unexpected psql output {out:?}"))
    }

    /// Runs `sql` with psql against `db_url` (stopping at the first error)
    /// and returns what it printed: unaligned, tuples only, so a single
    /// value comes back as itself plus a newline. Panics on failure.
    pub fn psql(&self, db_url: &str, sql: &str) -> String {
        let output = run_checked(
            Command::new(self.bin.join("psql"))
                .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
                .arg("-d")
                .arg(db_url)
                .arg("-c")
                .arg(sql),
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Settings appended to the cluster's `postgresql.conf` (a later line
    /// wins, so rewriting the port on a retry is another append). Durability
    /// is off: these clusters are thrown away, and fsyncs would only slow
    /// the tests. A clean stop still writes everything out.
    fn write_settings(&self) {
        use std::io::Write;
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data_dir().join("postgresql.conf"))
            .expect("open postgresql.conf");
        writeln!(
            conf,
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
             max_connections = 200\nlog_min_messages = warning\n",
            self.port,
            self.dir.path().display()
        )
        .expect("write postgresql.conf");
    }

    fn pg_ctl_start(&self) -> bool {
        let log = self.log_file();
        let log = log.to_str().expect("a UTF-8 temporary path");
        self.pg_ctl(&["start", "-w", "-t", "60", "-l", log])
            .status
            .success()
    }

    fn pg_ctl(&self, args: &[&str]) -> Output {
        let pg_ctl = self.bin.join("pg_ctl");
        self.command(&pg_ctl)
            .arg("-D")
            .arg(self.data_dir())
            .args(args)
            .output()
            .expect("run pg_ctl")
    }

    /// `program` as the user the server runs as.
    fn command(&self, program: &Path) -> Command {
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }
}

impl Drop for TestPostgres {
    /// Stops the server at once (`-m immediate`: nothing of it is kept);
    /// the temporary directory is removed after.
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["stop", "-w", "-m", "immediate"]);
    }
}

/// The directory holding `initdb` and `pg_ctl`: on PATH, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian puts them there, off PATH).
fn find_bin() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_both(&dir) {
                // A link on PATH (as /usr/local/bin/initdb to Debian's
                // /usr/lib/postgresql/15/bin) leads to the directory that
                // has psql of the same version beside them.
                let real = std::fs::canonicalize(dir.join("initdb"))
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf))
                    .filter(|real| has_both(real));
                return Some(real.unwrap_or(dir));
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            has_both(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// Whether this process runs as root (effective uid 0), read from `id -u`.
fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A port free on 127.0.0.1 when asked (the OS picks it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("find a free loopback port")
}

/// Runs `command`, panicking with its output if it fails.
fn run_checked(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
