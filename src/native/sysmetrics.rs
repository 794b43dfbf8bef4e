//! System metrics (CONTRACT §5): a background thread that writes one system row at start and
//! then one per interval through the run's log. The host is read with `sysinfo`; NVIDIA GPUs
//! through NVML, loaded at run time, so a machine without the driver simply has no GPU keys.
//!
//! Reading and naming are split: [`Reading::pairs`] turns plain numbers into `(key, value)`
//! pairs, so the naming is testable without a GPU.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::Nvml;
use sysinfo::{
    DiskRefreshKind, Disks, MemoryRefreshKind, Networks, Pid, ProcessRefreshKind, ProcessesToUpdate, System,
};

/// Time between samples when the settings do not say otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// Host readings at one instant, in base units (bytes, percent).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostReading {
    /// Busy time of all CPUs together since the previous sample, 0-100.
    pub cpu_percent: f64,
    /// Logical CPUs.
    pub cpu_count: usize,
    /// Memory in use by the whole system.
    pub memory_used_bytes: u64,
    /// Installed memory.
    pub memory_total_bytes: u64,
    /// Resident memory of this process and all its descendants.
    pub proc_rss_bytes: u64,
    /// CPU of this process and all its descendants, 100 per busy core.
    pub proc_cpu_percent: f64,
    /// Bytes read from every block device since the sampler started, system-wide.
    pub disk_read_bytes: u64,
    /// Bytes written to every block device since the sampler started, system-wide.
    pub disk_write_bytes: u64,
    /// Bytes sent on every interface but loopback since the sampler started, system-wide.
    pub network_sent_bytes: u64,
    /// Bytes received on every interface but loopback since the sampler started, system-wide.
    pub network_recv_bytes: u64,
}

/// One NVIDIA GPU's readings; a field is `None` when the driver does not report it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GpuReading {
    /// NVML device index, the `<i>` of `gpu.<i>.*`.
    pub index: u32,
    /// Percent of the last sample period in which a kernel ran.
    pub utilization_percent: Option<u32>,
    /// Framebuffer memory allocated.
    pub memory_used_bytes: Option<u64>,
    /// Framebuffer memory installed.
    pub memory_total_bytes: Option<u64>,
    /// Core temperature in °C.
    pub temperature_c: Option<u32>,
    /// Board power draw in milliwatts, as NVML reports it.
    pub power_mw: Option<u32>,
    /// Streaming-multiprocessor clock in MHz.
    pub sm_clock_mhz: Option<u32>,
}

/// Everything one sample read, before it is named.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reading {
    /// CPU, memory, process tree, disk and network.
    pub host: HostReading,
    /// One entry per NVIDIA GPU; empty without NVML.
    pub gpus: Vec<GpuReading>,
}

fn percent(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0).then(|| part / whole * 100.0)
}

impl Reading {
    /// The system row's `(key, value)` pairs: W&B-like names, values in the units they name.
    pub fn pairs(&self) -> Vec<(String, f64)> {
        let h = &self.host;
        let mut out: Vec<(String, f64)> = [
            ("cpu.percent", h.cpu_percent),
            ("cpu.count", h.cpu_count as f64),
            ("memory.used_bytes", h.memory_used_bytes as f64),
            ("memory.total_bytes", h.memory_total_bytes as f64),
        ]
        .into_iter()
        .chain(
            percent(h.memory_used_bytes as f64, h.memory_total_bytes as f64).map(|p| ("memory.percent", p)),
        )
        .chain([
            ("proc.memory.rss_bytes", h.proc_rss_bytes as f64),
            ("proc.cpu.percent", h.proc_cpu_percent),
            ("disk.read_bytes", h.disk_read_bytes as f64),
            ("disk.write_bytes", h.disk_write_bytes as f64),
            ("network.sent_bytes", h.network_sent_bytes as f64),
            ("network.recv_bytes", h.network_recv_bytes as f64),
        ])
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for g in &self.gpus {
            let used = g.memory_used_bytes.map(|b| b as f64);
            let total = g.memory_total_bytes.map(|b| b as f64);
            let fields = [
                ("utilization", g.utilization_percent.map(f64::from)),
                ("memory.used_bytes", used),
                ("memory.total_bytes", total),
                ("memory.percent", used.zip(total).and_then(|(u, t)| percent(u, t))),
                ("temperature_c", g.temperature_c.map(f64::from)),
                ("power_w", g.power_mw.map(|mw| f64::from(mw) / 1000.0)),
                ("sm_clock_mhz", g.sm_clock_mhz.map(f64::from)),
            ];
            for (name, value) in fields {
                if let Some(v) = value {
                    out.push((format!("gpu.{}.{name}", g.index), v));
                }
            }
        }
        out
    }
}

/// Reads the host; keeps what CPU rates and "since the sampler started" counters need.
struct Host {
    sys: System,
    disks: Disks,
    networks: Networks,
    me: Pid,
    /// Disk read/write and network sent/received when the sampler started.
    base: Option<[u64; 4]>,
}

fn disk_io() -> DiskRefreshKind {
    DiskRefreshKind::nothing().with_io_usage()
}

impl Host {
    /// Reads nothing yet: the first sample sets the baselines (CPU rates start at 0).
    fn new() -> Host {
        Host {
            sys: System::new(),
            disks: Disks::new_with_refreshed_list_specifics(disk_io()),
            networks: Networks::new_with_refreshed_list(),
            me: Pid::from_u32(std::process::id()),
            base: None,
        }
    }

    fn read(&mut self) -> HostReading {
        self.sys.refresh_cpu_usage();
        self.sys
            .refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        self.sys.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing()
                .with_cpu()
                .with_memory()
                .without_tasks(),
        );
        self.disks.refresh_specifics(true, disk_io());
        self.networks.refresh(true);
        let (proc_rss_bytes, proc_cpu_percent) = self.process_tree();
        let now = self.counters();
        let base = *self.base.get_or_insert(now);
        let since = |i: usize| now[i].saturating_sub(base[i]);
        HostReading {
            cpu_percent: f64::from(self.sys.global_cpu_usage()).clamp(0.0, 100.0),
            cpu_count: self.sys.cpus().len(),
            memory_used_bytes: self.sys.used_memory(),
            memory_total_bytes: self.sys.total_memory(),
            proc_rss_bytes,
            proc_cpu_percent,
            disk_read_bytes: since(0),
            disk_write_bytes: since(1),
            network_sent_bytes: since(2),
            network_recv_bytes: since(3),
        }
    }

    /// Resident bytes and CPU percent of this process and every process below it, so that
    /// `tidelog run` measures the command it runs.
    fn process_tree(&self) -> (u64, f64) {
        let mut children: HashMap<Pid, Vec<Pid>> = HashMap::new();
        for (pid, p) in self.sys.processes() {
            if let (Some(parent), None) = (p.parent(), p.thread_kind()) {
                children.entry(parent).or_default().push(*pid);
            }
        }
        let (mut rss, mut cpu) = (0u64, 0f64);
        let mut seen = HashSet::new();
        let mut todo = vec![self.me];
        while let Some(pid) = todo.pop() {
            if !seen.insert(pid) {
                continue;
            }
            if let Some(p) = self.sys.process(pid) {
                rss += p.memory();
                cpu += f64::from(p.cpu_usage());
            }
            todo.extend(children.get(&pid).into_iter().flatten());
        }
        (rss, cpu)
    }

    /// Disk read, disk written, network sent, network received: totals since boot. A device
    /// mounted twice counts once.
    fn counters(&self) -> [u64; 4] {
        let mut out = [0u64; 4];
        let mut devices = HashSet::new();
        for d in self.disks.list() {
            if devices.insert(d.name()) {
                let u = d.usage();
                out[0] += u.total_read_bytes;
                out[1] += u.total_written_bytes;
            }
        }
        for (name, n) in self.networks.list() {
            if name != "lo" && name != "lo0" {
                out[2] += n.total_transmitted();
                out[3] += n.total_received();
            }
        }
        out
    }
}

/// NVML and its device count, when an NVIDIA driver and GPU are present.
struct Gpus {
    nvml: Nvml,
    count: u32,
}

impl Gpus {
    /// Loads NVML; without it or without a GPU, says so once at debug level.
    fn open() -> Option<Gpus> {
        let found = Nvml::init()
            .map_err(|e| e.to_string())
            .and_then(|nvml| match nvml.device_count() {
                Ok(count) if count > 0 => Ok(Gpus { nvml, count }),
                Ok(_) => Err("NVML reports no GPU".to_owned()),
                Err(e) => Err(e.to_string()),
            });
        found
            .map_err(|e| log::debug!("tidelog: no NVIDIA GPU metrics ({e})"))
            .ok()
    }

    fn read(&self) -> Vec<GpuReading> {
        (0..self.count)
            .filter_map(|index| {
                let d = self.nvml.device_by_index(index).ok()?;
                let memory = d.memory_info().ok();
                Some(GpuReading {
                    index,
                    utilization_percent: d.utilization_rates().ok().map(|u| u.gpu),
                    memory_used_bytes: memory.as_ref().map(|m| m.used),
                    memory_total_bytes: memory.as_ref().map(|m| m.total),
                    temperature_c: d.temperature(TemperatureSensor::Gpu).ok(),
                    power_mw: d.power_usage().ok(),
                    sm_clock_mhz: d.clock_info(Clock::SM).ok(),
                })
            })
            .collect()
    }
}

/// A thread writing a system row at once and every interval, owned by a run to cover its lifetime.
pub struct Sampler {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Starts sampling every `interval`; the first row is written even if stopped at once.
    pub fn start<F>(name: String, interval: Duration, mut write: F) -> io::Result<Sampler>
    where
        F: FnMut(&[(String, f64)]) + Send + 'static,
    {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            let mut host = Host::new();
            let gpus = Gpus::open();
            let mut next = Instant::now();
            loop {
                let reading = Reading {
                    host: host.read(),
                    gpus: gpus.as_ref().map(Gpus::read).unwrap_or_default(),
                };
                write(&reading.pairs());
                next += interval;
                let now = Instant::now();
                if next <= now {
                    next = now + interval;
                }
                match stopped.recv_timeout(next - now) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        })?;
        Ok(Sampler {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it, including a sample in progress.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("tidelog: the system-metrics sampler panicked");
            }
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.halt();
    }
}
