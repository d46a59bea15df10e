//! The relay-latency benchmark: run by hand (`contrib/bench/relay.sh`), never in CI.
//!
//! Starts InspIRCd + Atheme and Synapse on loopback, the daemon (the release build when run
//! with `--release`) bridging 20 room pairs, and measures one pair: uniquely tagged messages
//! each way at a fixed rate, and the same with no bridge (Matrix client to Matrix client through
//! Synapse in a 2-member room, IRC client to IRC client) for the floor; the bridged Matrix room
//! likewise holds one client and the bot. Reports delivered, lost, duplicated,
//! reordered, p50/p90/p99 per direction, the floor (a direction's floor is the sum of both
//! hops' floors), and the daemon's RSS.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bridgewarden::chat::{ChatEventKind, Command, SendKind};
use bridgewarden::irc::client::{spawn, IrcConfig, IrcHandle};
use bridgewarden::rich_text::RichText;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use matrix_sdk::ruma::OwnedRoomId;
use tokio::sync::mpsc;

use crate::support::irc::InspIrcd;
use crate::support::matrix::{Peer, Synapse};
use crate::support::{free_port, Server};

const PAIRS: usize = 20;

/// Arrival times per tag, per receiver.
type Arrivals = Arc<Mutex<Vec<(u64, Instant)>>>;

struct Run {
    name: String,
    sent: HashMap<u64, Instant>,
    arrivals: Vec<(u64, Instant)>,
}

struct Figures {
    delivered: usize,
    lost: usize,
    duplicated: usize,
    reordered: usize,
    p50: f64,
    p90: f64,
    p99: f64,
}

impl Run {
    fn figures(&self) -> Figures {
        let mut seen: HashMap<u64, usize> = HashMap::new();
        let mut lat = Vec::new();
        let mut reordered = 0;
        let mut highest = None;
        for (tag, at) in &self.arrivals {
            let n = seen.entry(*tag).or_default();
            *n += 1;
            if *n > 1 {
                continue;
            }
            if highest.is_some_and(|h| *tag < h) {
                reordered += 1;
            }
            highest = highest.max(Some(*tag));
            if let Some(sent) = self.sent.get(tag) {
                lat.push(at.duration_since(*sent).as_secs_f64() * 1000.0);
            }
        }
        lat.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            if lat.is_empty() {
                f64::NAN
            } else {
                lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1]
            }
        };
        Figures {
            delivered: seen.len(),
            lost: self.sent.len().saturating_sub(seen.len()),
            duplicated: seen.values().filter(|n| **n > 1).count(),
            reordered,
            p50: pct(0.50),
            p90: pct(0.90),
            p99: pct(0.99),
        }
    }

    fn report(&self) -> Figures {
        let f = self.figures();
        println!(
            "{:<28} sent {:>4} delivered {:>4} lost {:>3} dup {:>3} reordered {:>3}  p50 {:>7.2} ms  p90 {:>7.2} ms  p99 {:>7.2} ms",
            self.name, self.sent.len(), f.delivered, f.lost, f.duplicated, f.reordered, f.p50, f.p90, f.p99
        );
        f
    }
}

/// The numbers in a tagged text: `bench-<run>-<n>`, one per line (the bridge merges a
/// backlog of lines into one Matrix message).
fn tags(text: &str, run: &str) -> Vec<u64> {
    let marker = format!("bench-{run}-");
    text.match_indices(&marker)
        .filter_map(|(at, _)| {
            text[at + marker.len()..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

fn irc_client(
    port: u16,
    nick: &str,
    channels: &[&str],
) -> (IrcHandle, mpsc::Receiver<bridgewarden::chat::ChatEvent>) {
    let mut c = IrcConfig::new("bench", "127.0.0.1", port, nick);
    c.channels = channels.iter().map(|s| s.to_string()).collect();
    // The test server has no fake lag: the clients must not be the bottleneck.
    c.flood_burst = 1000;
    c.flood_rate = 1000.0;
    c.queue_limit = 100_000;
    spawn(c)
}

/// Collects tagged arrivals of `run` from IRC events into `out`.
fn collect_irc(
    mut rx: mpsc::Receiver<bridgewarden::chat::ChatEvent>,
    runs: Vec<(String, Arrivals)>,
) {
    tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            let now = Instant::now();
            if let ChatEventKind::Message { text } = &e.kind {
                let t = text.to_plain();
                for (run, out) in &runs {
                    for n in tags(&t, run) {
                        out.lock().unwrap().push((n, now));
                    }
                }
            }
        }
    });
}

/// Sends `count` tagged messages at `rate` per second with `send`; returns send times.
/// Message `i` goes `offset(i)` seconds into its period.
async fn pace<F, Fut>(
    run: &str,
    count: usize,
    rate: f64,
    offset: impl Fn(u64) -> f64,
    mut send: F,
) -> HashMap<u64, Instant>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut sent = HashMap::new();
    let start = tokio::time::Instant::now();
    for i in 0..count as u64 {
        let at = (i as f64 + offset(i)) / rate;
        tokio::time::sleep_until(start + Duration::from_secs_f64(at)).await;
        sent.insert(i, Instant::now());
        send(format!("bench-{run}-{i}")).await;
    }
    sent
}

fn rss(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_string() + " kB")
            .unwrap_or_else(|| "?".into())
    };
    format!(
        "VmRSS {}, RssAnon {}, VmHWM {}",
        field("VmRSS:"),
        field("RssAnon:"),
        field("VmHWM:")
    )
}

#[test]
#[ignore = "a benchmark: contrib/bench/relay.sh runs it"]
fn relay() {
    let count: usize = std::env::var("BENCH_COUNT")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(500);
    let rates: Vec<f64> = std::env::var("BENCH_RATES")
        .ok()
        .map(|r| r.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![1.0, 20.0]);
    let irc = InspIrcd::start();
    let synapse = Synapse::start();
    let (bot, a_acct, b_acct) = (
        synapse.register("bw"),
        synapse.register("benchA"),
        synapse.register("benchB"),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let a = rt.block_on(Peer::login(&synapse, &a_acct));
    let mut b = rt.block_on(Peer::login(&synapse, &b_acct));
    // The bridged rooms hold b and the bot: Matrix client and bridge, as the floor room holds
    // a and b (Matrix client to Matrix client), so Synapse fans each message out to as many
    // syncing members on both sides of the comparison.
    let (rooms, floor_room): (Vec<OwnedRoomId>, OwnedRoomId) = rt.block_on(async {
        let mut rooms = Vec::new();
        for _ in 0..PAIRS {
            rooms.push(b.create_room(false, &[&bot.user_id]).await);
        }
        let floor = a.create_room(false, &[&b_acct.user_id]).await;
        b.join(&floor).await;
        (rooms, floor)
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), crate::e2e::POLICY).unwrap();
    std::fs::write(dir.path().join("matrix-password"), &bot.password).unwrap();
    let mut config = format!(
        "data_dir = \"data\"\npolicy = \"policy.toml\"\n\n[matrix]\nhomeserver = \"{}\"\nuser = \"{}\"\npassword = {{ file = \"matrix-password\" }}\ninvite_from = [\"{}\"]\n\n[irc.test]\nhost = \"127.0.0.1\"\nport = {}\nnick = \"bw\"\n\n[metrics]\nlisten = \"127.0.0.1:{}\"\n\n[log]\nlevel = \"{}\"\n",
        synapse.url(),
        bot.user_id,
        b_acct.user_id,
        irc.port,
        free_port(),
        std::env::var("BENCH_LOG").unwrap_or_else(|_| "warn".into())
    );
    for (i, r) in rooms.iter().enumerate() {
        config.push_str(&format!(
            "\n[[bridge]]\nmatrix = \"{r}\"\nchannel = \"#bench{i}\"\n"
        ));
    }
    std::fs::write(dir.path().join("bw.toml"), config).unwrap();
    // BENCH_DAEMON: another build of the daemon (e.g. to compare release profiles).
    let exe = std::env::var("BENCH_DAEMON")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_bridgewarden").to_string());
    let exe = exe.as_str();
    let cfg = dir.path().join("bw.toml").display().to_string();
    let mut daemon = Server::start("bridgewarden", exe, &["run", "--config", &cfg], dir.path());
    daemon.stop_signal = 15;
    let pid = daemon.pid().unwrap();
    println!("daemon: {exe} (pid {pid}), {PAIRS} bridged pairs, {count} messages per run");

    rt.block_on(async {
        // Clients: x and y on IRC; a and b on Matrix.
        let (x, xrx) = irc_client(irc.port, "benchx", &["#bench0", "#floor"]);
        let (_y, yrx) = irc_client(irc.port, "benchy", &["#bench0", "#floor"]);
        drop(xrx);
        let mut irc_runs: Vec<(String, Arrivals)> = Vec::new();
        let mut mx_runs: Vec<(String, Arrivals)> = Vec::new();
        let mut names: Vec<String> = rates
            .iter()
            .flat_map(|r| ["i2m", "m2i", "ifloor", "mfloor"].map(|k| format!("{k}{r}")))
            .collect();
        names.push("i2mwarmup".into());
        let mut arrivals: HashMap<String, Arrivals> = HashMap::new();
        for n in &names {
            let a: Arrivals = Arc::default();
            arrivals.insert(n.clone(), a.clone());
            if n.starts_with("m2i") || n.starts_with("ifloor") {
                irc_runs.push((n.clone(), a));
            } else {
                mx_runs.push((n.clone(), a));
            }
        }
        collect_irc(yrx, irc_runs);
        // b's messages, by room: each run is looked for in its own room only.
        let by_room: HashMap<String, Vec<(String, Arrivals)>> = [
            (rooms[0].to_string(), "i2m"),
            (floor_room.to_string(), "mfloor"),
        ]
        .into_iter()
        .map(|(room, prefix)| {
            let runs = mx_runs.iter().filter(|(n, _)| n.starts_with(prefix)).cloned().collect();
            (room, runs)
        })
        .collect();
        let mut peer_rx = std::mem::replace(&mut b.seen, mpsc::unbounded_channel().1);
        tokio::spawn(async move {
            while let Some(s) = peer_rx.recv().await {
                let now = Instant::now();
                for (run, out) in by_room.get(&s.0).into_iter().flatten() {
                    for n in tags(&s.2, run) {
                        out.lock().unwrap().push((n, now));
                    }
                }
            }
        });

        // Wait until the bridge relays (the daemon is up and in the channel).
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut k = 0;
        while arrivals["i2mwarmup"].lock().unwrap().is_empty() {
            let text = RichText::plain(&format!("bench-i2mwarmup-{k}"));
            k += 1;
            let _ = x.execute(Command::Send { room: "#bench0".into(), text, kind: SendKind::Message, from: None }).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert!(Instant::now() < deadline, "the bridge did not come up:\n{}", daemon.log());
        }
        println!("idle after start: {}", rss(pid));

        for rate in &rates {
            let send_irc = |run: String| {
                let x = x.clone();
                async move {
                    let text = RichText::plain(&run);
                    let room = if run.contains("ifloor") { "#floor" } else { "#bench0" };
                    let _ = x.submit(Command::Send { room: room.into(), text, kind: SendKind::Message, from: None }).await;
                }
            };
            let send_mx = |from: &Peer, room: OwnedRoomId| {
                let client = from.client.clone();
                move |run: String| {
                    let room = client.get_room(&room).expect("the sender is in the room");
                    async move {
                        room.send(RoomMessageEventContent::text_plain(run)).await.unwrap();
                    }
                }
            };
            let (n_i2m, n_m2i, n_ifl, n_mfl) = (
                format!("i2m{rate}"),
                format!("m2i{rate}"),
                format!("ifloor{rate}"),
                format!("mfloor{rate}"),
            );
            // Slow rates: the four streams interleaved, each in its own quarter of every
            // period and the quarters rotating, so that the bridge and its floor see the same
            // servers at the same time (Synapse's latency drifts by several ms over minutes)
            // without overlapping. Fast rates: one stream at a time (two senders at once would
            // queue behind each other in Synapse and measure that instead), the two floors
            // together (they share no server).
            let (i2m, m2i, ifl, mfl) = if *rate <= 2.0 {
                let slot = |k: u64| move |i: u64| ((i + k) % 4) as f64 / 4.0;
                let runs = tokio::join!(
                    pace(&n_i2m, count, *rate, slot(0), send_irc),
                    pace(&n_m2i, count, *rate, slot(1), send_mx(&b, rooms[0].clone())),
                    pace(&n_ifl, count, *rate, slot(2), send_irc),
                    pace(&n_mfl, count, *rate, slot(3), send_mx(&a, floor_room.clone())),
                );
                for n in [&n_i2m, &n_m2i, &n_ifl, &n_mfl] {
                    settle(&arrivals[n], count).await;
                }
                runs
            } else {
                let now = |_| 0.0;
                let i2m = pace(&n_i2m, count, *rate, now, send_irc).await;
                settle(&arrivals[&n_i2m], count).await;
                let m2i = pace(&n_m2i, count, *rate, now, send_mx(&b, rooms[0].clone())).await;
                settle(&arrivals[&n_m2i], count).await;
                let (ifl, mfl) = tokio::join!(
                    pace(&n_ifl, count, *rate, now, send_irc),
                    pace(&n_mfl, count, *rate, now, send_mx(&a, floor_room.clone())),
                );
                settle(&arrivals[&n_ifl], count).await;
                settle(&arrivals[&n_mfl], count).await;
                (i2m, m2i, ifl, mfl)
            };
            println!("\nat {rate} message(s)/s:");
            let take = |n: &str, sent: HashMap<u64, Instant>| Run {
                name: n.to_string(),
                sent,
                arrivals: arrivals[n].lock().unwrap().clone(),
            };
            let fi2m = take(&n_i2m, i2m).report();
            let fm2i = take(&n_m2i, m2i).report();
            let fif = take(&n_ifl, ifl).report();
            let fmf = take(&n_mfl, mfl).report();
            let (f50, f99) = (fif.p50 + fmf.p50, fif.p99 + fmf.p99);
            for (name, f) in [("IRC -> Matrix", &fi2m), ("Matrix -> IRC", &fm2i)] {
                println!(
                    "{name}: floor p50 {f50:.2} ms p99 {f99:.2} ms; bridge over it: p50 {:+.2} ms, p99 {:+.2} ms",
                    f.p50 - f50,
                    f.p99 - f99
                );
            }
            println!("daemon after {rate}/s: {}", rss(pid));
        }
    });
    daemon.stop();
    if std::env::var("BENCH_LOG").is_ok() {
        let _ = std::fs::copy(dir.path().join("bridgewarden.log"), "/tmp/bench-daemon.log");
    }
}

/// Waits until `count` arrivals are in, or nothing new came for 10 s.
async fn settle(arrivals: &Arrivals, count: usize) {
    let mut last = 0;
    let mut quiet = Instant::now();
    loop {
        let n = arrivals.lock().unwrap().len();
        if n >= count {
            return;
        }
        if n != last {
            last = n;
            quiet = Instant::now();
        }
        if quiet.elapsed() > Duration::from_secs(10) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
