//! Unpack throughput: `Cache::unpack_to` against `tar --numeric-owner -xzf` of the same file,
//! for the busybox template and a synthetic ~200 MB tree. Run as root:
//! `cargo bench -p vz-template --bench unpack` (optional argument: synthetic size in MB).
#![allow(clippy::print_stdout, reason = "a benchmark reports to the person running it")]

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use vz_template::{BusyboxBuilder, CacheStore, TemplateName};

fn time_ours(
    store: &CacheStore,
    name: &TemplateName,
    work: &Path,
) -> anyhow::Result<(Duration, u64)> {
    let dest = work.join("ours");
    let _ = fs::remove_dir_all(&dest);
    fs::create_dir(&dest)?;
    let cache = store.find(name)?;
    let t = Instant::now();
    let stats = cache.unpack_to(&dest)?;
    let elapsed = t.elapsed();
    fs::remove_dir_all(&dest)?;
    Ok((elapsed, stats.bytes))
}

fn time_tar(store: &CacheStore, name: &TemplateName, work: &Path) -> anyhow::Result<Duration> {
    let dest = work.join("tar");
    let _ = fs::remove_dir_all(&dest);
    fs::create_dir(&dest)?;
    let cache = store.find(name)?;
    let t = Instant::now();
    let status = Command::new("tar")
        .args(["--numeric-owner", "-xzpf"])
        .arg(cache.path())
        .arg("-C")
        .arg(&dest)
        .status()?;
    let elapsed = t.elapsed();
    anyhow::ensure!(status.success(), "tar failed");
    fs::remove_dir_all(&dest)?;
    Ok(elapsed)
}

fn report(what: &str, store: &CacheStore, name: &TemplateName, work: &Path) -> anyhow::Result<()> {
    let size = fs::metadata(store.find(name)?.path())?.len();
    let mut ours = Vec::new();
    let mut tar = Vec::new();
    let mut bytes = 0;
    for _ in 0..3 {
        let (d, b) = time_ours(store, name, work)?;
        ours.push(d);
        bytes = b;
        tar.push(time_tar(store, name, work)?);
    }
    let best = |v: &[Duration]| v.iter().min().copied().unwrap_or_default();
    let (o, t) = (best(&ours), best(&tar));
    let mbs = |d: Duration| bytes as f64 / 1e6 / d.as_secs_f64();
    println!(
        "{what}: {:.1} MB content, {:.1} MB gzip; vz-template {:.3} s ({:.0} MB/s), tar -xzf {:.3} s ({:.0} MB/s) (best of 3)",
        bytes as f64 / 1e6,
        size as f64 / 1e6,
        o.as_secs_f64(),
        mbs(o),
        t.as_secs_f64(),
        mbs(t)
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mb: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(200);
    let work = tempfile::Builder::new().prefix("vz-bench-unpack").tempdir_in("/var/tmp")?;
    let store = CacheStore::new(work.path());
    let bb: TemplateName = "busybox".parse()?;
    let t = Instant::now();
    BusyboxBuilder::default().build(&store, &bb)?;
    println!("busybox template build: {:.3} s", t.elapsed().as_secs_f64());
    report("busybox", &store, &bb, work.path())?;

    // Synthetic tree: files of 4 KiB .. 1 MiB of text-like data (compresses ~3-4x, like
    // binaries and libraries do), in 100 directories.
    let src = work.path().join("src");
    let mut total = 0u64;
    let mut n = 0u64;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    while total < mb << 20 {
        let dir = src.join(format!("d{:03}", n % 100));
        fs::create_dir_all(&dir)?;
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let size = 4096 + (seed % (1 << 20));
        let mut f = fs::File::create(dir.join(format!("f{n}")))?;
        let mut buf = Vec::with_capacity(usize::try_from(size)?);
        let mut s = seed;
        while (buf.len() as u64) < size {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let word = ["alpha ", "beta ", "gamma ", "delta ", "\n", "0x7f ", "libc.so.6 "]
                [(s % 7) as usize];
            buf.extend_from_slice(word.as_bytes());
            buf.push(b'a' + u8::try_from((s >> 32) % 26)?);
        }
        f.write_all(&buf)?;
        total += buf.len() as u64;
        n += 1;
    }
    let syn: TemplateName = "synthetic".parse()?;
    fs::create_dir_all(store.cache_dir())?;
    let status = Command::new("tar")
        .args(["--numeric-owner", "-czf"])
        .arg(store.cache_dir().join("synthetic.tar.gz"))
        .arg("-C")
        .arg(&src)
        .arg(".")
        .status()?;
    anyhow::ensure!(status.success(), "tar -czf failed");
    fs::remove_dir_all(&src)?;
    println!("synthetic tree: {n} files");
    report("synthetic", &store, &syn, work.path())?;
    Ok(())
}
