//! Policy engine throughput against a bare Aho-Corasick pass over the same corpus.
//!
//! Group `policy`, two functions over the same 10,000 mixed-language messages:
//! - `evaluate`: the engine with `policies/default.toml` (normalisation, every rule, state);
//! - `baseline_aho_corasick`: one Aho-Corasick pass over the raw messages with the same list
//!   terms, no normalisation: the floor for "look for these words".
//!
//! Each iteration processes the whole corpus, so the two means compare directly.

use std::hint::black_box;
use std::path::Path;

use aho_corasick::AhoCorasick;
use bridgewarden::policy::{Event, Network, State};
use criterion::{criterion_group, criterion_main, Criterion};

const MESSAGES: usize = 10_000;

/// A small deterministic PRNG (xorshift64*), so the corpus is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const EN: &[&str] = &[
    "the", "build", "fails", "on", "my", "machine", "after", "update", "does", "anyone", "know",
    "why", "release", "notes", "look", "good", "thanks", "for", "help", "I", "think", "we",
    "should", "merge", "this", "today", "meeting", "tomorrow", "at", "noon", "please", "review",
    "patch", "server", "restart", "works", "again", "hello", "everyone", "question", "about",
];
const RU: &[&str] = &[
    "привет",
    "всем",
    "как",
    "дела",
    "сборка",
    "падает",
    "после",
    "обновления",
    "кто",
    "знает",
    "почему",
    "спасибо",
    "за",
    "помощь",
    "думаю",
    "надо",
    "слить",
    "это",
    "сегодня",
    "встреча",
    "завтра",
    "посмотрите",
    "патч",
    "сервер",
    "работает",
    "снова",
    "вопрос",
    "про",
    "релиз",
];
const FA: &[&str] = &[
    "سلام",
    "به",
    "همه",
    "ساخت",
    "بعد",
    "از",
    "به‌روزرسانی",
    "خراب",
    "شد",
    "کسی",
    "می‌داند",
    "چرا",
    "ممنون",
    "برای",
    "کمک",
    "فکر",
    "می‌کنم",
    "باید",
    "امروز",
    "جلسه",
    "فردا",
    "لطفا",
    "بررسی",
    "کنید",
    "سرور",
    "دوباره",
    "کار",
    "می‌کند",
    "سوال",
    "دارم",
];
const BAD: &[&str] = &[
    "idiot",
    "1d10t",
    "m0ron",
    "i d i o t",
    "іdіоt",
    "IDIOOOT",
    "урод",
    "у р о д",
    "cyкa",
    "мудак",
    "احمق",
    "احـــمق",
    "بی شرف",
    "dumbass",
    "a$$hole",
];
const LINKS: &[&str] = &[
    "https://example.org/docs",
    "bit.ly/3xYz",
    "www.example.com",
    "t.me/joinchat/abc",
];

fn corpus() -> Vec<Event> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let rooms = ["#chat", "#dev", "!support:hs", "#ru", "#fa"];
    let mut out = Vec::with_capacity(MESSAGES);
    for i in 0..MESSAGES {
        let lang = match rng.next() % 10 {
            0..=4 => EN,
            5..=7 => RU,
            _ => FA,
        };
        let words = 3 + (rng.next() % 14) as usize;
        let mut body: Vec<String> = (0..words).map(|_| rng.pick(lang).to_string()).collect();
        if rng.chance(8) {
            body.insert(
                (rng.next() % words as u64) as usize,
                rng.pick(BAD).to_string(),
            );
        }
        if rng.chance(5) {
            body.push(rng.pick(LINKS).to_string());
        }
        let mut body = body.join(" ");
        if rng.chance(3) {
            body = body.to_uppercase();
        }
        let network = if rng.chance(50) {
            Network::Irc
        } else {
            Network::Matrix
        };
        let sender = format!("user{}", rng.next() % 400);
        let room = rooms[(rng.next() % rooms.len() as u64) as usize];
        let mut ev = Event::message(
            network,
            room,
            &sender,
            &body,
            1_700_000_000_000 + i as i64 * 150,
        );
        if rng.chance(4) {
            ev.mentions = (0..(rng.next() % 8)).map(|k| format!("user{k}")).collect();
        }
        if rng.chance(10) {
            ev.joined_ts = Some(ev.ts - 60_000);
        }
        out.push(ev);
    }
    out
}

/// The terms of the default policy's term lists, as written.
fn raw_terms() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/lists");
    let mut terms = Vec::new();
    for name in [
        "insults-en",
        "insults-ru",
        "insults-fa",
        "slurs-en",
        "slurs-ru",
        "slurs-fa",
    ] {
        let text = std::fs::read_to_string(dir.join(format!("{name}.txt"))).expect("list file");
        terms.extend(
            text.lines()
                .map(|l| l.split(" #").next().unwrap_or("").trim())
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    terms
}

fn bench(c: &mut Criterion) {
    let policy = bridgewarden::policy_files::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/default.toml"),
    )
    .expect("default policy loads");
    let events = corpus();
    let automaton = AhoCorasick::new(raw_terms()).expect("automaton");

    let mut group = c.benchmark_group("policy");
    group.bench_function("evaluate", |b| {
        b.iter(|| {
            let mut state = State::new();
            let mut blocked = 0usize;
            for ev in &events {
                blocked += usize::from(!policy.evaluate(ev, &mut state).relay);
            }
            black_box(blocked)
        })
    });
    group.bench_function("baseline_aho_corasick", |b| {
        b.iter(|| {
            let mut found = 0usize;
            for ev in &events {
                found += automaton.find_iter(&ev.body).count();
            }
            black_box(found)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
