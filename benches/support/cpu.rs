//! CPU time of the benchmarks' two sides, from `/proc` (Linux): the server
//! runtime's threads (named [`SERVER_THREAD`]) and the rest of the process
//! (the load generator), against the whole machine, so that figures can be
//! given per CPU-second on a shared machine. Shared through `#[path]`.

#![allow(dead_code)]

/// Name prefix of the server runtime's threads (at most 15 bytes: Linux
/// truncates thread names).
pub const SERVER_THREAD: &str = "pubq-server";

/// CPU time in clock ticks: the server's threads, the whole process, and the
/// whole machine busy and in all. Only ratios of these are used, so the tick
/// length does not matter. Other work on a shared machine shows up as
/// machine time beyond this process's.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    pub server: u64,
    pub process: u64,
    pub machine_busy: u64,
    pub machine_total: u64,
}

/// utime + stime from a `/proc/.../stat` line, and the thread's name.
fn stat_ticks(stat: &str) -> Option<(&str, u64)> {
    // The name is in parentheses and may hold spaces; after it, state is the
    // first field, utime the 12th and stime the 13th.
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((name, ticks))
}

impl CpuSample {
    pub fn read() -> Option<Self> {
        // The process total includes threads that have exited; the server's
        // threads live for the whole run.
        let process = stat_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?.1;
        let mut server = 0;
        for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            if let Some((name, ticks)) = stat_ticks(&stat) {
                if name.starts_with(SERVER_THREAD) {
                    server += ticks;
                }
            }
        }
        let all = std::fs::read_to_string("/proc/stat").ok()?;
        let line = all.lines().next()?.strip_prefix("cpu ")?;
        // user nice system idle iowait irq softirq steal (guest time is
        // already inside user).
        let v: Vec<u64> = line
            .split_whitespace()
            .take(8)
            .filter_map(|x| x.parse().ok())
            .collect();
        if v.len() < 8 {
            return None;
        }
        let total: u64 = v.iter().sum();
        Some(CpuSample {
            server,
            process,
            machine_busy: total - v[3] - v[4],
            machine_total: total,
        })
    }
}

/// Cores kept busy over a window.
#[derive(Debug, Clone, Copy)]
pub struct Cores {
    pub server: f64,
    /// The load generator: publishers, consumers and their clients.
    pub client: f64,
    pub machine: f64,
}

impl Cores {
    /// Between two samples; `None` where `/proc` is missing.
    pub fn between(a: Option<CpuSample>, b: Option<CpuSample>) -> Option<Cores> {
        let (x, y) = a.zip(b)?;
        let total = y.machine_total.checked_sub(x.machine_total)? as f64;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let share = |d: u64| d as f64 / total * cpus;
        let server = y.server.saturating_sub(x.server);
        let process = y.process.saturating_sub(x.process);
        (total > 0.0).then(|| Cores {
            server: share(server),
            client: share(process.saturating_sub(server)),
            machine: share(y.machine_busy.saturating_sub(x.machine_busy)),
        })
    }
}
